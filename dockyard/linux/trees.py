"""Copying and comparing directory trees with every piece of metadata, for the vfs driver.

Both work on trees the driver owns and never follow a symlink out of them. They walk with
explicit stacks, not recursion: a container may nest directories deeper than Python's stack.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

import attrs

from dockyard.linux.layertar import DiffWriter, read_xattrs


def copy_tree(source: str, target: str) -> None:
    """Copy directory ``source`` to the new path ``target`` with contents and metadata.

    Kept: file types (devices and FIFOs included), hard links within the tree, ownership,
    modes with setuid/setgid/sticky, xattrs (``trusted.*`` too) and nanosecond times.
    """
    _copy_entries([(source, target, os.lstat(source))])


def copy_contents(source: str, target: str) -> None:
    """Copy what directory ``source`` holds into the existing directory ``target``, with the
    metadata :func:`copy_tree` keeps, and give ``target`` the owner, mode, xattrs and times
    of ``source`` (docker's copy of an image's files into a new volume)."""
    with os.scandir(source) as entries:
        _copy_entries(
            [
                (entry.path, os.path.join(target, entry.name), entry.stat(follow_symlinks=False))
                for entry in entries
            ]
        )
    info = os.lstat(source)
    _copy_metadata(source, target, info)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _copy_entries(pending: list[tuple[str, str, os.stat_result]]) -> None:
    """Copy each (source, new target path, the source's lstat) with what is below it."""
    first_paths: dict[tuple[int, int], str] = {}
    directories: list[tuple[str, str, os.stat_result]] = []
    while pending:
        source_path, target_path, info = pending.pop()
        if not stat.S_ISDIR(info.st_mode):
            _copy_non_directory(source_path, target_path, info, first_paths)
            continue
        os.mkdir(target_path, 0o700)
        directories.append((source_path, target_path, info))
        with os.scandir(source_path) as entries:
            for entry in entries:
                child = os.path.join(target_path, entry.name)
                pending.append((entry.path, child, entry.stat(follow_symlinks=False)))
    # Directories last, children before parents: writing inside one moves its mtime.
    for source_path, target_path, info in reversed(directories):
        _copy_metadata(source_path, target_path, info)
        os.utime(target_path, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _copy_non_directory(
    source: str, target: str, info: os.stat_result, first_paths: dict[tuple[int, int], str]
) -> None:
    mode = info.st_mode
    if stat.S_ISREG(mode):
        if info.st_nlink > 1:
            first = first_paths.setdefault((info.st_dev, info.st_ino), target)
            if first != target:
                os.link(first, target, follow_symlinks=False)
                return
        _copy_file_data(source, target)
    elif stat.S_ISLNK(mode):
        os.symlink(os.readlink(source), target)
    else:
        os.mknod(target, mode, info.st_rdev)
    _copy_metadata(source, target, info)
    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def _copy_file_data(source: str, target: str) -> None:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    source_fd = os.open(source, flags)
    try:
        target_fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(source_fd).st_size
            copied = 0
            while copied < size:
                # copy_file_range stays in the kernel (and reflinks where the filesystem can).
                try:
                    count = os.copy_file_range(source_fd, target_fd, min(size - copied, 1 << 30))
                except OSError as exc:
                    # Kernels before 5.19 copy within one filesystem only (an image's file
                    # into a volume crosses from overlayfs).
                    if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    count = os.sendfile(target_fd, source_fd, None, min(size - copied, 1 << 30))
                if count == 0:
                    break
                copied += count
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)


def _copy_metadata(source: str, target: str, info: os.stat_result) -> None:
    os.chown(target, info.st_uid, info.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        # After chown, which clears setuid/setgid.
        os.chmod(target, stat.S_IMODE(info.st_mode))
    for key, value in read_xattrs(source).items():
        try:
            os.setxattr(target, key, value, follow_symlinks=False)
        except OSError as exc:
            # user.* xattrs are not allowed on symlinks and devices; there were none to copy.
            if exc.errno not in (errno.EPERM, errno.ENOTSUP):
                raise


# --------------------------------------------------------------------------------------------
# Comparing
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Change:
    """One entry of a diff: a path to archive, a whiteout, or an opaque marker."""

    kind: str  # "add", "whiteout" or "opaque"
    path: str = ""
    info: os.stat_result | None = None


def compare_trees(new_root: str, old_root: str | None, touched_since_ns: int) -> list[Change]:
    """What turns tree ``old_root`` (``None``: empty) into ``new_root``, parents first.

    A file counts as changed when its type, mode, owner, size, mtime, xattrs, link target or
    device differ; when all of those match but its ctime is at or after ``touched_since_ns``
    (the kernel moves ctime on every write, and user space cannot set it), the contents are
    compared too. A directory that lost every one of its old entries gets an opaque marker
    instead of one whiteout each. Directories holding changes are listed as well, so that
    stacking drivers rebuild their metadata, and all names of a changed hard-linked file are
    listed so the link survives.
    """
    changes: dict[tuple[str, ...], Change] = {}
    links: dict[tuple[int, int], list[tuple[str, ...]]] = {}
    new_info = os.lstat(new_root)
    if old_root is not None and _differs(new_root, old_root, new_info, os.lstat(old_root), 0):
        changes[()] = Change("add", new_root, new_info)
    pending: list[tuple[tuple[str, ...], str, str | None]] = [((), new_root, old_root)]
    while pending:
        _compare_dir(*pending.pop(), changes, links, touched_since_ns, pending)
    for change in list(changes.values()):
        info = change.info
        if change.kind == "add" and info is not None and stat.S_ISREG(info.st_mode):
            for sibling in links.get((info.st_dev, info.st_ino), ()):
                changes.setdefault(sibling, Change("add", _join(new_root, sibling)))
    for parts in list(changes):
        # Deepest first, stopping at the first ancestor already listed: its own are too.
        for depth in range(len(parts) - 1, 0, -1):
            ancestor = parts[:depth]
            if ancestor in changes:
                break
            changes[ancestor] = Change("add", _join(new_root, ancestor))
    return [changes[parts] for parts in sorted(changes)]


def _join(root: str, parts: tuple[str, ...]) -> str:
    return os.path.join(root, *parts) if parts else root


def _scan(path: str | None) -> dict[str, os.stat_result]:
    if path is None:
        return {}
    with os.scandir(path) as entries:
        return {entry.name: entry.stat(follow_symlinks=False) for entry in entries}


def _compare_dir(
    parts: tuple[str, ...],
    new_dir: str,
    old_dir: str | None,
    changes: dict[tuple[str, ...], Change],
    links: dict[tuple[int, int], list[tuple[str, ...]]],
    touched_since_ns: int,
    pending: list[tuple[tuple[str, ...], str, str | None]],
) -> None:
    """Compare one directory level; subdirectories go onto ``pending``."""
    new_entries = _scan(new_dir)
    old_entries = _scan(old_dir)
    deleted = old_entries.keys() - new_entries.keys()
    if deleted and len(deleted) == len(old_entries):
        changes[(*parts, ".wh..wh..opq")] = Change("opaque", new_dir)
        old_entries, old_dir = {}, None
    else:
        for name in deleted:
            changes[(*parts, ".wh." + name)] = Change("whiteout", os.path.join(new_dir, name))
    for name, info in new_entries.items():
        child = (*parts, name)
        new_path = os.path.join(new_dir, name)
        old_info = old_entries.get(name)
        old_path = os.path.join(old_dir, name) if old_dir is not None else None
        if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            links.setdefault((info.st_dev, info.st_ino), []).append(child)
        if (
            old_info is None
            or old_path is None
            or _differs(new_path, old_path, info, old_info, touched_since_ns)
        ):
            changes[child] = Change("add", new_path, info)
        if stat.S_ISDIR(info.st_mode):
            old_child = (
                old_path if old_info is not None and stat.S_ISDIR(old_info.st_mode) else None
            )
            pending.append((child, new_path, old_child))


def _differs(
    new_path: str,
    old_path: str,
    new: os.stat_result,
    old: os.stat_result,
    touched_since_ns: int,
) -> bool:
    if (new.st_mode, new.st_uid, new.st_gid) != (old.st_mode, old.st_uid, old.st_gid):
        return True
    if new.st_mtime_ns != old.st_mtime_ns:
        return True
    mode = new.st_mode
    if stat.S_ISLNK(mode) and os.readlink(new_path) != os.readlink(old_path):
        return True
    if (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)) and new.st_rdev != old.st_rdev:
        return True
    if stat.S_ISREG(mode) and new.st_size != old.st_size:
        return True
    if read_xattrs(new_path) != read_xattrs(old_path):
        return True
    if stat.S_ISREG(mode) and new.st_ctime_ns >= touched_since_ns:
        return not _same_contents(new_path, old_path)
    return False


def _same_contents(first: str, second: str) -> bool:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(first, flags), "rb") as a, open(os.open(second, flags), "rb") as b:
        while True:
            chunk_a, chunk_b = a.read(1 << 20), b.read(1 << 20)
            if chunk_a != chunk_b:
                return False
            if not chunk_a:
                return True


def write_changes(changes: list[Change], new_root: str, writer: DiffWriter) -> None:
    """Archive ``changes`` (from :func:`compare_trees` over ``new_root``) with ``writer``."""
    for change in changes:
        relative = os.path.relpath(change.path, new_root)
        if change.kind == "whiteout":
            parent, name = os.path.split(relative)
            writer.add_whiteout(parent, name)
        elif change.kind == "opaque":
            writer.add_opaque("" if relative == "." else relative)
        else:
            writer.add(relative, change.path, change.info)


def iter_added_files(changes: list[Change]) -> Iterator[os.stat_result]:
    """The stat of every distinct inode the changes add."""
    seen: set[tuple[int, int]] = set()
    for change in changes:
        if change.kind != "add":
            continue
        info = change.info if change.info is not None else os.lstat(change.path)
        inode = (info.st_dev, info.st_ino)
        if inode not in seen:
            seen.add(inode)
            yield info
