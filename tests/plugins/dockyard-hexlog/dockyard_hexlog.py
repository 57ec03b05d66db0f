"""A third-party log driver: ``--log-driver hexlog`` (the worked example for log drivers).

The plugin module describes the driver to dockyard's plugin host; the writer lives in
``dockyard_hexlog_writer``, which each container's supervisor imports by the path given here.
Reading back (``docker logs``, ``attach``) comes from :class:`dockyard.core.logdrivers.FileLogDriver`
over the writer's format.
"""

from __future__ import annotations

import dockyard_hexlog_writer as writer

from dockyard.core.hookspecs import hookimpl
from dockyard.core.logdrivers import FileLogDriver, file_log_driver

DRIVER = FileLogDriver(
    writer="dockyard_hexlog_writer:open_writer",
    parse_options=writer.check_options,
    log_format=writer.HEX_LINES,
    subdirectory=writer.SUBDIRECTORY,
)


@hookimpl
def dockyard_log_drivers():
    return file_log_driver(
        writer.NAME, "output as hex text lines (an example third-party log driver)", DRIVER
    )
