"""The local log driver's plugin: its record for the plugin host and its daemon side."""

from __future__ import annotations

from dockyard.core.drivers import DriverInfo
from dockyard.core.hookspecs import hookimpl
from dockyard.core.logdrivers import FileLogDriver, file_log_driver
from dockyard.core.logfiles import FRAMED
from dockyard.plugins.logging.local import writer

DRIVER = FileLogDriver(
    writer=f"{writer.__name__}:open_writer",
    parse_options=writer.parse_options,
    log_format=FRAMED,
    subdirectory=writer.SUBDIRECTORY,
    readable=True,
)


@hookimpl
def dockyard_log_drivers() -> DriverInfo:
    return file_log_driver(
        writer.NAME,
        "compact records, rotated and compressed (20 MiB x 5 by default), as dockerd's local",
        DRIVER,
    )
