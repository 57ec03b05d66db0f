"""Claims the registry backend name ``memory``, which dockyard-memory-backend also provides."""

from dockyard.core.drivers import DriverInfo, DriverKind
from dockyard.core.hookspecs import hookimpl


@hookimpl
def dockyard_registry_backends():
    from dockyard_memory_backend import MemoryBackend

    return DriverInfo(
        name="memory",
        kind=DriverKind.REGISTRY_BACKEND,
        factory=lambda config, context: MemoryBackend(),
        description="a second 'memory' backend",
    )
