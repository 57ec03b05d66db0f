"""Layer tars: safe, streaming extraction of an OCI layer into a directory, and writing diffs.

Every storage driver unpacks layers through :func:`extract_layer` so that the rules against
hostile archives live in one place:

* Entry names are cleaned like docker does (a leading ``/`` or ``./`` is dropped) and any ``..``
  component is refused, so no name can leave the layer directory.
* Parent directories are opened one component at a time relative to the layer root with
  ``O_NOFOLLOW``: a symlink met on the way (one the archive made earlier, or one already in the
  directory) is refused instead of followed, so nothing is ever written *through* a symlink.
* Symlinks whose target, read relative to the link's own directory, climbs above the root, and
  hard links naming anything outside the root, are refused. Absolute symlink targets are fine:
  the container resolves them inside its own root.
* Device nodes can be refused (``allow_device_nodes``); sizes, entry counts, header sizes and
  name lengths are bounded by :class:`ExtractLimits`, checked before the bytes are read.
* A later entry for the same path replaces the earlier one (as in docker), except that a
  directory over a directory only updates its metadata.

Whiteouts (``.wh.NAME``, ``.wh..wh..opq``) are handed to a :class:`WhiteoutHandler`: drivers
that keep full copies (vfs) apply them as deletions, drivers that stack layers (overlay) store
them in their own form. On any error the target directory is removed entirely, and the error is
an :class:`~dockyard.core.errors.InvalidParameter` naming the entry.

:func:`extract_archive` applies the same rules to a tar copied into a directory that already
holds files (a container's root, a build context): no whiteouts, owners given by the caller,
docker's ``noOverwriteDirNonDir``, and nothing deleted on error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import attrs

from dockyard.core.errors import InvalidParameter

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
#: Names starting like this are aufs bookkeeping (``.wh..wh.plnk``), never real files.
WHITEOUT_META_PREFIX = ".wh..wh."
XATTR_PAX_PREFIX = "SCHILY.xattr."

OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
#: overlayfs' own bookkeeping xattrs; they describe the upper dir and never belong in a layer.
OVERLAY_XATTR_PREFIX = "trusted.overlay."

_CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@attrs.frozen
class ExtractLimits:
    """Bounds on what one layer may contain; anything beyond is refused before it is read."""

    max_entries: int = 2_000_000
    max_file_size: int = 64 << 30
    max_total_size: int = 1 << 40
    #: PAX extended headers and GNU long names are read into memory, so they are kept small.
    max_header_size: int = 1 << 20
    max_path_length: int = 4096


@attrs.frozen
class ExtractStats:
    """What an extraction wrote: entries applied (whiteouts included) and regular-file bytes."""

    entries: int
    file_bytes: int


#: What a layer wrote so far: directory (as path components) -> names written in it, whether
#: by an entry of their own or as the implied parent of one.
WrittenNames = Mapping[tuple[str, ...], set[str]]


class WhiteoutHandler(Protocol):
    """What to do with a layer's whiteouts: :class:`DeleteWhiteouts`, :class:`OverlayWhiteouts`.

    ``layer_fd`` is the root of the layer being written; directories are given both as an open
    fd inside it and as path components below it. ``written`` tells what this same layer wrote
    before the marker: that survives an opaque marker.
    """

    def whiteout(
        self,
        layer_fd: int,
        parent_fd: int,
        parent: tuple[str, ...],
        name: str,
        entry: tarfile.TarInfo,
    ) -> None:
        """Hide ``name`` of the lower layers in directory ``parent``."""
        ...

    def opaque(
        self, layer_fd: int, dir_fd: int, directory: tuple[str, ...], written: WrittenNames
    ) -> None:
        """Hide everything the lower layers have below ``directory``."""
        ...


class DeleteWhiteouts:
    """Apply whiteouts as deletions: the layer directory already holds a copy of its parents."""

    def whiteout(
        self,
        layer_fd: int,
        parent_fd: int,
        parent: tuple[str, ...],
        name: str,
        entry: tarfile.TarInfo,
    ) -> None:
        remove_entry(parent_fd, name)

    def opaque(
        self, layer_fd: int, dir_fd: int, directory: tuple[str, ...], written: WrittenNames
    ) -> None:
        # The whole subtree of the parents goes, except what this layer wrote: a kept
        # directory is pruned too, as overlayfs would hide the lower one entirely.
        pending = [(os.dup(dir_fd), directory)]
        while pending:
            fd, parts = pending.pop()
            try:
                kept = written.get(parts, set())
                for name in os.listdir(fd):
                    if name not in kept:
                        remove_entry(fd, name)
                        continue
                    try:
                        child = os.open(name, _DIR_FLAGS, dir_fd=fd)
                    except OSError:
                        continue  # not a directory: nothing below to prune
                    pending.append((child, (*parts, name)))
            finally:
                os.close(fd)


class OverlayWhiteouts:
    """Store whiteouts in overlayfs form: 0/0 character devices and ``trusted.overlay.opaque``.

    ``lower_roots`` are the directories of the layers below, nearest first. A whiteout is only
    stored where it hides something visible in those layers: overlayfs lists a whiteout as a
    name that cannot be opened when its directory is not merged with a lower one.
    """

    def __init__(self, lower_roots: Sequence[str | Path] = ()) -> None:
        self.lower_roots = [str(root) for root in lower_roots]

    def whiteout(
        self,
        layer_fd: int,
        parent_fd: int,
        parent: tuple[str, ...],
        name: str,
        entry: tarfile.TarInfo,
    ) -> None:
        remove_entry(parent_fd, name)
        if _under_opaque_dir(layer_fd, parent):
            return
        if not visible_in_layers(self.lower_roots, (*parent, name)):
            return
        os.mknod(name, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=parent_fd)
        os.chown(name, entry.uid, entry.gid, dir_fd=parent_fd, follow_symlinks=False)

    def opaque(
        self, layer_fd: int, dir_fd: int, directory: tuple[str, ...], written: WrittenNames
    ) -> None:
        os.setxattr(dir_fd, OVERLAY_OPAQUE_XATTR, b"y")
        # Whiteouts this layer stored below here earlier have nothing left to hide.
        pending = [os.dup(dir_fd)]
        while pending:
            fd = pending.pop()
            try:
                for name in os.listdir(fd):
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if is_overlay_whiteout(info):
                        os.unlink(name, dir_fd=fd)
                    elif stat.S_ISDIR(info.st_mode):
                        pending.append(os.open(name, _DIR_FLAGS, dir_fd=fd))
            finally:
                os.close(fd)


def _under_opaque_dir(layer_fd: int, directory: tuple[str, ...]) -> bool:
    """Whether ``directory`` or one of its ancestors is opaque in the layer at ``layer_fd``."""
    fd = os.dup(layer_fd)
    try:
        for part in directory:
            next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = next_fd
            if is_overlay_opaque(fd):
                return True
        return False
    finally:
        os.close(fd)


def is_overlay_whiteout(info: os.stat_result) -> bool:
    """Whether ``info`` is an overlayfs whiteout (a 0/0 character device)."""
    return stat.S_ISCHR(info.st_mode) and info.st_rdev == 0


def is_overlay_opaque(path: str | int) -> bool:
    """Whether directory ``path`` (an fd, or a path not followed) is an opaque overlay dir."""
    try:
        value = os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=isinstance(path, int))
    except OSError:
        return False
    return value == b"y"


def visible_in_layers(layer_roots: Sequence[str], parts: Sequence[str]) -> bool:
    """Whether path ``parts`` exists in the overlayfs merge of ``layer_roots`` (top first).

    Looks up each component as overlayfs does: the topmost layer having it decides, a
    whiteout hides it, a non-directory or an opaque directory stops the search downwards.
    Symlinks are never followed.
    """
    candidates: list[int] = []
    for root in layer_roots:
        try:
            candidates.append(os.open(root, _DIR_FLAGS))
        except FileNotFoundError:
            continue
    try:
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            below: list[int] = []
            for fd in candidates:
                try:
                    info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if is_overlay_whiteout(info) or last or not stat.S_ISDIR(info.st_mode):
                    if last and not is_overlay_whiteout(info):
                        for opened in below:
                            os.close(opened)
                        return True
                    break
                below.append(os.open(part, _DIR_FLAGS, dir_fd=fd))
                if is_overlay_opaque(below[-1]):
                    break
            for fd in candidates:
                os.close(fd)
            candidates = below
            if not candidates:
                return False
        return bool(candidates)
    finally:
        for fd in candidates:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# Small fd-relative helpers (public: the drivers use them for their own trees)
# --------------------------------------------------------------------------------------------


def remove_entry(parent_fd: int, name: str) -> None:
    """Delete ``name`` in directory ``parent_fd`` whatever it is, never following a symlink."""
    try:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        try:
            # rmtree with dir_fd works on fds throughout: a symlink inside can't redirect it.
            shutil.rmtree(name, dir_fd=parent_fd)
        except RecursionError:
            # Nested deeper than Python's stack; our own fd names the directory for rm(1).
            remove_tree(f"/proc/{os.getpid()}/fd/{parent_fd}/{name}")
    else:
        os.unlink(name, dir_fd=parent_fd)


def proc_fd_path(dir_fd: int, name: str) -> str:
    """A path naming ``name`` in ``dir_fd``, for calls that take no ``dir_fd`` (``lsetxattr``)."""
    return f"/proc/self/fd/{dir_fd}/{name}"


def read_xattrs(path: str | int) -> dict[str, bytes]:
    """Every extended attribute of ``path`` (an fd, or a path whose last component is not
    followed); ``{}`` where the filesystem has none."""
    follow = isinstance(path, int)
    try:
        names = os.listxattr(path, follow_symlinks=follow)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
            return {}
        raise
    values = {}
    for name in names:
        try:
            values[name] = os.getxattr(path, name, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # removed meanwhile
                raise
    return values


def remove_tree(path: str | Path) -> None:
    """Delete ``path`` and everything below it, quietly when it does not exist."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        os.unlink(path)
    except RecursionError:
        # shutil.rmtree recurses per level; a container can nest directories deeper than
        # Python's stack. rm(1) walks iteratively and never crosses into another filesystem.
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=True)
        if os.path.lexists(path):
            raise OSError(errno.ENOTEMPTY, f"cannot remove {path}") from None


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def clean_entry_name(name: str, noun: str = "layer") -> list[str]:
    """The components of archive member ``name`` below the root; raise on ``..`` or NUL.

    A leading ``/`` and ``.`` components are dropped, as docker does; an empty list is the root.
    ``noun`` names the archive in messages ("layer", "archive").
    """
    if "\x00" in name:
        raise InvalidParameter(f"{noun} entry {name!r}: the name contains a NUL byte")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise InvalidParameter(f"{noun} entry {name!r}: '..' components are not allowed")
    return parts


def _mtime_ns(entry: tarfile.TarInfo, key: str = "mtime") -> int:
    """A PAX time field to the nanosecond (tarfile's float would round it), else the header's."""
    text = entry.pax_headers.get(key)
    if text is not None:
        try:
            return int(Decimal(text).scaleb(9).to_integral_value())
        except InvalidOperation:
            pass
    if key != "mtime":
        return _mtime_ns(entry)
    return int(entry.mtime) * 1_000_000_000


def _xattrs_of(entry: tarfile.TarInfo) -> dict[str, bytes]:
    """The xattrs an entry asks for, less overlayfs' own: a layer setting those could forge
    opaque dirs or redirects in a stacked driver, and no honest layer carries them."""
    xattrs = {}
    for key, value in entry.pax_headers.items():
        if key.startswith(XATTR_PAX_PREFIX):
            name = key[len(XATTR_PAX_PREFIX) :]
            if not name.startswith(OVERLAY_XATTR_PREFIX):
                xattrs[name] = value.encode("utf-8", "surrogateescape")
    return xattrs


def _bounded_tarinfo(limits: ExtractLimits, noun: str = "layer") -> type[tarfile.TarInfo]:
    """A TarInfo class that refuses oversized PAX / GNU long-name headers before reading them
    (tarfile reads those whole into memory)."""

    class BoundedTarInfo(tarfile.TarInfo):
        def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
            if (
                self.type in (*tarfile.GNU_TYPES, tarfile.XHDTYPE, tarfile.XGLTYPE)
                and self.type != tarfile.GNUTYPE_SPARSE
                and self.size > limits.max_header_size
            ):
                raise InvalidParameter(
                    f"{noun} has an extended header of {self.size} bytes; "
                    f"at most {limits.max_header_size} are allowed"
                )
            return super()._proc_member(tarfile_)  # type: ignore[misc]

    return BoundedTarInfo


def entry_owner(entry: tarfile.TarInfo) -> tuple[int, int]:
    """The uid and gid an entry asks for: who owns what a layer writes."""
    return entry.uid, entry.gid


@attrs.define
class _Extractor:
    """Applies archive entries below ``root_fd``, one at a time, never leaving it."""

    root_fd: int
    #: ``None``: whiteout names are ordinary files (an archive copied into a container).
    whiteouts: WhiteoutHandler | None
    allow_device_nodes: bool
    limits: ExtractLimits
    #: The uid and gid to give what an entry creates (a remapped or overridden owner).
    owner: Callable[[tarfile.TarInfo], tuple[int, int]] = entry_owner
    #: Directories the archive implies but does not hold are created owned by these.
    implied_owner: tuple[int, int] = (0, 0)
    #: docker's ``noOverwriteDirNonDir``: a directory never replaces a non-directory, nor the
    #: reverse; the entry is refused instead.
    no_overwrite_dir_non_dir: bool = False
    #: What the archive is called in messages.
    noun: str = "layer"
    #: Refuse relative symlink targets climbing above the root (docker's layer rule). Into a
    #: container, docker resolves them against the container's root instead, so any target
    #: is kept: nothing here ever follows a symlink.
    check_symlink_targets: bool = True
    #: The name of the entry being applied, for errors that carry no file name.
    current: str = ""
    #: Names this layer wrote, per directory (tuple of components), for opaque markers.
    written: dict[tuple[str, ...], set[str]] = attrs.field(factory=dict)
    #: Directory times are set last, once nothing more is written inside them.
    dir_times: dict[tuple[str, ...], tuple[int, int]] = attrs.field(factory=dict)
    cached_parent: tuple[tuple[str, ...], int] | None = None
    entries: int = 0
    file_bytes: int = 0
    #: The archive's own file, when it is one: file contents are copied from it by the kernel
    #: (``copy_file_range``) rather than read through tarfile.
    source_fd: int | None = None
    #: For a file still being written (an upload extracted as it arrives): waits until its
    #: first N bytes are there.
    source_ready: Callable[[int], None] | None = None

    def close(self) -> None:
        self._drop_cache()

    def _drop_cache(self) -> None:
        if self.cached_parent is not None:
            os.close(self.cached_parent[1])
            self.cached_parent = None

    def _mark_written(self, parts: list[str]) -> None:
        # Deepest first, stopping at the first ancestor already marked: parents usually are.
        for depth in range(len(parts) - 1, -1, -1):
            names = self.written.setdefault(tuple(parts[:depth]), set())
            if parts[depth] in names:
                break
            names.add(parts[depth])

    def open_dir(self, parts: list[str], create: bool, what: str) -> int:
        """An fd of directory ``parts`` below the root, walked without following any symlink.

        The fd is cached (the next entry usually shares it) and must not be closed by callers.
        """
        key = tuple(parts)
        start_fd, start_depth = self.root_fd, 0
        if self.cached_parent is not None:
            cached_key, cached_fd = self.cached_parent
            if cached_key == key:
                return cached_fd
            # Entries come parents first, so the next directory is often below the last one:
            # walk on from there instead of from the root (deep trees would cost O(depth^2)).
            if key[: len(cached_key)] == cached_key:
                start_fd, start_depth = cached_fd, len(cached_key)
        fd = self.walk_dir(parts, create, what, start_fd, start_depth)
        # Removals only ever happen inside the cached directory, never to the directory
        # itself, so the cached fd always names the path it was opened for.
        self._drop_cache()
        self.cached_parent = (key, fd)
        return fd

    def walk_dir(
        self,
        parts: list[str],
        create: bool,
        what: str,
        start_fd: int | None = None,
        start_depth: int = 0,
    ) -> int:
        """Like :meth:`open_dir`, but uncached: the caller owns and closes the fd.

        ``start_fd`` is an open directory standing for ``parts[:start_depth]``.
        """
        fd = os.dup(self.root_fd if start_fd is None else start_fd)
        try:
            for depth in range(start_depth, len(parts)):
                part = parts[depth]
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        missing = "/".join(parts[: depth + 1])
                        raise InvalidParameter(
                            f"{self.noun} entry {what!r}: {missing!r} is not in the {self.noun}"
                        ) from None
                    # Implied parents get docker's default mode; a later entry may set theirs.
                    os.mkdir(part, 0o755, dir_fd=fd)
                    if self.implied_owner != (0, 0):
                        os.chown(part, *self.implied_owner, dir_fd=fd, follow_symlinks=False)
                    self._mark_written(parts[: depth + 1])
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    info = os.stat(part, dir_fd=fd, follow_symlinks=False)
                    where = "/".join(parts[: depth + 1])
                    if stat.S_ISLNK(info.st_mode):
                        raise InvalidParameter(
                            f"{self.noun} entry {what!r}: {where!r} is a symlink; "
                            "writing through a symlink is not allowed"
                        ) from None
                    raise InvalidParameter(
                        f"{self.noun} entry {what!r}: {where!r} is not a directory"
                    ) from None
                os.close(fd)
                fd = next_fd
        except BaseException:
            os.close(fd)
            raise
        return fd

    def apply(self, entry: tarfile.TarInfo, archive: tarfile.TarFile) -> None:
        self.current = entry.name
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise InvalidParameter(
                f"{self.noun} has more than {self.limits.max_entries} entries; refusing the rest"
            )
        if len(entry.name) > self.limits.max_path_length:
            raise InvalidParameter(
                f"{self.noun} entry name of {len(entry.name)} characters is longer than "
                f"{self.limits.max_path_length}"
            )
        parts = clean_entry_name(entry.name, self.noun)
        if entry.isreg() and entry.size > self.limits.max_file_size:
            raise InvalidParameter(
                f"{self.noun} entry {entry.name!r} claims {entry.size} bytes; "
                f"at most {self.limits.max_file_size} are allowed per file"
            )
        if not parts:
            if not entry.isdir():
                raise InvalidParameter(
                    f"{self.noun} entry {entry.name!r}: the root must be a directory"
                )
            self._set_dir_metadata(self.root_fd, (), entry)
            return
        name = parts[-1]
        if self.whiteouts is not None and name.startswith(WHITEOUT_PREFIX):
            self._apply_whiteout(self.whiteouts, parts, entry)
            return
        parent_fd = self.open_dir(parts[:-1], create=True, what=entry.name)
        if entry.isreg():
            # Most files are new: the create says whether one is in the way, without a
            # lookup first (a lookup costs as much as the create on ext4).
            self._make_file(parent_fd, name, entry, archive)
            self._mark_written(parts)
            return
        self._replace_existing(parent_fd, name, entry)
        if entry.isdir():
            self._make_dir(parent_fd, parts, entry)
        elif entry.issym():
            self._make_symlink(parent_fd, parts, entry)
        elif entry.islnk():
            self._make_hardlink(parent_fd, name, entry)
        elif entry.ischr() or entry.isblk() or entry.isfifo():
            self._make_node(parent_fd, name, entry)
        else:
            raise InvalidParameter(
                f"{self.noun} entry {entry.name!r} has unsupported tar type {entry.type!r}"
            )
        self._mark_written(parts)

    def _apply_whiteout(
        self, whiteouts: WhiteoutHandler, parts: list[str], entry: tarfile.TarInfo
    ) -> None:
        name = parts[-1]
        if name == OPAQUE_MARKER:
            dir_fd = self.open_dir(parts[:-1], create=True, what=entry.name)
            whiteouts.opaque(self.root_fd, dir_fd, tuple(parts[:-1]), self.written)
            return
        if name.startswith(WHITEOUT_META_PREFIX):
            return  # aufs bookkeeping such as .wh..wh.plnk; docker skips it too
        hidden = name[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise InvalidParameter(
                f"{self.noun} entry {entry.name!r}: a whiteout must name an entry"
            )
        parent_fd = self.open_dir(parts[:-1], create=True, what=entry.name)
        whiteouts.whiteout(self.root_fd, parent_fd, tuple(parts[:-1]), hidden, entry)
        self.written.get(tuple(parts[:-1]), set()).discard(hidden)

    def _replace_existing(self, parent_fd: int, name: str, entry: tarfile.TarInfo) -> None:
        try:
            info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if entry.isdir() and stat.S_ISDIR(info.st_mode):
            return  # a directory over a directory keeps its contents, docker-style
        if self.no_overwrite_dir_non_dir:
            if stat.S_ISDIR(info.st_mode):
                raise InvalidParameter(
                    f"cannot overwrite directory {entry.name!r} with a non-directory"
                )
            if entry.isdir():
                raise InvalidParameter(
                    f"cannot overwrite non-directory {entry.name!r} with a directory"
                )
        if entry.islnk():
            # Linking a file over itself would delete the only copy first.
            target = clean_entry_name(entry.linkname, self.noun)
            if target and self._same_inode(target, info):
                return
        remove_entry(parent_fd, name)

    def _same_inode(self, parts: list[str], info: os.stat_result) -> bool:
        try:
            fd = self.walk_dir(parts[:-1], create=False, what="")
        except (InvalidParameter, OSError):
            return False
        try:
            other = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        except OSError:
            return False
        finally:
            os.close(fd)
        return (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino)

    def _make_dir(self, parent_fd: int, parts: list[str], entry: tarfile.TarInfo) -> None:
        # An existing directory was kept by _replace_existing: only its metadata changes.
        with contextlib.suppress(FileExistsError):
            os.mkdir(parts[-1], 0o700, dir_fd=parent_fd)
        fd = os.open(parts[-1], _DIR_FLAGS, dir_fd=parent_fd)
        try:
            self._set_dir_metadata(fd, tuple(parts), entry)
        finally:
            os.close(fd)

    def _set_dir_metadata(self, fd: int, key: tuple[str, ...], entry: tarfile.TarInfo) -> None:
        os.fchown(fd, *self.owner(entry))
        os.fchmod(fd, stat.S_IMODE(entry.mode))
        _set_xattrs_fd(fd, _xattrs_of(entry), entry.name)
        self.dir_times[key] = (_mtime_ns(entry, "atime"), _mtime_ns(entry))

    def _make_file(
        self, parent_fd: int, name: str, entry: tarfile.TarInfo, archive: tarfile.TarFile
    ) -> None:
        if self.file_bytes + entry.size > self.limits.max_total_size:
            raise InvalidParameter(
                f"{self.noun} holds more than {self.limits.max_total_size} bytes of files; "
                f"refusing at {entry.name!r}"
            )
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=parent_fd)
        except FileExistsError:
            self._replace_existing(parent_fd, name, entry)
            fd = os.open(name, flags, 0o600, dir_fd=parent_fd)
        try:
            if self.source_fd is not None:
                self._copy_range(entry, fd)
            else:
                self._copy_read(entry, archive, fd)
            self.file_bytes += entry.size
            # Order matters: chown clears setuid/setgid and capabilities, so mode and xattrs
            # come after it.
            os.fchown(fd, *self.owner(entry))
            os.fchmod(fd, stat.S_IMODE(entry.mode))
            _set_xattrs_fd(fd, _xattrs_of(entry), entry.name)
            os.utime(fd, ns=(_mtime_ns(entry, "atime"), _mtime_ns(entry)))
        finally:
            os.close(fd)

    def _copy_read(self, entry: tarfile.TarInfo, archive: tarfile.TarFile, fd: int) -> None:
        source = archive.extractfile(entry)
        assert source is not None  # a regular member always has a file object
        remaining = entry.size
        while remaining:
            chunk = source.read(min(_CHUNK, remaining))
            if not chunk:
                raise InvalidParameter(f"{self.noun} entry {entry.name!r} is truncated")
            view = memoryview(chunk)
            while view:  # os.write may write less than asked
                view = view[os.write(fd, view) :]
            remaining -= len(chunk)

    def _copy_range(self, entry: tarfile.TarInfo, fd: int) -> None:
        assert self.source_fd is not None
        offset, remaining = entry.offset_data, entry.size
        if self.source_ready is not None:
            self.source_ready(offset + remaining)
        while remaining:
            try:
                copied = os.copy_file_range(self.source_fd, fd, remaining, offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                copied = self._copy_pread(fd, offset, remaining)
            if copied == 0:
                raise InvalidParameter(f"{self.noun} entry {entry.name!r} is truncated")
            offset += copied
            remaining -= copied

    def _copy_pread(self, fd: int, offset: int, length: int) -> int:
        """One chunk the slow way, where the kernel cannot copy between the two files."""
        assert self.source_fd is not None
        chunk = os.pread(self.source_fd, min(_CHUNK, length), offset)
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]
        return len(chunk)

    def _make_symlink(self, parent_fd: int, parts: list[str], entry: tarfile.TarInfo) -> None:
        target = entry.linkname
        if self.check_symlink_targets and not target.startswith("/"):
            # Lexically resolve against the link's directory, as docker does, and refuse a
            # climb above the root; absolute targets are resolved inside the container's root.
            depth = len(parts) - 1
            for part in target.split("/"):
                if part == "..":
                    depth -= 1
                    if depth < 0:
                        raise InvalidParameter(
                            f"{self.noun} entry {entry.name!r}: symlink target {target!r} "
                            f"points outside the {self.noun}"
                        )
                elif part not in ("", "."):
                    depth += 1
        if "\x00" in target or not target:
            raise InvalidParameter(f"{self.noun} entry {entry.name!r}: invalid symlink target")
        name = parts[-1]
        os.symlink(target, name, dir_fd=parent_fd)
        os.chown(name, *self.owner(entry), dir_fd=parent_fd, follow_symlinks=False)
        xattrs = _xattrs_of(entry)
        if xattrs:
            _set_xattrs_path(proc_fd_path(parent_fd, name), xattrs, entry.name)
        times = (_mtime_ns(entry, "atime"), _mtime_ns(entry))
        os.utime(name, ns=times, dir_fd=parent_fd, follow_symlinks=False)

    def _make_hardlink(self, parent_fd: int, name: str, entry: tarfile.TarInfo) -> None:
        target = clean_entry_name(entry.linkname, self.noun)
        if not target:
            raise InvalidParameter(
                f"{self.noun} entry {entry.name!r}: hard link to the {self.noun} root"
            )
        target_fd = self.walk_dir(target[:-1], create=False, what=entry.name)
        try:
            try:
                info = os.stat(target[-1], dir_fd=target_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise InvalidParameter(
                    f"{self.noun} entry {entry.name!r}: hard link target {entry.linkname!r} "
                    f"is not in the {self.noun}"
                ) from None
            if stat.S_ISDIR(info.st_mode):
                raise InvalidParameter(
                    f"{self.noun} entry {entry.name!r}: hard link to directory {entry.linkname!r}"
                )
            try:
                os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
                return  # the same inode already (see _replace_existing)
            except FileNotFoundError:
                pass
            os.link(
                target[-1], name, src_dir_fd=target_fd, dst_dir_fd=parent_fd, follow_symlinks=False
            )
        finally:
            os.close(target_fd)

    def _make_node(self, parent_fd: int, name: str, entry: tarfile.TarInfo) -> None:
        if entry.isfifo():
            kind = stat.S_IFIFO
        else:
            if not self.allow_device_nodes:
                raise InvalidParameter(
                    f"{self.noun} entry {entry.name!r} is a device node; device nodes are not "
                    "allowed by this storage driver's configuration"
                )
            kind = stat.S_IFCHR if entry.ischr() else stat.S_IFBLK
        device = os.makedev(entry.devmajor, entry.devminor)
        os.mknod(name, kind | 0o600, device, dir_fd=parent_fd)
        os.chown(name, *self.owner(entry), dir_fd=parent_fd, follow_symlinks=False)
        os.chmod(name, stat.S_IMODE(entry.mode), dir_fd=parent_fd)
        _set_xattrs_path(proc_fd_path(parent_fd, name), _xattrs_of(entry), entry.name)
        times = (_mtime_ns(entry, "atime"), _mtime_ns(entry))
        os.utime(name, ns=times, dir_fd=parent_fd, follow_symlinks=False)

    def finish(self) -> None:
        """Set directory times, now that nothing more changes inside them."""
        self._drop_cache()
        for parts, times in self.dir_times.items():
            if not parts:
                os.utime(self.root_fd, ns=times)
                continue
            try:
                fd = self.open_dir(list(parts), create=False, what="/".join(parts))
            except InvalidParameter:
                continue  # removed by a later whiteout
            os.utime(fd, ns=times)
        self._drop_cache()


def _set_xattrs_fd(fd: int, xattrs: dict[str, bytes], what: str) -> None:
    for key, value in xattrs.items():
        try:
            os.setxattr(fd, key, value)
        except OSError as exc:
            raise InvalidParameter(
                f"entry {what!r}: cannot set xattr {key!r}: {exc.strerror}"
            ) from None


def _set_xattrs_path(path: str, xattrs: dict[str, bytes], what: str) -> None:
    for key, value in xattrs.items():
        try:
            os.setxattr(path, key, value, follow_symlinks=False)
        except OSError as exc:
            raise InvalidParameter(
                f"entry {what!r}: cannot set xattr {key!r}: {exc.strerror}"
            ) from None


def _drain(stream: BinaryIO, limit: int, noun: str) -> None:
    """Read the padding after the end-of-archive blocks, so a caller hashing the stream (for the
    layer's diff id) sees every byte, as docker does."""
    left = limit
    while chunk := stream.read(_CHUNK):
        left -= len(chunk)
        if left < 0:
            raise InvalidParameter(f"{noun} has more than {limit} bytes after its last entry")


def _entries(archive: tarfile.TarFile, unpadded_end: bool) -> Iterator[tarfile.TarInfo]:
    """The archive's entries. With ``unpadded_end``, an archive that stops right after its
    last entry's data (no padding, no end-of-archive blocks) ends there: the docker CLI sends
    build contexts so, and dockerd takes them."""
    last: tarfile.TarInfo | None = None
    in_file = _file_size(archive.fileobj) is not None
    while True:
        position = None if in_file else archive.fileobj.tell()
        try:
            entry = archive.next()
        except tarfile.ReadError as exc:
            if position is None:  # the file's whole size, now that it was read to its end
                position = _file_size(archive.fileobj)
            complete = last is not None and position == last.offset_data + last.size
            if unpadded_end and complete and str(exc) == "unexpected end of data":
                return
            raise
        if entry is None:
            return
        last = entry
        yield entry


def _file_size(stream: object) -> int | None:
    """The size of ``stream`` when it is a regular file read from its start, else ``None``."""
    try:
        info = os.fstat(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _apply_archive(stream: BinaryIO, extractor: _Extractor, unpadded_end: bool = False) -> None:
    """Read the tar in ``stream`` to its end and apply every entry through ``extractor``.

    A regular file (a spooled upload) is read in place: headers through tarfile, contents
    copied by the kernel. Anything else is read once, front to back (a layer being hashed).
    """
    noun, limits = extractor.noun, extractor.limits
    seekable = _file_size(stream) is not None
    try:
        # Reads of 1 MiB rather than tarfile's 10 KiB: a large file costs far fewer calls.
        with tarfile.open(
            fileobj=stream,
            mode="r:" if seekable else "r|",
            tarinfo=_bounded_tarinfo(limits, noun),
            bufsize=1 << 20,
        ) as archive:
            extractor.source_fd = stream.fileno() if seekable else None
            extractor.source_ready = getattr(stream, "wait_for", None)
            for entry in _entries(archive, unpadded_end):
                extractor.apply(entry, archive)
        if not seekable:
            _drain(stream, limits.max_total_size, noun)
    except tarfile.TarError as exc:
        raise InvalidParameter(f"{noun} is not a valid tar archive: {exc}") from None
    except (EOFError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        if isinstance(exc, OSError) and exc.errno is not None:
            raise InvalidParameter(
                f"cannot apply {noun}: {exc.strerror} ({exc.filename or extractor.current!r})"
            ) from None
        raise InvalidParameter(f"{noun} is not a valid tar archive: {exc}") from None
    extractor.finish()


def extract_layer(
    stream: BinaryIO,
    target: str | Path,
    whiteouts: WhiteoutHandler,
    *,
    allow_device_nodes: bool = True,
    limits: ExtractLimits | None = None,
) -> ExtractStats:
    """Apply the uncompressed layer tar read from ``stream`` to directory ``target``.

    ``target`` must exist; it may already hold the parents' files (vfs) or be empty (overlay).
    The stream is read once, front to back, to its very end. Whiteouts go to ``whiteouts``.
    Any problem with the archive raises :class:`~dockyard.core.errors.InvalidParameter`; on
    every error ``target`` is deleted entirely, so callers extract into a staging directory of
    their own.
    """
    limits = limits or ExtractLimits()
    root_fd = os.open(target, _DIR_FLAGS)
    extractor = _Extractor(root_fd, whiteouts, allow_device_nodes, limits)
    try:
        _apply_archive(stream, extractor)
    except BaseException:
        extractor.close()
        os.close(root_fd)
        remove_tree(target)
        raise
    extractor.close()
    os.close(root_fd)
    return ExtractStats(entries=extractor.entries, file_bytes=extractor.file_bytes)


def extract_archive(
    stream: BinaryIO,
    directory_fd: int,
    *,
    owner: Callable[[tarfile.TarInfo], tuple[int, int]] = entry_owner,
    implied_owner: tuple[int, int] = (0, 0),
    no_overwrite_dir_non_dir: bool = False,
    allow_device_nodes: bool = True,
    limits: ExtractLimits | None = None,
    noun: str = "archive",
    unpadded_end: bool = False,
) -> ExtractStats:
    """Extract the uncompressed tar read from ``stream`` below the open directory
    ``directory_fd``, which holds files already (a container's root): the same rules against
    hostile entries as :func:`extract_layer`, but whiteout names are ordinary files and nothing
    is deleted on error: what was written before the bad entry stays, and the
    :class:`~dockyard.core.errors.InvalidParameter` names that entry. Symlinks are kept whatever
    their target (a relative one may climb above ``directory``: the container resolves it in
    its own root, as docker's copies allow). ``unpadded_end`` accepts an archive that stops
    right after its last entry's data, as the docker CLI sends a build context.

    ``owner`` gives each entry's uid and gid; directories the archive implies without holding
    them are created mode 0755, owned by ``implied_owner``. ``noun`` names the archive in
    messages.
    """
    extractor = _Extractor(
        directory_fd,
        None,
        allow_device_nodes,
        limits or ExtractLimits(),
        owner=owner,
        implied_owner=implied_owner,
        no_overwrite_dir_non_dir=no_overwrite_dir_non_dir,
        noun=noun,
        check_symlink_targets=False,
    )
    try:
        _apply_archive(stream, extractor, unpadded_end)
    finally:
        extractor.close()
    return ExtractStats(entries=extractor.entries, file_bytes=extractor.file_bytes)


# --------------------------------------------------------------------------------------------
# Writing diffs
# --------------------------------------------------------------------------------------------


class DiffWriter:
    """Writes a layer tar (PAX format) from files on disk, plus whiteouts and opaque markers.

    Entries keep ownership, full modes, nanosecond times and xattrs (``SCHILY.xattr.*``); a
    regular file seen again through another hard link becomes a link entry to the first name.
    Callers add parents before children.
    """

    def __init__(
        self,
        out: BinaryIO,
        skip_xattr_prefixes: tuple[str, ...] = (),
        id_map: Callable[[int, int], tuple[int, int]] | None = None,
        type_bits_in_mode: bool = False,
    ) -> None:
        """``id_map`` turns the (uid, gid) found on disk into the ones written (a
        user-namespaced container's files read through its idmapped root show host ids).
        ``type_bits_in_mode`` writes the file type into the mode field too (``0100644``), as
        docker's archives do and its clients show."""
        self._tar = tarfile.open(  # noqa: SIM115 - closed by close()
            fileobj=out, mode="w|", format=tarfile.PAX_FORMAT
        )
        self._inodes: dict[tuple[int, int], str] = {}
        self._skip_xattr_prefixes = skip_xattr_prefixes
        self._id_map = id_map
        self._type_bits = type_bits_in_mode

    def __enter__(self) -> DiffWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write the end-of-archive blocks."""
        self._tar.close()

    def add(
        self, name: str, path: str, info: os.stat_result | None = None, mode: int | None = None
    ) -> None:
        """Add the file at ``path`` (never followed if a symlink) as archive member ``name``;
        ``mode`` replaces its permission bits (a symlink keeps its own)."""
        if info is None:
            info = os.lstat(path)
        entry = (_TypedModeTarInfo if self._type_bits else tarfile.TarInfo)(name)
        entry.uid, entry.gid = info.st_uid, info.st_gid
        if self._id_map is not None:
            entry.uid, entry.gid = self._id_map(info.st_uid, info.st_gid)
        entry.mode = stat.S_IMODE(info.st_mode)
        if mode is not None and not stat.S_ISLNK(info.st_mode):
            entry.mode = mode
        if self._type_bits:
            entry.mode |= stat.S_IFMT(info.st_mode)
        entry.mtime = info.st_mtime_ns // 1_000_000_000
        entry.uname = entry.gname = ""
        pax = {"mtime": _ns_text(info.st_mtime_ns)}
        for key, value in read_xattrs(path).items():
            if not key.startswith(self._skip_xattr_prefixes):
                pax[XATTR_PAX_PREFIX + key] = value.decode("utf-8", "surrogateescape")
        mode = info.st_mode
        if stat.S_ISREG(mode) and info.st_nlink > 1:
            first = self._inodes.setdefault((info.st_dev, info.st_ino), name)
            if first != name:
                entry.type, entry.linkname = tarfile.LNKTYPE, first
                entry.pax_headers = pax
                self._tar.addfile(entry)
                return
        entry.pax_headers = pax
        if stat.S_ISREG(mode):
            entry.type = tarfile.REGTYPE
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as file:
                entry.size = os.fstat(file.fileno()).st_size
                self._tar.addfile(entry, _ExactReader(file, entry.size, name))
            return
        if stat.S_ISDIR(mode):
            entry.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            entry.type, entry.linkname = tarfile.SYMTYPE, os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            entry.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            entry.devmajor, entry.devminor = os.major(info.st_rdev), os.minor(info.st_rdev)
        elif stat.S_ISFIFO(mode):
            entry.type = tarfile.FIFOTYPE
        else:
            return  # sockets are not archived (docker skips them too)
        self._tar.addfile(entry)

    def add_whiteout(self, parent: str, name: str) -> None:
        """Record that ``name`` in directory ``parent`` (``""`` for the root) was deleted."""
        self._add_marker(_join(parent, WHITEOUT_PREFIX + name))

    def add_opaque(self, directory: str) -> None:
        """Record that directory ``directory`` hides everything its parents had in it."""
        self._add_marker(_join(directory, OPAQUE_MARKER))

    def _add_marker(self, name: str) -> None:
        self.add_empty_file(name)

    def add_empty_file(self, name: str, mode: int = 0o644) -> None:
        """Add an empty regular file owned by root (a marker, or a mount point's stand-in)."""
        entry = tarfile.TarInfo(name)
        entry.mode = mode
        entry.uname = entry.gname = ""
        self._tar.addfile(entry)


class _TypedModeTarInfo(tarfile.TarInfo):
    """An entry whose mode field keeps the file type bits (tarfile masks them off): its
    header block is rewritten with the full mode and a new checksum."""

    def tobuf(self, *args: Any, **kwargs: Any) -> bytes:
        block = bytearray(super().tobuf(*args, **kwargs))
        header = len(block) - tarfile.BLOCKSIZE  # the ustar header follows any PAX header
        block[header + 100 : header + 108] = b"%07o\0" % self.mode
        block[header + 148 : header + 156] = b" " * 8
        checksum = sum(block[header : header + tarfile.BLOCKSIZE])
        block[header + 148 : header + 156] = b"%06o\0 " % checksum
        return bytes(block)


class _ExactReader:
    """Hands tarfile exactly ``size`` bytes, failing clearly if the file changed meanwhile."""

    def __init__(self, file: BinaryIO, size: int, name: str) -> None:
        self._file, self._left, self._name = file, size, name

    def read(self, count: int = -1) -> bytes:
        count = self._left if count < 0 else min(count, self._left)
        data = self._file.read(count)
        if len(data) < count:
            raise InvalidParameter(f"{self._name!r} shrank while its diff was being written")
        self._left -= len(data)
        return data


def _ns_text(ns: int) -> str:
    seconds, fraction = divmod(ns, 1_000_000_000)
    return f"{seconds}.{fraction:09d}" if fraction else str(seconds)


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def walk_tree(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield ``(relative name, path, lstat)`` for everything below ``root``, parents first,
    names sorted, never following symlinks."""
    stack: list[tuple[str, str]] = [("", root)]
    while stack:
        relative, path = stack.pop()
        with os.scandir(path) as entries:
            children = sorted(entries, key=lambda e: e.name)
        subdirs = []
        for child in children:
            info = child.stat(follow_symlinks=False)
            name = _join(relative, child.name)
            yield name, child.path, info
            if stat.S_ISDIR(info.st_mode):
                subdirs.append((name, child.path))
        stack.extend(reversed(subdirs))
