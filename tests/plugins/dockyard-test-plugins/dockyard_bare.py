"""Implements a hook with fewer arguments than its spec names, as pluggy allows.

Records its call (with plugin ``bare``) to the file named by ``DOCKYARD_TEST_RECORD``.
"""

import json
import os

from dockyard.core.hookspecs import hookimpl


@hookimpl
def dockyard_shutdown():
    path = os.environ.get("DOCKYARD_TEST_RECORD")
    if path:
        with open(path, "a") as out:
            out.write(json.dumps({"hook": "dockyard_shutdown", "plugin": "bare"}) + "\n")
