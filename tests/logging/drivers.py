"""The built-in log drivers, for tests that plan containers without a daemon."""

from __future__ import annotations

from dockyard.daemon.containers.log_drivers import LogDrivers
from dockyard.plugins.logging.json_file.plugin import DRIVER as JSON_FILE
from dockyard.plugins.logging.local.plugin import DRIVER as LOCAL
from dockyard.plugins.logging.none.plugin import DRIVER as NO_LOGS

BUILTIN_LOG_DRIVERS = LogDrivers({"json-file": JSON_FILE, "local": LOCAL, "none": NO_LOGS})
