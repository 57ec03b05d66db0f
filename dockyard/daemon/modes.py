"""Who may read what the daemon keeps: the modes dockerd 20.10 gives the same things.

The data root is 0710: other local users cannot reach anything below it. What is below
follows dockerd too (container directories 0710, logs 0640, volume directories 0701, image
metadata 0700), so that with the data root opened up containers' output and records stay
root's and volumes cannot be listed. Modes are set with chmod after each mkdir, so the
process umask cannot loosen them, and again on every start, so a data root made by an earlier
version (0755 directories, 0644 logs) is tightened.

With ``userns-remap``, the directories above a container's root filesystem belong to the
group of the containers' root (dockerd's rule), so that it may search them (runc reaches the
root filesystem by its path from inside the user namespace) and nobody else may.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from dockyard.core.interfaces import IdMapping
from dockyard.daemon.containers.logs import LOG_MODE, LOG_NAME, SUPERVISOR_LOG_NAME

DATA_ROOT = 0o710
#: ``containers/`` and each ``containers/<id>/``.
CONTAINERS = 0o710
#: ``volumes/`` and each ``volumes/<name>/``: searchable (a remapped root reaches ``_data``
#: through them), not listable.
VOLUMES = 0o701
#: ``volumes/<name>/_data`` as made; after that, its mode is the containers' business.
VOLUME_DATA = 0o755
#: ``image/`` (image and layer records) and ``content/`` (blobs; 0600 files, as every file
#: ``atomic_write`` makes).
IMAGES = 0o700
#: Container logs: the supervisor's output and its own.
LOGS = LOG_MODE
#: Records holding a container's environment (secrets, often), as dockerd's config.v2.json.
PRIVATE_FILE = 0o600
#: The container's spec as the supervisor reads it.
SPEC_NAME = "spec.json"


def search_group(gid_mappings: Sequence[IdMapping] = ()) -> int:
    """The group that may search the data root and container directories: ours, or with
    remapping (``gid_mappings``) the host gid of the containers' root."""
    return gid_mappings[0].host_id if gid_mappings else os.getgid()


def make_dir(path: Path, mode: int, group: int = -1, *, exist_ok: bool = True) -> Path:
    """``mkdir -p`` (a missing ``path`` only with ``exist_ok``), then exactly ``mode``, and
    ``group`` unless it is -1."""
    path.mkdir(parents=True, exist_ok=exist_ok)
    if group != -1:
        os.chown(path, -1, group)
    os.chmod(path, mode)
    return path


def tighten_containers(root: Path, group: int) -> None:
    """Container directories, logs and specs an earlier version made readable to everyone."""
    for directory in root.iterdir():
        if not directory.is_dir() or directory.is_symlink():
            continue
        make_dir(directory, CONTAINERS, group)
        for entry in directory.iterdir():
            if not entry.is_file() or entry.is_symlink():
                continue
            if entry.name in (LOG_NAME, SUPERVISOR_LOG_NAME) or entry.name.startswith(
                f"{LOG_NAME}."
            ):
                os.chmod(entry, LOGS)
            elif entry.name == SPEC_NAME:
                os.chmod(entry, PRIVATE_FILE)


def write_private(path: Path, text: str) -> None:
    """Replace ``path``'s contents with ``text``, readable by the owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE_FILE)
    with open(fd, "w") as out:
        os.fchmod(fd, PRIVATE_FILE)
        out.write(text)
