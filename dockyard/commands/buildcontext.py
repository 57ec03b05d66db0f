"""The build context ``dockyard build`` sends: a tar made on the fly, a block at a time.

The docker CLI's rules (its classic builder path), which this module follows:

* A directory context is walked with the patterns of its ``.dockerignore``
  (:mod:`dockyard.dockerignore`); the Dockerfile and ``.dockerignore`` themselves are always
  sent, whatever the patterns say, because the daemon reads them. Entries are uncompressed
  tar, owned by 0:0, names relative to the context, parents before children, in name order;
  hard links inside the context stay links.
* The Dockerfile is ``Dockerfile`` in the context (``dockerfile`` when only that exists), or
  ``-f FILE``, relative to the current directory. One outside the context (or ``-f -``, read
  from stdin) goes into the tar under ``.dockerfile.<20 hex>``, and that name is added to the
  tar's ``.dockerignore`` so that ``COPY .`` does not pick it up.
* ``-`` as the context is stdin: a tar (plain or compressed) passed on as it is, or else the
  text of a Dockerfile, sent as a tar holding only ``Dockerfile``.

Nothing is held whole in memory: :class:`ContextTar` yields a header, then the file's
content in blocks as it is read, so a context of any size costs a block of memory at a time,
and the directory is walked as the tar is made (:class:`DirectoryWalk`). Before the first
byte is sent every file is checked to be readable, as the docker CLI does, so an unreadable
file is a clear error rather than a cut-off upload.
"""

from __future__ import annotations

import os
import stat
import sys
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.commands.common import UsageError

DEFAULT_DOCKERFILE = "Dockerfile"
DOCKERIGNORE = ".dockerignore"
BLOCK = tarfile.BLOCKSIZE
#: Bytes read from a file per step while the tar is sent.
READ_SIZE = 1 << 16
#: What the docker CLI reads of stdin to tell a tar from a Dockerfile.
SNIFF_SIZE = 2 * BLOCK
#: Magic numbers of the compressions a daemon accepts for a context (docker's list).
COMPRESSION_MAGIC = (b"\x1f\x8b\x08", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


class ContextError(UsageError):
    """The context or its Dockerfile cannot be sent; the message names the path."""


# ------------------------------------------------------------------------------ entries


@dataclass
class Entry:
    """One member of the context tar: a path of the context (``source``) or bytes of ours."""

    name: str
    info: tarfile.TarInfo
    source: str = ""
    content: bytes | None = None


def _tar_info(name: str, status: os.stat_result, link_target: str = "") -> tarfile.TarInfo | None:
    """The tar header of a file of the context, owned by root as the docker CLI sends it;
    ``None`` for what a tar cannot hold (a socket)."""
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(status.st_mode)
    info.mtime = int(status.st_mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    mode = status.st_mode
    if stat.S_ISREG(mode):
        info.size = status.st_size
    elif stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
        info.name = name + "/"
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = link_target
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(status.st_rdev), os.minor(status.st_rdev)
    else:
        return None
    return info


def added_file(name: str, content: bytes) -> Entry:
    """A file the client adds to the context (a Dockerfile from elsewhere, ``.dockerignore``),
    mode 0600 and dated now, as the docker CLI adds them."""
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.size = 0o600, int(time.time()), len(content)
    return Entry(name, info, content=content)


def _readable(path: str) -> None:
    """The docker CLI's check before sending: a file must open for reading."""
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise ContextError(f"no permission to read from '{path}'") from None
    except OSError as exc:
        raise ContextError(f"cannot read '{path}': {exc.strerror}") from None


class DirectoryWalk:
    """The entries of directory context ``root``: what its ``.dockerignore`` leaves in, plus the
    relative paths in ``keep`` (the Dockerfile, ``.dockerignore``) whatever it says.

    Walked twice, as the docker CLI walks: once to check that every file can be read, so
    that an unreadable one is an error before the upload starts rather than a cut-off tar,
    then as the tar is sent. Nothing per file is kept between the two, so a context of a
    million files costs no more memory than one of ten."""

    def __init__(self, root: str, keep: set[str], ignore_text: str | None) -> None:
        from dockyard.dockerignore import Matcher, PatternError

        self.root = root
        try:
            # The docker CLI's way: an exception for each file to keep that a pattern excludes.
            self.matcher = Matcher.from_text(ignore_text or "").keeping(*sorted(keep))
        except PatternError as exc:
            raise ContextError(f"{os.path.join(root, DOCKERIGNORE)}: {exc}") from None

    def check(self) -> None:
        for entry in self.entries(warn=True):
            if entry.source and entry.info.isreg():
                _readable(entry.source)

    def entries(self, warn: bool = False) -> Iterator[Entry]:
        """The entries in the order sent; ``warn``: say on stderr what cannot be sent (a
        socket), which the docker CLI also leaves out with an error message."""
        # (device, inode) -> the name sent first, for files with more than one name only.
        first_names: dict[tuple[int, int], str] = {}
        try:
            for name, status in self.matcher.walk(self.root):
                entry = self._entry(name, status, first_names)
                if entry is not None:
                    yield entry
                elif warn:
                    path = os.path.join(self.root, name)
                    print(f"{path} is left out of the context: a tar cannot hold a socket",
                          file=sys.stderr)  # fmt: skip
        except PermissionError as exc:
            raise ContextError(f"can't stat '{exc.filename}'") from None
        except OSError as exc:
            raise ContextError(f"cannot read the context {self.root}: {exc}") from None

    def _entry(
        self, name: str, status: os.stat_result, first_names: dict[tuple[int, int], str]
    ) -> Entry | None:
        path = os.path.join(self.root, name)
        link_target = os.readlink(path) if stat.S_ISLNK(status.st_mode) else ""
        info = _tar_info(name, status, link_target)
        if info is None:
            return None
        if info.isreg() and status.st_nlink > 1:
            # A second name of a file already sent is a hard link to the first, as docker's tar.
            key = (status.st_dev, status.st_ino)
            if key in first_names:
                info.type, info.linkname, info.size = tarfile.LNKTYPE, first_names[key], 0
                return Entry(name, info)
            first_names[key] = name
        return Entry(name, info, source=path)


# ------------------------------------------------------------------------------ the stream


class ContextTar:
    """The context tar as a stream: ``read(size)`` gives the next bytes, made as they are
    asked for (the upload reads it a block at a time)."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self.entries = entries
        self._pieces = self._generate()
        self._pending = b""

    def _generate(self) -> Iterator[bytes]:
        for entry in self.entries:
            yield entry.info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            if entry.info.isreg() and entry.info.size:
                if entry.content is not None:
                    yield entry.content
                else:
                    yield from _file_blocks(entry.source, entry.info.size)
                padding = -entry.info.size % BLOCK
                if padding:
                    yield bytes(padding)
        yield bytes(2 * BLOCK)  # the end of the archive

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._pending) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            self._pending += piece
        if size < 0:
            size = len(self._pending)
        data, self._pending = self._pending[:size], self._pending[size:]
        return data


def _file_blocks(path: str, size: int) -> Iterator[bytes]:
    """``size`` bytes of ``path`` (its size when walked), a block at a time: a file that grew
    since is cut there; one that shrank cannot fill the size its header gave, and fails."""
    left = size
    try:
        with open(path, "rb") as file:
            while left:
                block = file.read(min(READ_SIZE, left))
                if not block:
                    raise ContextError(f"{path} shrank while the context was being sent")
                left -= len(block)
                yield block
    except OSError as exc:
        raise ContextError(f"cannot read '{path}': {exc.strerror}") from None


# ------------------------------------------------------------------------------ choosing


@dataclass
class PreparedContext:
    """What the build request carries: the tar to stream and the Dockerfile's name in it."""

    body: ContextTar | _Replayed
    dockerfile: str


def random_dockerfile_name() -> str:
    return ".dockerfile." + os.urandom(10).hex()


def directory_context(context: str, dockerfile: str | None, stdin: BinaryIO) -> PreparedContext:
    """A directory context and its Dockerfile (``-f``: relative to the current directory; ``-``:
    stdin), as the docker CLI resolves them."""
    try:
        root = os.path.realpath(os.path.abspath(context), strict=True)
    except OSError as exc:
        raise ContextError(f"unable to prepare context: path {context!r} not found") from exc
    if not os.path.isdir(root):
        raise ContextError(f"unable to prepare context: context must be a directory: {root}")
    ignore = _read_file(os.path.join(root, DOCKERIGNORE), missing_ok=True)
    keep = {DOCKERIGNORE} if ignore is not None else set()
    added = None  # a Dockerfile from outside the context
    if dockerfile == "-":
        added = stdin.read()
    else:
        relative = _dockerfile_in(root, dockerfile)
        if relative.startswith("../"):
            added = _read_file(os.path.join(root, relative))
        else:
            keep.add(relative)
    ignore_text = None if ignore is None else ignore.decode("utf-8", "replace")
    walk = DirectoryWalk(root, keep, ignore_text)
    walk.check()
    if added is None:
        return PreparedContext(ContextTar(walk.entries()), relative)
    name = random_dockerfile_name()
    entries = with_added_dockerfile(walk.entries(), name, added, ignore)
    return PreparedContext(ContextTar(entries), name)


def with_added_dockerfile(
    entries: Iterable[Entry], name: str, content: bytes, ignore: bytes | None
) -> Iterator[Entry]:
    """``entries`` with a Dockerfile from elsewhere added as ``name``, and that name added to
    the ``.dockerignore`` the daemon sees (so ``COPY .`` leaves it out): the context's own
    file, in its place, or one made at the end that also excludes itself."""
    listed = ignore if ignore is not None else DOCKERIGNORE.encode()
    new_ignore = added_file(DOCKERIGNORE, listed + b"\n" + name.encode() + b"\n")
    for entry in entries:
        if entry.name == DOCKERIGNORE:
            new_ignore.info.mode, new_ignore.info.mtime = entry.info.mode, entry.info.mtime
            entry = new_ignore
        yield entry
    yield added_file(name, content)
    if ignore is None:
        yield new_ignore


def _read_file(path: str, missing_ok: bool = False) -> bytes | None:
    """A small file of the context (``.dockerignore``, a Dockerfile) whole."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise ContextError(f"cannot read {path}: it does not exist") from None
    except OSError as exc:
        raise ContextError(f"cannot read {path}: {exc.strerror}") from None


def _dockerfile_in(root: str, given: str | None) -> str:
    """The Dockerfile's path relative to ``root`` (``../…`` when outside it)."""
    if given:
        path = os.path.abspath(given)
    else:
        path = os.path.join(root, DEFAULT_DOCKERFILE)
        lower = os.path.join(root, DEFAULT_DOCKERFILE.lower())
        if not os.path.lexists(path) and os.path.lexists(lower):
            path = lower
    try:
        path = os.path.realpath(path, strict=True)
    except OSError:
        raise ContextError(f'Cannot locate specified Dockerfile: "{path}"') from None
    relative = os.path.relpath(path, root)
    if not os.path.isfile(path):
        raise ContextError(f"the Dockerfile {path} is not a file")
    return relative


def is_archive(head: bytes) -> bool:
    """Whether the first bytes of stdin are a tar, plain or compressed (docker's test)."""
    if head.startswith(COMPRESSION_MAGIC):
        return True
    if len(head) < BLOCK:
        return False
    try:
        tarfile.TarInfo.frombuf(head[:BLOCK], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


class _Replayed:
    """A stream whose first bytes were read already (to sniff them): those, then the rest."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self.head, self.rest = head, rest

    def read(self, size: int = -1) -> bytes:
        if self.head:
            data = self.head if size < 0 else self.head[:size]
            self.head = self.head[len(data) :]
        else:
            data = self.rest.read(size)
        return data


def stdin_context(stdin: BinaryIO, dockerfile: str | None) -> PreparedContext:
    """``-`` as the context: a tar passed on, or a Dockerfile's text made a one-file tar."""
    if dockerfile == "-":
        raise ContextError(
            "invalid argument: can't use stdin for both build context and dockerfile"
        )
    head = _read_up_to(stdin, SNIFF_SIZE)
    if is_archive(head):
        return PreparedContext(_Replayed(head, stdin), dockerfile or DEFAULT_DOCKERFILE)
    if dockerfile:
        raise ContextError(
            "ambiguous Dockerfile source: both stdin and flag correspond to Dockerfiles"
        )
    content = head + stdin.read()
    dockerfile_entry = added_file(DEFAULT_DOCKERFILE, content)
    # docker writes it to a file first and sends that: a new file's mode under the umask.
    umask = os.umask(0)
    os.umask(umask)
    dockerfile_entry.info.mode = 0o666 & ~umask
    return PreparedContext(ContextTar([dockerfile_entry]), DEFAULT_DOCKERFILE)


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes, fewer only at the end (a pipe gives what it has per read)."""
    parts, left = [], size
    while left:
        block = stream.read(left)
        if not block:
            break
        parts.append(block)
        left -= len(block)
    return b"".join(parts)
