"""Files written so that a crash at any moment leaves the old version or the new one, never a
part: a synced temporary file beside the target, renamed (or linked) into place, the directory
synced after. Its mode is set before the name appears, so nobody reads it looser than meant."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def _temporary_copy(path: Path, data: bytes, mode: int) -> str:
    """A synced temporary file beside ``path`` holding ``data`` with ``mode``; its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def sync_directory(path: Path) -> None:
    """Make the entries of directory ``path`` (a rename, a new link) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never a part."""
    temporary = _temporary_copy(path, data, mode)
    try:
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    sync_directory(path.parent)


def create_file(path: Path, data: bytes, mode: int) -> bool:
    """Create ``path`` holding ``data`` unless it exists; ``False`` if it did (another process
    generating the same file at once: both then read the one that won)."""
    temporary = _temporary_copy(path, data, mode)
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False
    finally:
        os.unlink(temporary)
    sync_directory(path.parent)
    return True
