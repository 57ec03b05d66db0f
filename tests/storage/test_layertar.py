"""extract_layer and DiffWriter on plain directories, without a driver."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.linux.layertar import (
    OVERLAY_OPAQUE_XATTR,
    DeleteWhiteouts,
    DiffWriter,
    ExtractLimits,
    OverlayWhiteouts,
    clean_entry_name,
    extract_layer,
    visible_in_layers,
    walk_tree,
)
from dockyard.testing.storage import BASE_TIME_NS, LayerTar, tree_state


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "layer"
    path.mkdir()
    return path


def test_names_are_cleaned_like_docker() -> None:
    assert clean_entry_name("/etc//passwd") == ["etc", "passwd"]
    assert clean_entry_name("./usr/./bin/") == ["usr", "bin"]
    assert clean_entry_name("./") == []
    with pytest.raises(InvalidParameter, match=r"'\.\.' components"):
        clean_entry_name("a/../b")


def test_stats_count_entries_and_bytes(target: Path) -> None:
    layer = LayerTar().dir("d").file("d/a", b"12345").file("b", b"678").whiteout("gone")
    stats = extract_layer(layer.stream(), target, DeleteWhiteouts())
    assert (stats.entries, stats.file_bytes) == (4, 8)


def test_directory_times_are_set_after_their_contents(target: Path) -> None:
    layer = LayerTar().dir("d", mtime_ns=BASE_TIME_NS).file("d/late", b"x", mtime_ns=5)
    extract_layer(layer.stream(), target, DeleteWhiteouts())
    assert os.stat(target / "d").st_mtime_ns == BASE_TIME_NS
    assert os.stat(target / "d/late").st_mtime_ns == 5


def test_setuid_survives_a_change_of_owner(target: Path) -> None:
    layer = LayerTar().file("su", b"x", mode=0o6755, uid=1234, gid=4321)
    extract_layer(layer.stream(), target, DeleteWhiteouts())
    info = os.stat(target / "su")
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o6755, 1234, 4321)


def test_delete_whiteouts_remove_from_the_copy(target: Path) -> None:
    (target / "old").write_text("x")
    (target / "dir").mkdir()
    (target / "dir/lower").write_text("x")
    layer = LayerTar().whiteout("old").file("dir/mine", b"m").opaque("dir")
    extract_layer(layer.stream(), target, DeleteWhiteouts())
    assert sorted(os.listdir(target)) == ["dir"]
    assert os.listdir(target / "dir") == ["mine"]


def test_overlay_whiteouts_become_char_devices_and_xattrs(target: Path, tmp_path: Path) -> None:
    # (A whiteout hiding nothing would list as an unopenable name in an unmerged directory.)
    lower = tmp_path / "lower"
    (lower / "dir").mkdir(parents=True)
    (lower / "old").write_text("x")
    layer = LayerTar().whiteout("old").whiteout("never-existed").dir("dir").opaque("dir")
    extract_layer(layer.stream(), target, OverlayWhiteouts([lower]))
    info = os.lstat(target / "old")
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == 0
    assert not (target / "never-existed").exists(), "a whiteout hiding nothing is not stored"
    assert os.getxattr(target / "dir", OVERLAY_OPAQUE_XATTR) == b"y"


def test_a_custom_whiteout_handler_sees_every_marker(target: Path) -> None:
    calls: list[tuple] = []

    class Recorder:
        def whiteout(self, layer_fd, parent_fd, parent, name, entry) -> None:
            calls.append(("whiteout", parent, name))

        def opaque(self, layer_fd, dir_fd, directory, written) -> None:
            calls.append(("opaque", directory, sorted(written[directory])))

    layer = LayerTar().dir("a").file("a/kept", b"").opaque("a").whiteout("a/b/c")
    extract_layer(layer.stream(), target, Recorder())
    assert calls == [("opaque", ("a",), ["kept"]), ("whiteout", ("a", "b"), "c")]


def test_opaque_after_children_prunes_the_parents_subtree(target: Path) -> None:
    (target / "d/sub").mkdir(parents=True)
    (target / "d/sub/old").write_text("lower")
    (target / "d/other").write_text("lower")
    layer = LayerTar().file("d/sub/new", b"mine").opaque("d")
    extract_layer(layer.stream(), target, DeleteWhiteouts())
    assert [p.relative_to(target).as_posix() for p in sorted(target.rglob("*"))] == [
        "d",
        "d/sub",
        "d/sub/new",
    ]


def test_visibility_follows_overlay_lookup(tmp_path: Path) -> None:
    top, middle, bottom = (tmp_path / name for name in ("top", "middle", "bottom"))
    for layer in (top, middle, bottom):
        layer.mkdir()
    (bottom / "d").mkdir()
    (bottom / "d/x").write_text("")
    (bottom / "e").mkdir()
    (bottom / "e/y").write_text("")
    os.mknod(middle / "d", stat.S_IFCHR | 0o600, 0)  # middle deletes d
    (top / "e").mkdir()
    os.setxattr(top / "e", OVERLAY_OPAQUE_XATTR, b"y")  # top hides bottom's e/*
    layers = [str(top), str(middle), str(bottom)]
    assert visible_in_layers(layers, ["e"])
    assert not visible_in_layers(layers, ["e", "y"])
    assert not visible_in_layers(layers, ["d", "x"])
    assert not visible_in_layers(layers, ["d"])
    assert visible_in_layers(layers[1:][1:], ["d", "x"])


def test_too_many_entries(target: Path) -> None:
    layer = LayerTar().file("a").file("b").file("c")
    with pytest.raises(InvalidParameter, match="more than 2 entries"):
        extract_layer(
            layer.stream(), target, DeleteWhiteouts(), limits=ExtractLimits(max_entries=2)
        )
    assert not target.exists(), "the partial layer is removed"


def test_too_many_bytes_in_total(target: Path) -> None:
    layer = LayerTar().file("a", b"x" * 600).file("b", b"y" * 600)
    limits = ExtractLimits(max_total_size=1000)
    with pytest.raises(InvalidParameter, match="more than 1000 bytes"):
        extract_layer(layer.stream(), target, DeleteWhiteouts(), limits=limits)
    assert not target.exists()


def test_oversized_file(target: Path) -> None:
    layer = LayerTar().file("a", b"x" * 600)
    limits = ExtractLimits(max_file_size=100)
    with pytest.raises(InvalidParameter, match="claims 600 bytes"):
        extract_layer(layer.stream(), target, DeleteWhiteouts(), limits=limits)


def test_oversized_pax_header(target: Path) -> None:
    layer = LayerTar().file("a", b"x", xattrs={"user.big": b"v" * 5000})
    limits = ExtractLimits(max_header_size=1000)
    with pytest.raises(InvalidParameter, match="extended header"):
        extract_layer(layer.stream(), target, DeleteWhiteouts(), limits=limits)
    assert not target.exists()


def test_xattrs_with_binary_values(target: Path) -> None:
    value = bytes(range(256))
    layer = LayerTar().file("f", b"x", xattrs={"user.bin": value})
    extract_layer(layer.stream(), target, DeleteWhiteouts())
    assert os.getxattr(target / "f", "user.bin") == value


def test_diff_writer_round_trip(target: Path, tmp_path: Path) -> None:
    source = (
        LayerTar()
        .dir("d", mode=0o2750, uid=5, gid=6, xattrs={"user.d": b"1"})
        .file("d/f", b"content", mode=0o4711, xattrs={"trusted.t": b"\x00"})
        .hardlink("d/g", "d/f")
        .symlink("d/s", "f", mtime_ns=BASE_TIME_NS + 1)
        .char_device("null", 1, 3)
        .fifo("pipe")
    )
    extract_layer(source.stream(), target, DeleteWhiteouts())
    out = io.BytesIO()
    with DiffWriter(out) as writer:
        for name, path, info in walk_tree(str(target)):
            writer.add(name, path, info)
        writer.add_whiteout("d", "deleted")
        writer.add_opaque("d")
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as archive:
        members = {member.name: member for member in archive}
    assert members["d/g"].islnk() and members["d/g"].linkname == "d/f"
    assert members["d/.wh.deleted"].isreg() and "d/.wh..wh..opq" in members
    copy = tmp_path / "copy"
    copy.mkdir()
    out.seek(0)
    extract_layer(out, copy, DeleteWhiteouts())
    assert tree_state(copy) | {"": None} == tree_state(target) | {"": None}


def test_the_stream_is_read_to_its_end(target: Path) -> None:
    # Hashing readers (the layer's diff id) must see the record padding after the last entry.
    stream = io.BytesIO(LayerTar().file("a", b"x").build() + b"\0" * 30_000)
    extract_layer(stream, target, DeleteWhiteouts())
    assert stream.read() == b""
    assert stream.tell() == len(stream.getvalue())
