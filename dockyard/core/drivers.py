"""What a plugin contributes: named drivers, described by :class:`DriverInfo` records.

A plugin answers one of the register hooks (``dockyard_storage_drivers`` and friends, see
:mod:`dockyard.core.hookspecs`) with one or more ``DriverInfo`` records. The core selects one
driver of each kind by name from the configuration, decodes that driver's table of the config file
into its ``config_class`` and calls ``factory(config, context)`` to build it. Only the selected
drivers are ever built, except network and log drivers: several are in use at once (each
network and each container names its driver), so the daemon builds every usable one
(:meth:`PluginHost.build_every <dockyard.core.plugins.PluginHost.build_every>`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs


class DriverKind(enum.Enum):
    """The six kinds of driver. ``value`` is the config-file section that holds their options."""

    RUNTIME = "runtimes"
    STORAGE = "storage"
    REGISTRY_BACKEND = "registries"
    AUTH = "auth"
    NETWORK = "networks"
    LOG = "logging"

    @property
    def label(self) -> str:
        return _KIND_LABELS[self]


_KIND_LABELS = {
    DriverKind.RUNTIME: "runtime",
    DriverKind.STORAGE: "storage driver",
    DriverKind.REGISTRY_BACKEND: "registry backend",
    DriverKind.AUTH: "auth provider",
    DriverKind.NETWORK: "network driver",
    DriverKind.LOG: "log driver",
}

#: Kinds of which every usable driver is built and used side by side, none selected by name.
MULTI_KINDS = frozenset({DriverKind.NETWORK, DriverKind.LOG})


@attrs.frozen
class EmptyConfig:
    """The config class of a driver that takes no options: any key in its table is unknown."""


@attrs.frozen
class DriverContext:
    """What the core hands a driver factory besides the driver's own options."""

    #: Directory the driver may keep its state in (created by the core, private to the driver).
    state_dir: Path


def _frozen(values: Iterable[str]) -> frozenset[str]:
    return frozenset(values)


@attrs.frozen
class DriverInfo:
    """One named driver a plugin provides.

    ``factory(config, context)`` builds the driver; ``config`` is an instance of ``config_class``
    decoded from the driver's config table (``[storage.overlay]`` for storage driver ``overlay``).
    ``check()``, when given, raises :class:`~dockyard.core.errors.DriverUnavailable` with a reason
    when the driver cannot work on this machine (no overlayfs, no ``runc`` binary); it must be cheap
    and free of side effects because ``dockyard plugins`` calls it. ``priority`` orders the
    candidates when the config leaves the choice to the core (higher wins, ties by name).
    ``capabilities`` are free-form words the core and users may look at (``"rootless"``,
    ``"redirect"``, ``"multipart"``).
    """

    name: str
    kind: DriverKind
    factory: Callable[[Any, DriverContext], Any]
    config_class: type = EmptyConfig
    description: str = ""
    capabilities: frozenset[str] = attrs.field(default=frozenset(), converter=_frozen)
    priority: int = 0
    check: Callable[[], None] | None = None
