"""The daemon side of a log driver that keeps its output with :mod:`dockyard.core.logfiles`.

A file-based driver (the built-in json-file, local and none, or a third party's) differs from
another only in its writer, its options, where below the container's directory its files lie
and their format: :class:`FileLogDriver` is the rest of the
:class:`~dockyard.core.interfaces.LogDriver`, and :func:`file_log_driver` its ``DriverInfo``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.logfiles import LogFiles, LogFormat


@attrs.frozen
class FileLogDriver:
    """A :class:`~dockyard.core.interfaces.LogDriver` reading what a ``RotatingLog`` wrote."""

    #: ``module:function`` of the writer (see :class:`~dockyard.core.interfaces.LogWriter`).
    writer: str
    #: Checks the options (raising ``InvalidParameter``); what it returns is not used here.
    parse_options: Callable[[Mapping[str, str]], Any]
    log_format: LogFormat
    #: Where the files lie below the container's directory ("": in it).
    subdirectory: str = ""
    readable: bool = True

    def check_options(self, options: Mapping[str, str]) -> None:
        self.parse_options(options)

    def open_reader(self, directory: Path) -> LogFiles:
        return LogFiles(directory / self.subdirectory, self.log_format)


def file_log_driver(name: str, description: str, driver: FileLogDriver) -> DriverInfo:
    """The ``DriverInfo`` a plugin's ``dockyard_log_drivers`` returns for ``driver``."""

    def build(_config: Any, _context: DriverContext) -> FileLogDriver:
        return driver

    return DriverInfo(name=name, kind=DriverKind.LOG, factory=build, description=description)
