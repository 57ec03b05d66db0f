"""What a running server hands to lifecycle hooks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from dockyard.core.drivers import DriverKind

if TYPE_CHECKING:
    from dockyard.core.config import Config
    from dockyard.core.containers.execs import ExecRegistry
    from dockyard.core.containers.manager import ContainerManager
    from dockyard.core.events import EventBus
    from dockyard.core.images.store import ImageStore
    from dockyard.core.plugins import PluginHost
    from dockyard.core.volumes import VolumeStore


@attrs.define
class Service:
    """One running daemon or registry: its config, plugins, built drivers and event bus."""

    program: str  # "daemon" or "registry"
    config: Config
    plugins: PluginHost
    data_root: Path
    drivers: dict[DriverKind, Any] = attrs.field(factory=dict)
    events: EventBus | None = None
    images: ImageStore | None = None
    containers: ContainerManager | None = None
    execs: ExecRegistry | None = None
    volumes: VolumeStore | None = None
