"""The interfaces each kind of driver implements, and the plain data they exchange.

The core keeps the layouts (which layers make an image, which blobs a repository references, which
container uses which snapshot); a driver is a thin adapter over one kind of storage or one way of
running processes. Methods are synchronous: the core calls them from worker threads, never on the
event loop, so a driver may block on disk, syscalls or the network.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import BinaryIO, Protocol, runtime_checkable

import attrs

# --------------------------------------------------------------------------------------------
# Storage drivers (the daemon's layer and container filesystem store)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Mount:
    """One mount to perform, in the form of mount(2): ``mount -t type -o options source target``.

    A root filesystem is a list of these applied in order at the container's root; a driver that
    needs no mount syscall (``vfs``) returns a single ``bind`` mount of a directory.
    """

    type: str
    source: str
    options: tuple[str, ...] = ()


@attrs.frozen
class Usage:
    """Disk used by one layer or snapshot, counting only what it adds over its parents."""

    size: int
    inodes: int


@runtime_checkable
class StorageDriver(Protocol):
    """Unpacks image layers and prepares container root filesystems from them.

    Vocabulary, as in containerd's snapshotter: a *layer* is a committed, read-only filesystem
    diff identified by a key the core chooses (the layer's chain id); a *snapshot* is a writable
    filesystem prepared on top of a chain of layers (a container's rootfs). Keys are opaque, unique
    strings of ``[A-Za-z0-9_.:-]``. ``parents`` is always the full chain below the object, nearest
    parent first and base layer last; the core keeps that graph, the driver only stores bytes.

    Every method is atomic as seen by the core: on error, nothing half-made stays visible under
    the key, and calling ``remove`` on a partly created key cleans it up.
    """

    def apply_layer(self, key: str, parents: Sequence[str], diff: BinaryIO) -> Usage:
        """Create layer ``key`` as ``parents`` plus the changes in ``diff``.

        ``diff`` is an uncompressed OCI layer tar (the core decompresses) read front to back
        exactly once. Whiteouts (``.wh.NAME``, ``.wh..wh..opq``) delete from the parents; the
        driver stores them in its own form. Entries that would land outside the layer (``..``,
        absolute paths, links escaping the root, writes through a symlink) raise
        :class:`~dockyard.core.errors.InvalidParameter` and leave no layer behind. Ownership,
        modes including setuid/setgid, timestamps, xattrs and hard links are preserved. Returns
        the layer's usage. Raises :class:`~dockyard.core.errors.Conflict` if ``key`` exists.
        """
        ...

    def prepare(self, key: str, parents: Sequence[str]) -> list[Mount]:
        """Create writable snapshot ``key`` over layer chain ``parents``; return its mounts.

        An empty ``parents`` gives an empty root. Preparing must not copy the layers where the
        driver can avoid it: its cost should not grow with the image size.
        """
        ...

    def mounts(self, key: str, parents: Sequence[str]) -> list[Mount]:
        """Return the mounts of existing snapshot ``key`` again (after a daemon restart)."""
        ...

    def diff(self, key: str, parents: Sequence[str], out: BinaryIO) -> None:
        """Write the changes of snapshot ``key`` against ``parents`` to ``out`` as a layer tar.

        Deletions become ``.wh.`` whiteouts and replaced directories ``.wh..wh..opq``, so that
        ``apply_layer`` of the result over the same parents reproduces the snapshot.
        """
        ...

    def remove(self, key: str) -> None:
        """Delete layer or snapshot ``key`` and everything stored for it; a missing key is fine.

        The core never removes a layer that another layer or snapshot still names as a parent.
        """
        ...

    def usage(self, key: str) -> Usage:
        """Return what ``key`` adds on disk. Raises :class:`~dockyard.core.errors.NotFound`."""
        ...

    def keys(self) -> Iterable[str]:
        """Every layer and snapshot key stored, so the core can reconcile after a crash."""
        ...


# --------------------------------------------------------------------------------------------
# Runtimes (the daemon's process runner)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class ProcessSpec:
    """The process to run: what ``docker run`` resolves from the image config and its flags."""

    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: tuple[int, ...] = ()
    terminal: bool = False
    capabilities: tuple[str, ...] = ()
    no_new_privileges: bool = True


@attrs.frozen
class BindMount:
    """A host path (or a volume's directory) mounted into the container."""

    source: str
    destination: str
    read_only: bool = False


@attrs.frozen
class Resources:
    """cgroup limits; ``None`` means unlimited."""

    memory_bytes: int | None = None
    nano_cpus: int | None = None
    pids_limit: int | None = None


@attrs.frozen
class ContainerSpec:
    """Everything a runtime needs to create a container, independent of how it does it."""

    id: str
    rootfs: tuple[Mount, ...]
    process: ProcessSpec
    hostname: str = ""
    read_only_rootfs: bool = False
    network_mode: str = "none"
    mounts: tuple[BindMount, ...] = ()
    resources: Resources = Resources()
    privileged: bool = False
    #: Files the core prepared (``/etc/hosts``, ``/etc/resolv.conf``, ``/etc/hostname``).
    etc_files: Mapping[str, str] = attrs.field(factory=dict)
    #: Where the container's stdout/stderr go: paths of files or FIFOs the core reads.
    stdio: tuple[str, str, str] = ("", "", "")


@attrs.frozen
class RuntimeState:
    """What a runtime reports about one container."""

    status: str  # "created", "running", "paused" or "stopped"
    pid: int = 0
    exit_code: int | None = None
    oom_killed: bool = False


@runtime_checkable
class Runtime(Protocol):
    """Runs containers: isolated processes on a prepared root filesystem.

    The core owns container metadata, logs and restart policy; the runtime owns processes,
    namespaces and cgroups. A container survives the daemon: the runtime must leave a supervisor
    (or the kernel) holding it, and ``state`` must answer for containers created by an earlier
    daemon process.
    """

    def create(self, spec: ContainerSpec) -> None:
        """Set up container ``spec.id`` without starting its process (namespaces, cgroup, mounts).

        Raises :class:`~dockyard.core.errors.InvalidParameter` for a spec this runtime cannot
        honour; on any error nothing is left behind (no mount, no cgroup, no state).
        """
        ...

    def start(self, container_id: str) -> int:
        """Start the created container's process; return its host pid."""
        ...

    def signal(self, container_id: str, signum: int) -> None:
        """Send ``signum`` to the container's main process. A stopped container is a no-op."""
        ...

    def state(self, container_id: str) -> RuntimeState:
        """Report the container's state. Raises :class:`~dockyard.core.errors.NotFound`."""
        ...

    def exec(self, container_id: str, process: ProcessSpec, stdio: tuple[str, str, str]) -> int:
        """Run an extra process inside the running container; return its host pid."""
        ...

    def delete(self, container_id: str) -> None:
        """Remove a stopped container's runtime state, cgroup and mounts; a missing id is fine."""
        ...


# --------------------------------------------------------------------------------------------
# Registry backends (the registry's byte store)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class FileInfo:
    """What ``stat`` knows about one stored path."""

    path: str
    size: int
    modified: float
    is_dir: bool = False


class BlobWriter(Protocol):
    """A streaming write of one path, resumable across requests until committed or cancelled."""

    @property
    def size(self) -> int:
        """Bytes written so far, including those of earlier sessions of a resumed write."""
        ...

    def write(self, data: bytes) -> None:
        """Append ``data``."""
        ...

    def close(self) -> None:
        """Persist what was written so far so the write can be resumed with ``append=True``."""
        ...

    def commit(self) -> None:
        """Make the content visible at the path, atomically; the writer is finished."""
        ...

    def cancel(self) -> None:
        """Discard everything written; the path is unchanged and the writer is finished."""
        ...


@runtime_checkable
class RegistryBackend(Protocol):
    """Stores the registry's bytes under slash-separated paths, like distribution's StorageDriver.

    Paths are absolute (``/docker/registry/v2/blobs/sha256/ab/abcd.../data``); the core chooses
    the layout and never depends on a backend listing in any particular order. A missing path
    raises :class:`~dockyard.core.errors.NotFound`. The core hashes and verifies content: a backend
    stores exactly the bytes it is given.
    """

    def stat(self, path: str) -> FileInfo:
        """Describe ``path``; a directory is any prefix that has stored paths below it."""
        ...

    def read(self, path: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Yield the bytes of ``path`` from ``offset`` on (``length`` of them, or to the end).

        Chunks are bounded (a few MiB at most) so a multi-GB blob never sits in memory.
        """
        ...

    def writer(self, path: str, append: bool = False) -> BlobWriter:
        """Open a streaming write of ``path``; ``append`` resumes a closed, uncommitted one."""
        ...

    def list(self, path: str) -> list[str]:
        """The direct children of directory ``path``, as full paths."""
        ...

    def move(self, source: str, destination: str) -> None:
        """Move ``source`` to ``destination``, replacing it; atomic where the storage allows."""
        ...

    def delete(self, path: str) -> None:
        """Delete ``path`` and, for a directory, everything below it."""
        ...

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL the client may fetch ``path`` from directly, or ``None`` to serve it ourselves."""
        ...


# --------------------------------------------------------------------------------------------
# Auth providers (who may do what, for the registry and the daemon's TCP socket)
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Identity:
    """An authenticated caller."""

    subject: str
    groups: tuple[str, ...] = ()


@attrs.frozen
class Access:
    """One requested permission, as in a token scope: ``repository:library/busybox:pull,push``."""

    type: str  # "repository", "registry"
    name: str  # "library/busybox", "catalog"
    actions: tuple[str, ...]  # ("pull",), ("pull", "push"), ("delete",), ("*",)


@attrs.frozen
class AuthRequest:
    """The parts of an HTTP request an auth provider may look at."""

    method: str
    path: str
    headers: Mapping[str, str]
    client_address: str = ""


@runtime_checkable
class AuthProvider(Protocol):
    """Decides who a request comes from and what they may do."""

    def authenticate(self, request: AuthRequest) -> Identity | None:
        """Return the caller's identity, or ``None`` if the request carries no valid credentials.

        Invalid credentials (a bad password, an expired or forged token) also give ``None``.
        """
        ...

    def authorize(self, identity: Identity | None, access: Access) -> tuple[str, ...]:
        """Return the subset of ``access.actions`` granted to ``identity`` (``None``: anonymous)."""
        ...

    def challenge(self, request: AuthRequest, wanted: Sequence[Access]) -> dict[str, str]:
        """Headers for a 401 answer (``WWW-Authenticate``) telling the client how to log in."""
        ...

    def issue_token(self, identity: Identity, granted: Sequence[Access], service: str) -> str:
        """Mint a bearer token for ``granted``; providers without a token endpoint raise
        :class:`~dockyard.core.errors.NotImplementedYet`."""
        ...
