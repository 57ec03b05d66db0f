"""Hook specifications: every way a plugin can take part in dockyard.

A plugin is a module (or object) with functions named like the specs below and decorated with
``@hookimpl`` (``from dockyard.core.hookspecs import hookimpl``). Built-in plugins are
registered by the core; third-party ones are found through the ``dockyard.plugins``
entry-point group. Each daemon or registry process has its own plugin manager, so a hook is
called only in the process that needs it.

There are two sorts of hook:

* **register hooks** (``dockyard_*s``) return :class:`~dockyard.core.drivers.DriverInfo`
  records. They describe drivers; they do no work. The core selects one driver of each kind by
  name (network and log drivers excepted: every usable one is built, each network or container
  naming its own) and
  drives it through the interfaces in :mod:`dockyard.core.interfaces`.
* **lifecycle and event hooks** let a plugin act at fixed moments: after the config is read, when
  a server starts and stops, to add HTTP routes, and whenever the engine emits an event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from dockyard.core.config import Config
    from dockyard.core.drivers import DriverInfo
    from dockyard.core.events import Event
    from dockyard.core.service import Service

hookspec = pluggy.HookspecMarker("dockyard")
hookimpl = pluggy.HookimplMarker("dockyard")


# --------------------------------------------------------------------------------------------
# Register hooks
# --------------------------------------------------------------------------------------------


@hookspec
def dockyard_runtimes() -> DriverInfo | Sequence[DriverInfo] | None:
    """Return the container runtimes this plugin provides, as ``DriverInfo`` records.

    Called by the core once per process, right after all plugins are registered and before the
    config's driver tables are checked, both in the daemon and by ``dockyard plugins --local``.
    Each record's ``factory`` must build an object implementing
    :class:`~dockyard.core.interfaces.Runtime`; it is called only for the selected runtime.
    Return ``None`` (or nothing) to provide none.
    """


@hookspec
def dockyard_storage_drivers() -> DriverInfo | Sequence[DriverInfo] | None:
    """Return the storage drivers this plugin provides, as ``DriverInfo`` records.

    Called by the core once per process, right after all plugins are registered. Each record's
    ``factory`` must build a :class:`~dockyard.core.interfaces.StorageDriver`; the daemon builds
    only the selected one, giving it a private state directory under its data root.
    """


@hookspec
def dockyard_registry_backends() -> DriverInfo | Sequence[DriverInfo] | None:
    """Return the registry storage backends this plugin provides, as ``DriverInfo`` records.

    Called by the core once per process, right after all plugins are registered. Each record's
    ``factory`` must build a :class:`~dockyard.core.interfaces.RegistryBackend`; the registry
    server builds the one named by ``[registry] backend``.
    """


@hookspec
def dockyard_auth_providers() -> DriverInfo | Sequence[DriverInfo] | None:
    """Return the authentication providers this plugin provides, as ``DriverInfo`` records.

    Called by the core once per process, right after all plugins are registered. Each record's
    ``factory`` must build an :class:`~dockyard.core.interfaces.AuthProvider`; the registry
    builds the one ``[registry] auth`` names, with its options from ``[auth.<name>]``. A factory
    that cannot serve as configured (an unreadable key, a malformed users file) raises
    :class:`~dockyard.core.errors.ConfigError` saying how to fix it, and the registry does not
    start. A provider that is also a :class:`~dockyard.core.interfaces.TokenIssuer` gets the
    registry's token endpoint (``/token``); one that is a
    :class:`~dockyard.core.interfaces.UserManager` with no users is refused when the registry
    starts serving (not by the factory: ``dockyard registry user add`` builds it too).
    """


@hookspec
def dockyard_network_drivers() -> DriverInfo | Sequence[DriverInfo] | None:
    """Return the network drivers this plugin provides, as ``DriverInfo`` records.

    Called by the core once per process, right after all plugins are registered. Each record's
    ``factory`` must build a :class:`~dockyard.core.interfaces.NetworkDriver`. Unlike the other
    kinds, no single driver is selected: each network names its driver (``bridge``, ``host``,
    ``none``...), so the daemon builds every driver whose ``check`` passes, each with its options
    from ``[networks.<name>]`` and a private state directory. A factory must not touch the
    kernel: it only records its options; the first change to the host is made by
    ``create_network`` or ``restore``.
    """


@hookspec
def dockyard_log_drivers() -> DriverInfo | Sequence[DriverInfo] | None:
    """Return the log drivers this plugin provides, as ``DriverInfo`` records.

    Called by the core once per process, right after all plugins are registered, in the daemon
    and by ``dockyard plugins --local``. Each record's ``factory`` must build a
    :class:`~dockyard.core.interfaces.LogDriver`. As with network drivers, none is selected:
    each container names its driver (``--log-driver``, else the daemon's ``log-driver``), so
    the daemon builds every driver whose ``check`` passes, each with its options from
    ``[logging.<name>]``. The driver's writer runs in each container's supervisor, imported
    by its ``module:function`` path; the factory itself runs once, in the daemon. Return
    ``None`` (or nothing) to provide none.
    """


# --------------------------------------------------------------------------------------------
# Lifecycle hooks
# --------------------------------------------------------------------------------------------


@hookspec
def dockyard_configure(config: Config, program: str) -> None:
    """Look at the loaded configuration before anything is built.

    Called once per process by the core after the config file and command-line flags are
    merged and every driver table has been checked, before any driver is built or socket bound.
    ``program`` is ``"daemon"``, ``"registry"`` or ``"cli"`` (``dockyard plugins --local``,
    ``dockyard config default``). Raise :class:`~dockyard.core.errors.ConfigError` to refuse the
    configuration: the process prints its one-line message and exits 1 without starting.
    """


@hookspec
def dockyard_startup(service: Service) -> None:
    """Act when a server has built its drivers and is about to accept connections.

    Called once by the daemon and by the registry, after the selected drivers are built and the
    sockets are bound, before the first request is served. ``service`` gives the program name,
    config, data root and the built drivers. An exception here stops the server from starting.
    """


@hookspec
def dockyard_shutdown(service: Service) -> None:
    """Act when a server stops.

    Called once by the daemon and by the registry, after the server stopped accepting
    requests (SIGTERM, SIGINT) and before the process exits; through pluggy, one plugin at a
    time, so an implementation may leave ``service`` out. Exceptions are logged and do not
    prevent the other plugins' shutdown.
    """


@hookspec
def dockyard_routes(program: str) -> Sequence[Any] | None:
    """Return extra HTTP routes (starlette ``Route``/``Mount`` objects) to serve.

    Called once per server while its app is being built. ``program`` is ``"daemon"`` or
    ``"registry"``. The daemon serves the routes with and without the ``/v1.NN`` API version
    prefix, behind the same logging, auth and error handling as its own; the core's routes match
    first, so a plugin cannot shadow an Engine API endpoint.
    """


# --------------------------------------------------------------------------------------------
# Event hooks
# --------------------------------------------------------------------------------------------


@hookspec
def dockyard_event(event: Event) -> None:
    """Observe one engine event: a container, image, volume or daemon state change.

    Called by the daemon's event bus for every event, in the order they happen, from the thread
    that caused the event (so keep it quick; hand slow work to a thread of your own). The same
    events are streamed by ``GET /events``. ``event.type`` is ``"container"``, ``"image"``,
    ``"volume"`` or ``"daemon"``; ``event.action`` is Docker's verb (``"create"``, ``"start"``,
    ``"die"``, ``"tag"``, ``"delete"``, ``"start"`` for the daemon itself...). The return value
    is ignored, and an exception is logged without affecting the operation that emitted it.
    """
