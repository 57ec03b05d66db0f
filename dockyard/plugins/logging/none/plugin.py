"""The none log driver's plugin: its record for the plugin host and its daemon side."""

from __future__ import annotations

from dockyard.core.drivers import DriverInfo
from dockyard.core.hookspecs import hookimpl
from dockyard.core.logdrivers import FileLogDriver, file_log_driver
from dockyard.core.logfiles import FRAMED
from dockyard.plugins.logging.none import writer

DRIVER = FileLogDriver(
    writer=f"{writer.__name__}:open_writer",
    parse_options=writer.check_options,
    log_format=FRAMED,
    subdirectory=writer.SUBDIRECTORY,
    readable=False,
)


@hookimpl
def dockyard_log_drivers() -> DriverInfo:
    return file_log_driver(
        writer.NAME, "no logs kept; docker logs is refused, as by dockerd", DRIVER
    )
