"""Which log driver keeps a container's output, with which options, and reading it back.

As dockerd: a container that names no driver gets the daemon's (``log-driver``), and a
container using the daemon's driver gets the daemon's ``log-opts`` under its own. The result
is what inspect shows in ``HostConfig.LogConfig``, checked by the driver when the container
is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import attrs

from dockyard.core.errors import ConfigError, InvalidParameter, NotImplementedYet
from dockyard.core.interfaces import LogDriver, LogReader
from dockyard.daemon.containers.config import LogConfig

#: dockerd's default driver.
DEFAULT_DRIVER = "json-file"


class LogsNotReadable(NotImplementedYet):
    """``docker logs`` of a container whose driver keeps nothing to read (``none``): dockerd's
    501 and message."""

    def __init__(self) -> None:
        super().__init__("configured logging driver does not support reading")


@attrs.frozen
class LogDrivers:
    """The daemon's log drivers by name, and its default driver and options."""

    drivers: Mapping[str, LogDriver] = attrs.field(factory=dict)
    default: LogConfig = attrs.field(factory=lambda: LogConfig(type=DEFAULT_DRIVER))

    def driver(self, name: str) -> LogDriver:
        found = self.drivers.get(name)
        if found is None:
            available = ", ".join(sorted(self.drivers)) or "none"
            raise InvalidParameter(
                # dockerd's message, then which drivers there are.
                f'error looking up logging plugin {name}: plugin "{name}" not found '
                f"(log drivers here: {available}; a plugin may provide others)"
            )
        return found

    def resolve(self, requested: LogConfig) -> LogConfig:
        """The container's ``LogConfig`` as kept and shown: driver and options, checked."""
        name = requested.type or self.default.type
        options = dict(requested.config)
        if name == self.default.type:
            options = {**self.default.config, **options}
        self.driver(name).check_options(options)
        return LogConfig(type=name, config=options)

    def open_reader(self, log_config: LogConfig, directory: Path, *, stored: bool) -> LogReader:
        """The output of the container with ``log_config`` and state ``directory``.

        ``stored``: for ``docker logs`` (and ``attach`` with ``logs``), refused with dockerd's
        501 when the driver keeps nothing to read; otherwise the live output an ``attach`` or a
        build step follows, which every driver gives.
        """
        driver = self.driver(log_config.type or DEFAULT_DRIVER)
        if stored and not driver.readable:
            raise LogsNotReadable()
        return driver.open_reader(directory)


def daemon_log_drivers(
    drivers: Mapping[str, LogDriver], name: str, options: Mapping[str, str], source: str
) -> LogDrivers:
    """The daemon's log drivers with its ``log-driver`` and ``log-opts`` (from ``source``),
    checked now: a daemon whose default would refuse every container does not start."""
    default = LogConfig(type=name, config=dict(options))
    log_drivers = LogDrivers(drivers, default)
    try:
        log_drivers.resolve(default)
    except InvalidParameter as exc:
        raise ConfigError(
            f"[daemon] log-driver {name!r} with log-opts {dict(options)} (in {source} or its "
            f"command-line flags) cannot be used: {exc}"
        ) from None
    return log_drivers
