"""The storage-driver conformance suite, for the built-in drivers and third-party ones alike.

In the spirit of containerd's snapshotter suite: every test builds real layer tars, applies them,
prepares snapshots, *mounts* them (tests run as root) and looks at the files through the mount.
Hostile layers (path traversal, symlink and hard-link escapes, absurd sizes...) are part of it:
each must be refused cleanly, or contained in the layer, by every driver.
A plugin author subclasses :class:`StorageDriverConformance` and provides the
``driver_factory`` fixture, a callable building the driver on a state directory::

    from dockyard.testing.storage import StorageDriverConformance

    class TestMyDriver(StorageDriverConformance):
        @pytest.fixture
        def driver_factory(self):
            return lambda state_dir: MyDriver(state_dir)

The helpers (:class:`LayerTar` to write layers, :func:`mounted` to mount a snapshot,
:func:`tree_state` to capture every observable property of a tree) are public too.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import struct
import tarfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from dockyard.core.errors import Conflict, InvalidParameter, NotFound
from dockyard.core.interfaces import Mount, StorageDriver, Usage
from dockyard.linux.layertar import OPAQUE_MARKER, OVERLAY_XATTR_PREFIX, WHITEOUT_PREFIX
from dockyard.linux.mounts import mount_all, unmount_all

DriverFactory = Callable[[Path], StorageDriver]

#: A fixed, sub-second time, so the suite can tell a preserved time from a fresh one.
BASE_TIME_NS = 1_600_000_000_123_456_789

# --------------------------------------------------------------------------------------------
# Writing layers
# --------------------------------------------------------------------------------------------


class LayerTar:
    """Builds an uncompressed OCI layer tar in memory, entry by entry, in the order given."""

    def __init__(self) -> None:
        self._buffer = io.BytesIO()
        self._tar = tarfile.open(  # noqa: SIM115 - closed by build()
            fileobj=self._buffer, mode="w", format=tarfile.PAX_FORMAT
        )

    def _add(
        self,
        name: str,
        kind: bytes,
        *,
        mode: int,
        uid: int = 0,
        gid: int = 0,
        mtime_ns: int = BASE_TIME_NS,
        xattrs: dict[str, bytes] | None = None,
        data: bytes | None = None,
        linkname: str = "",
        device: tuple[int, int] = (0, 0),
    ) -> LayerTar:
        entry = tarfile.TarInfo(name)
        entry.type = kind
        entry.mode, entry.uid, entry.gid = mode, uid, gid
        entry.mtime = mtime_ns // 1_000_000_000
        entry.linkname = linkname
        entry.devmajor, entry.devminor = device
        seconds, fraction = divmod(mtime_ns, 1_000_000_000)
        pax = {"mtime": f"{seconds}.{fraction:09d}"}
        for key, value in (xattrs or {}).items():
            pax[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")
        entry.pax_headers = pax
        if data is not None:
            entry.size = len(data)
            self._tar.addfile(entry, io.BytesIO(data))
        else:
            self._tar.addfile(entry)
        return self

    def dir(self, name: str, mode: int = 0o755, **meta: Any) -> LayerTar:
        """A directory entry."""
        return self._add(name, tarfile.DIRTYPE, mode=mode, **meta)

    def file(self, name: str, data: bytes = b"", mode: int = 0o644, **meta: Any) -> LayerTar:
        """A regular file entry."""
        return self._add(name, tarfile.REGTYPE, mode=mode, data=data, **meta)

    def symlink(self, name: str, target: str, **meta: Any) -> LayerTar:
        """A symbolic link entry."""
        return self._add(name, tarfile.SYMTYPE, mode=0o777, linkname=target, **meta)

    def hardlink(self, name: str, target: str) -> LayerTar:
        """A hard link to an earlier entry."""
        return self._add(name, tarfile.LNKTYPE, mode=0o644, linkname=target)

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o666) -> LayerTar:
        """A character device node."""
        return self._add(name, tarfile.CHRTYPE, mode=mode, device=(major, minor))

    def fifo(self, name: str, mode: int = 0o644) -> LayerTar:
        """A named pipe."""
        return self._add(name, tarfile.FIFOTYPE, mode=mode)

    def whiteout(self, path: str) -> LayerTar:
        """Delete ``path`` of the lower layers."""
        parent, _, name = path.rpartition("/")
        marker = f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name
        return self._add(marker, tarfile.REGTYPE, mode=0o644, data=b"")

    def opaque(self, directory: str) -> LayerTar:
        """Hide everything the lower layers have in ``directory``."""
        return self._add(f"{directory}/{OPAQUE_MARKER}", tarfile.REGTYPE, mode=0o644, data=b"")

    def build(self) -> bytes:
        """The finished archive."""
        self._tar.close()
        return self._buffer.getvalue()

    def stream(self) -> io.BytesIO:
        """The finished archive as a readable stream."""
        return io.BytesIO(self.build())


# --------------------------------------------------------------------------------------------
# Mounting
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount], target: Path) -> Iterator[Path]:
    """Mount ``mounts`` at ``target`` (created if needed) for the duration of the block."""
    target.mkdir(parents=True, exist_ok=True)
    mount_all(mounts, str(target))
    try:
        yield target
    finally:
        unmount_all(str(target))


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below ``path`` that this process sees in /proc/self/mountinfo."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            # Octal escapes (\040 for a space) over UTF-8 bytes.
            escaped = line.split()[4].encode()
            point = escaped.decode("unicode_escape").encode("latin-1").decode()
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


# --------------------------------------------------------------------------------------------
# Looking at trees
# --------------------------------------------------------------------------------------------


@attrs.frozen
class EntryState:
    """Everything a container can observe about one path (atime and ctime aside)."""

    kind: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int | None
    content: str | None
    rdev: int
    xattrs: tuple[tuple[str, bytes], ...]
    #: For a hard-linked file, the first of its names in sorted order.
    link_group: str | None = None


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "dir"),
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symlink"),
        (stat.S_ISCHR, "char"),
        (stat.S_ISBLK, "block"),
        (stat.S_ISFIFO, "fifo"),
    ):
        if test(mode):
            return name
    return "other"


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple(
        sorted(
            (name, os.getxattr(path, name, follow_symlinks=False))
            for name in names
            if not name.startswith(OVERLAY_XATTR_PREFIX)
        )
    )


def tree_state(root: Path) -> dict[str, EntryState]:
    """Every path below ``root`` (``""`` is the root itself) with its observable state.

    The root's own mtime is left out: the mount that makes it moves with every change inside.
    """
    states: dict[str, EntryState] = {}
    inodes: dict[tuple[int, int], str] = {}
    paths = [""]
    for directory, dirnames, filenames in os.walk(root):
        relative = os.path.relpath(directory, root)
        for name in dirnames + filenames:
            paths.append(name if relative == "." else f"{relative}/{name}")
    for relative in sorted(paths):
        path = os.path.join(root, relative) if relative else str(root)
        info = os.lstat(path)
        kind = _kind_of(info.st_mode)
        content = None
        if kind == "file":
            content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        elif kind == "symlink":
            content = os.readlink(path)
        group = None
        if kind == "file" and info.st_nlink > 1:
            group = inodes.setdefault((info.st_dev, info.st_ino), relative)
        states[relative] = EntryState(
            kind=kind,
            mode=stat.S_IMODE(info.st_mode),
            uid=info.st_uid,
            gid=info.st_gid,
            mtime_ns=info.st_mtime_ns if relative else None,
            content=content,
            rdev=info.st_rdev if kind in ("char", "block") else 0,
            xattrs=_xattrs(path),
            link_group=group,
        )
    return states


def archive_names(data: bytes) -> list[str]:
    """The member names of tar ``data``, in order."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getnames()


def stored_files(state_dir: Path) -> list[str]:
    """Everything but directories below ``state_dir``: what a clean driver leaves is none."""
    return sorted(
        os.path.relpath(os.path.join(directory, name), state_dir)
        for directory, _, names in os.walk(state_dir)
        for name in names
    )


# The file capability "cap_net_bind_service=ep" (VFS_CAP_REVISION_2, effective flag set).
NET_BIND_CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)


def _base_layer() -> LayerTar:
    """A first layer with one of every kind of entry and every kind of metadata."""
    return (
        LayerTar()
        .dir(".", mode=0o755)
        .dir("bin", mode=0o755, mtime_ns=BASE_TIME_NS + 1)
        .file("bin/tool", b"#!/bin/sh\necho tool\n", mode=0o755, uid=0, gid=0)
        .file("bin/su", b"setuid binary", mode=0o4755, uid=0, gid=0)
        .file("bin/wall", b"setgid binary", mode=0o2755, uid=0, gid=5)
        .file(
            "bin/ping", b"capable", mode=0o755, xattrs={"security.capability": NET_BIND_CAPABILITY}
        )
        .hardlink("bin/tool-link", "bin/tool")
        .symlink("bin/sh", "tool", mtime_ns=BASE_TIME_NS + 7)
        .symlink("bin/abs", "/bin/tool")
        .dir("etc", mode=0o755, xattrs={"user.dir-note": b"kept"})
        .file("etc/a", b"a1")
        .file("etc/b", b"b1")
        .file("etc/shadow", b"secret", mode=0o640, uid=0, gid=42)
        .file("etc/tagged", b"x", xattrs={"user.note": b"hello", "trusted.mark": b"\x00\xff"})
        .dir("home/user", mode=0o700, uid=1000, gid=1000)
        .file("home/user/.profile", b"export A=1\n", mode=0o600, uid=1000, gid=1000)
        .dir("tmp", mode=0o1777)
        .dir("srv/shared", mode=0o2775, uid=0, gid=100)
        .dir("opt/app/sub", mode=0o750, mtime_ns=BASE_TIME_NS + 3)
        .file("opt/app/old1", b"o1")
        .file("opt/app/old2", b"o2")
        .file("opt/app/sub/deep", b"deep")
        .file("gone", b"to be deleted")
        .char_device("dev/null", 1, 3)
        .fifo("run/pipe")
        .dir("opt/app", mode=0o755, mtime_ns=BASE_TIME_NS + 2)
        .dir("dev", mode=0o755, mtime_ns=BASE_TIME_NS + 4)
    )


class StorageDriverConformance:
    """The conformance tests; subclass and provide a ``driver_factory`` fixture."""

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        raise NotImplementedError("provide a driver_factory fixture returning a DriverFactory")

    @pytest.fixture
    def state_dir(self, tmp_path: Path) -> Path:
        path = tmp_path / "state"
        path.mkdir()
        return path

    @pytest.fixture
    def driver(self, driver_factory: DriverFactory, state_dir: Path) -> Iterator[StorageDriver]:
        driver = driver_factory(state_dir)
        yield driver
        for key in list(driver.keys()):
            driver.remove(key)

    @staticmethod
    def view(driver: StorageDriver, key: str, parents: Sequence[str], where: Path) -> Any:
        """Mount snapshot ``key`` at ``where`` (a context manager)."""
        return mounted(driver.mounts(key, parents), where)

    # ---------------------------------------------------------------- basics

    def test_driver_implements_the_protocol(self, driver: StorageDriver) -> None:
        assert isinstance(driver, StorageDriver)

    def test_empty_snapshot_mounts_an_empty_root(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        mounts = driver.prepare("empty", [])
        with mounted(mounts, tmp_path / "root") as root:
            assert os.listdir(root) == []
            (root / "hello").write_text("hi")
            assert (root / "hello").read_text() == "hi"
        assert list(driver.keys()) == ["empty"]

    def test_layer_contents_and_metadata_through_a_mount(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        driver.apply_layer("base", [], _base_layer().stream())
        driver.prepare("c", ["base"])
        with self.view(driver, "c", ["base"], tmp_path / "root") as root:
            state = tree_state(root)
            assert (root / "bin/tool").read_bytes() == b"#!/bin/sh\necho tool\n"
        assert state[""].mode == 0o755
        assert state["bin/su"].mode == 0o4755
        assert (state["bin/wall"].mode, state["bin/wall"].gid) == (0o2755, 5)
        assert state["tmp"].mode == 0o1777
        assert (state["srv/shared"].mode, state["srv/shared"].gid) == (0o2775, 100)
        assert (state["home/user"].mode, state["home/user"].uid) == (0o700, 1000)
        assert (state["home/user/.profile"].uid, state["home/user/.profile"].gid) == (1000, 1000)
        assert (state["etc/shadow"].mode, state["etc/shadow"].gid) == (0o640, 42)
        assert (state["bin/sh"].kind, state["bin/sh"].content) == ("symlink", "tool")
        assert state["bin/abs"].content == "/bin/tool"
        assert state["dev/null"].kind == "char" and state["dev/null"].rdev == os.makedev(1, 3)
        assert state["run/pipe"].kind == "fifo"
        assert state["bin/tool"].link_group == state["bin/tool-link"].link_group == "bin/tool"
        assert dict(state["bin/ping"].xattrs)["security.capability"] == NET_BIND_CAPABILITY

    def test_xattrs_user_and_trusted(self, driver: StorageDriver, tmp_path: Path) -> None:
        driver.apply_layer("base", [], _base_layer().stream())
        driver.prepare("c", ["base"])
        with self.view(driver, "c", ["base"], tmp_path / "root") as root:
            state = tree_state(root)
        assert dict(state["etc/tagged"].xattrs) == {
            "user.note": b"hello",
            "trusted.mark": b"\x00\xff",
        }
        assert dict(state["etc"].xattrs) == {"user.dir-note": b"kept"}

    def test_timestamps_to_the_nanosecond(self, driver: StorageDriver, tmp_path: Path) -> None:
        driver.apply_layer("base", [], _base_layer().stream())
        driver.prepare("c", ["base"])
        with self.view(driver, "c", ["base"], tmp_path / "root") as root:
            state = tree_state(root)
        assert state["etc/a"].mtime_ns == BASE_TIME_NS
        assert state["bin/sh"].mtime_ns == BASE_TIME_NS + 7, "symlink times are kept"
        # Directories get their times after their contents were written.
        assert state["bin"].mtime_ns == BASE_TIME_NS + 1
        assert state["opt/app"].mtime_ns == BASE_TIME_NS + 2
        assert state["opt/app/sub"].mtime_ns == BASE_TIME_NS + 3
        assert state["dev"].mtime_ns == BASE_TIME_NS + 4

    def test_whiteouts_and_opaque_dirs_across_four_layers(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        chain = self._whiteout_chain(driver)
        driver.prepare("c", chain)
        with self.view(driver, "c", chain, tmp_path / "root") as root:
            found = set(tree_state(root)) - {""}
            assert (root / "etc/c").read_bytes() == b"c4"
            assert (root / "etc/d").read_bytes() == b"d4"
            assert (root / "opt/app/new2").read_bytes() == b"n2"
            assert (root / "gone/inner").read_bytes() == b"back as a dir"
        expected = {
            "added2",
            "bin",
            "bin/abs",
            "bin/ping",
            "bin/sh",
            "bin/su",
            "bin/wall",
            "dev",
            "dev/null",
            "etc",
            "etc/c",
            "etc/d",
            "gone",
            "gone/inner",
            "home",
            "home/user",
            "home/user/.profile",
            "opt",
            "opt/app",
            "opt/app/new2",
            "run",
            "run/pipe",
            "srv",
            "srv/shared",
            "tmp",
        }
        assert found == expected
        assert not any(WHITEOUT_PREFIX in name for name in found)

    @staticmethod
    def _whiteout_chain(driver: StorageDriver) -> list[str]:
        """base, then three layers deleting, hiding and re-adding; returns the chain."""
        driver.apply_layer("base", [], _base_layer().stream())
        second = (
            LayerTar()
            .whiteout("etc/a")
            .dir("opt/app", mode=0o755)
            .opaque("opt/app")
            .file("opt/app/new1", b"n1")
            .whiteout("gone")
            .file("added2", b"2")
        )
        driver.apply_layer("second", ["base"], second.stream())
        third = (
            LayerTar()
            .file("etc/a", b"a3")
            .dir("gone", mode=0o755)
            .file("gone/inner", b"back as a dir")
            .whiteout("opt/app/new1")
            .file("opt/app/new2", b"n2")
            .whiteout("bin/tool")
            .whiteout("bin/tool-link")
        )
        driver.apply_layer("third", ["second", "base"], third.stream())
        # The marker may follow this layer's own entries (etc/d): those survive it.
        fourth = LayerTar().dir("etc", mode=0o755).file("etc/d", b"d4").opaque("etc")
        fourth.file("etc/c", b"c4").file("etc/a", b"a4").whiteout("etc/a")
        driver.apply_layer("fourth", ["third", "second", "base"], fourth.stream())
        return ["fourth", "third", "second", "base"]

    def test_opaque_marker_after_the_layers_own_children(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        lower = LayerTar().dir("d").dir("d/sub").file("d/sub/old").file("d/other")
        driver.apply_layer("l1", [], lower.stream())
        upper = LayerTar().file("d/sub/new", b"mine").opaque("d")
        driver.apply_layer("l2", ["l1"], upper.stream())
        driver.prepare("c", ["l2", "l1"])
        with self.view(driver, "c", ["l2", "l1"], tmp_path / "root") as root:
            assert sorted(tree_state(root)) == ["", "d", "d/sub", "d/sub/new"]

    def test_whiteout_inside_a_recreated_directory(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        driver.apply_layer("l1", [], LayerTar().dir("d").file("d/x").file("d/z").stream())
        driver.apply_layer("l2", ["l1"], LayerTar().whiteout("d").stream())
        # d/x is already gone below; the whiteout must not show up as a broken name.
        recreate = LayerTar().dir("d").whiteout("d/x").file("d/y", b"y")
        driver.apply_layer("l3", ["l2", "l1"], recreate.stream())
        chain = ["l3", "l2", "l1"]
        driver.prepare("c", chain)
        with self.view(driver, "c", chain, tmp_path / "root") as root:
            assert sorted(tree_state(root)) == ["", "d", "d/y"]

    def test_a_layer_over_a_changed_type(self, driver: StorageDriver, tmp_path: Path) -> None:
        driver.apply_layer(
            "l1", [], LayerTar().dir("x").file("x/in", b"1").file("y", b"file").stream()
        )
        upper = LayerTar().file("x", b"now a file").dir("y").file("y/in", b"now a dir")
        driver.apply_layer("l2", ["l1"], upper.stream())
        driver.prepare("c", ["l2", "l1"])
        with self.view(driver, "c", ["l2", "l1"], tmp_path / "root") as root:
            assert (root / "x").read_bytes() == b"now a file"
            assert sorted(os.listdir(root / "y")) == ["in"]

    # ---------------------------------------------------------------- diffs

    def _round_trip(
        self,
        driver: StorageDriver,
        chain: list[str],
        tmp_path: Path,
        change: Callable[[Path], None],
    ) -> tuple[dict[str, EntryState], dict[str, EntryState], bytes]:
        """Change a snapshot through its mount, diff it, apply the diff as a layer on the same
        chain, and return the two trees as containers see them plus the diff."""
        driver.prepare("work", chain)
        with self.view(driver, "work", chain, tmp_path / "before") as root:
            change(root)
            before = tree_state(root)
        out = io.BytesIO()
        driver.diff("work", chain, out)
        diff = out.getvalue()
        driver.apply_layer("committed", chain, io.BytesIO(diff))
        driver.prepare("again", ["committed", *chain])
        with self.view(driver, "again", ["committed", *chain], tmp_path / "after") as root:
            after = tree_state(root)
        return before, after, diff

    def test_diff_round_trip_reproduces_the_snapshot(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        chain = self._whiteout_chain(driver)

        def change(root: Path) -> None:
            (root / "etc/c").write_bytes(b"changed in place")
            (root / "added2").unlink()
            (root / "newdir/sub").mkdir(parents=True)
            (root / "newdir/sub/file").write_bytes(b"new")
            os.chmod(root / "bin/su", 0o4711)
            os.chown(root / "srv/shared", 7, 8)
            os.setxattr(root / "run/pipe", "trusted.new", b"1")
            os.setxattr(root / "bin/ping", "user.extra", b"2")
            os.link(root / "bin/su", root / "bin/su-link")
            os.symlink("../etc/c", root / "bin/c-link")
            os.utime(root / "home/user/.profile", ns=(BASE_TIME_NS, BASE_TIME_NS + 99))
            # Replace a directory wholesale: an opaque directory in the diff.
            for child in (root / "opt/app").iterdir():
                child.unlink()
            os.rmdir(root / "opt/app")
            (root / "opt/app").mkdir(mode=0o711)
            (root / "opt/app/fresh").write_bytes(b"fresh")
            # Replace a file by a directory and a directory by a file.
            (root / "gone/inner").unlink()
            (root / "gone").rmdir()
            (root / "gone").write_bytes(b"a file again")
            (root / "etc/c").rename(root / "etc/c2")
            os.utime(root / "bin", ns=(BASE_TIME_NS, BASE_TIME_NS + 5))

        before, after, diff = self._round_trip(driver, chain, tmp_path, change)
        assert after == before
        names = archive_names(diff)
        assert "added2" not in names and ".wh.added2" in names
        assert "bin/tool" not in names, "an unchanged file is not in the diff"
        assert before["bin/su-link"].link_group == "bin/su"

    def test_diff_of_an_untouched_snapshot_changes_nothing(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        driver.apply_layer("base", [], _base_layer().stream())
        before, after, diff = self._round_trip(driver, ["base"], tmp_path, lambda root: None)
        assert after == before
        names = archive_names(diff)
        assert [name for name in names if name not in (".", "")] == []

    def test_diff_catches_same_size_rewrite_with_restored_mtime(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        driver.apply_layer("base", [], _base_layer().stream())

        def sneaky(root: Path) -> None:
            target = root / "etc/b"
            info = target.stat()
            target.write_bytes(b"B2")  # same size as b"b1"
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))

        before, after, _ = self._round_trip(driver, ["base"], tmp_path, sneaky)
        assert after == before
        assert after["etc/b"].content == hashlib.sha256(b"B2").hexdigest()

    def test_nesting_deeper_than_pythons_stack(self, driver: StorageDriver, tmp_path: Path) -> None:
        depth = 1100  # past the default recursion limit, within PATH_MAX

        def nest(root: Path) -> None:
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
            for _ in range(depth):
                os.mkdir("d", dir_fd=fd)
                inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = inner
            os.close(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
            os.close(fd)

        driver.prepare("work", [])
        with self.view(driver, "work", [], tmp_path / "before") as root:
            nest(root)
        out = io.BytesIO()
        driver.diff("work", [], out)
        driver.apply_layer("deep", [], io.BytesIO(out.getvalue()))
        driver.prepare("again", ["deep"])
        with self.view(driver, "again", ["deep"], tmp_path / "after") as root:
            assert (root / "/".join(["d"] * depth) / "bottom").exists()
        for key in ("again", "deep", "work"):
            driver.remove(key)
        assert list(driver.keys()) == []

    # ---------------------------------------------------------------- chains and restarts

    def test_deep_chain(self, driver: StorageDriver, tmp_path: Path) -> None:
        chain: list[str] = []
        for index in range(130):
            layer = LayerTar().file(f"files/f{index:03d}", str(index).encode())
            if index % 10 == 9:
                layer.whiteout(f"files/f{index - 1:03d}")
            driver.apply_layer(f"layer-{index}", chain, layer.stream())
            chain.insert(0, f"layer-{index}")
        driver.prepare("deep", chain)
        with self.view(driver, "deep", chain, tmp_path / "root") as root:
            names = set(os.listdir(root / "files"))
            assert (root / "files/f129").read_bytes() == b"129"
        assert len(names) == 130 - 13
        assert "f008" not in names and "f009" in names
        driver.remove("deep")
        assert mounts_below(tmp_path) == []

    def test_mounts_again_after_a_restart(
        self, driver_factory: DriverFactory, state_dir: Path, tmp_path: Path
    ) -> None:
        first = driver_factory(state_dir)
        first.apply_layer("base", [], _base_layer().stream())
        mounts = first.prepare("c", ["base"])
        with mounted(mounts, tmp_path / "one") as root:
            (root / "kept").write_bytes(b"across restarts")
        second = driver_factory(state_dir)
        assert sorted(second.keys()) == ["base", "c"]
        with mounted(second.mounts("c", ["base"]), tmp_path / "two") as root:
            assert (root / "kept").read_bytes() == b"across restarts"
            assert (root / "etc/a").read_bytes() == b"a1"
        for key in ("c", "base"):
            second.remove(key)

    def test_a_layer_shared_by_two_snapshots_is_not_changed_by_them(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        driver.apply_layer("base", [], _base_layer().stream())
        driver.prepare("one", ["base"])
        driver.prepare("two", ["base"])
        with self.view(driver, "one", ["base"], tmp_path / "one") as root:
            (root / "etc/a").write_bytes(b"one's")
            (root / "etc/b").unlink()
        with self.view(driver, "two", ["base"], tmp_path / "two") as root:
            assert (root / "etc/a").read_bytes() == b"a1"
            assert (root / "etc/b").exists()

    # ---------------------------------------------------------------- accounting

    def test_usage_counts_what_each_object_adds(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        usage = driver.apply_layer("l1", [], LayerTar().file("big", b"x" * 10_000).stream())
        assert isinstance(usage, Usage) and usage.size >= 10_000
        small = driver.apply_layer("l2", ["l1"], LayerTar().file("small", b"y" * 10).stream())
        assert small.size < 10_000
        assert driver.usage("l1").size >= 10_000
        driver.prepare("c", ["l2", "l1"])
        assert driver.usage("c").size < 10_000
        with self.view(driver, "c", ["l2", "l1"], tmp_path / "root") as root:
            (root / "written").write_bytes(b"z" * 50_000)
        assert driver.usage("c").size >= 50_000

    def test_keys_lists_layers_and_snapshots(self, driver: StorageDriver) -> None:
        driver.apply_layer("sha256:aa", [], LayerTar().file("f").stream())
        driver.prepare("container-1", ["sha256:aa"])
        assert sorted(driver.keys()) == ["container-1", "sha256:aa"]

    # ---------------------------------------------------------------- errors and cleanup

    def test_existing_keys_conflict(self, driver: StorageDriver) -> None:
        driver.apply_layer("l1", [], LayerTar().file("f").stream())
        with pytest.raises(Conflict):
            driver.apply_layer("l1", [], LayerTar().file("g").stream())
        driver.prepare("c", ["l1"])
        with pytest.raises(Conflict):
            driver.prepare("c", ["l1"])
        with pytest.raises(Conflict):
            driver.apply_layer("c", [], LayerTar().stream())

    def test_missing_keys(self, driver: StorageDriver) -> None:
        with pytest.raises(NotFound):
            driver.usage("nothing")
        with pytest.raises(NotFound):
            driver.prepare("c", ["no-such-layer"])
        with pytest.raises(NotFound):
            driver.mounts("nothing", [])
        with pytest.raises(NotFound):
            driver.diff("nothing", [], io.BytesIO())
        driver.remove("nothing")
        assert list(driver.keys()) == []

    @pytest.mark.parametrize("key", ["", "..", ".", "a/b", "a b", "x" * 300])
    def test_invalid_keys_are_refused(self, driver: StorageDriver, key: str) -> None:
        with pytest.raises(InvalidParameter):
            driver.apply_layer(key, [], LayerTar().stream())

    def test_a_failed_apply_leaves_nothing(
        self, driver: StorageDriver, state_dir: Path, tmp_path: Path
    ) -> None:
        driver.apply_layer("base", [], _base_layer().stream())
        hostile = LayerTar().file("fine", b"ok").symlink("evil", "/").file("evil/x", b"x")
        files_before = stored_files(state_dir)
        with pytest.raises(InvalidParameter, match="symlink"):
            driver.apply_layer("bad", ["base"], hostile.stream())
        assert sorted(driver.keys()) == ["base"]
        assert stored_files(state_dir) == files_before
        truncated = LayerTar().file("big", b"z" * 100_000).build()[:20_000]
        with pytest.raises(InvalidParameter):
            driver.apply_layer("cut", ["base"], io.BytesIO(truncated))
        assert stored_files(state_dir) == files_before

    def test_removal_leaves_nothing_behind(
        self, driver: StorageDriver, state_dir: Path, tmp_path: Path
    ) -> None:
        chain = self._whiteout_chain(driver)
        driver.prepare("c", chain)
        with self.view(driver, "c", chain, tmp_path / "root") as root:
            (root / "data").write_bytes(b"x" * 1000)
        driver.prepare("empty", [])
        for key in ["c", "empty", *chain]:
            driver.remove(key)
            driver.remove(key)  # twice: a missing key is fine
        assert list(driver.keys()) == []
        assert stored_files(state_dir) == []
        assert mounts_below(tmp_path) == []

    # ---------------------------------------------------------------- hostile layers
    #
    # A refused layer raises InvalidParameter naming the problem, writes nothing outside the
    # driver's state directory and leaves no layer (no key, no files) behind. A contained
    # trick (absolute names, duplicates) lands inside the layer.

    @pytest.fixture
    def outside(self, tmp_path: Path) -> Path:
        """A directory beside the driver's state dir that no layer may ever write into."""
        path = tmp_path / "outside"
        path.mkdir()
        (path / "victim").write_bytes(b"untouched")
        return path

    @staticmethod
    def assert_outside_untouched(outside: Path) -> None:
        assert sorted(os.listdir(outside)) == ["victim"]
        assert (outside / "victim").read_bytes() == b"untouched"

    def refuse(
        self, driver: StorageDriver, state_dir: Path, outside: Path, layer: bytes, match: str
    ) -> None:
        """Apply ``layer`` as key "hostile" and check it is refused cleanly."""
        before = stored_files(state_dir)
        with pytest.raises(InvalidParameter, match=match):
            driver.apply_layer("hostile", [], io.BytesIO(layer))
        assert "hostile" not in list(driver.keys())
        assert stored_files(state_dir) == before
        self.assert_outside_untouched(outside)

    def layer_files(
        self, driver: StorageDriver, key: str, tmp_path: Path
    ) -> dict[str, bytes | str]:
        """What a container on layer ``key`` sees: file contents and symlink targets by path."""
        driver.prepare(f"{key}-view", [key])
        seen: dict[str, bytes | str] = {}
        with self.view(driver, f"{key}-view", [key], tmp_path / f"{key}-mnt") as root:
            for directory, _, names in os.walk(root):
                for name in names:
                    path = Path(directory, name)
                    relative = str(path.relative_to(root))
                    seen[relative] = os.readlink(path) if path.is_symlink() else path.read_bytes()
        driver.remove(f"{key}-view")
        return seen

    def test_hostile_dotdot_component_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().file("ok", b"1").file("../outside/victim", b"pwned").build()
        self.refuse(driver, state_dir, outside, layer, "'..' components")

    def test_hostile_dotdot_in_the_middle_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().dir("a").file("a/../../../outside/victim", b"pwned").build()
        self.refuse(driver, state_dir, outside, layer, "'..' components")

    def test_hostile_absolute_path_is_contained_in_the_layer(
        self, driver: StorageDriver, outside: Path, tmp_path: Path
    ) -> None:
        victim = str(outside / "victim")
        layer = LayerTar().file(victim, b"inside").file("/etc/x", b"x")
        driver.apply_layer("abs", [], layer.stream())
        self.assert_outside_untouched(outside)
        files = self.layer_files(driver, "abs", tmp_path)
        assert files[victim.lstrip("/")] == b"inside"
        assert files["etc/x"] == b"x"

    def test_hostile_overlong_name_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().file("d/" * 2500 + "f", b"x").build()
        self.refuse(driver, state_dir, outside, layer, "longer than")

    def test_hostile_whiteout_of_dotdot_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().dir("a").file("a/.wh...", b"").build()
        self.refuse(driver, state_dir, outside, layer, "whiteout must name")

    def test_hostile_symlink_climbing_out_of_the_root_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().dir("a").symlink("a/escape", "../../outside").build()
        self.refuse(driver, state_dir, outside, layer, "points outside")

    def test_hostile_absolute_symlink_is_kept_for_the_container(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        # Absolute targets resolve inside the container's root, so they are harmless as such.
        layer = LayerTar().file("etc/passwd", b"root").symlink("link", "/etc/passwd")
        driver.apply_layer("links", [], layer.stream())
        assert self.layer_files(driver, "links", tmp_path)["link"] == "/etc/passwd"

    def test_hostile_write_through_an_earlier_symlink_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().symlink("dir", str(outside)).file("dir/victim", b"pwned").build()
        self.refuse(driver, state_dir, outside, layer, "writing through a symlink")

    def test_hostile_write_through_a_symlink_inside_the_root_is_refused_too(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().dir("real").symlink("alias", "real").file("alias/f", b"x").build()
        self.refuse(driver, state_dir, outside, layer, "writing through a symlink")

    def test_hostile_directory_through_a_symlink_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().symlink("dir", str(outside)).dir("dir/sub").build()
        self.refuse(driver, state_dir, outside, layer, "writing through a symlink")

    def test_hostile_whiteout_through_a_symlink_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        # Applied as a deletion, this would delete the victim outside the root.
        layer = LayerTar().symlink("dir", str(outside)).whiteout("dir/victim").build()
        self.refuse(driver, state_dir, outside, layer, "writing through a symlink")

    def test_hostile_opaque_marker_through_a_symlink_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().symlink("dir", str(outside)).opaque("dir").build()
        self.refuse(driver, state_dir, outside, layer, "writing through a symlink")

    def test_hostile_file_replacing_a_symlink_does_not_write_through_it(
        self, driver: StorageDriver, outside: Path, tmp_path: Path
    ) -> None:
        layer = LayerTar().symlink("f", str(outside / "victim")).file("f", b"replaced")
        driver.apply_layer("dup", [], layer.stream())
        self.assert_outside_untouched(outside)
        assert self.layer_files(driver, "dup", tmp_path)["f"] == b"replaced"

    def test_hostile_hard_link_climbing_out_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().hardlink("h", "../outside/victim").build()
        self.refuse(driver, state_dir, outside, layer, "'..' components")

    def test_hostile_hard_link_to_an_absolute_host_path_stays_inside(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        # "/…/outside/victim" names the layer's own path; it does not exist there.
        layer = LayerTar().hardlink("h", str(outside / "victim")).build()
        self.refuse(driver, state_dir, outside, layer, "not in the layer")

    def test_hostile_hard_link_through_a_symlink_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().symlink("dir", str(outside)).hardlink("h", "dir/victim").build()
        self.refuse(driver, state_dir, outside, layer, "writing through a symlink")

    def test_hostile_hard_link_to_a_symlink_links_the_symlink_itself(
        self, driver: StorageDriver, outside: Path, tmp_path: Path
    ) -> None:
        layer = LayerTar().symlink("s", str(outside / "victim")).hardlink("h", "s")
        driver.apply_layer("hl", [], layer.stream())
        assert self.layer_files(driver, "hl", tmp_path)["h"] == str(outside / "victim")
        self.assert_outside_untouched(outside)

    def test_hostile_hard_link_to_a_directory_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().dir("d").hardlink("h", "d").build()
        self.refuse(driver, state_dir, outside, layer, "hard link to directory")

    def test_hostile_entry_below_a_regular_file_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().file("f", b"x").file("f/child", b"y").build()
        self.refuse(driver, state_dir, outside, layer, "not a directory")

    def test_hostile_root_that_is_not_a_directory_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().file("./", b"x").build()
        self.refuse(driver, state_dir, outside, layer, "root must be a directory")

    def test_hostile_duplicate_entries_later_wins(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        layer = (
            LayerTar()
            .file("f", b"first")
            .file("f", b"second")
            .dir("d")
            .file("d/child", b"c")
            .file("d", b"now a file")
            .file("e", b"a file")
            .dir("e")
            .file("e/child", b"e")
            .dir("kept")
            .file("kept/child", b"k")
            .dir("kept", mode=0o700)
        )
        driver.apply_layer("dups", [], layer.stream())
        assert self.layer_files(driver, "dups", tmp_path) == {
            "f": b"second",
            "d": b"now a file",
            "e/child": b"e",
            "kept/child": b"k",
        }

    def test_hostile_hard_link_over_itself_keeps_the_file(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        layer = LayerTar().file("f", b"data").hardlink("g", "f").hardlink("g", "f")
        driver.apply_layer("relink", [], layer.stream())
        assert self.layer_files(driver, "relink", tmp_path) == {"f": b"data", "g": b"data"}

    def test_hostile_absurd_file_size_is_refused_before_reading(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        entry = tarfile.TarInfo("huge")
        entry.size = 1 << 62  # 4 EiB, encoded in a PAX header; no data follows
        layer = entry.tobuf(tarfile.PAX_FORMAT) + b"\0" * 1024
        self.refuse(driver, state_dir, outside, layer, "claims 4611686018427387904 bytes")

    def test_hostile_absurd_extended_header_is_refused_before_reading(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        header = tarfile.TarInfo("././@PaxHeader")
        header.type = tarfile.XHDTYPE
        header.size = 1 << 32
        layer = header.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 4096
        self.refuse(driver, state_dir, outside, layer, "extended header")

    def test_hostile_truncated_layer_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        layer = LayerTar().file("a", b"x" * 5000).file("b", b"y" * 50_000).build()[:10_240]
        self.refuse(driver, state_dir, outside, layer, "truncated|unexpected end|not a valid tar")

    def test_hostile_garbage_is_refused(
        self, driver: StorageDriver, state_dir: Path, outside: Path
    ) -> None:
        self.refuse(driver, state_dir, outside, os.urandom(3000), "not a valid tar")

    def test_hostile_overlayfs_bookkeeping_xattrs_are_dropped(
        self, driver: StorageDriver, tmp_path: Path
    ) -> None:
        # Were it kept, trusted.overlay.opaque would hide the lower layer's files from overlay.
        driver.apply_layer("l1", [], LayerTar().dir("d").file("d/lower", b"1").stream())
        forged = {"trusted.overlay.opaque": b"y", "trusted.overlay.redirect": b"/elsewhere"}
        layer = LayerTar().dir("d", xattrs=forged).file("d/upper", b"2", xattrs=forged)
        driver.apply_layer("l2", ["l1"], layer.stream())
        driver.prepare("view", ["l2", "l1"])
        with self.view(driver, "view", ["l2", "l1"], tmp_path / "mnt") as root:
            assert sorted(os.listdir(root / "d")) == ["lower", "upper"]
