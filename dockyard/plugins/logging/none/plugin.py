"""The none log driver's plugin: its record for the plugin host and its daemon side."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind, EmptyConfig
from dockyard.core.hookspecs import hookimpl
from dockyard.core.logfiles import FRAMED, LogFiles
from dockyard.plugins.logging.none import writer


class NoLogDriver:
    """Keeps no logs: ``docker logs`` is refused; ``attach`` follows a small live buffer."""

    writer = f"{writer.__name__}:open_writer"
    readable = False

    def check_options(self, options: Mapping[str, str]) -> None:
        writer.check_options(options)

    def open_reader(self, directory: Path) -> LogFiles:
        return LogFiles(directory / writer.SUBDIRECTORY, FRAMED)


def _build(_config: EmptyConfig, _context: DriverContext) -> NoLogDriver:
    return NoLogDriver()


@hookimpl
def dockyard_log_drivers() -> DriverInfo:
    return DriverInfo(
        name=writer.NAME,
        kind=DriverKind.LOG,
        factory=_build,
        description="no logs kept; docker logs is refused, as by dockerd",
    )
