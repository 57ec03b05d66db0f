"""``docker diff``: what a container changed in its image's filesystem.

Works for every storage driver: the container's changes come from the driver's ``diff`` (a
layer tar of its snapshot against the image's layers), and whether a changed path is an
addition or a modification is told by the image's own layers (their tars, read once per image
and remembered). As in dockerd:

* whiteouts are deletions (``D``); a path that was not in the image is an addition (``A``);
  anything else in the diff is a modification (``C``);
* the parent directories of every change are reported as modified before it;
* what the daemon itself puts in a container (``/etc/hosts``, ``/etc/resolv.conf``,
  ``/etc/hostname``, ``/.dockerenv``, the ``/proc``, ``/sys`` and ``/dev`` mount points;
  dockerd keeps them in an init layer) is never reported, nor is a directory that the diff
  holds only because of them.
"""

from __future__ import annotations

import functools
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

import attrs

from dockyard.daemon.images.compression import open_decompressed
from dockyard.daemon.images.store import ImageStore
from dockyard.linux.layertar import OPAQUE_MARKER, WHITEOUT_PREFIX

KIND_MODIFIED = 0
KIND_ADDED = 1
KIND_DELETED = 2

#: Paths the daemon (or its runtime, as mount points) makes in every container: dockerd keeps
#: them in an init layer below the container's, so they are never a user's change.
DAEMON_FILES = frozenset(
    {
        "/etc/hosts",
        "/etc/resolv.conf",
        "/etc/hostname",
        "/etc/mtab",
        "/.dockerenv",
        "/dev",
        "/dev/console",
        "/dev/pts",
        "/dev/shm",
        "/proc",
        "/sys",
    }
)


@attrs.frozen
class Change:
    path: str
    kind: int

    def to_json(self) -> dict[str, object]:
        return {"Path": self.path, "Kind": self.kind}


@attrs.frozen
class Metadata:
    """What tells a directory's own change apart from a change below it."""

    is_dir: bool
    mode: int
    uid: int
    gid: int


def _container_path(name: str) -> str:
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return "/" + "/".join(parts)


def _members(stream: BinaryIO) -> Iterator[tarfile.TarInfo]:
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        yield from archive


@functools.lru_cache(maxsize=8)
def image_tree(store: ImageStore, image_id: str) -> dict[str, Metadata]:
    """Every path of image ``image_id``'s filesystem (its layers applied in order)."""
    image = store.resolve(image_id)
    tree: dict[str, Metadata] = {}
    for chain in image.layers:
        layer = store.layer(chain)
        with store.content.open(layer.blob) as blob, open_decompressed(blob) as stream:
            for member in _members(stream):
                path = _container_path(member.name)
                parent, _, base = path.rpartition("/")
                if base == OPAQUE_MARKER:
                    _forget_below(tree, parent or "/")
                elif base.startswith(WHITEOUT_PREFIX):
                    gone = f"{parent}/{base[len(WHITEOUT_PREFIX) :]}"
                    tree.pop(gone, None)
                    _forget_below(tree, gone)
                else:
                    tree[path] = Metadata(member.isdir(), member.mode, member.uid, member.gid)
    return tree


def _forget_below(tree: dict[str, Metadata], directory: str) -> None:
    prefix = directory.rstrip("/") + "/"
    for path in [p for p in tree if p.startswith(prefix)]:
        del tree[path]


def changes_from_diff(diff: BinaryIO, image: dict[str, Metadata]) -> list[Change]:
    """The changes a snapshot's layer tar ``diff`` makes to ``image``, in the diff's order."""
    reported: dict[str, int] = {}

    def report(path: str, kind: int) -> None:
        ancestors = []
        parent = path.rpartition("/")[0]
        while parent and parent not in reported:
            ancestors.append(parent)
            parent = parent.rpartition("/")[0]
        for ancestor in reversed(ancestors):
            known = ancestor in image or ancestor in DAEMON_FILES
            reported[ancestor] = KIND_MODIFIED if known else KIND_ADDED
        reported.setdefault(path, kind)

    for member in _members(diff):
        path = _container_path(member.name)
        if path == "/":
            continue
        parent, _, base = path.rpartition("/")
        if base == OPAQUE_MARKER:
            continue  # the directory's own entry says what it is
        if base.startswith(WHITEOUT_PREFIX):
            report(f"{parent}/{base[len(WHITEOUT_PREFIX) :]}", KIND_DELETED)
            continue
        if path in DAEMON_FILES:
            continue
        before = image.get(path)
        if before is None:
            report(path, KIND_ADDED)
        elif not (member.isdir() and before.is_dir) or (member.mode, member.uid, member.gid) != (
            before.mode,
            before.uid,
            before.gid,
        ):
            report(path, KIND_MODIFIED)
        # An unchanged directory is reported only as the parent of a change below it.
    return [Change(path, kind) for path, kind in reported.items()]


def _owner_or_mode_changed(member: tarfile.TarInfo, before: Metadata) -> bool:
    return (member.mode, member.uid, member.gid) != (before.mode, before.uid, before.gid)
