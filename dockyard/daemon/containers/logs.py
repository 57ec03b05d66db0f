"""Names of the files a container's supervisor writes in the container's directory.

The container's output itself is kept by its log driver (see
:mod:`dockyard.daemon.containers.log_drivers`; json-file's ``container.log`` lies here too).
This module is imported by the supervisor on every container start: keep it light.
"""

from __future__ import annotations

from dockyard.core.logfiles import LOG_MODE as LOG_MODE
from dockyard.core.logfiles import LOG_NAME as LOG_NAME

#: The supervisor's own output (why a start failed), next to the container's.
SUPERVISOR_LOG_NAME = "supervisor.log"
