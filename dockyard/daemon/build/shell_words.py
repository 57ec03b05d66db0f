"""Dockerfile word expansion: the shell-like lexer the classic builder runs over the words of
ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and ARG.

It is not a shell: there is no command substitution, globbing or arithmetic. What it does:

- ``$NAME`` and ``${NAME}``; a name is letters, digits and ``_``; ``$1`` (digits) and the
  special parameters ``$@ $* $# $? $- $$ $! $0`` are always empty, as in docker;
- ``${NAME:-word}`` (word when unset or empty), ``${NAME:+word}`` (word when set and not empty),
  ``${NAME-word}`` and ``${NAME+word}`` (the same, testing only whether it is set: dockerd 20.10
  refuses these two, later builders accept them, and the issue asks for them),
  ``${NAME?word}`` and ``${NAME:?word}`` (an error when unset, or unset or empty);
- the escape character (``\\`` or the Dockerfile's ``# escape=``) takes the next character
  literally; an escape at the very end is dropped;
- single quotes keep everything literally; double quotes expand ``$`` and let the escape
  character escape only ``"``, ``$`` and itself (any other escape stays as written);
- quotes are removed from the result.

Errors name the word as docker does: ``failed to process "${X": missing ':' in substitution``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from dockyard.core.errors import InvalidParameter

#: ``${A:-${B:-...}}`` deeper than this is refused: the lexer recurses, and no Dockerfile needs
#: more than a few levels.
MAX_NESTING = 64

#: Parameters a shell would fill in (``$@``, ``$#``...): the builder has none, so they expand
#: to nothing, and ``$@x`` is ``x``, exactly as in dockerd.
SPECIAL_PARAMETERS = frozenset("@*#?-$!0")


class ExpansionError(InvalidParameter):
    """A word cannot be expanded: an unterminated quote, bad ``${...}`` syntax, ``${X?}``."""


class _Failure(Exception):
    """The reason alone; :func:`_lex` adds the word to it."""


def go_quote(text: str) -> str:
    """Go's ``%q`` for the texts we quote (ASCII escapes the same way; JSON is close enough)."""
    return json.dumps(text, ensure_ascii=False)


def expand(word: str, variables: Mapping[str, str], escape: str = "\\") -> str:
    """The word with variables expanded and quotes and escapes removed; whitespace is kept
    (``ENV a="x  y"`` is one value)."""
    text, _ = _lex(word, variables, escape)
    return text


def split_words(text: str, variables: Mapping[str, str], escape: str = "\\") -> list[str]:
    """The text split into words on unquoted whitespace, after expansion. An unquoted
    variable's value is split too (``$X`` with ``X="a b"`` is two words); a quoted one is not;
    an empty unquoted expansion makes no word, ``""`` makes an empty one."""
    _, words = _lex(text, variables, escape)
    return words


def _lex(text: str, variables: Mapping[str, str], escape: str) -> tuple[str, list[str]]:
    if escape not in ("\\", "`"):
        raise ValueError(f"escape must be \\ or `, not {escape!r}")
    lexer = _Lexer(text, variables, escape)
    try:
        return lexer.run()
    except _Failure as failure:
        raise ExpansionError(f"failed to process {go_quote(text)}: {failure}") from None


class _Words:
    """Collects words while the lexer runs: characters that came from quotes or escapes join
    a word whatever they are; plain whitespace ends one."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.current: list[str] = []
        self.in_word = False

    def plain(self, text: str) -> None:
        for char in text:
            if char.isspace():
                if self.in_word:
                    self.words.append("".join(self.current))
                    self.current = []
                    self.in_word = False
            else:
                self.raw(char)

    def raw(self, text: str) -> None:
        self.current.append(text)
        self.in_word = True

    def finish(self) -> list[str]:
        if self.in_word:
            self.words.append("".join(self.current))
        return self.words


class _Lexer:
    def __init__(self, text: str, variables: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.position = 0
        self.variables = variables
        self.escape = escape
        self.depth = 0

    def peek(self) -> str:
        """The next character, or "" at the end."""
        return self.text[self.position] if self.position < len(self.text) else ""

    def next(self) -> str:
        char = self.peek()
        self.position += len(char)
        return char

    def run(self) -> tuple[str, list[str]]:
        result, words = self.until("")
        return result, words.finish()

    def until(self, stop: str) -> tuple[str, _Words]:
        """Lex up to ``stop`` (consumed), or to the end when ``stop`` is ""."""
        result: list[str] = []
        words = _Words()
        while self.position < len(self.text):
            char = self.peek()
            if stop and char == stop:
                self.next()
                return "".join(result), words
            if char == "'":
                piece = self.single_quoted()
                words.raw(piece)
            elif char == '"':
                piece = self.double_quoted()
                words.raw(piece)
            elif char == "$":
                piece = self.dollar()
                words.plain(piece)
            else:
                self.next()
                if char == self.escape:
                    char = self.next()
                    if not char:
                        break
                    words.raw(char)
                else:
                    words.plain(char)
                piece = char
            result.append(piece)
        if stop:
            raise _Failure(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words

    def single_quoted(self) -> str:
        self.next()
        end = self.text.find("'", self.position)
        if end < 0:
            raise _Failure("unexpected end of statement while looking for matching single-quote")
        piece = self.text[self.position : end]
        self.position = end + 1
        return piece

    def double_quoted(self) -> str:
        self.next()
        result: list[str] = []
        while True:
            char = self.peek()
            if not char:
                raise _Failure(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if char == '"':
                self.next()
                return "".join(result)
            if char == "$":
                result.append(self.dollar())
                continue
            self.next()
            if char == self.escape:
                following = self.peek()
                if not following:
                    continue
                if following in ('"', "$", self.escape):
                    char = self.next()
            result.append(char)

    def name(self) -> str:
        start = self.position
        if self.peek().isdigit():
            while self.peek().isdigit():
                self.next()
            return self.text[start : self.position]
        if self.peek() and self.peek() in SPECIAL_PARAMETERS:
            return self.next()
        while (char := self.peek()) and (char.isalnum() or char == "_"):
            self.next()
        return self.text[start : self.position]

    def lookup(self, name: str) -> str | None:
        if name[:1].isdigit() or name in SPECIAL_PARAMETERS:
            return None
        return self.variables.get(name)

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            return self.lookup(name) or ""
        self.next()
        if not self.peek():
            raise _Failure("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise _Failure("syntax error: bad substitution")
        name = self.name()
        operator = self.next()
        if operator == "}":
            return self.lookup(name) or ""
        test_empty = operator == ":"
        if test_empty:
            operator = self.next()
        elif operator not in ("-", "+", "?"):
            raise _Failure("missing ':' in substitution")
        try:
            self.depth += 1
            if self.depth > MAX_NESTING:
                raise _Failure(f"substitutions nested more than {MAX_NESTING} deep")
            word, _ = self.until("}")
            self.depth -= 1
        except _Failure as failure:
            if self.position < len(self.text):
                raise
            raise _Failure("syntax error: missing '}'") from failure
        if operator not in ("-", "+", "?"):
            raise _Failure(f"unsupported modifier ({operator}) in substitution")
        value = self.lookup(name)
        present = bool(value) if test_empty else value is not None
        if operator == "-":
            return value if present and value is not None else word
        if operator == "+":
            return word if present else ""
        if not present:
            unset = (
                "is not allowed to be unset or empty"
                if test_empty
                else "is not allowed to be unset"
            )
            raise _Failure(f"{name}: {word or unset}")
        return value or ""
