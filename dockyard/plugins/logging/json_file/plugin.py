"""The json-file log driver's plugin: its record for the plugin host and its daemon side."""

from __future__ import annotations

from dockyard.core.drivers import DriverInfo
from dockyard.core.hookspecs import hookimpl
from dockyard.core.logdrivers import FileLogDriver, file_log_driver
from dockyard.core.logfiles import JSON_LINES
from dockyard.plugins.logging.json_file import writer

DRIVER = FileLogDriver(
    writer=f"{writer.__name__}:open_writer",
    parse_options=writer.parse_options,
    log_format=JSON_LINES,
    readable=True,
)


@hookimpl
def dockyard_log_drivers() -> DriverInfo:
    return file_log_driver(
        writer.NAME,
        "docker's json-file format in the container's directory (docker's default)",
        DRIVER,
    )
