"""``inroot.extract_into``: a tar written under a directory of a container root, never leaving it."""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import IdMapping
from dockyard.linux import inroot


def tar_of(*entries: tuple[str, str, str | bytes] | tarfile.TarInfo) -> io.BytesIO:
    """A tar of ``(kind, name, data)`` entries: kind ``f`` (data = content), ``d``, ``l``
    (symlink, data = target), ``h`` (hard link, data = target); or ready TarInfos."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for item in entries:
            if isinstance(item, tarfile.TarInfo):
                archive.addfile(item, io.BytesIO(b"x" * item.size) if item.isreg() else None)
                continue
            kind, name, data = item
            info = tarfile.TarInfo(name)
            info.mtime = 1_600_000_000
            if kind == "f":
                content = data.encode() if isinstance(data, str) else data
                info.size, info.mode = len(content), 0o640
                archive.addfile(info, io.BytesIO(content))
                continue
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
            elif kind == "l":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
            archive.addfile(info)
    buffer.seek(0)
    return buffer


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "dest").mkdir(parents=True)
    return root


@pytest.fixture
def host(tmp_path: Path) -> Path:
    """A directory outside the root standing for the host's /etc."""
    host = tmp_path / "host-etc"
    host.mkdir()
    (host / "shadow").write_text("secret")
    return host


def test_files_dirs_links_modes_and_times_are_kept(root: Path) -> None:
    stats = inroot.extract_into(
        str(root),
        "/dest",
        tar_of(
            ("d", "sub", ""),
            ("f", "sub/a.txt", "hello"),
            ("l", "sub/link", "a.txt"),
            ("h", "sub/hard", "sub/a.txt"),
            ("f", "implied/b.txt", "b"),
        ),
    )
    dest = root / "dest"
    assert stats.entries == 5
    assert (dest / "sub/a.txt").read_text() == "hello"
    assert os.readlink(dest / "sub/link") == "a.txt"
    assert (dest / "sub/hard").stat().st_ino == (dest / "sub/a.txt").stat().st_ino
    assert (dest / "sub/a.txt").stat().st_mode & 0o7777 == 0o640
    assert (dest / "sub").stat().st_mode & 0o7777 == 0o750
    assert (dest / "sub/a.txt").stat().st_mtime == 1_600_000_000
    assert (dest / "sub").stat().st_mtime == 1_600_000_000
    assert (dest / "implied").stat().st_mode & 0o7777 == 0o755


def test_symlinks_are_kept_whatever_their_target(root: Path) -> None:
    # docker resolves them in the container's root when it uses them; nothing here follows them
    inroot.extract_into(str(root), "/dest", tar_of(("l", "up", "../../../etc"), ("l", "abs", "/")))
    assert os.readlink(root / "dest/up") == "../../../etc"
    assert os.readlink(root / "dest/abs") == "/"


def test_whiteout_names_are_ordinary_files(root: Path) -> None:
    (root / "dest/kept").write_text("x")
    inroot.extract_into(str(root), "dest", tar_of(("f", ".wh.kept", "")))
    assert (root / "dest/kept").exists()
    assert (root / "dest/.wh.kept").exists()


def test_destination_resolves_inside_the_root(root: Path, host: Path) -> None:
    # /dest/etc in the container is a symlink to the host's /etc path: it resolves to the
    # same path below the root, which does not exist
    os.symlink(str(host), root / "dest/etc")
    with pytest.raises(FileNotFoundError):
        inroot.extract_into(str(root), "/dest/etc", tar_of(("f", "shadow", "pwned")))
    # once that path exists inside the root, the archive lands there
    inside = root / str(host).lstrip("/")
    inside.mkdir(parents=True)
    inroot.extract_into(str(root), "/dest/etc", tar_of(("f", "shadow", "pwned")))
    assert (inside / "shadow").read_text() == "pwned"
    assert (host / "shadow").read_text() == "secret"
    # ".." cannot climb above the root either
    inroot.extract_into(str(root), "/../../dest", tar_of(("f", "up.txt", "u")))
    assert (root / "dest/up.txt").read_text() == "u"


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([("f", "../escape", "x")], "'..' components are not allowed"),
        ([("f", "a/../../escape", "x")], "'..' components are not allowed"),
        ([("h", "shadow-link", "/HOST/shadow")], "is not in the archive"),
        ([("h", "shadow-link", "../host-etc/shadow")], "'..' components are not allowed"),
        # a symlink the archive makes, then a file through it
        ([("l", "etc", "/HOST"), ("f", "etc/shadow", "pwned")], "is a symlink"),
        ([("l", "etc", "../../host-etc"), ("f", "etc/shadow", "pwned")], "is a symlink"),
    ],
)
def test_hostile_entries_are_refused(
    root: Path, host: Path, entries: list[tuple[str, str, str]], message: str
) -> None:
    entries = [(k, n, d.replace("/HOST", str(host))) for k, n, d in entries]
    with pytest.raises(InvalidParameter, match=message):
        inroot.extract_into(str(root), "/dest", tar_of(*entries))
    assert (host / "shadow").read_text() == "secret"
    assert (host / "shadow").stat().st_nlink == 1
    assert not (root.parent / "escape").exists()
    assert not (root / "escape").exists()


def test_absolute_names_land_below_the_destination(root: Path, host: Path) -> None:
    inroot.extract_into(str(root), "/dest", tar_of(("f", str(host / "shadow"), "pwned")))
    assert (root / "dest" / str(host).lstrip("/") / "shadow").read_text() == "pwned"
    assert (host / "shadow").read_text() == "secret"


def test_a_symlink_already_in_the_root_is_never_written_through(root: Path, host: Path) -> None:
    os.symlink(str(host), root / "dest/etc")
    with pytest.raises(InvalidParameter, match="'etc' is a symlink"):
        inroot.extract_into(str(root), "/dest", tar_of(("f", "etc/shadow", "pwned")))
    assert (host / "shadow").read_text() == "secret"
    # the symlink itself may be replaced by a file of that name
    inroot.extract_into(str(root), "/dest", tar_of(("f", "etc", "now a file")))
    assert (root / "dest/etc").read_text() == "now a file"
    assert (host / "shadow").read_text() == "secret"


def test_an_error_leaves_what_was_there_and_what_came_before(root: Path) -> None:
    (root / "dest/existing").write_text("keep me")
    with pytest.raises(InvalidParameter, match=re.escape("'../bad'")):
        inroot.extract_into(
            str(root), "/dest", tar_of(("f", "first.txt", "1"), ("f", "../bad", "2"))
        )
    assert (root / "dest/existing").read_text() == "keep me"
    assert (root / "dest/first.txt").read_text() == "1"


def test_not_a_tar_is_refused(root: Path) -> None:
    with pytest.raises(InvalidParameter, match="archive is not a valid tar archive"):
        inroot.extract_into(str(root), "/dest", io.BytesIO(b"not a tar" * 100))
    assert (root / "dest").is_dir()


def test_no_overwrite_dir_non_dir(root: Path) -> None:
    (root / "dest/adir").mkdir()
    (root / "dest/afile").write_text("f")
    with pytest.raises(InvalidParameter, match="cannot overwrite directory 'adir'"):
        inroot.extract_into(
            str(root), "/dest", tar_of(("f", "adir", "x")), no_overwrite_dir_non_dir=True
        )
    with pytest.raises(InvalidParameter, match="cannot overwrite non-directory 'afile'"):
        inroot.extract_into(
            str(root), "/dest", tar_of(("d", "afile", "")), no_overwrite_dir_non_dir=True
        )
    assert (root / "dest/adir").is_dir()
    assert (root / "dest/afile").read_text() == "f"
    # without the option, docker replaces either way
    inroot.extract_into(str(root), "/dest", tar_of(("f", "adir", "x"), ("d", "afile", "")))
    assert (root / "dest/adir").read_text() == "x"
    assert (root / "dest/afile").is_dir()


def _owned(uid: int, gid: int, name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.uid, info.gid, info.size = uid, gid, 1
    return info


def test_chown_and_id_maps(root: Path) -> None:
    inroot.extract_into(str(root), "/dest", tar_of(_owned(5, 6, "own/a")))
    assert (root / "dest/own/a").stat().st_uid == 5
    assert (root / "dest/own/a").stat().st_gid == 6
    inroot.extract_into(str(root), "/dest", tar_of(_owned(5, 6, "b")), chown=(7, 8))
    assert ((root / "dest/b").stat().st_uid, (root / "dest/b").stat().st_gid) == (7, 8)
    maps = inroot.IdMaps(
        (IdMapping(container_id=0, host_id=100000, size=65536),),
        (IdMapping(container_id=0, host_id=200000, size=65536),),
    )
    inroot.extract_into(str(root), "/dest", tar_of(_owned(5, 6, "mapped/c")), id_maps=maps)
    assert ((root / "dest/mapped/c").stat().st_uid, (root / "dest/mapped/c").stat().st_gid) == (
        100005,
        200006,
    )
    # an implied parent belongs to the container's root
    assert (root / "dest/mapped").stat().st_uid == 100000
    inroot.extract_into(str(root), "/dest", tar_of(_owned(5, 6, "d")), chown=(1, 2), id_maps=maps)
    assert ((root / "dest/d").stat().st_uid, (root / "dest/d").stat().st_gid) == (100001, 200002)
    with pytest.raises(InvalidParameter, match="does not map uid 70000"):
        inroot.extract_into(str(root), "/dest", tar_of(_owned(70000, 0, "e")), id_maps=maps)


def test_make_directories_stays_inside_the_root(root: Path, host: Path) -> None:
    os.symlink(str(host), root / "hostlink")
    inroot.make_directories(str(root), "/hostlink/new/deeper", owner=(3, 4))
    made = root / str(host).lstrip("/") / "new/deeper"
    assert made.is_dir()
    assert not (host / "new").exists()
    assert made.stat().st_mode & 0o7777 == 0o755
    assert (made.stat().st_uid, made.stat().st_gid) == (3, 4)
    (root / "afile").write_text("")
    with pytest.raises(NotADirectoryError):
        inroot.make_directories(str(root), "/afile/sub")
    # existing directories keep their owner and mode
    (root / "dest").chmod(0o700)
    inroot.make_directories(str(root), "/dest/x", owner=(3, 4))
    assert (root / "dest").stat().st_mode & 0o7777 == 0o700
    assert (root / "dest").stat().st_uid == 0
