"""Content-addressed blobs on disk, written atomically and verified on every write."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.core.durable import replace_file, sync_directory
from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.daemon import modes
from dockyard.distribution.reference import HEX_ID

CHUNK = 1 << 20


#: Kept for the daemon's callers: one definition, in core.
fsync_dir = sync_directory


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file."""
    replace_file(path, data, 0o600)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ContentStore:
    """``blobs/sha256/<hex>`` under ``root``; ``ingest/`` holds writes in progress."""

    def __init__(self, root: Path) -> None:
        self.root = modes.make_dir(root, modes.IMAGES)
        self.blobs = root / "blobs" / "sha256"
        self.ingest = root / "ingest"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.ingest.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        algorithm, _, hex_part = digest.partition(":")
        if algorithm != "sha256" or not HEX_ID.fullmatch(hex_part):
            raise InvalidParameter(f"invalid digest {digest!r}")
        return self.blobs / hex_part

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def write(self, data: bytes, expected: str | None = None) -> str:
        """Store ``data``; returns its digest. ``expected`` is checked before anything is kept."""
        digest = sha256_digest(data)
        if expected is not None and expected != digest:
            raise InvalidParameter(f"digest mismatch: expected {expected}, content is {digest}")
        if not self.exists(digest):
            atomic_write(self.path(digest), data)
        return digest

    def link(self, source: Path, digest: str) -> None:
        """Store the file ``source``, already verified to hold ``digest``, as a hard link:
        the caller's copy stays until it lets go of it (a pull keeps its downloads so that
        a crash before the image is recorded does not lose them)."""
        target = self.path(digest)
        if target.exists():
            return
        staged = self.ingest / f"link-{target.name}-{os.getpid()}-{id(source)}"
        staged.unlink(missing_ok=True)
        os.link(source, staged)
        os.replace(staged, target)
        fsync_dir(target.parent)

    @contextlib.contextmanager
    def writer(self) -> Iterator[IngestWriter]:
        """A streaming write; call ``commit()`` on it, or everything written is discarded."""
        fd, tmp = tempfile.mkstemp(dir=self.ingest, prefix="blob-")
        writer = IngestWriter(self, Path(tmp), os.fdopen(fd, "wb"))
        try:
            yield writer
        finally:
            writer.discard()

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def digests(self) -> list[str]:
        return [f"sha256:{p.name}" for p in self.blobs.iterdir() if HEX_ID.fullmatch(p.name)]

    def clean_ingest(self) -> int:
        """Remove writes a crash left behind; returns how many."""
        removed = 0
        for leftover in self.ingest.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed += 1
        for stray in self.blobs.glob(".tmp-*"):
            stray.unlink(missing_ok=True)
            removed += 1
        return removed


class IngestWriter:
    """Hashes as it writes; ``commit`` fsyncs and renames into place."""

    def __init__(self, store: ContentStore, tmp: Path, out: BinaryIO) -> None:
        self._store = store
        self._tmp = tmp
        self._out = out
        self._hash = hashlib.sha256()
        self.size = 0
        self._done = False

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def commit(self, expected: str | None = None) -> str:
        digest = self.digest
        if expected is not None and expected != digest:
            raise InvalidParameter(f"digest mismatch: expected {expected}, content is {digest}")
        self._out.flush()
        os.fsync(self._out.fileno())
        self._out.close()
        target = self._store.path(digest)
        if target.exists():
            self._tmp.unlink()
        else:
            os.replace(self._tmp, target)
            fsync_dir(target.parent)
        self._done = True
        return digest

    def discard(self) -> None:
        if not self._done:
            self._out.close()
            self._tmp.unlink(missing_ok=True)
            self._done = True
