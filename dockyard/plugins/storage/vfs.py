"""The ``vfs`` storage driver: every layer and snapshot is a full, plain copy of its parent.

Slow and space-hungry, but it needs nothing from the kernel beyond an ordinary filesystem, so
it works anywhere (inside containers, on overlayfs, without mount privileges for layers). A
snapshot is a directory the runtime bind-mounts; its diff is found by comparing it with the
layer it was copied from.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.errors import NotFound
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import Mount, Usage
from dockyard.linux.layertar import DeleteWhiteouts, DiffWriter, extract_layer, remove_tree
from dockyard.linux.objectstore import Kind, ObjectStore
from dockyard.linux.trees import (
    Change,
    compare_trees,
    copy_tree,
    iter_added_files,
    write_changes,
)

ROOTFS = "fs"
#: Written after a snapshot's copy is complete: files whose ctime is older are untouched copies.
COPIED_MARKER = "copied"
USAGE_FILE = "usage"
#: A snapshot remembers the layer it was copied from, for ``usage`` (which gets no parents).
PARENT_FILE = "parent"


@attrs.frozen
class VfsConfig:
    """Options of ``[storage.vfs]``."""

    allow_device_nodes: bool = option(
        True, "create device nodes found in layers (false refuses such layers)"
    )


class VfsDriver:
    """A :class:`~dockyard.core.interfaces.StorageDriver` made of plain directory copies."""

    def __init__(self, state_dir: Path, config: VfsConfig | None = None) -> None:
        self.config = config or VfsConfig()
        self.store = ObjectStore(state_dir)

    def _layer_root(self, key: str) -> str:
        return str(self.store.require(Kind.LAYER, key) / ROOTFS)

    def apply_layer(self, key: str, parents: Sequence[str], diff: BinaryIO) -> Usage:
        """Copy the nearest parent, then apply ``diff`` to the copy with whiteouts as deletions."""
        self.store.ensure_absent(key)
        staging = self.store.new_staging()
        try:
            root = staging / ROOTFS
            if parents:
                copy_tree(self._layer_root(parents[0]), str(root))
            else:
                root.mkdir(mode=0o755)
            stats = extract_layer(
                diff,
                root,
                DeleteWhiteouts(),
                allow_device_nodes=self.config.allow_device_nodes,
            )
            usage = Usage(size=stats.file_bytes, inodes=stats.entries)
            (staging / USAGE_FILE).write_text(f"{usage.size} {usage.inodes}")
            self.store.commit(staging, Kind.LAYER, key)
        except BaseException:
            remove_tree(staging)
            raise
        return usage

    def prepare(self, key: str, parents: Sequence[str]) -> list[Mount]:
        """Copy the top layer into a new snapshot directory and return a bind mount of it."""
        self.store.ensure_absent(key)
        staging = self.store.new_staging()
        try:
            root = staging / ROOTFS
            if parents:
                copy_tree(self._layer_root(parents[0]), str(root))
                (staging / PARENT_FILE).write_text(parents[0])
            else:
                root.mkdir(mode=0o755)
            (staging / COPIED_MARKER).touch()
            path = self.store.commit(staging, Kind.SNAPSHOT, key)
        except BaseException:
            remove_tree(staging)
            raise
        return [self._bind(path)]

    @staticmethod
    def _bind(path: Path) -> Mount:
        return Mount(type="bind", source=str(path / ROOTFS), options=("rbind", "rw"))

    def mounts(self, key: str, parents: Sequence[str]) -> list[Mount]:
        """The bind mount of snapshot ``key``."""
        return [self._bind(self.store.require(Kind.SNAPSHOT, key))]

    def _changes(self, path: Path, parent: str | None) -> tuple[str, list[Change]]:
        """The snapshot at ``path``'s root and its changes over layer ``parent``."""
        old_root = self._layer_root(parent) if parent is not None else None
        copied_at = os.stat(path / COPIED_MARKER).st_ctime_ns
        new_root = str(path / ROOTFS)
        return new_root, compare_trees(new_root, old_root, copied_at)

    def diff(self, key: str, parents: Sequence[str], out: BinaryIO) -> None:
        """Compare the snapshot with the layer it was copied from and archive the changes."""
        path = self.store.require(Kind.SNAPSHOT, key)
        new_root, changes = self._changes(path, parents[0] if parents else None)
        with DiffWriter(out) as writer:
            write_changes(changes, new_root, writer)

    def remove(self, key: str) -> None:
        """Delete layer or snapshot ``key``; a missing key is fine."""
        graveyard = self.store.discard(key)
        if graveyard is not None:
            remove_tree(graveyard)

    def usage(self, key: str) -> Usage:
        """A layer's size and entry count as applied; a snapshot's changes over its layer."""
        found = self.store.find(key)
        if found is None:
            raise NotFound(f"layer or snapshot {key!r} does not exist")
        kind, path = found
        if kind is Kind.LAYER:
            size, inodes = (path / USAGE_FILE).read_text().split()
            return Usage(size=int(size), inodes=int(inodes))
        parent_file = path / PARENT_FILE
        parent = parent_file.read_text() if parent_file.exists() else None
        _, changes = self._changes(path, parent)
        added = list(iter_added_files(changes))
        return Usage(
            size=sum(info.st_size for info in added if _is_regular(info)),
            inodes=len(added),
        )

    def keys(self) -> Iterable[str]:
        """Every layer and snapshot key stored."""
        return list(self.store.keys())


def _is_regular(info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode)


def build(config: VfsConfig, context: DriverContext) -> VfsDriver:
    """The factory the core calls with the decoded ``[storage.vfs]`` table."""
    return VfsDriver(context.state_dir, config)


@hookimpl
def dockyard_storage_drivers() -> DriverInfo:
    """Offer ``vfs``, the fallback that works on any filesystem."""
    return DriverInfo(
        name="vfs",
        kind=DriverKind.STORAGE,
        factory=build,
        config_class=VfsConfig,
        description="full copy per layer and container; slow but works on any filesystem",
        priority=10,
    )
