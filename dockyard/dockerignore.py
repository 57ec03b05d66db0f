"""``.dockerignore``: which files of a build context are left out, with docker's semantics.

Both sides use it: the client to decide what goes into the context tar it sends, the daemon to
decide what ``COPY``/``ADD`` may see. Standard library only (the client imports it, and the
client imports no server code).

The rules follow docker's pattern matcher (moby/patternmatcher, used by dockerd 20.10 and the
docker CLI):

* A line starting with ``#`` is a comment; surrounding whitespace is dropped; empty lines are
  skipped; a UTF-8 byte order mark before the first line is ignored.
* A pattern is cleaned like Go's ``filepath.Clean`` (``a//b/../c`` is ``a/c``) and a leading
  ``/`` is dropped: patterns are relative to the context's root.
* ``!pattern`` is an exception: it re-includes what earlier patterns excluded. The last
  pattern that matches a path decides.
* ``*`` matches any run of characters but ``/``, ``?`` one character but ``/``, ``[...]`` a
  character class (``[^...]`` negated) and ``\\`` escapes the next character, as in Go's
  ``filepath.Match``; ``**`` matches any number of directories, zero included.
* A pattern matching a directory excludes everything below it.
* An excluded directory is still walked when an exception names a path below it (docker
  checks the exception's text, not its glob, so ``!dir/keep`` re-includes ``dir/keep`` while
  ``!*/keep`` does not reach into an excluded ``dir``): see :meth:`Matcher.may_include_under`.
"""

from __future__ import annotations

import functools
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

#: The file docker reads the patterns from, at the root of the context.
DOCKERIGNORE = ".dockerignore"
_BOM = "\ufeff"


class PatternError(ValueError):
    """A pattern that is not valid (``!`` alone, an unclosed ``[``)."""


def clean_path(path: str) -> str:
    """``path`` cleaned like Go's ``filepath.Clean`` on Linux: no ``//``, ``.`` or inner
    ``..``; ``"."`` for an empty result."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    cleaned = "/".join(parts)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


@dataclass(frozen=True)
class Pattern:
    """One cleaned pattern; ``exception`` when it was written ``!pattern``."""

    text: str
    exception: bool = False
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)
    #: docker matches ``**`` followed by plain text as a suffix of the whole path (``**foo``
    #: matches ``barfoo``), not through its regular expression.
    _suffix: str | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_regex", _compile(self.text))
        rest = self.text[2:]
        plain = self.text.startswith("**") and not any(char in rest for char in "*?[]\\")
        object.__setattr__(self, "_suffix", rest if plain else None)

    @classmethod
    def parse(cls, line: str) -> Pattern:
        """The pattern one ``.dockerignore`` line (already known not to be a comment) holds."""
        text = line.strip()
        exception = text.startswith("!")
        if exception:
            text = text[1:].strip()
            if not text:
                raise PatternError('illegal exclusion pattern: "!"')
        text = clean_path(text)
        if len(text) > 1 and text.startswith("/"):
            text = text[1:]
        return cls(text, exception)

    def matches(self, path: str) -> bool:
        """Whether cleaned, slash-separated ``path`` matches this pattern itself (its
        parents are not considered)."""
        if self._suffix is not None:
            suffix = self._suffix
            return path.endswith(suffix) or (suffix.startswith("/") and path == suffix[1:])
        return self._regex.fullmatch(path) is not None

    def __str__(self) -> str:
        return ("!" if self.exception else "") + self.text


def has_glob(pattern: str) -> bool:
    """Whether ``pattern`` holds a wildcard, a character class or an escape."""
    return any(char in pattern for char in "*?[\\")


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    return _compile(pattern, double_star=False)


def glob_match(pattern: str, path: str) -> bool:
    """Go's ``filepath.Match``: whether all of ``path`` matches ``pattern``, whose ``*`` and
    ``?`` never match ``/`` (``**`` is no different from ``*``). :class:`PatternError` for a
    bad pattern."""
    return _glob_regex(pattern).fullmatch(path) is not None


def _compile(pattern: str, double_star: bool = True) -> re.Pattern[str]:
    """A regular expression for ``pattern``, built as docker's matcher builds its own;
    without ``double_star``, as Go's ``filepath.Match`` reads it."""
    _check_syntax(pattern)
    out: list[str] = []
    index, length = 0, len(pattern)
    while index < length:
        char = pattern[index]
        index += 1
        if char == "*":
            if double_star and index < length and pattern[index] == "*":
                index += 1
                if index < length and pattern[index] == "/":
                    index += 1  # "**/" is "**"
                # "**" at the end matches everything below; elsewhere any number of
                # directories, none included.
                out.append(".*" if index >= length else "(?:.*/)?")
            else:
                out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            if index < length:
                out.append(re.escape(pattern[index]))
                index += 1
            else:
                out.append(r"\\")
        elif char == "[":
            # A character class, copied as written: Go's filepath.Match and Python's re
            # agree on ranges and on "^" negating; a "\" inside escapes the next character.
            end = _class_end(pattern, index)
            body = pattern[index:end]
            negated = body.startswith("^")
            if negated:
                body = body[1:]
            out.append("[" + ("^" if negated else "") + _class_body(body) + "]")
            index = end + 1
        else:
            out.append(re.escape(char))
    return re.compile("".join(out))


def _class_end(pattern: str, start: int) -> int:
    """The index of the ``]`` closing the class whose body starts at ``start``."""
    index = start
    if index < len(pattern) and pattern[index] == "^":
        index += 1
    first = True
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            first = False
            continue
        if char == "]" and not first:
            return index
        first = False
        index += 1
    raise PatternError(f"syntax error in pattern {pattern!r}: unclosed '['")


def _class_body(body: str) -> str:
    out = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and index + 1 < len(body):
            out.append(re.escape(body[index + 1]))
            index += 2
            continue
        out.append(char if char == "-" else re.escape(char))
        index += 1
    return "".join(out)


def _check_syntax(pattern: str) -> None:
    """Refuse what Go's ``filepath.Match`` calls a bad pattern: an unclosed or empty class, a
    range out of order."""
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "[":
            end = _class_end(pattern, index + 1)
            body = pattern[index + 1 : end]
            if body.startswith("^"):
                body = body[1:]
            if not body:
                raise PatternError(f"syntax error in pattern {pattern!r}: empty '[]'")
            for low, high in re.findall(r"(\\?.)-(\\?.)", body):
                if low[-1] > high[-1]:
                    raise PatternError(f"syntax error in pattern {pattern!r}: bad range")
            index = end + 1
            continue
        index += 1


def read_patterns(text: str) -> list[Pattern]:
    """The patterns of a ``.dockerignore`` file's text, in order."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0 and line.startswith(_BOM):
            line = line[len(_BOM) :]
        if line.startswith("#") or not line.strip():
            continue
        patterns.append(Pattern.parse(line))
    return patterns


class Matcher:
    """Decides which paths of a context ``patterns`` leave out."""

    def __init__(self, patterns: Iterable[Pattern]) -> None:
        self.patterns = list(patterns)
        self.has_exceptions = any(pattern.exception for pattern in self.patterns)

    @classmethod
    def from_text(cls, text: str) -> Matcher:
        return cls(read_patterns(text))

    def keeping(self, *names: str) -> Matcher:
        """This matcher, but sending ``names`` even if excluded: what the docker CLI does with
        the Dockerfile and ``.dockerignore`` so the daemon can read them (the daemon then
        hides them from ``COPY`` by the same patterns)."""
        kept = [Pattern.parse("!" + name) for name in names if self.excluded(name)]
        return Matcher(self.patterns + kept)

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (relative to the context, ``/``-separated) is left out: the last
        pattern matching it or one of its parent directories decides."""
        path = clean_path(path).lstrip("/")
        if path == ".":
            return False  # the context's root itself is never excluded
        parents = path.split("/")[:-1]
        ancestors = ["/".join(parents[: depth + 1]) for depth in range(len(parents))]
        excluded = False
        for pattern in self.patterns:
            # Only a pattern that could change the answer is tried.
            if pattern.exception != excluded:
                continue
            if pattern.matches(path) or any(pattern.matches(parent) for parent in ancestors):
                excluded = not pattern.exception
        return excluded

    def may_include_under(self, directory: str) -> bool:
        """Whether something below excluded ``directory`` may be re-included by an exception,
        so that the directory must still be walked (docker compares the exception's text with
        the directory's path, as here)."""
        if not self.has_exceptions:
            return False
        prefix = clean_path(directory).lstrip("/") + "/"
        return any(
            pattern.exception and (pattern.text + "/").startswith(prefix)
            for pattern in self.patterns
        )

    def walk(self, root: str) -> Iterator[tuple[str, os.stat_result]]:
        """``(relative path, lstat)`` of everything below ``root`` that is not excluded,
        parents before children, names sorted, symlinks not followed.

        An excluded directory is not yielded, but is walked when an exception may re-include
        something below it; what is re-included there is yielded without its parents (docker's
        context tar has the same shape; extraction creates the parents).
        """
        # Depth first in name order, as Go's filepath.Walk lists a tree.
        stack = [iter(self._children(root, ""))]
        while stack:
            child = next(stack[-1], None)
            if child is None:
                stack.pop()
                continue
            path, info = child
            is_dir = stat.S_ISDIR(info.st_mode)
            if self.excluded(path):
                if is_dir and self.may_include_under(path):
                    stack.append(iter(self._children(root, path)))
                continue
            yield path, info
            if is_dir:
                stack.append(iter(self._children(root, path)))

    @staticmethod
    def _children(root: str, relative: str) -> list[tuple[str, os.stat_result]]:
        with os.scandir(os.path.join(root, relative) if relative else root) as entries:
            children = sorted(entries, key=lambda entry: entry.name)
        return [
            (
                f"{relative}/{child.name}" if relative else child.name,
                child.stat(follow_symlinks=False),
            )
            for child in children
        ]
