"""Making an image from a container's filesystem: what ``docker commit`` and each build step do.

An image made here is a child of the image its container was made from: its config carries
the parent's layers and history, plus one history entry for the step and (unless the step only
changed metadata) one layer holding the container's changes.
"""

from __future__ import annotations

import json
import tarfile
from typing import Any

import attrs

from dockyard.core import mediatypes
from dockyard.core.platforms import go_arch
from dockyard.core.timestamps import now_rfc3339
from dockyard.daemon.containers.changes import DAEMON_FILES
from dockyard.daemon.images.store import ImageRecord, ImageStore, LayerRecord
from dockyard.distribution.reference import Reference

#: The version dockerd 20.10 writes into image configs it makes; clients show it in inspect.
DOCKER_VERSION = "20.10.24+dfsg1"


@attrs.frozen
class Snapshot:
    """A container's writable filesystem: the storage driver's key and its layer chain."""

    key: str
    parents: tuple[str, ...]


@attrs.frozen
class ImageChange:
    """One new image over ``parent`` (``None``: over nothing, as after ``FROM scratch``).

    ``config`` is the new image's container config (``Config`` in inspect), in the Engine
    API's form. ``snapshot`` is the filesystem whose changes become the new layer; ``None``
    makes a metadata-only image (``empty_layer`` in its history), as ``ENV`` or ``CMD`` steps do.
    """

    parent: ImageRecord | None
    config: dict[str, Any]
    snapshot: Snapshot | None
    created_by: str = ""
    author: str = ""
    comment: str = ""
    container_id: str = ""
    container_config: dict[str, Any] | None = None


def _daemon_file(name: str) -> bool:
    return "/" + name.strip("/").removeprefix("./") in DAEMON_FILES


def _without_daemon_files(store: ImageStore, digest: str) -> str:
    """The diff ``digest`` without what the daemon and runtime put in every container (mount
    points such as ``/proc`` and ``/etc/hosts``), nor the directories holding them when
    nothing else in them changed: dockerd keeps those in an init layer below the container's,
    so a committed layer never has them."""
    with store.content.open(digest) as blob, tarfile.open(fileobj=blob, mode="r:") as archive:
        members = archive.getmembers()
        dropped = [member.name.strip("/") for member in members if _daemon_file(member.name)]
        if not dropped:
            return digest
        kept = [member for member in members if not _daemon_file(member.name)]
        holders = {name.rpartition("/")[0] for name in dropped} - {""}
        still_changed = {member.name.strip("/").rpartition("/")[0] for member in kept}
        kept = [
            member
            for member in kept
            if not (member.isdir() and member.name.strip("/") in holders - still_changed)
        ]
        with store.content.writer() as out:
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as filtered:  # type: ignore[call-overload]
                for member in kept:
                    filtered.addfile(
                        member, archive.extractfile(member) if member.isreg() else None
                    )
            return out.commit()


def _is_empty_tar(store: ImageStore, digest: str) -> bool:
    with store.content.open(digest) as blob, tarfile.open(fileobj=blob, mode="r|") as archive:
        return archive.next() is None


def commit_layer(
    store: ImageStore, parent: ImageRecord | None, snapshot: Snapshot
) -> LayerRecord | None:
    """The snapshot's changes as a layer over ``parent``'s, stored uncompressed; ``None`` when
    nothing changed (as dockerd, which records such a step as an ``empty_layer``)."""
    with store.content.writer() as blob:
        store.driver.diff(snapshot.key, list(snapshot.parents), blob)  # type: ignore[arg-type]
        digest = blob.commit()
    digest = _without_daemon_files(store, digest)
    if _is_empty_tar(store, digest):
        return None
    below = parent.layers[-1] if parent is not None and parent.layers else None
    return store.register_layer(
        below, digest, digest, mediatypes.OCI_LAYER, lambda: store.content.open(digest)
    )


def commit_image(
    store: ImageStore,
    change: ImageChange,
    references: list[Reference] = (),  # type: ignore[assignment]
) -> ImageRecord:
    """Record the image ``change`` describes, tag it with ``references`` and return it."""
    base: dict[str, Any] = store.config(change.parent) if change.parent is not None else {}
    layers = [store.layer(chain) for chain in change.parent.layers] if change.parent else []
    created = now_rfc3339()
    step: dict[str, Any] = {"created": created}
    if change.author:
        step["author"] = change.author
    if change.created_by:
        step["created_by"] = change.created_by
    if change.comment:
        step["comment"] = change.comment
    layer = commit_layer(store, change.parent, change.snapshot) if change.snapshot else None
    if layer is None:
        step["empty_layer"] = True
    else:
        layers.append(layer)
    document: dict[str, Any] = {
        "architecture": base.get("architecture") or go_arch(),
        "os": base.get("os") or "linux",
        "config": change.config,
        "container": change.container_id,
        "container_config": change.container_config or change.config,
        "created": created,
        "docker_version": DOCKER_VERSION,
        "history": [*base.get("history", []), step],
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
    }
    if not change.container_id:
        del document["container"]
    if change.author:
        document["author"] = change.author
    if change.comment:
        document["comment"] = change.comment
    if base.get("variant"):
        document["variant"] = base["variant"]
    data = json.dumps(document, separators=(",", ":")).encode()
    parent_id = change.parent.id if change.parent is not None else ""
    return store.add_image(data, layers, references, parent=parent_id)
