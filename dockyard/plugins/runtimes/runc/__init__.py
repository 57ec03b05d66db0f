"""The ``runc`` runtime plugin: containers from OCI runtime bundles run by the runc binary.

The supervisor imports :mod:`.launch` on every container start, which imports this package
first; so the plugin's hook and driver code (pluggy, config, the daemon-side runtime) live in
:mod:`.plugin` and are imported only when the plugin host looks for them here.
"""

from __future__ import annotations

from typing import Any

_FROM_PLUGIN = ("dockyard_runtimes", "RuncRuntime", "RuncConfig", "check")


def __getattr__(name: str) -> Any:
    if name in _FROM_PLUGIN:
        from dockyard.plugins.runtimes.runc import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # pluggy finds hook implementations through dir() of the registered module.
    return sorted({*globals(), *_FROM_PLUGIN})
