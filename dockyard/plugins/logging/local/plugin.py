"""The local log driver's plugin: its record for the plugin host and its daemon side."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind, EmptyConfig
from dockyard.core.hookspecs import hookimpl
from dockyard.core.logfiles import FRAMED, LogFiles
from dockyard.plugins.logging.local import writer


class LocalLogDriver:
    """Keeps output in ``local-logs/`` in the container's directory, in compact records."""

    writer = f"{writer.__name__}:open_writer"
    readable = True

    def check_options(self, options: Mapping[str, str]) -> None:
        writer.parse_options(options)

    def open_reader(self, directory: Path) -> LogFiles:
        return LogFiles(directory / writer.SUBDIRECTORY, FRAMED)


def _build(_config: EmptyConfig, _context: DriverContext) -> LocalLogDriver:
    return LocalLogDriver()


@hookimpl
def dockyard_log_drivers() -> DriverInfo:
    return DriverInfo(
        name=writer.NAME,
        kind=DriverKind.LOG,
        factory=_build,
        description="compact records, rotated and compressed (20 MiB x 5 by default), as "
        "dockerd's local",
    )
