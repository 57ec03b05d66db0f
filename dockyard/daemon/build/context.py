"""The build context, and the files ``COPY`` and ``ADD`` take from it.

``POST /build`` sends the context as a tar (plain, gzip, bzip2 or xz): :func:`receive_context`
streams it to a directory on disk with the same rules against hostile entries as layer
extraction. :class:`SourceTree` selects what a ``COPY``/``ADD`` names, in the context or in an
earlier stage's root filesystem (``COPY --from``), without leaving it; :func:`checksum` is what
the build cache compares; :func:`copy_sources` writes the sources into the root filesystem of
the step's container, as docker's classic builder does, through
:func:`dockyard.linux.inroot.extract_into` (the one way anything is written into a root).

Messages are dockerd 20.10's where it has one (``COPY failed: file not found in build context
or excluded by .dockerignore: stat NAME: file does not exist``).
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import os
import posixpath
import secrets
import shutil
import stat
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from email.message import Message
from pathlib import Path
from typing import BinaryIO

import attrs

from dockyard.core.errors import InvalidParameter
from dockyard.daemon import modes
from dockyard.daemon.images import compression
from dockyard.dockerignore import (
    DOCKERIGNORE,
    Matcher,
    PatternError,
    clean_path,
    glob_match,
    has_glob,
)
from dockyard.linux import inroot, layertar

DEFAULT_DOCKERFILE = "Dockerfile"
#: A body that is not a tar is taken as the Dockerfile itself when it is text of at most this.
BARE_DOCKERFILE_LIMIT = 1 << 20
#: ``ADD <url>``: how long the server may take to answer or send, and how much it may send.
DOWNLOAD_TIMEOUT = 60.0
DOWNLOAD_LIMIT = 8 << 30
#: docker gives a downloaded file this mode.
DOWNLOAD_MODE = 0o600
#: Extended attributes never copied into an image: the host's security labels and overlayfs'
#: own bookkeeping.
_SKIPPED_XATTRS = ("security.selinux", "trusted.")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------------------------
# Receiving the context
# --------------------------------------------------------------------------------------------


@attrs.frozen
class BuildContext:
    """A received build context: its files in ``directory``, its ``.dockerignore`` patterns."""

    directory: Path
    matcher: Matcher | None

    def dockerfile(self, name: str = DEFAULT_DOCKERFILE) -> str:
        """The text of Dockerfile ``name`` (a path in the context; symlinks resolve inside it).

        Readable even when ``.dockerignore`` excludes it, as in docker (the CLI's
        ``.dockerfile.<random>`` for a ``-f`` outside the context always is). The default name
        falls back to ``dockerfile``, as dockerd's does.
        """
        text = inroot.read_text(str(self.directory), name)
        if text is None and name == DEFAULT_DOCKERFILE:
            text = inroot.read_text(str(self.directory), name.lower())
        if text is None:
            raise InvalidParameter(f"Cannot locate specified Dockerfile: {name}")
        if not text:
            raise InvalidParameter(f"the Dockerfile ({name}) cannot be empty")
        return text

    def sources(self) -> SourceTree:
        """What ``COPY``/``ADD`` without ``--from`` take files from."""
        return SourceTree(self.directory, self.matcher)


def build_directory(data_root: Path) -> Path:
    """A fresh directory for one build's context, under the data root (private to root)."""
    parent = modes.make_dir(data_root / "build", modes.CONTAINERS, exist_ok=True)
    directory = parent / secrets.token_hex(8)
    directory.mkdir(mode=0o700)
    (directory / "context").mkdir(mode=0o700)
    return directory


def remove_stale_builds(data_root: Path) -> None:
    """Contexts left by a daemon that stopped mid-build (called at start, before serving)."""
    shutil.rmtree(data_root / "build", ignore_errors=True)


def receive_context(body: BinaryIO, directory: Path) -> BuildContext:
    """Read the ``POST /build`` body into ``directory`` (which exists and is empty).

    A body already on disk (a regular file, read from its start) is extracted in place;
    another is decompressed into a spool file first.

    The body is a tar, plain or compressed (gzip, bzip2, xz, zstd), streamed to disk; entries
    with ``..`` or hard links to anything outside it are refused with an
    :class:`~dockyard.core.errors.InvalidParameter` naming the entry, device nodes too;
    symlinks are kept as they are (a ``COPY`` through one resolves inside the context). A body
    that is no tar but text is the Dockerfile itself (saved as ``Dockerfile``). On error
    ``directory`` is removed.
    """
    try:
        head = compression.read_exactly_up_to(body, 6)
        compressed = compression.detect(head) is not compression.Compression.NONE
        raw = io.BufferedReader(compression.PrefixedReader(head, body), buffer_size=1 << 16)
        stream = compression.open_decompressed(raw)
        block = compression.read_exactly_up_to(stream, tarfile.BLOCKSIZE)
        rest = io.BufferedReader(compression.PrefixedReader(block, stream), buffer_size=1 << 20)
        if not block or _is_tar_header(block):
            if block and not compressed and _is_file(body):
                body.seek(0)
                _extract(body, directory)
            elif block:
                # Spooled first: extracting from a file lets the kernel copy the contents.
                with tempfile.TemporaryFile(dir=directory.parent) as spool:
                    shutil.copyfileobj(rest, spool, _CHUNK)
                    spool.seek(0)
                    _extract(spool, directory)
        elif not compressed:
            _save_bare_dockerfile(rest, directory)
        else:
            raise InvalidParameter("the build context is compressed but is not a tar archive")
        return BuildContext(directory, _read_dockerignore(directory))
    except BaseException:
        layertar.remove_tree(directory)
        raise


def _is_file(body: BinaryIO) -> bool:
    """Whether ``body`` is a regular file read from its start (a spooled request body)."""
    try:
        return stat.S_ISREG(os.fstat(body.fileno()).st_mode) and body.seekable()
    except (AttributeError, OSError, ValueError):
        return False


def _extract(archive: BinaryIO, directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        layertar.extract_archive(
            archive, fd, allow_device_nodes=False, noun="build context", unpadded_end=True
        )
    finally:
        os.close(fd)


def _is_tar_header(block: bytes) -> bool:
    """Whether ``block`` is a tar header (or the zero block of an empty archive)."""
    if len(block) < tarfile.BLOCKSIZE:
        return False
    if block.count(0) == len(block):
        return True
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _save_bare_dockerfile(stream: BinaryIO, directory: Path) -> None:
    data = stream.read(BARE_DOCKERFILE_LIMIT + 1)
    try:
        if len(data) > BARE_DOCKERFILE_LIMIT or b"\x00" in data:
            raise UnicodeError
        data.decode("utf-8")
    except UnicodeError:
        raise InvalidParameter(
            "the build context is neither a tar archive (plain, gzip, bzip2 or xz) nor a Dockerfile"
        ) from None
    (directory / DEFAULT_DOCKERFILE).write_bytes(data)


def _read_dockerignore(directory: Path) -> Matcher | None:
    text = inroot.read_text(str(directory), DOCKERIGNORE)
    if text is None:
        return None
    try:
        return Matcher.from_text(text)
    except PatternError as exc:
        raise InvalidParameter(f"invalid {DOCKERIGNORE} pattern: {exc}") from None


# --------------------------------------------------------------------------------------------
# Selecting sources
# --------------------------------------------------------------------------------------------


def is_url(source: str) -> bool:
    """Whether a ``COPY``/``ADD`` source names a URL (docker's test: the scheme)."""
    return source.startswith(("http://", "https://"))


@attrs.frozen
class Source:
    """One file or directory a ``COPY``/``ADD`` copies."""

    #: The path as the instruction named it, cleaned (``dir/a.txt``; ``.`` for the root): a
    #: file copied into a directory takes its last component as its name.
    name: str
    #: Where it is on disk, symlinks resolved inside its tree.
    path: Path
    is_dir: bool
    tree: SourceTree = attrs.field(eq=False, repr=False)
    #: ``path`` relative to the tree's root, what ``.dockerignore`` patterns are tried on.
    relative: str = ""
    #: Downloaded by ``ADD <url>``: never extracted even if it is a tar.
    remote: bool = False

    def entries(self) -> Iterator[tuple[str, str, os.stat_result]]:
        """``(name below the source, path, stat)`` of what is copied: the file itself (named
        ``""``), or everything below the directory (not the directory itself) that
        ``.dockerignore`` leaves, parents first, names sorted, symlinks not followed."""
        if not self.is_dir:
            yield "", str(self.path), os.stat(self.path)
            return
        for name, path, info in layertar.walk_tree(str(self.path)):
            if not self.tree.excluded(f"{self.relative}/{name}" if self.relative else name):
                yield name, path, info


class SourceTree:
    """A tree ``COPY``/``ADD`` take files from: the build context (with its ``.dockerignore``)
    or an earlier stage's root filesystem (``COPY --from``, no patterns)."""

    def __init__(self, root: Path, matcher: Matcher | None = None) -> None:
        self.root = Path(os.path.realpath(root))
        self.matcher = matcher
        #: Content digests of regular files, by identity and change time: a build hashes
        #: the same context files for each step's cache key.
        self._digests: dict[tuple[int, int, int, int, int], str] = {}

    def excluded(self, relative: str) -> bool:
        return self.matcher is not None and self.matcher.excluded(relative)

    def select(self, patterns: Sequence[str], instruction: str = "COPY") -> list[Source]:
        """The sources ``patterns`` name, in order: paths, or Go ``filepath.Match`` globs.

        A path resolves inside the tree (symlinks included: the source is what they point to,
        named as written). Raises :class:`~dockyard.core.errors.InvalidParameter` with
        docker's message when a path is missing or excluded, a glob matches nothing, a path
        climbs out with ``..``, or a source is a URL (``ADD`` fetches those with
        :func:`fetch_url`).
        """
        sources: list[Source] = []
        for pattern in patterns:
            if is_url(pattern):
                if instruction == "ADD":
                    raise ValueError(f"{pattern}: ADD fetches URLs with fetch_url")
                raise InvalidParameter(f"{instruction} failed: source can't be a URL for COPY")
            relative = clean_path(pattern).lstrip("/")
            if relative == ".." or relative.startswith("../"):
                raise InvalidParameter(
                    f"{instruction} failed: forbidden path outside the build context: {pattern} ()"
                )
            if has_glob(relative):
                matched = [path for path in self._walk_names() if glob_match(relative, path)]
                if not matched:
                    raise InvalidParameter(f"{instruction} failed: no source files were specified")
                sources.extend(self._source(path, instruction) for path in matched)
            else:
                sources.append(self._source("" if relative == "." else relative, instruction))
        return sources

    def _walk_names(self) -> Iterator[str]:
        for name, _, _ in layertar.walk_tree(str(self.root)):
            if not self.excluded(name):
                yield name

    def _source(self, relative: str, instruction: str) -> Source:
        resolved = inroot.resolve(str(self.root), relative or ".")
        resolved_relative = "" if resolved is None else os.path.relpath(resolved, self.root)
        if resolved_relative == ".":
            resolved_relative = ""
        if (
            resolved is None
            or (relative and self.excluded(relative))
            or (resolved_relative and self.excluded(resolved_relative))
        ):
            raise InvalidParameter(
                f"{instruction} failed: file not found in build context or excluded by "
                f".dockerignore: stat {relative or '.'}: file does not exist"
            )
        return Source(
            name=relative or ".",
            path=Path(resolved),
            is_dir=os.path.isdir(resolved),
            tree=self,
            relative=resolved_relative,
        )

    def digest(self, path: str, info: os.stat_result) -> str:
        """The sha256 of regular file ``path``'s content."""
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        known = self._digests.get(key)
        if known is None:
            hasher = hashlib.sha256()
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as file:
                while chunk := file.read(_CHUNK):
                    hasher.update(chunk)
            known = self._digests[key] = hasher.hexdigest()
        return known


def checksum(sources: Iterable[Source]) -> str:
    """What a ``COPY``/``ADD`` step's cache key holds of its sources: ``sha256:<hex>``.

    Like the classic builder's tarsum-based hash it covers, for each source and everything
    copied from it, the name, the file type, the permission bits, the owner, the size, a
    symlink's target and a regular file's content, and not the times: touching a file keeps
    the cache, changing its content, mode, owner or name does not.
    """
    hasher = hashlib.sha256()
    for source in sources:
        hasher.update(f"source {source.name}\0".encode("utf-8", "surrogateescape"))
        for name, path, info in source.entries():
            mode = info.st_mode
            target = os.readlink(path) if stat.S_ISLNK(mode) else ""
            content = source.tree.digest(path, info) if stat.S_ISREG(mode) else ""
            size = info.st_size if stat.S_ISREG(mode) else 0
            line = (
                f"{name}\0{stat.S_IFMT(mode):o}\0{stat.S_IMODE(mode):o}\0{info.st_uid}\0"
                f"{info.st_gid}\0{size}\0{target}\0{content}\n"
            )
            hasher.update(line.encode("utf-8", "surrogateescape"))
    return "sha256:" + hasher.hexdigest()


# --------------------------------------------------------------------------------------------
# ADD <url>
# --------------------------------------------------------------------------------------------


def fetch_url(
    url: str,
    directory: Path,
    *,
    timeout: float = DOWNLOAD_TIMEOUT,
    limit: int = DOWNLOAD_LIMIT,
    progress: Callable[[int, int | None], None] | None = None,
) -> Source:
    """Download ``url`` for ``ADD`` into a new directory below ``directory``.

    As docker: the file is named after the URL's last path component (else the
    ``Content-Disposition`` file name), has mode 0600 and the ``Last-Modified`` time (the
    epoch without one); a failure raises :class:`~dockyard.core.errors.InvalidParameter`
    naming the URL and the reason. At most ``limit`` bytes are accepted. ``progress`` is
    called with the bytes received so far and the length announced (``None`` if none), after
    each chunk: dockerd streams a ``Downloading`` progress message from it.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "dockyard-builder"})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        body = exc.read(512).decode(errors="replace").strip()
        raise InvalidParameter(
            f"ADD failed: failed to GET {url} with status {exc.code} {exc.reason}: {body}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InvalidParameter(f'ADD failed: Get "{url}": {reason}') from None
    with response:
        name = _download_name(url, response.headers)
        if not name:
            raise InvalidParameter(f"ADD failed: cannot determine filename for source {url}")
        target = Path(tempfile.mkdtemp(prefix="add-url-", dir=directory))
        path = target / name
        received = 0
        announced = response.headers.get("Content-Length")
        total = int(announced) if announced and announced.isdigit() else None
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, DOWNLOAD_MODE)
        with open(fd, "wb") as file:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except OSError as exc:
                    raise InvalidParameter(f"ADD failed: reading {url}: {exc}") from None
                if not chunk:
                    break
                received += len(chunk)
                if received > limit:
                    raise InvalidParameter(
                        f"ADD failed: {url} is larger than the {limit} bytes allowed"
                    )
                file.write(chunk)
                if progress is not None:
                    progress(received, total)
        os.chmod(path, DOWNLOAD_MODE)
        modified = _last_modified(response.headers.get("Last-Modified"))
        os.utime(path, ns=(modified, modified))
    return Source(
        name=name, path=path, is_dir=False, tree=SourceTree(target), relative=name, remote=True
    )


def _download_name(url: str, headers: Message) -> str:
    path = urllib.parse.urlsplit(url).path
    if path and not path.endswith("/"):
        name = posixpath.basename(urllib.parse.unquote(path))
        if name not in ("", ".", ".."):
            return name
    disposition = headers.get_param("filename", header="Content-Disposition")
    if isinstance(disposition, str) and disposition and not disposition.endswith("/"):
        name = posixpath.basename(disposition)
        if name not in ("", ".", ".."):
            return name
    return ""


def _last_modified(value: str | None) -> int:
    if not value:
        return 0
    try:
        return int(email.utils.parsedate_to_datetime(value).timestamp()) * 1_000_000_000
    except (TypeError, ValueError):
        return 0


# --------------------------------------------------------------------------------------------
# Copying into a root
# --------------------------------------------------------------------------------------------


def resolve_chown(spec: str, root: str) -> tuple[int, int]:
    """The uid and gid ``--chown=user[:group]`` names: numbers, or names in the root's
    ``/etc/passwd`` and ``/etc/group`` (read inside the root). Without a group, the user
    part is looked up as the group too, as docker does."""
    prefix = "unable to convert uid/gid chown string to host mapping"
    parts = spec.split(":")
    if len(parts) > 2:
        raise InvalidParameter(f"{prefix}: invalid chown string format: {spec}")
    user, group = (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    uid = _lookup(root, "/etc/passwd", user, 2)
    if uid is None:
        raise InvalidParameter(
            f"{prefix}: can't find uid for user {user}: {_why(root, 'passwd', user, 'user')}"
        )
    gid = _lookup(root, "/etc/group", group, 2)
    if gid is None:
        raise InvalidParameter(
            f"{prefix}: can't find gid for group {group}: {_why(root, 'group', group, 'group')}"
        )
    return uid, gid


def _lookup(root: str, database: str, name: str, field: int) -> int | None:
    if name.isdigit():
        return int(name)
    text = inroot.read_text(root, database)
    for line in (text or "").splitlines():
        fields = line.split(":")
        if len(fields) > field and fields[0] == name and fields[field].isdigit():
            return int(fields[field])
    return None


def _why(root: str, database: str, name: str, kind: str) -> str:
    if inroot.read_text(root, f"/etc/{database}") is None:
        return f"open /etc/{database}: no such file or directory"
    return f"no such {kind}: {name}"


def parse_chmod(spec: str) -> int:
    """The permission bits ``--chmod=`` gives, in octal."""
    try:
        mode = int(spec, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o7777:
        raise InvalidParameter(f"invalid chmod parameter: {spec!r} is not an octal mode")
    return mode


def copy_sources(
    sources: Sequence[Source],
    root: str,
    destination: str,
    workdir: str,
    chown: str | None,
    chmod: str | None,
    is_add: bool,
    id_maps: inroot.IdMaps | None = None,
) -> None:
    """Copy ``sources`` into container root ``root`` by docker's ``COPY``/``ADD`` rules.

    ``destination`` is relative to ``workdir`` unless absolute; it is a directory when it
    ends with ``/`` or already is one (several sources require the ``/``). A directory source
    copies its contents, not itself. Missing directories on the way are created 0755, owned
    by the ``--chown`` owner or root. Copied files keep their mode (``--chmod`` replaces it)
    and times, and belong to ``--chown``'s owner, else root. ``ADD`` of a local tar, plain or
    compressed, extracts it into the destination (entries keep their owners).
    """
    instruction = "ADD" if is_add else "COPY"
    wants_dir = destination.endswith("/")
    if len(sources) > 1 and not wants_dir:
        raise InvalidParameter(
            f"When using {instruction} with more than one source file, the destination must "
            "be a directory and end with a /"
        )
    target = posixpath.normpath(posixpath.join("/", workdir or "/", destination))
    owner = resolve_chown(chown, root) if chown else (0, 0)
    mode = parse_chmod(chmod) if chmod else None
    host_owner = id_maps.to_host(*owner) if id_maps is not None else owner
    host_root = id_maps.to_host(0, 0) if id_maps is not None else (0, 0)

    def make(directory: str, directory_owner: tuple[int, int]) -> None:
        try:
            inroot.make_directories(root, directory, directory_owner)
        except (NotADirectoryError, FileExistsError):
            # dockerd's words, with the path in the container rather than on the host
            raise InvalidParameter(
                f"failed to copy files: mkdir {directory}: not a directory"
            ) from None

    for source in sources:
        if is_add and not source.remote and not source.is_dir and _is_archive(source.path):
            make(target, host_root)
            with open(source.path, "rb") as file:
                stream = compression.open_decompressed(file)
                inroot.extract_into(root, target, stream, id_maps=id_maps)
            continue
        if source.is_dir:
            make(target, host_owner)
            entries: Iterable[tuple[str, str, os.stat_result]] = source.entries()
            _write_entries(root, target, entries, owner, mode, id_maps)
            continue
        into_dir = wants_dir or _is_directory(root, target)
        directory = target if into_dir else posixpath.dirname(target)
        name = posixpath.basename(source.name) if into_dir else posixpath.basename(target)
        make(directory, host_owner)
        single = (name, str(source.path), os.stat(source.path))
        _write_entries(root, directory, [single], owner, mode, id_maps)


def _is_directory(root: str, path: str) -> bool:
    try:
        os.close(inroot.open_directory(root, path))
    except OSError:
        return False
    return True


def _is_archive(path: Path) -> bool:
    """Whether ``path`` holds a tar, plain or compressed: what ``ADD`` extracts."""
    try:
        with open(path, "rb") as file:
            stream = compression.open_decompressed(file)
            block = compression.read_exactly_up_to(stream, tarfile.BLOCKSIZE)
    except (OSError, InvalidParameter):
        return False
    return bool(block) and block.count(0) != len(block) and _is_tar_header(block)


def _write_entries(
    root: str,
    directory: str,
    entries: Iterable[tuple[str, str, os.stat_result]],
    owner: tuple[int, int],
    mode: int | None,
    id_maps: inroot.IdMaps | None,
) -> None:
    """Stream ``entries`` as a tar into :func:`inroot.extract_into` under ``directory``."""
    read_fd, write_fd = os.pipe()
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            with (
                os.fdopen(write_fd, "wb", buffering=_CHUNK) as out,
                layertar.DiffWriter(out, skip_xattr_prefixes=_SKIPPED_XATTRS) as writer,
            ):
                for name, path, info in entries:
                    writer.add(name, path, info, mode=mode)
        except BrokenPipeError:
            pass  # the extraction stopped on an error of its own, raised there
        except BaseException as exc:
            failures.append(exc)

    producer = threading.Thread(target=produce, name="copy-sources", daemon=True)
    producer.start()
    try:
        with os.fdopen(read_fd, "rb", buffering=_CHUNK) as stream:
            inroot.extract_into(root, directory, stream, chown=owner, id_maps=id_maps)
    finally:
        producer.join()
    if failures:
        raise failures[0]
