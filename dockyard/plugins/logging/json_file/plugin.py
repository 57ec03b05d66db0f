"""The json-file log driver's plugin: its record for the plugin host and its daemon side."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind, EmptyConfig
from dockyard.core.hookspecs import hookimpl
from dockyard.core.logfiles import JSON_LINES, LogFiles
from dockyard.plugins.logging.json_file import writer


class JsonFileLogDriver:
    """Keeps output in ``container.log`` in the container's directory, in docker's format."""

    writer = f"{writer.__name__}:open_writer"
    readable = True

    def check_options(self, options: Mapping[str, str]) -> None:
        writer.parse_options(options)

    def open_reader(self, directory: Path) -> LogFiles:
        return LogFiles(directory, JSON_LINES)


def _build(_config: EmptyConfig, _context: DriverContext) -> JsonFileLogDriver:
    return JsonFileLogDriver()


@hookimpl
def dockyard_log_drivers() -> DriverInfo:
    return DriverInfo(
        name=writer.NAME,
        kind=DriverKind.LOG,
        factory=_build,
        description="docker's json-file format in the container's directory (docker's default)",
    )
