"""A ``HostConfig`` given to ``POST /containers/{id}/start``, as dockerd 20.10 takes it from
clients of API 1.23 and older (from 1.24 such a body is refused).

dockerd replaces the container's whole ``HostConfig`` with the one given, then starts it. Here
the given one is first completed the way create completes it (the image's defaults, the
daemon's defaults for IPC, the network mode...), then compared with the container's, field by
field. Fields read when the container starts (restart policy, log driver, auto-remove,
published ports), the cgroup limits ``docker update`` changes and ``Binds`` of host paths (or of
volumes the container has) take their new values; any other field that differs would need the
container's filesystem, volumes or namespaces made again, which only create does: the start is
refused with a 400 naming it, rather than starting a container that lacks what was asked for.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs

from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import BindMount, Resources
from dockyard.daemon.containers import limits, spec, unapplied
from dockyard.daemon.containers.config import CreateRequest, HostConfig
from dockyard.daemon.containers.model import Container
from dockyard.daemon.engine_api import ENGINE_API

#: Fields read when the container starts (the ports are published then), beside
#: :data:`limits.UPDATABLE`; ``Binds`` are taken by :func:`mounts` (host paths, and volumes the
#: container has).
READ_AT_START = frozenset(
    {"log_config", "auto_remove", "port_bindings", "publish_all_ports", "binds"}
)

DEPRECATED_BODY = (
    "starting container with non-empty request body was deprecated since API v1.22 and "
    "removed in v1.24"
)


@attrs.frozen
class Replacement:
    """The container's new ``HostConfig`` and the cgroup limits that go with it."""

    host_config: HostConfig
    resources: Resources


@attrs.frozen
class Mounts:
    """The container's bind mounts for a new ``Binds``, and its volumes by destination."""

    mounts: tuple[BindMount, ...]
    volumes: dict[str, str]


def mounts(container: Container, completed: spec.Plan, mountpoint: Callable[[str], str]) -> Mounts:
    """The mounts of ``completed``'s volumes: host paths (which must exist, as on create), and
    the volumes ``container`` already has at the same place (``mountpoint`` gives a volume's
    host path). A volume the container does not have would be made and filled from the image,
    which create does: refused with a 400."""
    sources: list[str] = []
    volumes: dict[str, str] = {}
    for volume in completed.volumes:
        if volume.is_bind:
            if not os.path.exists(volume.source):
                raise InvalidParameter(
                    'invalid mount config for type "bind": bind source path does not exist: '
                    + volume.source
                )
            sources.append(volume.source)
            continue
        had = container.volumes.get(volume.destination)
        if had is None or (not volume.is_anonymous and volume.source != had):
            raise InvalidParameter(
                f"HostConfig.Binds: a new volume at {volume.destination} is made on create "
                "only on this engine: give it to POST /containers/create"
            )
        sources.append(mountpoint(had))
        volumes[volume.destination] = had
    return Mounts(spec.volume_bind_mounts(completed, sources), volumes)


def replacement(
    container: Container,
    given: HostConfig,
    completed: spec.Plan,
    network_mode: str,
) -> Replacement:
    """``given`` (completed by create's planning as ``completed``, with the network mode as
    create records it) in place of ``container``'s ``HostConfig``; a 400 naming the first
    field that differs and cannot change without creating the container again."""
    unapplied.refuse_unapplied(completed.config, given)
    new = attrs.evolve(completed.host_config, network_mode=network_mode)
    fixed = [
        f"HostConfig.{ENGINE_API.key_of(field)}"
        for field in attrs.fields(HostConfig)
        if field.name not in limits.UPDATABLE
        and field.name not in READ_AT_START
        and _differs(
            field.name, getattr(new, field.name), getattr(container.host_config, field.name)
        )
        and not _own_ipc_either_way(field.name, new, container.host_config)
    ]
    if fixed:
        raise InvalidParameter(
            f"{', '.join(fixed)}: differ from the container's, and this engine sets them on "
            "create only: give them to POST /containers/create"
        )
    _devices, planned = limits.resolve_devices(new, completed.resources)
    return Replacement(new, limits.keeping_lifelong(planned, container.spec.resources))


#: Values clients send for an option left alone, beside empty ones.
_UNSET = {"memory_swappiness": -1, "console_size": [0, 0]}


def _own_ipc_either_way(name: str, new: HostConfig, current: HostConfig) -> bool:
    """A private and a shareable IPC namespace are made alike, at start: whether others may
    join is read then. (An old client's container is shareable by default, and its start's
    HostConfig, without a mode, gives the daemon's private, as with dockerd.)"""
    own = ("private", "shareable")
    return name == "ipc_mode" and new.ipc_mode in own and current.ipc_mode in own


def _differs(name: str, given: object, current: object) -> bool:
    """Different values, an empty list or map (or a field's own "unset") being the same as
    none: clients send either for an option left alone."""
    unset = (None, _UNSET.get(name))
    given, current = (None if v in unset or not v else v for v in (given, current))
    return given != current


def as_create_request(container: Container, given: HostConfig) -> CreateRequest:
    """The create request ``container`` would have come from, with ``given`` for its
    ``HostConfig``: what create's planning completes."""
    config = container.config
    return CreateRequest(
        **{field.name: getattr(config, field.name) for field in attrs.fields(type(config))},
        host_config=given,
    )
