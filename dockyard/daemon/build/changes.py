"""What a configuration instruction does to a container config: for a build step, and for the
``--change`` of ``docker commit`` and ``docker import`` (dockerd runs those through its
builder too, so they follow the same rules).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from dockyard.core.decoding import DecodeError
from dockyard.core.errors import InvalidParameter
from dockyard.daemon.build import commands as cmd
from dockyard.daemon.containers.config import ContainerConfig, HealthConfig
from dockyard.daemon.engine_api import ENGINE_API

DEFAULT_SHELL = ("/bin/sh", "-c")

#: Fields of a container config Go leaves out of JSON when empty (``omitempty``).
_OMITTED_WHEN_EMPTY = (
    "ExposedPorts", "Healthcheck", "ArgsEscaped", "NetworkDisabled", "MacAddress", "StopSignal",
    "StopTimeout", "Shell",
)  # fmt: skip


@attrs.frozen
class Change:
    """A config after one instruction, and what dockerd writes into history for it."""

    config: ContainerConfig
    comment: str


def go_quote(words: Sequence[str] | None) -> str:
    """A string slice as Go's ``%q`` prints it: ``["cat" "/p.txt"]``; the classic builder
    writes ``CMD`` and ``ENTRYPOINT`` into history this way."""
    return "[" + " ".join(json.dumps(word, ensure_ascii=False) for word in words or ()) + "]"


def go_duration(nanoseconds: int) -> str:
    """A duration as Go's ``time.Duration`` prints it: ``5s``, ``1m30s``, ``1.5s``, ``100ms``."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    value = abs(nanoseconds)
    if value < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if value >= size:
                return sign + _trimmed(value / size) + unit
    hours, rest = divmod(value, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return sign + text + _trimmed(rest / 1_000_000_000) + "s"


def _trimmed(number: float) -> str:
    return f"{number:.9f}".rstrip("0").rstrip(".")


def go_quote_rune(value: int) -> str:
    """An integer as Go's ``%q`` prints it: a quoted character (``'\\x02'`` for 2)."""
    if value in (ord("'"), ord("\\")):
        return "'\\" + chr(value) + "'"
    if 0x20 <= value < 0x7F:
        return f"'{chr(value)}'"
    if value < 0x100:
        return f"'\\x{value:02x}'"
    return f"'\\u{value:04x}'"


def healthcheck_comment(health: HealthConfig) -> str:
    """The history text dockerd writes for ``HEALTHCHECK``: Go's ``%q`` of its struct."""
    durations = (health.interval, health.timeout, health.start_period)
    quoted = " ".join(json.dumps(go_duration(value)) for value in durations)
    return f"HEALTHCHECK &{{{go_quote(health.test)} {quoted} {go_quote_rune(health.retries)}}}"


def shell_of(config: ContainerConfig) -> list[str]:
    return list(config.shell or DEFAULT_SHELL)


def _set_env(env: list[str] | None, key: str, value: str) -> list[str]:
    kept = [item for item in env or [] if item.partition("=")[0] != key]
    return [*kept, f"{key}={value}"]


def apply_change(
    config: ContainerConfig,
    command: cmd.Command,
    *,
    cmd_set: bool = False,
    written_ports: Sequence[str] | None = None,
) -> Change:
    """``config`` after configuration instruction ``command`` (not ``RUN``, ``COPY``, ``ADD``
    or ``ARG``, which a build does itself). ``cmd_set``: a ``CMD`` came earlier in the stage,
    so an ``ENTRYPOINT`` keeps it. ``written_ports``: ``EXPOSE``'s words as written (history
    keeps ranges)."""
    if isinstance(command, cmd.Env):
        env = config.env
        for key, value in command.pairs:
            env = _set_env(env, key, value)
        pairs = " ".join(f"{key}={value}" for key, value in command.pairs)
        return Change(attrs.evolve(config, env=env), f"ENV {pairs}")
    if isinstance(command, cmd.Label):
        labels = {**(config.labels or {}), **dict(command.pairs)}
        pairs = " ".join(f"{key}={value}" for key, value in command.pairs)
        return Change(attrs.evolve(config, labels=labels), f"LABEL {pairs}")
    if isinstance(command, cmd.Maintainer):
        return Change(config, f"MAINTAINER {command.name}")
    if isinstance(command, cmd.User):
        return Change(attrs.evolve(config, user=command.user), f"USER {command.user}")
    if isinstance(command, cmd.Workdir):
        path = posixpath.normpath(posixpath.join(config.working_dir or "/", command.path))
        return Change(attrs.evolve(config, working_dir=path), f"WORKDIR {path}")
    if isinstance(command, cmd.Expose):
        ports = {**(config.exposed_ports or {}), **{port: {} for port in command.ports}}
        written = sorted(written_ports if written_ports is not None else command.ports)
        return Change(attrs.evolve(config, exposed_ports=ports), f"EXPOSE {' '.join(written)}")
    if isinstance(command, cmd.Volume):
        volumes = {**(config.volumes or {}), **{path: {} for path in command.paths}}
        return Change(attrs.evolve(config, volumes=volumes), f"VOLUME [{' '.join(command.paths)}]")
    if isinstance(command, cmd.StopSignal):
        return Change(
            attrs.evolve(config, stop_signal=command.signal), f"STOPSIGNAL {command.signal}"
        )
    if isinstance(command, cmd.Onbuild):
        triggers = [*(config.on_build or []), command.expression]
        return Change(attrs.evolve(config, on_build=triggers), f"ONBUILD {command.expression}")
    if isinstance(command, cmd.Shell):
        shell = list(command.command)
        return Change(attrs.evolve(config, shell=shell), f"SHELL [{' '.join(shell)}]")
    if isinstance(command, (cmd.Cmd, cmd.Entrypoint)):
        words = list(command.command)
        if command.shell_form:
            words = [*shell_of(config), *words]
        if isinstance(command, cmd.Cmd):
            return Change(attrs.evolve(config, cmd=words), f"CMD {go_quote(words)}")
        # As dockerd: an ENTRYPOINT drops a CMD the stage did not set itself.
        kept = config.cmd if cmd_set else None
        return Change(
            attrs.evolve(config, entrypoint=words, cmd=kept), f"ENTRYPOINT {go_quote(words)}"
        )
    if isinstance(command, cmd.Healthcheck):
        health = HealthConfig(
            test=list(command.test),
            interval=command.interval,
            timeout=command.timeout,
            start_period=command.start_period,
            retries=command.retries,
        )
        return Change(attrs.evolve(config, healthcheck=health), healthcheck_comment(health))
    raise InvalidParameter(f"{type(command).__name__.upper()} does not change a configuration")


def config_json(config: ContainerConfig) -> dict[str, Any]:
    """A container config as dockerd writes it into an image: Go's JSON, whose ``omitempty``
    fields are left out when empty (the health check's too)."""
    encoded: dict[str, Any] = ENGINE_API.encode(config)
    for key in _OMITTED_WHEN_EMPTY:
        if not encoded.get(key):
            encoded.pop(key, None)
    if "Healthcheck" in encoded:
        encoded["Healthcheck"] = {k: v for k, v in encoded["Healthcheck"].items() if v}
    return encoded


def apply_changes(config: dict[str, Any], changes: Iterable[str]) -> dict[str, Any]:
    """``docker commit --change`` and ``docker import --change``: the instructions applied to
    an image config's ``config`` (words expanded with its environment)."""
    changes = [change for change in changes if change.strip()]
    if not changes:
        return config
    try:
        current = ENGINE_API.decode(config, ContainerConfig)
    except DecodeError as exc:
        raise InvalidParameter(f"the configuration cannot take changes: {exc}") from None
    variables = dict(item.partition("=")[::2] for item in current.env or [])
    cmd_set = False
    for command in cmd.parse_changes(list(changes), variables):
        current = apply_change(current, command, cmd_set=cmd_set).config
        cmd_set = cmd_set or isinstance(command, cmd.Cmd)
    return config_json(current)
