"""``PUT /containers/{id}/archive``: a client's tar extracted into a container's directory.

The body is spooled to disk and read through once before anything is written, so that a body
that is not a tar (or is cut short) is refused with nothing changed in the container.
Extraction itself is :func:`dockyard.linux.inroot.extract_into`'s: names and links never leave
the container's root, and nothing is written through a symlink.

Ownership, as dockerd 20.10 does it (``containerExtractToDir`` in its daemon/archive.go):
entries keep the ids the archive gives them, except with ``copyUIDGID`` for a container with
a ``User``, where everything belongs to that user (looked up in the container's own
``/etc/passwd`` and ``/etc/group``). A user-namespaced container's ids are its own: they are
mapped to host ids where the daemon writes through its idmapped root.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tarfile
from typing import BinaryIO

import attrs

from dockyard.core.errors import Forbidden, InvalidParameter, NotFound
from dockyard.daemon.containers import options
from dockyard.daemon.containers.filesystem import RootView
from dockyard.daemon.containers.model import Container
from dockyard.daemon.images.compression import Compression, detect, open_decompressed
from dockyard.linux import idmap, inroot

#: More than the longest compression magic number.
MAGIC_BYTES = 16


@attrs.frozen
class UploadOptions:
    no_overwrite_dir_non_dir: bool = False
    copy_uid_gid: bool = False


def check_is_tar(spool: BinaryIO) -> None:
    """Read every header of the (possibly compressed) tar in ``spool``; ``400`` if it is not
    one. An empty body is an empty archive. Leaves ``spool`` at its start."""
    spool.seek(0)
    if not spool.read(1):
        spool.seek(0)
        return
    spool.seek(0)
    try:
        if detect(spool.read(MAGIC_BYTES)) is Compression.NONE:
            spool.seek(0)
            # Random access: the headers are read and the file data seeked over.
            size = os.fstat(spool.fileno()).st_size
            with tarfile.open(fileobj=spool, mode="r:") as archive:
                _read_every_header(archive, size)
        else:
            spool.seek(0)
            with (
                open_decompressed(spool) as stream,
                tarfile.open(fileobj=stream, mode="r|") as archive,
            ):
                _read_every_header(archive, None)
    except (tarfile.TarError, EOFError, OSError, InvalidParameter) as exc:
        raise InvalidParameter(f"the request body is not a tar archive: {exc}") from None
    finally:
        spool.seek(0)


def _read_every_header(archive: tarfile.TarFile, size: int | None) -> None:
    """Every member's header; with ``size`` (random access, where data is seeked over
    rather than read), a last member whose data the file does not hold is an error too."""
    last = None
    for member in archive:
        last = member
    if size is not None and last is not None and last.offset_data + last.size > size:
        raise tarfile.ReadError("unexpected end of data")


def _owner(view: RootView, container: Container, wanted: UploadOptions) -> tuple[int, int] | None:
    if not (wanted.copy_uid_gid and container.config.user):
        return None
    passwd = inroot.read_text(view.path, "/etc/passwd")
    group = inroot.read_text(view.path, "/etc/group")
    user = options.parse_user(container.config.user, passwd, group)
    return user.uid, user.gid


def extract(
    view: RootView,
    container: Container,
    path: str,
    name: str,
    spool: BinaryIO,
    wanted: UploadOptions,
) -> None:
    """Extract ``spool`` (checked by :func:`check_is_tar`) under directory ``path``."""
    if container.host_config.readonly_rootfs:
        raise Forbidden("container rootfs is marked read-only")
    try:
        fd = inroot.open_in_root(view.path, path, os.O_PATH)
    except FileNotFoundError:
        raise NotFound(f"Could not find the file {path} in container {name}") from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise InvalidParameter("extraction point is not a directory")
    finally:
        os.close(fd)
    spool.seek(0)
    if not spool.read(1):
        return
    spool.seek(0)
    id_maps = None
    acting_as: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if view.ids is not None:
        id_maps = inroot.IdMaps(view.ids.uid_mappings, view.ids.gid_mappings)
        # Through an idmapped root a file can only be made by an id the mount maps: act as
        # the container's root (this worker thread only; capabilities kept).
        acting_as = idmap.filesystem_ids(
            *idmap.root_ids(view.ids.uid_mappings, view.ids.gid_mappings)
        )
    uncompressed = detect(spool.read(MAGIC_BYTES)) is Compression.NONE
    spool.seek(0)
    # An uncompressed spool is extracted in place: the kernel copies file contents from it.
    decompressed: contextlib.AbstractContextManager[BinaryIO] = (
        contextlib.nullcontext(spool) if uncompressed else open_decompressed(spool)
    )
    with acting_as, decompressed as stream:
        inroot.extract_into(
            view.path,
            path,
            stream,
            no_overwrite_dir_non_dir=wanted.no_overwrite_dir_non_dir,
            chown=_owner(view, container, wanted),
            id_maps=id_maps,
        )
