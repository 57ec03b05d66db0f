"""Named volumes (the ``local`` driver): directories under the data root that outlive containers."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from dockyard.core.errors import Conflict, InvalidParameter, NotFound
from dockyard.daemon import modes
from dockyard.daemon.images.content import atomic_write

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


@attrs.frozen(kw_only=True)
class VolumeCreateRequest:
    """The body of ``POST /volumes/create``."""

    name: str = ""
    driver: str = ""
    driver_opts: dict[str, str] | None = None
    labels: dict[str, str] | None = None


@attrs.frozen
class Volume:
    name: str
    mountpoint: Path
    created_at: str
    labels: dict[str, str] = attrs.field(factory=dict)
    anonymous: bool = False

    def to_engine_api(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Driver": "local",
            "Mountpoint": str(self.mountpoint),
            "CreatedAt": self.created_at,
            "Labels": self.labels or None,
            "Scope": "local",
            "Options": None,
        }


class VolumeStore:
    """``<root>/<name>/_data`` holds a volume's files, ``<root>/<name>/volume.json`` its record."""

    def __init__(self, root: Path) -> None:
        self.root = modes.make_dir(root, modes.VOLUMES)
        for directory in self.root.iterdir():  # as an earlier version may have left them
            if directory.is_dir() and not directory.is_symlink():
                os.chmod(directory, modes.VOLUMES)
        #: Which containers use a volume; the container manager answers.
        self.in_use: Callable[[str], list[str]] = lambda name: []
        self._lock = threading.Lock()

    def _record(self, name: str) -> Path:
        return self.root / name / "volume.json"

    def get(self, name: str) -> Volume:
        try:
            raw = json.loads(self._record(name).read_text())
        except (OSError, ValueError):
            raise NotFound(f"get {name}: no such volume") from None
        return Volume(
            name,
            Path(raw["mountpoint"]),
            raw["created_at"],
            raw.get("labels") or {},
            raw.get("anonymous", False),
        )

    def create(
        self, name: str, labels: dict[str, str] | None = None, anonymous: bool = False
    ) -> Volume:
        """``docker volume create``: creating an existing volume returns it (as docker does)."""
        if not _NAME.fullmatch(name):
            raise InvalidParameter(
                f'create {name}: "{name}" includes invalid characters for a local volume name, '
                'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'
            )
        with self._lock:
            if self._record(name).exists():
                return self.get(name)
            modes.make_dir(self.root / name, modes.VOLUMES)
            data = modes.make_dir(self.root / name / "_data", modes.VOLUME_DATA)
            created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            volume = Volume(name, data, created, dict(labels or {}), anonymous)
            record = {
                "mountpoint": str(data),
                "created_at": created,
                "labels": volume.labels,
                "anonymous": anonymous,
            }
            atomic_write(self._record(name), json.dumps(record).encode())
            return volume

    def ensure(self, name: str, anonymous: bool = False) -> Volume:
        return self.create(name, anonymous=anonymous)

    def volumes(self) -> list[Volume]:
        volumes = []
        for directory in sorted(self.root.iterdir()):
            try:
                volumes.append(self.get(directory.name))
            except NotFound:
                continue
        return volumes

    def remove(self, name: str, force: bool = False) -> None:
        volume = self.get(name)
        users = self.in_use(name)
        if users and not force:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
        with self._lock:
            self._record(name).unlink(missing_ok=True)
            shutil.rmtree(volume.mountpoint.parent, ignore_errors=True)

    def prune(
        self, all_volumes: bool = False, selected: Callable[[Volume], bool] = lambda volume: True
    ) -> tuple[list[str], int]:
        """Remove unused volumes that ``selected`` accepts: anonymous ones, or every unused one
        with ``all_volumes``."""
        removed: list[str] = []
        reclaimed = 0
        for volume in self.volumes():
            if self.in_use(volume.name) or not (all_volumes or volume.anonymous):
                continue
            if not selected(volume):
                continue
            reclaimed += sum(
                p.stat().st_size
                for p in volume.mountpoint.rglob("*")
                if p.is_file() and not p.is_symlink()
            )
            self.remove(volume.name)
            removed.append(volume.name)
        return removed, reclaimed
