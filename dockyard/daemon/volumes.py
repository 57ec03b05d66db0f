"""Named volumes (the ``local`` driver): directories under the data root that outlive containers.

As dockerd's local driver, a volume may be created with options saying what to mount at its
directory (``-o type=tmpfs -o device=tmpfs -o o=size=64m``, ``-o type=none -o o=bind -o
device=/host/dir``): the mount is made when a container using the volume starts and the first
one does, and undone when the last one stops. The store emits volume events (create, mount,
unmount, destroy) with dockerd's attributes.
"""

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

from dockyard.core.errors import Conflict, DockyardError, InvalidParameter, NotFound
from dockyard.daemon import modes
from dockyard.daemon.images.content import atomic_write
from dockyard.linux import mounts, syscalls

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")

#: The only volume driver there is.
DRIVER = "local"
#: The local driver's options (``size`` needs xfs project quotas, which this engine lacks).
_OPTIONS = ("type", "device", "o")


def check_driver(name: str, field: str = "Driver") -> None:
    """``""`` and ``local`` name the local driver; any other is refused."""
    if name not in ("", DRIVER):
        raise InvalidParameter(
            f"{field}: volume driver {name!r} is not supported (only the local driver is)"
        )


def check_options(options: dict[str, str]) -> None:
    """The local driver's options, refused as dockerd refuses them."""
    for key in sorted(options):
        if key == "size":
            raise InvalidParameter("quota size requested but no quota support")
        if key not in _OPTIONS:
            raise InvalidParameter(f'invalid option: "{key}"')
    if options and not options.get("device"):
        raise InvalidParameter('missing required option: "device"')
    if options and not options.get("type"):
        raise InvalidParameter('missing required option: "type"')


def _is_mount_point(path: Path) -> bool:
    """Whether something is mounted at ``path`` (a bind mount from the same filesystem too,
    which ``os.path.ismount`` cannot tell)."""
    wanted = os.fsencode(os.path.realpath(path))
    with open("/proc/self/mountinfo", "rb") as mountinfo:
        for line in mountinfo:
            point = line.split(b" ")[4]
            # mountinfo escapes space, tab, newline and backslash as octal.
            if re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), point) == wanted:
                return True
    return False


def _mount_options(options: dict[str, str]) -> tuple[int, str]:
    return mounts.parse_mount_options([w for w in options.get("o", "").split(",") if w])


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
    #: The local driver's options (type, device, o): what to mount at the mountpoint.
    options: dict[str, str] = attrs.field(factory=dict)

    def to_engine_api(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Driver": DRIVER,
            "Mountpoint": str(self.mountpoint),
            "CreatedAt": self.created_at,
            "Labels": self.labels or None,
            "Scope": "local",
            "Options": self.options or None,
        }


class VolumeStore:
    """``<root>/<name>/_data`` holds a volume's files, ``<root>/<name>/volume.json`` its record."""

    def __init__(
        self, root: Path, emit: Callable[[str, str, dict[str, str]], None] | None = None
    ) -> None:
        self.root = modes.make_dir(root, modes.VOLUMES)
        #: ``emit(action, volume name, attributes)``: a volume event.
        self.emit = emit or (lambda action, name, attributes: None)
        #: The containers that have each volume with options mounted (the mount goes with the
        #: last of them).
        self._mounted_for: dict[str, set[str]] = {}
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
            raw.get("options") or {},
        )

    def create(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        anonymous: bool = False,
        options: dict[str, str] | None = None,
    ) -> Volume:
        """``docker volume create``: creating an existing volume returns it (as docker does,
        with its own labels and options)."""
        if not _NAME.fullmatch(name):
            raise InvalidParameter(
                f'create {name}: "{name}" includes invalid characters for a local volume name, '
                'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed'
            )
        try:
            check_options(options or {})
        except InvalidParameter as exc:
            raise InvalidParameter(f"create {name}: {exc.message}") from None
        with self._lock:
            if self._record(name).exists():
                volume = self.get(name)
            else:
                volume = self._make(name, labels or {}, anonymous, options or {})
        # dockerd's: every create, including a container's use of an existing volume.
        self.emit("create", name, {"driver": DRIVER})
        return volume

    def _make(
        self, name: str, labels: dict[str, str], anonymous: bool, options: dict[str, str]
    ) -> Volume:
        modes.make_dir(self.root / name, modes.VOLUMES)
        data = modes.make_dir(self.root / name / "_data", modes.VOLUME_DATA)
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        volume = Volume(name, data, created, dict(labels), anonymous, dict(options))
        record = {
            "mountpoint": str(data),
            "created_at": created,
            "labels": volume.labels,
            "anonymous": anonymous,
            "options": volume.options,
        }
        atomic_write(self._record(name), json.dumps(record).encode())
        return volume

    def ensure(self, name: str, anonymous: bool = False) -> Volume:
        return self.create(name, anonymous=anonymous)

    def mount(self, name: str, container_id: str) -> None:
        """A container using volume ``name`` starts: mount what its options say, unless a
        container has it mounted already."""
        volume = self.get(name)
        if not volume.options:
            return
        with self._lock:
            users = self._mounted_for.setdefault(name, set())
            if not users and not _is_mount_point(volume.mountpoint):
                self._mount(volume)
            users.add(container_id)

    def adopt(self, name: str, container_id: str) -> None:
        """A container that kept running while the daemon was down uses volume ``name``:
        counted as a user again, so another container's exit leaves its mount alone."""
        with self._lock:
            self._mounted_for.setdefault(name, set()).add(container_id)

    def _mount(self, volume: Volume) -> None:
        flags, data = _mount_options(volume.options)
        device, kind = volume.options["device"], volume.options["type"]
        target = str(volume.mountpoint)
        try:
            if flags & syscalls.MS_BIND:
                syscalls.mount(device, target, None, flags & ~syscalls.MS_RDONLY)
                if flags & syscalls.MS_RDONLY:
                    mounts.remount_read_only(target)
            else:
                syscalls.mount(
                    device, target, None if kind == "none" else kind, flags, data or None
                )
        except OSError as exc:
            raise DockyardError(
                f"error while mounting volume '{target}': failed to mount local volume: "
                f"mount {device}:{target} ({volume.options.get('o', '')}): "
                + os.strerror(exc.errno or 0)
            ) from None

    def unmount(self, name: str, container_id: str) -> None:
        """A container using volume ``name`` stopped: unmount with the last one."""
        with self._lock:
            users = self._mounted_for.get(name, set())
            users.discard(container_id)
            if users:
                return
            self._mounted_for.pop(name, None)
            mountpoint = self.root / name / "_data"
            if _is_mount_point(mountpoint):
                mounts.unmount_all(str(mountpoint))

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
            self._mounted_for.pop(name, None)
            if _is_mount_point(volume.mountpoint):
                mounts.unmount_all(str(volume.mountpoint))
            if _is_mount_point(volume.mountpoint):  # never delete a bound host directory's files
                raise Conflict(f"remove {name}: its mount at {volume.mountpoint} is still there")
            self._record(name).unlink(missing_ok=True)
            shutil.rmtree(volume.mountpoint.parent, ignore_errors=True)
        self.emit("destroy", name, {"driver": DRIVER})

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
