"""The ``overlay`` storage driver: each layer unpacked once, containers as overlayfs mounts.

Layout under the state directory (see also :mod:`dockyard.linux.objectstore`)::

    layers/<id>/diff         the layer's own files; whiteouts in overlayfs form
    layers/<id>/link         the layer's short name in l/
    l/<short>                symlink to ../layers/<id>/diff, so lowerdir= stays short
    snapshots/<id>/upper     the container's writable layer
    snapshots/<id>/work      overlayfs' work dir
    snapshots/<id>/merged    only for chains too long for one mount-option page (see below)
    empty/                   the lower dir of a snapshot with no parents

``prepare`` costs the same for any image size: two ``mkdir`` and a mount-option string. The
kernel reads mount options from one page, so a chain whose ``lowerdir=`` list of absolute short
links does not fit is mounted by the driver itself at ``merged``, from a helper process whose
working directory is the state directory so the list can use relative ``l/<short>`` names
(docker's overlay2 does the same), and the snapshot is handed out as a bind mount of it.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import os
import secrets
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.errors import DriverUnavailable, InvalidParameter, NotFound
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import Mount, Usage
from dockyard.linux.layertar import (
    OVERLAY_OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    DiffWriter,
    OverlayWhiteouts,
    extract_layer,
    is_overlay_opaque,
    is_overlay_whiteout,
    remove_tree,
    walk_tree,
)
from dockyard.linux.objectstore import Kind, ObjectStore, tree_usage

LINKS_DIR = "l"
EMPTY_DIR = "empty"
#: Options that make the upper dir a plain diff: no redirects or metadata-only copy-ups,
#: whatever the module's defaults, so ``diff`` can read the upper dir as it is.
FIXED_OPTIONS = ("index=off", "redirect_dir=off", "metacopy=off")
#: The kernel copies mount options into one page, NUL included.
OPTIONS_LIMIT = os.sysconf("SC_PAGESIZE") - 1

MNT_DETACH = 2
OVERLAYFS_TYPE = "overlay"

_libc = ctypes.CDLL(None, use_errno=True)

#: Run with cwd = the state dir so lowerdir= may name relative l/<short> links.
_MOUNT_FROM_SCRIPT = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.mount(b"overlay", sys.argv[1].encode(), b"overlay", 0, sys.argv[2].encode()) != 0:
    sys.stderr.write(os.strerror(ctypes.get_errno()))
    sys.exit(1)
"""


@attrs.frozen
class OverlayConfig:
    """Options of ``[storage.overlay]``."""

    allow_device_nodes: bool = option(
        True, "create device nodes found in layers (false refuses such layers)"
    )


# --------------------------------------------------------------------------------------------
# Mount plumbing
# --------------------------------------------------------------------------------------------


def mount_overlay(target: str, options: Sequence[str]) -> None:
    """mount(2) an overlayfs at ``target``; raise ``OSError`` with the kernel's errno."""
    data = ",".join(options).encode()
    if _libc.mount(b"overlay", target.encode(), b"overlay", 0, data) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mounting overlayfs at {target}: {os.strerror(code)}")


def unmount(target: str) -> None:
    """Detach the mount at ``target``; one that is not mounted is fine."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise OSError(code, f"unmounting {target}: {os.strerror(code)}")


def _unescape_mountinfo(field: str) -> str:
    return field.encode().decode("unicode_escape").encode("latin-1").decode(errors="replace")


def mount_table() -> list[tuple[str, str]]:
    """``(mount point, filesystem type)`` of every mount this process sees, in mount order."""
    table = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields, _, tail = line.partition(" - ")
            table.append((_unescape_mountinfo(fields.split()[4]), tail.split()[0]))
    return table


def filesystem_type(path: str | Path) -> str:
    """The type of the filesystem ``path`` is on, from the deepest mount above it."""
    real = os.path.realpath(path)
    best, best_type = "", ""
    for point, fstype in mount_table():
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fstype
    return best_type


def _test_mount(work_area: str) -> None:
    """Mount and unmount a tiny overlay in ``work_area``, raising DriverUnavailable on failure."""
    base = tempfile.mkdtemp(prefix="overlay-check-", dir=work_area)
    try:
        parts = {name: os.path.join(base, name) for name in ("lower", "upper", "work", "merged")}
        for path in parts.values():
            os.mkdir(path)
        # Layers keep whiteouts and opaque dirs in the host filesystem: it must take both.
        try:
            os.mknod(os.path.join(base, "whiteout"), stat.S_IFCHR | 0o600, 0)
            os.setxattr(parts["lower"], OVERLAY_OPAQUE_XATTR, b"y")
        except OSError as exc:
            raise DriverUnavailable(
                f"{work_area} ({filesystem_type(base)}) cannot hold overlayfs whiteouts "
                f"(device nodes and trusted.* xattrs): {exc.strerror}"
            ) from None
        options = (
            *FIXED_OPTIONS,
            f"lowerdir={parts['lower']}",
            f"upperdir={parts['upper']}",
            f"workdir={parts['work']}",
        )
        try:
            mount_overlay(parts["merged"], options)
        except OSError as exc:
            fstype = filesystem_type(base)
            raise DriverUnavailable(
                f"a test overlayfs mount in {work_area} ({fstype}) failed: {exc.strerror}"
            ) from None
        unmount(parts["merged"])
    finally:
        remove_tree(base)


def check() -> None:
    """Raise DriverUnavailable unless overlayfs is known to the kernel and mountable here."""
    try:
        with open("/proc/filesystems") as filesystems:
            known = {line.split()[-1] for line in filesystems if line.strip()}
    except OSError as exc:
        raise DriverUnavailable(f"cannot read /proc/filesystems: {exc.strerror}") from None
    if OVERLAYFS_TYPE not in known:
        raise DriverUnavailable("overlayfs is not in /proc/filesystems (module not loaded?)")
    _check_work_area(tempfile.gettempdir())


#: Outcome of the test mount per directory: ``None`` for usable, else the reason it is not.
_work_area_verdicts: dict[str, str | None] = {}


def _check_work_area(directory: str) -> None:
    if directory not in _work_area_verdicts:
        try:
            _probe_work_area(directory)
        except DriverUnavailable as exc:
            _work_area_verdicts[directory] = str(exc)
        else:
            _work_area_verdicts[directory] = None
    reason = _work_area_verdicts[directory]
    if reason is not None:
        raise DriverUnavailable(reason)


def _probe_work_area(directory: str) -> None:
    if filesystem_type(directory) == OVERLAYFS_TYPE:
        raise DriverUnavailable(
            f"{directory} is itself on overlayfs, and overlayfs cannot use an overlayfs "
            "upper dir; put the data root on another filesystem or use vfs"
        )
    _test_mount(directory)


# --------------------------------------------------------------------------------------------
# The driver
# --------------------------------------------------------------------------------------------


class OverlayDriver:
    """A :class:`~dockyard.core.interfaces.StorageDriver` stacking layers with overlayfs."""

    def __init__(self, state_dir: Path, config: OverlayConfig | None = None) -> None:
        self.config = config or OverlayConfig()
        # Resolved, so mount points compare equal to what /proc/self/mountinfo shows.
        self.root = Path(os.path.realpath(state_dir))
        if any(char in str(self.root) for char in ",:\\"):
            raise InvalidParameter(
                f"overlay state directory {self.root} contains ',', ':' or '\\', "
                "which overlayfs mount options cannot carry"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        # Before anything is written: overlay on overlay fails, and so may odd filesystems.
        _check_work_area(str(self.root))
        self.store = ObjectStore(self.root)
        self.links = self.root / LINKS_DIR
        self.links.mkdir(exist_ok=True)
        self.empty = self.root / EMPTY_DIR
        self.empty.mkdir(mode=0o755, exist_ok=True)
        # A link whose layer is gone was left by a crash between its creation and the commit.
        for link in self.links.iterdir():
            if not link.exists():
                link.unlink()

    # ---------------------------------------------------------------- layers

    def _layer_dir(self, key: str) -> Path:
        return self.store.require(Kind.LAYER, key)

    def apply_layer(self, key: str, parents: Sequence[str], diff: BinaryIO) -> Usage:
        """Unpack ``diff`` once into the layer's own directory, whiteouts in overlayfs form."""
        self.store.ensure_absent(key)
        parent_roots = [self._layer_dir(parent) / "diff" for parent in parents]
        staging = self.store.new_staging()
        short = _short_name()
        link = self.links / short
        try:
            root = staging / "diff"
            root.mkdir(mode=0o755)
            if parent_roots:
                # The topmost layer's root dir is the merged root: keep it unless the tar says.
                _copy_root_attributes(parent_roots[0], root)
            extract_layer(
                diff,
                root,
                OverlayWhiteouts(parent_roots),
                allow_device_nodes=self.config.allow_device_nodes,
            )
            (staging / "link").write_text(short)
            # Created before the commit, so a crash leaves a dangling link we clean, never a
            # layer without its link.
            link.symlink_to(f"../{Kind.LAYER.value}/{self.store.object_id(key)}/diff")
            self.store.commit(staging, Kind.LAYER, key)
        except BaseException:
            remove_tree(staging)
            link.unlink(missing_ok=True)
            raise
        return tree_usage(self.store.path(Kind.LAYER, key) / "diff")

    # ---------------------------------------------------------------- snapshots

    def prepare(self, key: str, parents: Sequence[str]) -> list[Mount]:
        """Make empty upper and work dirs over ``parents``; nothing is copied."""
        self.store.ensure_absent(key)
        parent_roots = [self._layer_dir(parent) / "diff" for parent in parents]
        staging = self.store.new_staging()
        try:
            (staging / "upper").mkdir(mode=0o755)
            (staging / "work").mkdir(mode=0o700)
            if parent_roots:
                _copy_root_attributes(parent_roots[0], staging / "upper")
            self.store.commit(staging, Kind.SNAPSHOT, key)
        except BaseException:
            remove_tree(staging)
            raise
        try:
            return self.mounts(key, parents)
        except BaseException:
            self.remove(key)
            raise

    def _lower_links(self, parents: Sequence[str]) -> list[str]:
        if not parents:
            return [str(self.empty)]
        return [(self._layer_dir(parent) / "link").read_text() for parent in parents]

    def mounts(self, key: str, parents: Sequence[str]) -> list[Mount]:
        """The overlay mount of snapshot ``key`` (or, for a very long chain, a bind mount)."""
        path = self.store.require(Kind.SNAPSHOT, key)
        shorts = self._lower_links(parents)
        tail = (f"upperdir={path / 'upper'}", f"workdir={path / 'work'}")
        lowers = ":".join(str(self.links / short) for short in shorts) if parents else shorts[0]
        options = (*FIXED_OPTIONS, f"lowerdir={lowers}", *tail)
        if len(",".join(options)) <= OPTIONS_LIMIT:
            return [Mount(type="overlay", source="overlay", options=options)]
        relative = ":".join(f"{LINKS_DIR}/{short}" for short in shorts)
        options = (*FIXED_OPTIONS, f"lowerdir={relative}", *tail)
        if len(",".join(options)) > OPTIONS_LIMIT:
            raise InvalidParameter(
                f"a chain of {len(parents)} layers is too long for one overlayfs mount"
            )
        merged = path / "merged"
        merged.mkdir(exist_ok=True)
        if str(merged) not in {point for point, _ in mount_table()}:
            self._mount_from_state_dir(str(merged), options)
        return [Mount(type="bind", source=str(merged), options=("rbind", "rw"))]

    def _mount_from_state_dir(self, target: str, options: Sequence[str]) -> None:
        # chdir is process-wide and the core calls us from threads, hence a helper process.
        result = subprocess.run(
            [sys.executable, "-c", _MOUNT_FROM_SCRIPT, target, ",".join(options)],
            cwd=self.root,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise OSError(errno.EIO, f"mounting overlayfs at {target}: {result.stderr.strip()}")

    def diff(self, key: str, parents: Sequence[str], out: BinaryIO) -> None:
        """Archive the upper dir, turning overlayfs whiteouts and opaque dirs into OCI form."""
        upper = str(self.store.require(Kind.SNAPSHOT, key) / "upper")
        with DiffWriter(out, skip_xattr_prefixes=(OVERLAY_XATTR_PREFIX,)) as writer:
            if parents and _root_attributes_differ(self._layer_dir(parents[0]) / "diff", upper):
                writer.add(".", upper)
            for name, path, info in walk_tree(upper):
                if is_overlay_whiteout(info):
                    parent, _, hidden = name.rpartition("/")
                    writer.add_whiteout(parent, hidden)
                    continue
                writer.add(name, path, info)
                if stat.S_ISDIR(info.st_mode) and is_overlay_opaque(path):
                    writer.add_opaque(name)

    # ---------------------------------------------------------------- bookkeeping

    def remove(self, key: str) -> None:
        """Delete layer or snapshot ``key`` (unmounting a driver-made mount); missing is fine."""
        found = self.store.find(key)
        if found is None:
            return
        kind, path = found
        if kind is Kind.SNAPSHOT:
            unmount(str(path / "merged"))
        else:
            (self.links / (path / "link").read_text()).unlink(missing_ok=True)
        graveyard = self.store.discard(key)
        if graveyard is not None:
            remove_tree(graveyard)

    def usage(self, key: str) -> Usage:
        """What the layer's own dir, or the snapshot's upper dir, holds."""
        found = self.store.find(key)
        if found is None:
            raise NotFound(f"layer or snapshot {key!r} does not exist")
        kind, path = found
        return tree_usage(path / ("diff" if kind is Kind.LAYER else "upper"))

    def keys(self) -> Iterable[str]:
        """Every layer and snapshot key stored."""
        return list(self.store.keys())


def _short_name() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().rstrip("=")


def _copy_root_attributes(source: Path, target: Path) -> None:
    info = os.stat(source)
    os.chown(target, info.st_uid, info.st_gid)
    os.chmod(target, stat.S_IMODE(info.st_mode))


def _root_attributes_differ(lower_root: Path, upper: str) -> bool:
    lower, mine = os.stat(lower_root), os.stat(upper)
    return (lower.st_mode, lower.st_uid, lower.st_gid) != (mine.st_mode, mine.st_uid, mine.st_gid)


def build(config: OverlayConfig, context: DriverContext) -> OverlayDriver:
    """The factory the core calls with the decoded ``[storage.overlay]`` table."""
    return OverlayDriver(context.state_dir, config)


@hookimpl
def dockyard_storage_drivers() -> DriverInfo:
    """Offer ``overlay``, preferred over ``vfs`` wherever its check passes."""
    return DriverInfo(
        name="overlay",
        kind=DriverKind.STORAGE,
        factory=build,
        config_class=OverlayConfig,
        description="overlayfs: layers unpacked once, containers prepared in constant time",
        priority=20,
        check=check,
    )
