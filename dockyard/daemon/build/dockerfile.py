"""The Dockerfile grammar of the classic builder: text -> instructions -> stages.

One pass, line by line, as dockerd 20.10 reads a Dockerfile:

- parser directives (``# escape=``, ``# syntax=``) only at the very top: the first line that is
  not one (a blank line, a comment, an unknown ``# name=value``, an instruction) ends them;
- a line ending in the escape character (trailing blanks allowed) continues on the next; the
  pieces are joined as they are, without a space; comment lines inside a continuation are
  skipped, and so are blank ones (with docker's warning);
- the first word is the keyword (any case), then ``--name=value`` flags, then the argument,
  which each keyword splits its own way (:data:`ARGUMENT_SPLITTERS`).

Errors are :class:`DockerfileError` (a 400 before the build stream starts), worded as dockerd
words them: grammar errors as ``failed to parse Dockerfile: ...`` (docker gives no line there;
the error's ``line`` attribute has it), instruction errors as
``dockerfile parse error line N: ...``.

Why not PyPI's ``dockerfile-parse``: it has no flags, no per-instruction argument rules (so none
of docker's errors), keeps no exec-form/shell-form distinction for every instruction that has
one, and it is a second reading of the grammar that we would have to correct around anyway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator

import attrs

from dockyard.core.errors import InvalidParameter
from dockyard.core.units import parse_go_duration
from dockyard.daemon.build.arguments import (
    ALLOWED_FLAGS,
    ARGUMENT_SPLITTERS,
    BLANKS,
    NotStrings,
    Split,
    check_flags,
    split_flags,
)

#: dockerd reads lines with Go's ``bufio.Scanner``, whose token limit (64 KiB with the line
#: ending) it reports as this size.
MAX_LINE_BYTES = 65535

KEYWORDS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
        "LABEL", "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME",
        "WORKDIR",
    }
)  # fmt: skip

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_DIRECTIVES = ("escape", "syntax")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_\.]*$")


class DockerfileError(InvalidParameter):
    """A Dockerfile that cannot be built; ``line`` is where (1-based; 0 when not one line),
    ``reason`` the message without docker's prefix (``docker commit --change`` errors are
    worded without it)."""

    def __init__(self, message: str, line: int = 0, reason: str | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.reason = message if reason is None else reason


def grammar_error(reason: str, line: int) -> DockerfileError:
    """A Dockerfile that does not parse. dockerd 20.10 words some of these without the line
    (``failed to parse Dockerfile: ENV must have two arguments``); we name the line whenever
    there is one, in the form dockerd uses for its other parse errors."""
    if line > 0:
        return DockerfileError(f"dockerfile parse error line {line}: {reason}", line, reason)
    return DockerfileError(f"failed to parse Dockerfile: {reason}", line, reason)


def instruction_error(reason: str, line: int) -> DockerfileError:
    return DockerfileError(f"dockerfile parse error line {line}: {reason}", line, reason)


@attrs.frozen
class Instruction:
    """One instruction as written.

    ``original`` is what dockerd prints after ``Step N/M : ``: the joined line with blanks
    trimmed at both ends, keyword case kept, variables not expanded. ``value`` is the argument
    text after the flags. ``arguments`` is the argument split as docker splits it for this
    keyword (quotes still in the words of ENV, LABEL and ARG: expansion removes them).
    ``exec_form`` is set when the argument is a JSON array of strings (for the keywords that
    have an exec form). ``trigger`` is the instruction an ONBUILD holds.
    """

    keyword: str
    original: str
    line: int
    end_line: int
    flags: tuple[tuple[str, str], ...]
    value: str
    arguments: tuple[str, ...]
    exec_form: tuple[str, ...] | None = None
    trigger: Instruction | None = None

    def flag(self, name: str) -> str | None:
        for flag_name, flag_value in self.flags:
            if flag_name == name:
                return flag_value
        return None


@attrs.frozen
class Stage:
    """``FROM`` and what follows it up to the next ``FROM``. ``name`` is lower case, as docker
    keeps it."""

    index: int
    name: str | None
    from_instruction: Instruction
    instructions: tuple[Instruction, ...]


@attrs.frozen
class Dockerfile:
    escape: str
    syntax: str | None
    global_args: tuple[Instruction, ...]
    stages: tuple[Stage, ...]
    #: docker's parser warnings, one per instruction with an empty continuation line.
    warnings: tuple[str, ...] = ()

    def stage(self, name_or_index: str | int) -> Stage:
        """A stage by index, or by name (case-insensitive, as ``--target`` matches)."""
        if isinstance(name_or_index, int):
            if 0 <= name_or_index < len(self.stages):
                return self.stages[name_or_index]
        else:
            wanted = name_or_index.lower()
            for stage in self.stages:
                if stage.name == wanted:
                    return stage
        raise DockerfileError(f"failed to reach build target {name_or_index} in Dockerfile")

    def stages_to_build(self, target: str | None = None) -> tuple[Stage, ...]:
        """The stages the classic builder runs: all of them, or up to and including ``target``
        (stages after it are not built; unused stages before it are)."""
        if not target:
            return self.stages
        return self.stages[: self.stage(target).index + 1]

    def step_count(self, target: str | None = None) -> int:
        """``M`` in ``Step N/M``: the global ARGs, then each stage's FROM and instructions, up
        to and including ``target``."""
        stages = self.stages_to_build(target)
        return len(self.global_args) + sum(1 + len(stage.instructions) for stage in stages)

    def warning_text(self) -> str:
        """The warnings as dockerd writes them into the build stream (before any step), or ""."""
        if not self.warnings:
            return ""
        lines = [f"[WARNING]: {warning}\n" for warning in self.warnings]
        lines.append(
            "[WARNING]: Empty continuation lines will become errors in a future release.\n"
        )
        return "".join(lines)


# --------------------------------------------------------------------------------------------
# Decoding and lines
# --------------------------------------------------------------------------------------------


def decode(data: bytes, filename: str = "Dockerfile") -> str:
    """A Dockerfile's bytes as text: UTF-8 (a byte-order mark is dropped), else a 400."""
    if not data:
        raise DockerfileError(f"the Dockerfile ({filename}) cannot be empty")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DockerfileError(
            f"the Dockerfile ({filename}) is not UTF-8 text: byte 0x{data[exc.start]:02x} "
            f"on line {line}",
            line,
        ) from None


@attrs.frozen
class _LogicalLine:
    text: str
    start: int
    end: int
    empty_continuation: bool


class Directives:
    """The parser directives at the top of the file; the first other line ends them."""

    def __init__(self) -> None:
        self.escape = "\\"
        self.syntax: str | None = None
        self.done = False
        self.seen: set[str] = set()

    def consume(self, line: str, number: int) -> bool:
        """True if ``line`` (leading blanks removed) was a directive."""
        if self.done:
            return False
        match = _DIRECTIVE.match(line)
        if match is None or match.group(1).lower() not in _DIRECTIVES:
            self.done = True
            return False
        name, value = match.group(1).lower(), match.group(2)
        if name in self.seen:
            raise grammar_error(f"only one {name} parser directive can be used", number)
        self.seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise grammar_error(
                    f"invalid escape token '{value}' does not match ` or \\", number
                )
            self.escape = value
        else:
            self.syntax = value
        return True


def _physical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(1-based number, line without its ending); a too-long line is an error."""
    if text.startswith("\ufeff"):
        text = text[1:]
    for index, raw in enumerate(text.split("\n")):
        number = index + 1
        if (
            len(raw) > MAX_LINE_BYTES // 4
            and len(raw.rstrip("\r").encode("utf-8")) > MAX_LINE_BYTES
        ):
            raise grammar_error(
                f"dockerfile line greater than max allowed size of {MAX_LINE_BYTES}", number
            )
        yield number, raw.rstrip("\r\n")


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _logical_lines(text: str, directives: Directives) -> Iterator[_LogicalLine]:
    lines = _physical_lines(text)
    for number, raw in lines:
        line = raw.lstrip()
        if directives.consume(line, number):
            continue
        if _is_comment(line):
            continue
        continuation = _continuation_pattern(directives.escape)
        piece, continued = _trim_continuation(line, continuation)
        if not continued and not piece:
            continue
        parts = [piece]
        end = number
        empty_continuation = False
        while continued:
            following = next(lines, None)
            if following is None:
                break
            end, raw = following
            if _is_comment(raw):
                continue
            if not raw.strip():
                empty_continuation = True
                continue
            piece, continued = _trim_continuation(raw, continuation)
            parts.append(piece)
        yield _LogicalLine("".join(parts), number, end, empty_continuation)


_CONTINUATIONS: dict[str, re.Pattern[str]] = {}


def _continuation_pattern(escape: str) -> re.Pattern[str]:
    """The escape character at the end (blanks after it allowed), unless it is itself escaped
    (``\\\\`` at the end is a literal backslash, not a continuation)."""
    pattern = _CONTINUATIONS.get(escape)
    if pattern is None:
        e = re.escape(escape)
        pattern = re.compile(rf"(?:(?<=[^{e}])|^){e}[ \t]*\Z")
        _CONTINUATIONS[escape] = pattern
    return pattern


def _trim_continuation(line: str, pattern: re.Pattern[str]) -> tuple[str, bool]:
    match = pattern.search(line)
    if match is None:
        return line, False
    return line[: match.start()], True


# --------------------------------------------------------------------------------------------
# One instruction
# --------------------------------------------------------------------------------------------


def _read_instruction(
    text: str, start: int, end: int, escape: str, nested: bool = False
) -> Instruction:
    """One joined line -> an Instruction, with the grammar's errors (no instruction checks).

    ``nested``: this is an ONBUILD's trigger. A trigger that is itself an ONBUILD is not read
    further (the checks refuse it), so ``ONBUILD ONBUILD ...`` cannot recurse without end."""
    if "\x00" in text:
        # A NUL cannot reach a process's argv or environment: refuse it here, not later.
        raise instruction_error("the instruction holds a NUL byte", start)
    stripped = text.strip()
    parts = BLANKS.split(stripped, maxsplit=1)
    keyword = parts[0].upper()
    flag_words: list[str] = []
    value = ""
    if len(parts) == 2:
        flag_words, value = split_flags(parts[1], escape)
        value = value.strip()
    trigger = None
    try:
        if keyword == "ONBUILD" and nested:
            split = Split(tuple(BLANKS.split(value)) if value else ())
        elif keyword == "ONBUILD":
            split = Split(())
            if value:
                trigger = _read_instruction(value, start, end, escape, nested=True)
                split = Split((trigger.keyword, *trigger.arguments), trigger.exec_form)
        else:
            splitter = ARGUMENT_SPLITTERS.get(keyword)
            split = splitter(value, escape) if splitter else Split(())
    except NotStrings:
        raise grammar_error(
            "when using JSON array syntax, arrays must be comprised of strings only", start
        ) from None
    except ValueError as exc:
        raise grammar_error(str(exc), start) from None
    return Instruction(
        keyword=keyword,
        original=stripped,
        line=start,
        end_line=end,
        flags=tuple((word, "") for word in flag_words),
        value=value,
        arguments=split.arguments,
        exec_form=split.exec_form,
        trigger=trigger,
    )


# --------------------------------------------------------------------------------------------
# Instruction checks (docker's "instructions" layer)
# --------------------------------------------------------------------------------------------


def _at_least_one(keyword: str, arguments: tuple[str, ...]) -> None:
    if not arguments:
        raise ValueError(f"{keyword} requires at least one argument")


def _exactly_one(keyword: str, arguments: tuple[str, ...]) -> None:
    if len(arguments) != 1:
        raise ValueError(f"{keyword} requires exactly one argument")


def _check_pairs(keyword: str, arguments: tuple[str, ...]) -> None:
    _at_least_one(keyword, arguments)
    if any(not name for name in arguments[::2]):
        raise ValueError(f"{keyword} names can not be blank")


def _check_arg(instruction: Instruction) -> None:
    _at_least_one("ARG", instruction.arguments)
    for word in instruction.arguments:
        if word.startswith("="):
            raise ValueError("ARG names can not be blank")


def stage_name_of(arguments: tuple[str, ...]) -> str | None:
    """FROM's ``AS name`` (lower case), checked; None when there is none."""
    if len(arguments) == 3 and arguments[1].lower() == "as":
        name = arguments[2].lower()
        if not _STAGE_NAME.match(name):
            raise ValueError(
                f"invalid name for build stage: {json.dumps(arguments[2])}, "
                "name can't start with a number or contain symbols"
            )
        return name
    if len(arguments) != 1:
        raise ValueError("FROM requires either one or three arguments")
    return None


def _check_from(instruction: Instruction) -> None:
    stage_name_of(instruction.arguments)


def _check_onbuild(instruction: Instruction) -> None:
    _at_least_one("ONBUILD", instruction.arguments)
    trigger = instruction.arguments[0].upper()
    if trigger == "ONBUILD":
        raise ValueError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise ValueError(f"{trigger} isn't allowed as an ONBUILD trigger")


@attrs.frozen
class HealthcheckSettings:
    """HEALTHCHECK in the image config's terms: ``test`` is ``("NONE",)``,
    ``("CMD", *argv)`` or ``("CMD-SHELL", command)``; durations in nanoseconds, 0 when unset."""

    test: tuple[str, ...]
    interval: int = 0
    timeout: int = 0
    start_period: int = 0
    retries: int = 0


#: docker's ``container.MinimumDuration``.
MINIMUM_HEALTHCHECK_DURATION = 1_000_000


def healthcheck_settings(instruction: Instruction) -> HealthcheckSettings:
    """The settings of a HEALTHCHECK instruction, checked with docker's words."""
    _at_least_one("HEALTHCHECK", instruction.arguments)
    kind = instruction.arguments[0].upper()
    command = instruction.arguments[1:]
    if kind == "NONE":
        if command:
            raise ValueError("HEALTHCHECK NONE takes no arguments")
        return HealthcheckSettings(("NONE",))
    if kind != "CMD":
        raise ValueError(f"Unknown type {json.dumps(kind)} in HEALTHCHECK (try CMD)")
    if not command:
        raise ValueError("Missing command after HEALTHCHECK CMD")
    test = ("CMD", *command) if instruction.exec_form is not None else ("CMD-SHELL", *command)

    def duration(name: str) -> int:
        text = instruction.flag(name)
        if not text:
            return 0
        nanoseconds = parse_go_duration(text)
        if nanoseconds < MINIMUM_HEALTHCHECK_DURATION:
            raise ValueError(f"Interval {json.dumps(name)} cannot be less than 1ms")
        return nanoseconds

    retries = 0
    retries_text = instruction.flag("retries")
    if retries_text:
        if not re.fullmatch(r"[+-]?[0-9]+", retries_text) or not (
            -(2**31) <= int(retries_text) < 2**31
        ):
            raise ValueError(
                f"strconv.ParseInt: parsing {json.dumps(retries_text)}: invalid syntax"
            )
        retries = int(retries_text)
        if retries < 1:
            raise ValueError(f"--retries must be at least 1 (not {retries})")
    return HealthcheckSettings(
        test, duration("interval"), duration("timeout"), duration("start-period"), retries
    )


def _check_healthcheck(instruction: Instruction) -> None:
    healthcheck_settings(instruction)


def _check_volume(instruction: Instruction) -> None:
    _at_least_one("VOLUME", instruction.arguments)
    if any(not path.strip() for path in instruction.arguments):
        raise ValueError("VOLUME specified can not be an empty string")


def _check_shell(instruction: Instruction) -> None:
    if instruction.exec_form is None and instruction.arguments:
        raise ValueError("SHELL requires the arguments to be in JSON form")
    if not instruction.arguments:
        raise ValueError("SHELL requires at least one argument")


def _no_destination(keyword: str) -> Callable[[Instruction], None]:
    def check(instruction: Instruction) -> None:
        if len(instruction.arguments) < 2:
            raise ValueError(
                f"{keyword} requires at least two arguments, but only one was provided. "
                "Destination could not be determined"
            )

    return check


_CHECKS: dict[str, Callable[[Instruction], None]] = {
    "ADD": _no_destination("ADD"),
    "ARG": _check_arg,
    "COPY": _no_destination("COPY"),
    "ENV": lambda i: _check_pairs("ENV", i.arguments),
    "EXPOSE": lambda i: _at_least_one("EXPOSE", i.arguments),
    "FROM": lambda i: _check_from(i),
    "HEALTHCHECK": _check_healthcheck,
    "LABEL": lambda i: _check_pairs("LABEL", i.arguments),
    "MAINTAINER": lambda i: _exactly_one("MAINTAINER", i.arguments),
    "ONBUILD": _check_onbuild,
    "SHELL": _check_shell,
    "STOPSIGNAL": lambda i: _exactly_one("STOPSIGNAL", i.arguments),
    "USER": lambda i: _exactly_one("USER", i.arguments),
    "VOLUME": _check_volume,
    "WORKDIR": lambda i: _exactly_one("WORKDIR", i.arguments),
}


def check_instruction(instruction: Instruction) -> Instruction:
    """docker's instruction checks: the keyword, its argument counts, its flags. Returns the
    instruction with its flags parsed into (name, value)."""
    keyword = instruction.keyword
    try:
        if keyword not in KEYWORDS:
            raise ValueError(f"unknown instruction: {keyword}")
        # HEALTHCHECK NONE parses no flags in docker; it is refused with flags here, as any
        # other instruction given a flag it does not take.
        allowed = ALLOWED_FLAGS.get(keyword, frozenset())
        if (
            keyword == "HEALTHCHECK"
            and instruction.arguments[:1]
            and instruction.arguments[0].upper() == "NONE"
        ):
            allowed = frozenset()
        flags = check_flags(keyword, [word for word, _ in instruction.flags], allowed)
        checked = attrs.evolve(instruction, flags=flags)
        check = _CHECKS.get(keyword)
        if check is not None:
            check(checked)
    except ValueError as exc:
        raise instruction_error(str(exc), instruction.line) from None
    return checked


# --------------------------------------------------------------------------------------------
# The file
# --------------------------------------------------------------------------------------------


def read_instructions(text: str) -> tuple[list[Instruction], Directives, list[str]]:
    """Every instruction of ``text``, checked, with the directives and the warnings."""
    directives = Directives()
    instructions: list[Instruction] = []
    warnings: list[str] = []
    for line in _logical_lines(text, directives):
        if line.empty_continuation:
            warnings.append(f"Empty continuation line found in:\n    {line.text}")
        instruction = _read_instruction(line.text, line.start, line.end, directives.escape)
        instructions.append(instruction)
    if not instructions:
        raise grammar_error("file with no instructions", 0)
    return instructions, directives, warnings


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile. ``filename`` is the name the errors give (the ``dockerfile``
    parameter of the build)."""
    if text == "":
        raise DockerfileError(f"the Dockerfile ({filename}) cannot be empty")
    instructions, directives, warnings = read_instructions(text)
    global_args: list[Instruction] = []
    stages: list[Stage] = []
    current: list[Instruction] = []
    for unchecked in instructions:
        instruction = check_instruction(unchecked)
        if instruction.keyword == "FROM":
            if stages:
                stages[-1] = attrs.evolve(stages[-1], instructions=tuple(current))
            current = []
            name = stage_name_of(instruction.arguments)
            if name is not None and any(stage.name == name for stage in stages):
                # dockerd says so when it reaches this FROM, mid-build; before it is better
                raise DockerfileError(f"{name} stage name already used", instruction.line)
            stages.append(Stage(len(stages), name, instruction, ()))
        elif not stages:
            if instruction.keyword != "ARG":
                raise DockerfileError("no build stage in current context", instruction.line)
            global_args.append(instruction)
        else:
            current.append(instruction)
    if stages:  # a file of global ARGs alone parses; dockerd runs them and makes no image
        stages[-1] = attrs.evolve(stages[-1], instructions=tuple(current))
    return Dockerfile(
        escape=directives.escape,
        syntax=directives.syntax,
        global_args=tuple(global_args),
        stages=tuple(stages),
        warnings=tuple(warnings),
    )
