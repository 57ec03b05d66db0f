"""How each Dockerfile instruction splits its argument text into words, as dockerd's parser
does: blanks, quote-aware words, a JSON array (the exec form) or the whole text, and the
``--name=value`` flags in front. Grammar errors are ValueError with docker's words (the caller
adds the line); a JSON array of non-strings is :class:`NotStrings`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import attrs

#: docker's ``[\t\v\f\r ]+``: what separates words where an instruction splits on blanks
#: (newlines cannot occur inside a joined line).
BLANKS = re.compile(r"[\t\v\f\r ]+")


#: The flags each instruction accepts; any other is ``Unknown flag: NAME``.
ALLOWED_FLAGS: dict[str, frozenset[str]] = {
    "ADD": frozenset({"chown", "chmod"}),
    "COPY": frozenset({"chown", "chmod", "from"}),
    "FROM": frozenset({"platform"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "retries"}),
}

#: Flags dockerd's classic builder knows but refuses (when the step runs; here before the
#: build starts, as everything refused is), with its words.
BUILDKIT_ONLY_FLAGS: dict[str, frozenset[str]] = {
    "RUN": frozenset({"mount", "network", "security"}),
}


def split_flags(text: str, escape: str) -> tuple[list[str], str]:
    """The leading ``--...`` words (quotes and escapes removed) and the rest of the text.

    A bare ``--`` ends the flags and is dropped."""
    flags: list[str] = []
    position = 0
    length = len(text)
    while True:
        while position < length and text[position].isspace():
            position += 1
        if not text.startswith("--", position):
            return flags, text[position:]
        word: list[str] = []
        quote = ""
        while position < length:
            char = text[position]
            if not quote and char.isspace():
                break
            position += 1
            if quote:
                if char == quote:
                    quote = ""
                    continue
            elif char in "'\"":
                quote = char
                continue
            if char == escape:
                if position == length:
                    continue
                char = text[position]
                position += 1
            word.append(char)
        flag = "".join(word)
        if flag == "--":
            return flags, text[position:]
        flags.append(flag)


def check_flags(
    keyword: str, words: list[str], allowed: frozenset[str]
) -> tuple[tuple[str, str], ...]:
    """docker's BFlags: ``--name=value`` for each allowed name, each at most once."""
    parsed: list[tuple[str, str]] = []
    seen: set[str] = set()
    for word in words:
        name, equals, value = word[2:].partition("=")
        if name in BUILDKIT_ONLY_FLAGS.get(keyword, ()):
            raise ValueError(
                f"the --{name} option requires BuildKit. Refer to "
                "https://docs.docker.com/go/buildkit/ to learn how to build images with "
                "BuildKit enabled"
            )
        if name not in allowed:
            raise ValueError(f"Unknown flag: {name}")
        if name in seen:
            raise ValueError(f"Duplicate flag specified: {name}")
        if not equals:
            raise ValueError(f"Missing a value on flag: {name}")
        seen.add(name)
        parsed.append((name, value))
    return tuple(parsed)


class NotStrings(Exception):
    pass


def json_array(text: str) -> tuple[str, ...] | None:
    """The exec form: the text as a JSON array of strings, else None (it is then the shell
    form). Like Go's decoder, only the first JSON value counts (``["a"] b`` is ``["a"]``).
    An array holding anything but strings is an error (docker's words)."""
    text = text.lstrip()
    if not text.startswith("["):
        return None

    def refuse_constant(name: str) -> object:
        raise ValueError(name)  # NaN and Infinity are not JSON for Go

    try:
        value, _ = json.JSONDecoder(parse_constant=refuse_constant).raw_decode(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(item, str) for item in value):
        raise NotStrings()
    return tuple(value)


def parse_words(text: str, escape: str) -> list[str]:
    """Words separated by blanks outside quotes, quotes and escapes kept in the words (the
    expansion removes them later): how ENV, LABEL and ARG split their argument."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    blank_ok = False
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        position += 1
        if not quote and char.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word = []
            blank_ok = False
            continue
        if quote and char == quote:
            quote = ""
        elif not quote and char in "'\"":
            quote = char
            blank_ok = True
        elif char == escape and quote != "'":  # nothing escapes inside single quotes
            if position == length:
                continue
            word.append(char)
            char = text[position]
            position += 1
        word.append(char)
    if blank_ok or word:
        words.append("".join(word))
    return words


@attrs.frozen
class Split:
    arguments: tuple[str, ...]
    exec_form: tuple[str, ...] | None = None


def _split_blanks(text: str, escape: str) -> Split:
    return Split(tuple(BLANKS.split(text)) if text else ())


def _split_json_or_blanks(text: str, escape: str) -> Split:
    array = json_array(text)
    if array is not None:
        return Split(array, array)
    return _split_blanks(text, escape)


def _split_json_or_string(text: str, escape: str) -> Split:
    array = json_array(text)
    if array is not None:
        return Split(array, array)
    return Split((text,) if text else ())


def _split_string(text: str, escape: str) -> Split:
    return Split((text,) if text else ())


def _split_words(text: str, escape: str) -> Split:
    return Split(tuple(parse_words(text, escape)))


def _split_name_values(keyword: str) -> Callable[[str, str], Split]:
    """ENV and LABEL: ``name=value ...``, or the legacy ``name value`` (the rest of the line is
    the value). Which one is decided by the first word: an ``=`` in it means the new form."""

    def split(text: str, escape: str) -> Split:
        words = parse_words(text, escape)
        if not words:
            return Split(())
        if "=" not in words[0]:
            parts = BLANKS.split(text, maxsplit=1)
            if len(parts) < 2:
                raise ValueError(f"{keyword} must have two arguments")
            return Split((parts[0], parts[1]))
        arguments: list[str] = []
        for word in words:
            if "=" not in word:
                raise ValueError(
                    f"Syntax error - can't find = in {json.dumps(word)}. "
                    "Must be of the form: name=value"
                )
            arguments.extend(word.split("=", 1))
        return Split(tuple(arguments))

    return split


def _split_healthcheck(text: str, escape: str) -> Split:
    parts = re.split(r"\s", text, maxsplit=1)
    kind = parts[0]
    rest = parts[1].lstrip() if len(parts) > 1 else ""
    if not kind:
        return Split(())
    command = _split_json_or_string(rest, escape)
    return Split((kind, *command.arguments), command.exec_form)


ARGUMENT_SPLITTERS: dict[str, Callable[[str, str], Split]] = {
    "ADD": _split_json_or_blanks,
    "ARG": _split_words,
    "CMD": _split_json_or_string,
    "COPY": _split_json_or_blanks,
    "ENTRYPOINT": _split_json_or_string,
    "ENV": _split_name_values("ENV"),
    "EXPOSE": _split_blanks,
    "FROM": _split_blanks,
    "HEALTHCHECK": _split_healthcheck,
    "LABEL": _split_name_values("LABEL"),
    "MAINTAINER": _split_string,
    "RUN": _split_json_or_string,
    "SHELL": _split_json_or_string,
    "STOPSIGNAL": _split_string,
    "USER": _split_string,
    "VOLUME": _split_json_or_blanks,
    "WORKDIR": _split_string,
}
