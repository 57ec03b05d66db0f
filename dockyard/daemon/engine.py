"""The daemon's :class:`~dockyard.core.service.Service`: what its hooks and routes reach."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from dockyard.core.service import Service

if TYPE_CHECKING:
    from dockyard.daemon.containers.execs import ExecRegistry
    from dockyard.daemon.containers.manager import ContainerManager
    from dockyard.daemon.distribution.blobsources import BlobSources
    from dockyard.daemon.distribution.pull import Puller
    from dockyard.daemon.distribution.service import RegistryService
    from dockyard.daemon.images.store import ImageStore
    from dockyard.daemon.volumes import VolumeStore


@attrs.define
class Engine(Service):
    """A running daemon: the service plus the image store, containers, execs, volumes,
    the registry client and the pulls."""

    images: ImageStore | None = None
    containers: ContainerManager | None = None
    execs: ExecRegistry | None = None
    volumes: VolumeStore | None = None
    registries: RegistryService | None = None
    pulls: Puller | None = None
    #: Where layers were seen in registries (push skips and mounts by it).
    blob_sources: BlobSources | None = None
