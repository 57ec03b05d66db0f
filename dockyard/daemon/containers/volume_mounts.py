"""A container's volumes beyond making them: ``--volumes-from``, filling a new volume with the
image's files, and the mount and unmount (with their events) at start and exit.

The container manager calls these at create, start and exit; what they decide is dockerd's.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.core.interfaces import Mount
from dockyard.daemon.containers.model import Container
from dockyard.daemon.containers.spec import VolumeRequest
from dockyard.daemon.volumes import DRIVER, VolumeStore
from dockyard.linux import inroot, trees
from dockyard.linux.mounts import mount_all, unmount_all


def inherited_volumes(
    entries: Sequence[str] | None, find: Callable[[str], Container]
) -> list[VolumeRequest]:
    """``HostConfig.VolumesFrom`` (``CTR[:ro|rw]``): each container's volumes and binds at the
    same paths, read-only where they were or where the entry says ``ro`` (``rw`` cannot
    make a read-only one writable). A missing container is a 400 naming it, as dockerd
    answers (a 404 would have the docker CLI look for the image instead)."""
    found: list[VolumeRequest] = []
    for entry in entries or ():
        name, _, mode = entry.partition(":")
        if not name or mode not in ("", "ro", "rw"):
            raise InvalidParameter(f"HostConfig.VolumesFrom: invalid mode: {mode}")
        try:
            container = find(name)
        except NotFound as exc:
            raise InvalidParameter(exc.message) from None
        for bind in container.spec.mounts:
            read_only = bind.read_only or mode == "ro"
            volume = container.volumes.get(bind.destination, "")
            # An existing volume (or host path) is shared as it is: never filled again.
            found.append(
                VolumeRequest(
                    bind.destination,
                    volume or bind.source,
                    read_only,
                    True,
                    # A bind keeps its propagation and recursion, as dockerd copies them.
                    propagation=bind.propagation,
                    non_recursive=not bind.recursive,
                )
            )
    return found


@attrs.frozen
class Fill:
    """A volume to fill, if still empty, with what the image has at ``destination``."""

    destination: str
    mountpoint: str


def fills_for(
    requests: Sequence[VolumeRequest], sources: Sequence[str], names: dict[str, str]
) -> list[Fill]:
    """The volumes (not host paths) of ``requests`` whose mount may copy the image's files."""
    return [
        Fill(request.destination, source)
        for request, source in zip(requests, sources, strict=True)
        if not request.is_bind and not request.no_copy and request.destination in names
    ]


def fill_from_image(
    store: VolumeStore,
    names: dict[str, str],
    rootfs: Sequence[Mount],
    peek: Path,
    fills: list[Fill],
) -> None:
    """docker's copy-up: each empty volume gets the files (contents, owners, modes) the image
    has at its path, read inside the image (its symlinks resolve in it). A volume with data
    keeps it; a volume whose options mount something at first use is left alone (what it
    mounts is not there yet)."""
    wanted = [f for f in fills if not store.get(names[f.destination]).options]
    wanted = [f for f in wanted if not os.listdir(f.mountpoint)]
    if not wanted:
        return
    peek.mkdir(exist_ok=True)
    mount_all(rootfs, str(peek))
    try:
        for fill in wanted:
            source = inroot.resolve(str(peek), fill.destination)
            if source is not None and os.path.isdir(source) and not os.path.islink(source):
                trees.copy_contents(source, fill.mountpoint)
    finally:
        unmount_all(str(peek))
        peek.rmdir()


def mount_volumes(store: VolumeStore, container: Container) -> None:
    """At start: mount the volumes that have options (first user only), then dockerd's
    ``mount`` event for each volume. On failure what was mounted is undone."""
    mounted: list[str] = []
    try:
        for name in container.volumes.values():
            store.mount(name, container.id)
            mounted.append(name)
    except BaseException:
        for name in mounted:
            store.unmount(name, container.id)
        raise
    read_only = {b.destination: b.read_only for b in container.spec.mounts}
    for destination, name in container.volumes.items():
        store.emit(
            "mount",
            name,
            {
                "container": container.id,
                "destination": destination,
                "driver": DRIVER,
                "propagation": "",
                "read/write": "false" if read_only.get(destination) else "true",
            },
        )


def unmount_volumes(store: VolumeStore, container: Container) -> None:
    """At exit (or a failed start): unmount with the last user, and the ``unmount`` events."""
    for name in container.volumes.values():
        # A mount already gone changes nothing: the event still says the container let go.
        with contextlib.suppress(OSError):
            store.unmount(name, container.id)
        store.emit("unmount", name, {"container": container.id, "driver": DRIVER})
