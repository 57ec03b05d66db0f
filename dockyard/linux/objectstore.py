"""The on-disk bookkeeping both built-in storage drivers share.

Layout under the driver's state directory::

    layers/<id>/        one committed layer   (``key`` file + the driver's own content)
    snapshots/<id>/     one writable snapshot (``key`` file + the driver's own content)
    staging/<random>/   objects being built, or being deleted; emptied on every start

``<id>`` is the sha256 of the key, so lookups need no index and the key's characters (``:`` in
particular, which overlayfs reads as a separator) never appear in paths. An object becomes
visible by one ``rename`` out of ``staging/``, and disappears by one ``rename`` back into it, so
a crash at any moment leaves either the whole object or nothing under its id.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from dockyard.core.errors import Conflict, InvalidParameter, NotFound
from dockyard.core.interfaces import Usage
from dockyard.linux.layertar import remove_tree, walk_tree

_KEY_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,256}")
KEY_FILE = "key"


class Kind(enum.Enum):
    """The two sorts of object; ``value`` is the directory holding them."""

    LAYER = "layers"
    SNAPSHOT = "snapshots"


class ObjectStore:
    """Creates, finds and deletes the layer and snapshot directories of one driver."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / "staging"
        for directory in (self.staging, root / Kind.LAYER.value, root / Kind.SNAPSHOT.value):
            directory.mkdir(parents=True, exist_ok=True)
        # Whatever is in staging was half-built or half-deleted when a process died.
        for leftover in self.staging.iterdir():
            remove_tree(leftover)

    @staticmethod
    def check_key(key: str) -> None:
        """Refuse keys outside the documented alphabet (and ``.``/``..``)."""
        if not _KEY_PATTERN.fullmatch(key) or key in (".", ".."):
            raise InvalidParameter(f"invalid storage key {key!r}: use 1 to 256 of [A-Za-z0-9_.:-]")

    @staticmethod
    def object_id(key: str) -> str:
        """The directory name of ``key``."""
        return hashlib.sha256(key.encode()).hexdigest()

    def path(self, kind: Kind, key: str) -> Path:
        """Where object ``key`` of ``kind`` lives (whether or not it exists)."""
        return self.root / kind.value / self.object_id(key)

    def find(self, key: str) -> tuple[Kind, Path] | None:
        """The kind and directory of existing object ``key``, or ``None``."""
        self.check_key(key)
        for kind in Kind:
            path = self.path(kind, key)
            if path.is_dir():
                return kind, path
        return None

    def require(self, kind: Kind, key: str) -> Path:
        """The directory of existing ``kind`` object ``key``; ``NotFound`` otherwise."""
        self.check_key(key)
        path = self.path(kind, key)
        if not path.is_dir():
            noun = "layer" if kind is Kind.LAYER else "snapshot"
            raise NotFound(f"{noun} {key!r} does not exist")
        return path

    def ensure_absent(self, key: str) -> None:
        """Raise ``Conflict`` when ``key`` names any object already."""
        found = self.find(key)
        if found is not None:
            noun = "layer" if found[0] is Kind.LAYER else "snapshot"
            raise Conflict(f"{noun} {key!r} already exists")

    def new_staging(self) -> Path:
        """A fresh, empty private directory to build an object in."""
        path = self.staging / secrets.token_hex(8)
        path.mkdir(mode=0o700)
        return path

    def commit(self, staging: Path, kind: Kind, key: str) -> Path:
        """Make ``staging`` visible as object ``key``; on ``Conflict`` the staging dir is gone."""
        (staging / KEY_FILE).write_text(key)
        target = self.path(kind, key)
        try:
            self.ensure_absent(key)
            os.rename(staging, target)
        except (Conflict, OSError) as exc:
            remove_tree(staging)
            if isinstance(exc, OSError):
                raise Conflict(f"{key!r} already exists") from None
            raise
        return target

    def discard(self, key: str) -> Path | None:
        """Move object ``key`` out of sight into staging and return where it went (or ``None``)."""
        found = self.find(key)
        if found is None:
            return None
        graveyard = self.staging / f"removing-{secrets.token_hex(8)}"
        os.rename(found[1], graveyard)
        return graveyard

    def keys(self) -> Iterator[str]:
        """The keys of every committed object."""
        for kind in Kind:
            for entry in (self.root / kind.value).iterdir():
                try:
                    yield (entry / KEY_FILE).read_text()
                except FileNotFoundError:
                    continue  # removed meanwhile


def tree_usage(root: Path | str) -> Usage:
    """Apparent size of the regular files and number of inodes below ``root`` (hard links once)."""
    seen: set[tuple[int, int]] = set()
    size = 0
    for _, _, info in walk_tree(str(root)):
        inode = (info.st_dev, info.st_ino)
        if inode in seen:
            continue
        seen.add(inode)
        if stat.S_ISREG(info.st_mode):
            size += info.st_size
    return Usage(size=size, inodes=len(seen))
