"""Idmapped mounts: a remapped container sees files owned by 0 on disk as owned by its root.

With user namespace remapping the container's root is an unprivileged host uid (say 100000),
while image layers are unpacked once, owned by host root, and shared by every container.
Rather than chowning copies of the layers (what dockerd does), each layer is shown to the
container through an *idmapped mount*: a clone of the layer directory whose ids are translated
by a user namespace carrying the container's maps, so on-disk 0 reads as host 100000 (the
container's 0), and host 100000 writes as on-disk 0. overlayfs (Linux 5.19+) stacks idmapped
layers; the snapshot's upper dir is idmapped too, so what the container writes is stored with
the container's ids and ``docker diff``, export and commit see the same files as without
remapping.

The clones are made with the new mount API (``open_tree(OPEN_TREE_CLONE)``,
``mount_setattr(MOUNT_ATTR_IDMAP)``, ``move_mount``), from the host's user namespace: only
its root may idmap a mount. Everything here runs in a private mount namespace of the caller
(the launcher's), so nothing is ever visible on the host.

Standard library and the low-level ``_linux`` module only: imported on container starts.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from typing import Any

from dockyard.linux import capabilities, mounts, syscalls

#: The staging directory's name, beside the mount target: one tmpfs holding the layer clones
#: while overlayfs is mounted from them, gone right after.
STAGING_DIR = ".idmap-staging"


def root_ids(uid_mappings: Sequence[Any], gid_mappings: Sequence[Any]) -> tuple[int, int]:
    """The host uid and gid of the container's root (its id 0) under these maps."""
    return host_id(uid_mappings, 0, "uid"), host_id(gid_mappings, 0, "gid")


def host_id(mappings: Sequence[Any], container_id: int, kind: str) -> int:
    """The host id that ``container_id`` is under ``mappings`` (a uid or gid map, ``kind``
    naming which); :class:`OSError` ``EINVAL`` when the map does not cover it."""
    for mapping in mappings:
        if mapping.container_id <= container_id < mapping.container_id + mapping.size:
            return int(mapping.host_id + container_id - mapping.container_id)
    raise OSError(
        errno.EINVAL, f"the user namespace's {kind} map does not map {kind} {container_id}"
    )


def is_inside(path: str, directory: str) -> bool:
    """Whether ``path`` is below ``directory``: the container's own files (its etc files,
    written by the core in its state directory) are remapped like its volumes."""
    return os.path.realpath(path).startswith(os.path.join(os.path.realpath(directory), ""))


def write_id_maps(pid: int, uid_mappings: Sequence[Any], gid_mappings: Sequence[Any]) -> None:
    """Write process ``pid``'s user namespace's uid_map and gid_map (each at most once)."""
    for name, mappings in (("uid_map", uid_mappings), ("gid_map", gid_mappings)):
        if not mappings:
            continue
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)
        with open(f"/proc/{pid}/{name}", "w") as id_map:
            id_map.write(text)


def user_namespace(uid_mappings: Sequence[Any], gid_mappings: Sequence[Any]) -> int:
    """An fd of a new user namespace with these maps, for ``MOUNT_ATTR_IDMAP``.

    A namespace only exists with a process in it (or an fd on it): a child enters a new one
    and waits while we write its maps and open it, then exits. The kernel keeps the mapping
    with each idmapped mount, so the fd may be closed once the clones are made.
    """
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            syscalls.unshare(syscalls.CLONE_NEWUSER)
            os.write(ready_w, b"u")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"u":
            raise OSError(errno.EPERM, "cannot create a user namespace for idmapped mounts")
        write_id_maps(pid, uid_mappings, gid_mappings)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


@contextlib.contextmanager
def filesystem_ids(uid: int, gid: int) -> Iterator[None]:
    """Act on files as host ``uid``/``gid`` (the container's root), keeping every capability.

    overlayfs does its own work in the upper and work dirs (its ``work/work`` dir, copy-ups,
    whiteouts) with the credentials of whoever mounted it, and a file created through an
    idmapped mount must be owned by an id the mount maps: host root is not mapped, so the
    mount must be made with the container root's filesystem ids. Changing the fsuid from 0
    drops the filesystem capabilities from the effective set; they are raised again (they are
    still permitted) so the mounter may still read layers of any mode. Per thread.
    """
    effective, permitted = capabilities.effective_set(), capabilities.permitted_set()
    inheritable = capabilities.inheritable_set()
    syscalls.setfsgid(gid)
    syscalls.setfsuid(uid)
    try:
        capabilities.set_capabilities(permitted, permitted, inheritable)
        yield
    finally:
        syscalls.setfsuid(0)
        syscalls.setfsgid(0)
        capabilities.set_capabilities(effective, permitted, inheritable)


def clone(
    source: str, userns_fd: int | None, read_only: bool = False, recursive: bool = False
) -> int:
    """A detached clone of ``source`` (an fd for :func:`syscalls.move_mount`).

    Idmapped with ``userns_fd``'s maps unless that is ``None`` (a plain bind, as a host
    bind mount gets: docker does not remap those either). ``recursive`` takes the mounts below
    ``source`` along, as ``rbind`` does.
    """
    fd = syscalls.open_tree_clone(source, recursive=recursive)
    try:
        attributes = syscalls.MOUNT_ATTR_RDONLY if read_only else 0
        if userns_fd is not None:
            try:
                syscalls.mount_setattr(
                    fd, attributes | syscalls.MOUNT_ATTR_IDMAP, userns_fd, recursive, what=source
                )
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                raise OSError(
                    errno.EINVAL,
                    f"cannot make an idmapped mount of {source}: its filesystem does not "
                    "support idmapped mounts (or it is itself an overlayfs mount)",
                ) from None
        elif attributes:
            syscalls.mount_setattr(fd, attributes, what=source)
    except BaseException:
        os.close(fd)
        raise
    return fd


def mount_rootfs(entries: Sequence[Any], target: str, userns_fd: int) -> None:
    """Perform a storage driver's mounts (``Mount`` records) at ``target``, idmapped.

    A ``bind`` mount (the ``vfs`` driver's directory) becomes an idmapped clone of its source;
    an ``overlay`` mount is made from idmapped clones of each lower dir and of the directory
    holding upperdir and workdir (overlayfs wants both on one mount). Call it inside
    :func:`filesystem_ids` of the container's root, in a mount namespace of the caller's own.
    """
    for entry in entries:
        flags, data = mounts.parse_mount_options(entry.options)
        if entry.type == "bind":
            fd = clone(entry.source, userns_fd, read_only=bool(flags & syscalls.MS_RDONLY))
            try:
                syscalls.move_mount(fd, target)
            finally:
                os.close(fd)
        elif entry.type == "overlay":
            _mount_overlay(data, flags, target, userns_fd)
        else:
            raise OSError(
                errno.EINVAL, f"cannot remap the ids of a {entry.type!r} root filesystem mount"
            )


def _mount_overlay(data: str, flags: int, target: str, userns_fd: int) -> None:
    options: list[str] = []
    lowers: list[str] = []
    upper = work = ""
    for word in data.split(","):
        key, _, value = word.partition("=")
        if key == "lowerdir":
            lowers = value.split(":")
        elif key == "upperdir":
            upper = value
        elif key == "workdir":
            work = value
        elif word:
            options.append(word)
    if not lowers:
        raise OSError(errno.EINVAL, "the overlay mount has no lowerdir")
    target = os.path.abspath(target)
    staging = os.path.join(os.path.dirname(target), STAGING_DIR)
    os.makedirs(staging, mode=0o700, exist_ok=True)
    syscalls.mount("tmpfs", staging, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV, "mode=700")
    try:
        # The clones are attached by short names in the staging dir, and overlayfs is given
        # them relative to it: any number of layers fits the one page of mount options.
        names = []
        for index, lower in enumerate(lowers):
            names.append(_attach(lower, staging, f"l{index}", userns_fd))
        options.append("lowerdir=" + ":".join(names))
        if upper or work:
            if not (upper and work):
                raise OSError(errno.EINVAL, "the overlay mount needs both upperdir and workdir")
            common = os.path.commonpath([upper, work])
            held = _attach(common, staging, "u", userns_fd)
            options.append(f"upperdir={os.path.join(held, os.path.relpath(upper, common))}")
            options.append(f"workdir={os.path.join(held, os.path.relpath(work, common))}")
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(staging)
            syscalls.mount("overlay", target, "overlay", flags, ",".join(options))
        finally:
            os.fchdir(cwd)
            os.close(cwd)
    finally:
        # overlayfs holds private clones of its layers: the staging ones can go at once.
        syscalls.umount(staging, syscalls.MNT_DETACH)
        os.rmdir(staging)


def _attach(source: str, staging: str, name: str, userns_fd: int) -> str:
    point = os.path.join(staging, name)
    os.mkdir(point, 0o700)
    fd = clone(source, userns_fd)
    try:
        syscalls.move_mount(fd, point)
    finally:
        os.close(fd)
    return name
