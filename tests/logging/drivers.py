"""The built-in log drivers, for tests that plan containers without a daemon."""

from __future__ import annotations

from dockyard.daemon.containers.log_drivers import LogDrivers
from dockyard.plugins.logging.json_file.plugin import JsonFileLogDriver
from dockyard.plugins.logging.local.plugin import LocalLogDriver
from dockyard.plugins.logging.none.plugin import NoLogDriver

BUILTIN_LOG_DRIVERS = LogDrivers(
    {"json-file": JsonFileLogDriver(), "local": LocalLogDriver(), "none": NoLogDriver()}
)
