"""What a running server hands to lifecycle hooks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dockyard.core.drivers import DriverKind

if TYPE_CHECKING:
    from dockyard.core.config import Config
    from dockyard.core.events import EventBus
    from dockyard.core.plugins import PluginHost


@attrs.define
class Service:
    """One running daemon or registry: its config, plugins, built drivers and event bus.

    A program may hand hooks a subclass carrying its own parts (the daemon's adds its image
    store, containers and volumes).
    """

    program: str  # "daemon" or "registry"
    config: Config
    plugins: PluginHost
    data_root: Path
    drivers: dict[DriverKind, Any] = attrs.field(factory=dict)
    events: EventBus | None = None
