"""Typed Dockerfile commands: an :class:`Instruction` with its variables expanded, as the step
executor (and ``docker commit --change``) uses it.

Variables are expanded where dockerd's classic builder expands them: the words of ADD, COPY
(and their ``--chown``/``--from``), ENV, EXPOSE, FROM (its base and ``--platform``, with the
global ARGs), LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR and ARG. RUN, CMD, ENTRYPOINT, SHELL,
HEALTHCHECK and ONBUILD keep their text: the shell (or the later build) sees it as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.build.dockerfile import (
    DockerfileError,
    HealthcheckSettings,
    Instruction,
    check_instruction,
    healthcheck_settings,
    read_instructions,
    stage_name_of,
)
from dockyard.daemon.build.shell_words import expand

#: Build args every build knows without an ARG line; their values are left out of the image's
#: history (docker's ``builtinAllowedBuildArgs``).
PREDEFINED_ARGS = (
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
)  # fmt: skip

#: What ``docker commit --change`` and ``docker import --change`` accept: dockerd 20.10
#: refuses STOPSIGNAL (``stopsignal is not a valid change command``) and takes HEALTHCHECK.
CHANGE_KEYWORDS = (
    "CMD", "ENTRYPOINT", "ENV", "EXPOSE", "HEALTHCHECK", "LABEL", "ONBUILD", "USER", "VOLUME",
    "WORKDIR",
)  # fmt: skip

PORT_PROTOCOLS = ("tcp", "udp", "sctp")

_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)


@attrs.frozen
class From:
    base: str
    stage_name: str | None
    platform: str | None


@attrs.frozen
class Run:
    """``shell_form``: the command is one string for the image's SHELL (``/bin/sh -c``)."""

    command: tuple[str, ...]
    shell_form: bool


@attrs.frozen
class Copy:
    sources: tuple[str, ...]
    destination: str
    from_stage: str | None
    chown: str | None
    chmod: str | None
    is_add: bool


@attrs.frozen
class Env:
    pairs: tuple[tuple[str, str], ...]


@attrs.frozen
class Arg:
    """Each name with its default, or None when it has none."""

    pairs: tuple[tuple[str, str | None], ...]


@attrs.frozen
class Workdir:
    path: str


@attrs.frozen
class User:
    user: str


@attrs.frozen
class Expose:
    """Port keys as the image config has them: ``80/tcp``; a range is one key per port."""

    ports: tuple[str, ...]


@attrs.frozen
class Volume:
    paths: tuple[str, ...]


@attrs.frozen
class Label:
    pairs: tuple[tuple[str, str], ...]


@attrs.frozen
class Entrypoint:
    command: tuple[str, ...]
    shell_form: bool


@attrs.frozen
class Cmd:
    command: tuple[str, ...]
    shell_form: bool


#: HEALTHCHECK's settings in the image config's terms (``test`` is ``("NONE",)``,
#: ``("CMD", *argv)`` or ``("CMD-SHELL", command)``; durations in nanoseconds, 0 unset).
Healthcheck = HealthcheckSettings


@attrs.frozen
class StopSignal:
    signal: str


@attrs.frozen
class Onbuild:
    """``expression`` is the trigger as written (``RUN echo hi``), run by a build FROM this
    image."""

    expression: str


@attrs.frozen
class Shell:
    command: tuple[str, ...]


@attrs.frozen
class Maintainer:
    name: str


Command = (
    From | Run | Copy | Env | Arg | Workdir | User | Expose | Volume | Label | Entrypoint | Cmd
    | Healthcheck | StopSignal | Onbuild | Shell | Maintainer
)  # fmt: skip


def to_command(
    instruction: Instruction, variables: Mapping[str, str], escape: str = "\\"
) -> Command:
    """The typed command of a checked instruction (from :func:`dockerfile.parse`), its words
    expanded with ``variables`` (the stage's ENV and the ARGs in scope; for FROM, the global
    ARGs). ``escape`` is the Dockerfile's escape character.

    Raises ``ExpansionError`` (a bad ``${...}``) and ``InvalidParameter`` (a bad port, signal
    or empty FROM) with docker's words."""
    keyword = instruction.keyword
    arguments = instruction.arguments

    def word(text: str) -> str:
        return expand(text, variables, escape)

    def optional_flag(name: str) -> str | None:
        value = instruction.flag(name)
        return (word(value) or None) if value else None

    command_form = tuple(arguments), instruction.exec_form is None
    if keyword == "FROM":
        base = word(arguments[0])
        if not base:
            raise InvalidParameter(f"base name ({arguments[0]}) should not be blank")
        return From(base, stage_name_of(arguments), optional_flag("platform"))
    if keyword == "RUN":
        return Run(*command_form)
    if keyword == "CMD":
        return Cmd(*command_form)
    if keyword == "ENTRYPOINT":
        return Entrypoint(*command_form)
    if keyword == "SHELL":
        return Shell(tuple(arguments))
    if keyword in ("COPY", "ADD"):
        words = [word(argument) for argument in arguments]
        return Copy(
            sources=tuple(words[:-1]),
            destination=words[-1],
            from_stage=optional_flag("from"),
            chown=optional_flag("chown"),
            chmod=optional_flag("chmod"),
            is_add=keyword == "ADD",
        )
    if keyword in ("ENV", "LABEL"):
        pairs = tuple(
            (word(arguments[index]), word(arguments[index + 1]))
            for index in range(0, len(arguments), 2)
        )
        return Env(pairs) if keyword == "ENV" else Label(pairs)
    if keyword == "ARG":
        return Arg(tuple(_arg_pair(argument, word) for argument in arguments))
    if keyword == "WORKDIR":
        return Workdir(word(arguments[0]))
    if keyword == "USER":
        return User(word(arguments[0]))
    if keyword == "EXPOSE":
        return Expose(expose_ports(word(argument) for argument in arguments))
    if keyword == "VOLUME":
        paths = tuple(word(argument).strip() for argument in arguments)
        if not all(paths):
            raise InvalidParameter("VOLUME specified can not be an empty string")
        return Volume(paths)
    if keyword == "STOPSIGNAL":
        return StopSignal(_checked_signal(word(arguments[0])))
    if keyword == "HEALTHCHECK":
        return _healthcheck(instruction)
    if keyword == "ONBUILD":
        return Onbuild(onbuild_expression(instruction))
    if keyword == "MAINTAINER":
        return Maintainer(arguments[0])
    raise InvalidParameter(f"unknown instruction: {keyword}")


def _arg_pair(argument: str, word: Callable[[str], str]) -> tuple[str, str | None]:
    name, equals, default = argument.partition("=")
    return word(name), word(default) if equals else None


def _healthcheck(instruction: Instruction) -> Healthcheck:
    try:
        return healthcheck_settings(instruction)
    except ValueError as exc:  # parse() has checked it; this is for hand-made instructions
        raise InvalidParameter(str(exc)) from None


def onbuild_expression(instruction: Instruction) -> str:
    """The trigger of an ONBUILD as written, ``ONBUILD`` and the blanks after it removed."""
    return _ONBUILD_PREFIX.sub("", instruction.original, count=1)


def _checked_signal(value: str) -> str:
    from dockyard.daemon.containers.options import parse_signal

    parse_signal(value)  # raises "Invalid signal: X" as dockerd words it
    return value


def expose_ports(specs: Iterable[str]) -> tuple[str, ...]:
    """EXPOSE words -> port keys: ``80`` -> ``80/tcp``, ``8000-8002/udp`` -> three keys.

    Errors as dockerd words them: ``Invalid containerPort: 70000``, ``Invalid proto: foo``."""
    keys: list[str] = []
    for spec in specs:
        number, _, protocol = spec.partition("/")
        protocol = protocol.lower() or "tcp"
        if protocol not in PORT_PROTOCOLS:
            raise InvalidParameter(f"Invalid proto: {protocol}")
        start_text, dash, end_text = number.partition("-")
        if not number:
            raise InvalidParameter(f"No port specified: {spec}<empty>")
        try:
            start = _port_number(start_text)
            end = _port_number(end_text) if dash else start
        except ValueError:
            raise InvalidParameter(f"Invalid containerPort: {number}") from None
        if end < start:
            raise InvalidParameter(f"Invalid containerPort: {number}")
        for port in range(start, end + 1):
            key = f"{port}/{protocol}"
            if key not in keys:
                keys.append(key)
    return tuple(keys)


def _port_number(text: str) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError(text)
    value = int(text)
    if value > 65535:
        raise ValueError(text)
    return value


def parse_changes(
    changes: Sequence[str], variables: Mapping[str, str] | None = None
) -> list[Command]:
    """The ``--change`` values of ``docker commit``/``docker import``, as dockerd 20.10 reads
    them: joined with newlines and parsed as one Dockerfile (so a change may hold several
    instructions, or continue into the next), each instruction one of
    :data:`CHANGE_KEYWORDS`, its words expanded with ``variables`` (the image's environment).

    Errors are docker's reasons without the Dockerfile prefixes: ``ENV must have two
    arguments``, ``run is not a valid change command``."""
    try:
        instructions, directives, _ = read_instructions("\n".join(changes))
        commands: list[Command] = []
        for instruction in instructions:
            if instruction.keyword not in CHANGE_KEYWORDS:
                raise InvalidParameter(
                    f"{instruction.keyword.lower()} is not a valid change command"
                )
            checked = check_instruction(instruction)
            commands.append(to_command(checked, variables or {}, directives.escape))
    except DockerfileError as exc:
        raise InvalidParameter(exc.reason) from None
    return commands


def parse_change(text: str, variables: Mapping[str, str] | None = None) -> Command:
    """One ``--change`` holding one instruction (:func:`parse_changes` takes docker's whole
    list)."""
    commands = parse_changes([text], variables)
    if len(commands) != 1:
        raise InvalidParameter(f"a change is one instruction; {text!r} holds {len(commands)}")
    return commands[0]
