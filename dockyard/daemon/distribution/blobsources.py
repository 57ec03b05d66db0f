"""Where the daemon has seen a layer in registries: which compressed blob stands for a layer
(its diff id), and in which repositories of which registry that blob lives.

A push asks it so that a layer the registry already holds is not compressed and sent again:
in the target repository it "already exists", in another repository of the same registry it is
mounted from there. A push (and a pull, when it records what it fetched) adds to it. The record
is a hint, never trusted: every use is checked against the registry first.

One JSON file, ``<data-root>/distribution/blob-sources.json``, rewritten atomically.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import attrs

from dockyard.daemon import modes
from dockyard.daemon.images.content import atomic_write

#: Sources kept per layer: the newest win (a layer pushed to many repositories need not
#: remember them all to be mounted from one).
MAX_SOURCES = 8


@attrs.frozen
class BlobSource:
    """The compressed blob ``digest`` (``media_type``, ``size`` bytes) of a layer, seen in
    ``repository`` (a path, ``x/busybox``) of ``registry`` (``host:port``)."""

    digest: str
    media_type: str
    size: int
    registry: str
    repository: str


class BlobSources:
    """The record; thread-safe."""

    def __init__(self, root: Path) -> None:
        self._path = modes.make_dir(root, modes.IMAGES) / "blob-sources.json"
        self._lock = threading.Lock()
        self._sources: dict[str, list[BlobSource]] = {}
        if self._path.exists():
            try:
                raw = json.loads(self._path.read_text())
                self._sources = {
                    diff_id: [BlobSource(**entry) for entry in entries]
                    for diff_id, entries in raw.items()
                }
            except (ValueError, TypeError):
                self._sources = {}  # a hint only: a damaged record is forgotten, not fatal

    def of(self, diff_id: str, registry: str) -> list[BlobSource]:
        """The sources of layer ``diff_id`` in ``registry``, newest first."""
        with self._lock:
            return [s for s in self._sources.get(diff_id, []) if s.registry == registry]

    def add(self, diff_id: str, source: BlobSource) -> None:
        with self._lock:
            entries = [s for s in self._sources.get(diff_id, []) if s != source]
            self._sources[diff_id] = [source, *entries][:MAX_SOURCES]
            data = {k: [attrs.asdict(s) for s in v] for k, v in self._sources.items()}
            atomic_write(self._path, json.dumps(data, indent=1, sort_keys=True).encode())
