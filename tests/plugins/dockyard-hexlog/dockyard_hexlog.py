"""A third-party log driver: ``--log-driver hexlog`` (the worked example for log drivers).

The plugin module describes the driver to dockyard's plugin host and reads logs back in the
daemon; the writer lives in ``dockyard_hexlog_writer``, which the container's supervisor
imports by the path in ``HexLogDriver.writer``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import dockyard_hexlog_writer as writer

from dockyard.core.drivers import DriverInfo, DriverKind
from dockyard.core.hookspecs import hookimpl
from dockyard.core.logfiles import LogFiles


class HexLogDriver:
    writer = "dockyard_hexlog_writer:open_writer"
    readable = True

    def check_options(self, options: Mapping[str, str]) -> None:
        writer.check_options(options)

    def open_reader(self, directory: Path) -> LogFiles:
        return LogFiles(directory / writer.SUBDIRECTORY, writer.HEX_LINES)


@hookimpl
def dockyard_log_drivers():
    return DriverInfo(
        name=writer.NAME,
        kind=DriverKind.LOG,
        factory=lambda config, context: HexLogDriver(),
        description="output as hex text lines (an example third-party log driver)",
    )
