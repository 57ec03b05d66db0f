"""Health checks: ``Config.Healthcheck`` (``--health-*``, the image's ``HEALTHCHECK``) and the
``State.Health`` it produces, by dockerd's rules (20.10).

A running container with a check has a probe run in it as an exec every interval (counted
from the end of one probe to the start of the next, and before the first): ``CMD`` runs its
arguments, ``CMD-SHELL`` its text with the container's shell. Exit 0 is healthy and resets the
failing streak; anything else (a timeout, a probe that cannot start) adds to the streak, except
while the container is still ``starting`` within its start period, and ``retries`` failures in
a row make it unhealthy. The last five probes are kept, their output cut at 4096 bytes.

This module has the records and the rules; :class:`HealthMonitor` runs the loop with a probe
the container manager gives it (an exec, see :mod:`.execs`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from dockyard.core.errors import InvalidParameter
from dockyard.core.timestamps import parse_rfc3339_nano
from dockyard.daemon.build.changes import go_duration
from dockyard.daemon.containers.config import ContainerConfig, HealthConfig

SECOND = 1_000_000_000
DEFAULT_INTERVAL = 30 * SECOND
DEFAULT_TIMEOUT = 30 * SECOND
DEFAULT_START_PERIOD = 0
DEFAULT_RETRIES = 3
#: dockerd's ``container.MinimumDuration``: shorter (non-zero) durations are refused.
MINIMUM_DURATION = 1_000_000
MAX_LOG_ENTRIES = 5
MAX_OUTPUT_BYTES = 4096

STARTING, HEALTHY, UNHEALTHY = "starting", "healthy", "unhealthy"
#: ``ps --filter health=``: the three states, and ``none`` for a container without a check.
NO_HEALTHCHECK = "none"
FILTER_VALUES = (STARTING, HEALTHY, UNHEALTHY, NO_HEALTHCHECK)


def check_healthcheck(health: HealthConfig | None) -> None:
    """Refuse what dockerd refuses in a create request's ``Healthcheck``, in its words."""
    if health is None:
        return
    minimum = go_duration(MINIMUM_DURATION)
    for name, value in (("Interval", health.interval), ("Timeout", health.timeout)):
        if value != 0 and value < MINIMUM_DURATION:
            raise InvalidParameter(f"{name} in Healthcheck cannot be less than {minimum}")
    if health.retries < 0:
        raise InvalidParameter("Retries in Healthcheck cannot be negative")
    if health.start_period != 0 and health.start_period < MINIMUM_DURATION:
        raise InvalidParameter(f"StartPeriod in Healthcheck cannot be less than {minimum}")


def merge_healthcheck(
    request: HealthConfig | None, image: HealthConfig | None
) -> HealthConfig | None:
    """The request's check over the image's, as dockerd merges them: each unset field of the
    request (empty test, zero duration or retries) is taken from the image."""
    if image is None or request is None:
        return request if request is not None else image
    return HealthConfig(
        test=request.test or image.test,
        interval=request.interval or image.interval,
        timeout=request.timeout or image.timeout,
        start_period=request.start_period or image.start_period,
        retries=request.retries or image.retries,
    )


def probe_command(config: ContainerConfig) -> list[str] | None:
    """The command a probe runs, or ``None`` when the container has no check: none set,
    ``NONE``, or a test type dockerd does not know (it ignores those too)."""
    health = config.healthcheck
    if health is None or not health.test:
        return None
    kind, arguments = health.test[0], list(health.test[1:])
    if kind == "CMD":
        return arguments
    if kind == "CMD-SHELL":
        return [*(config.shell or ["/bin/sh", "-c"]), *arguments]
    return None


@attrs.frozen
class ProbeResult:
    """One probe, as ``State.Health.Log`` shows it."""

    start: str
    end: str
    exit_code: int
    output: str

    def to_engine_api(self) -> dict[str, Any]:
        return {"Start": self.start, "End": self.end, "ExitCode": self.exit_code,
                "Output": self.output}  # fmt: skip


def _probe_results(entries: list[Any]) -> list[ProbeResult]:
    return [e if isinstance(e, ProbeResult) else ProbeResult(**e) for e in entries]


@attrs.define
class HealthState:
    """``State.Health``; kept in the container's record (it outlives a stop and a restart of
    the daemon, as in dockerd)."""

    status: str = STARTING
    failing_streak: int = 0
    log: list[ProbeResult] = attrs.field(factory=list, converter=_probe_results)

    def to_engine_api(self) -> dict[str, Any]:
        return {
            "Status": self.status,
            "FailingStreak": self.failing_streak,
            "Log": [entry.to_engine_api() for entry in self.log],
        }

    def record(self, result: ProbeResult, config: HealthConfig, started_at: str) -> None:
        """Count ``result`` in, by dockerd's rules (see the module's docstring)."""
        self.log = [*self.log, result][-MAX_LOG_ENTRIES:]
        if result.exit_code == 0:
            self.failing_streak = 0
            self.status = HEALTHY
            return
        if self.status == STARTING:
            start_period = config.start_period or DEFAULT_START_PERIOD
            since_start = parse_rfc3339_nano(result.start) - parse_rfc3339_nano(started_at)
            if since_start < start_period:
                return  # failures while starting up do not count
        self.failing_streak += 1
        if self.failing_streak >= (config.retries if config.retries > 0 else DEFAULT_RETRIES):
            self.status = UNHEALTHY


def health_from_json(value: Any) -> HealthState | None:
    """``ContainerState.health`` from the saved record (a dict) or as given."""
    if value is None or isinstance(value, HealthState):
        return value
    return HealthState(**value)


class OutputBuffer:
    """A probe's stdout and stderr together, its first 4096 bytes; ``...`` marks a cut."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.truncated = False

    def write(self, chunk: bytes) -> None:
        room = MAX_OUTPUT_BYTES - len(self.data)
        self.data += chunk[: max(room, 0)]
        if len(chunk) > room:
            self.truncated = True

    def text(self) -> str:
        # Go's JSON encoder replaces invalid UTF-8 (a character cut in two, say) with U+FFFD.
        return self.data.decode("utf-8", "replace") + ("..." if self.truncated else "")


#: Runs one probe: (command, timeout in ns) -> its result.
Probe = Callable[[list[str], int], Awaitable[ProbeResult]]


class HealthMonitor:
    """The probing loop of one running container; :meth:`stop` ends it (the container
    stopped or paused, or the daemon shuts down)."""

    def __init__(
        self,
        config: ContainerConfig,
        health: HealthState,
        started_at: str,
        probe: Probe,
        recorded: Callable[[str | None], None],
    ) -> None:
        """``recorded(new_status)`` is called after each probe, with the new status when it
        changed, ``None`` otherwise."""
        assert config.healthcheck is not None
        self.config = config.healthcheck
        self.command = probe_command(config) or []
        self.health = health
        self.started_at = started_at
        self._probe = probe
        self._recorded = recorded
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        interval = (self.config.interval or DEFAULT_INTERVAL) / SECOND
        timeout = self.config.timeout or DEFAULT_TIMEOUT
        while True:
            await asyncio.sleep(interval)
            result = await self._probe(self.command, timeout)
            before = self.health.status
            self.health.record(result, self.config, self.started_at)
            self._recorded(self.health.status if self.health.status != before else None)

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
