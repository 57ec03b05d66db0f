"""Hostile layer tars, one test per trick, against every installed storage driver.

Each refused layer must raise InvalidParameter naming the problem, write nothing outside the
driver's state directory and leave no layer (no key, no files) behind. Each contained trick
(absolute names, duplicates) must land inside the layer.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.core.config import parse_config
from dockyard.core.drivers import DriverContext, DriverKind
from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import StorageDriver
from dockyard.core.plugins import PluginHost
from dockyard.testing.storage import LayerTar, mounted, stored_files

Factory = Callable[[Path], StorageDriver]


@pytest.fixture
def driver(any_driver_factory: Factory, tmp_path: Path) -> StorageDriver:
    state = tmp_path / "state"
    state.mkdir()
    return any_driver_factory(state)


def refuse(driver: StorageDriver, tmp_path: Path, outside: Path, layer: bytes, match: str) -> None:
    """Apply ``layer`` as key "hostile" and check it is refused cleanly."""
    before = stored_files(tmp_path / "state")
    with pytest.raises(InvalidParameter, match=match):
        driver.apply_layer("hostile", [], io.BytesIO(layer))
    assert "hostile" not in list(driver.keys())
    assert stored_files(tmp_path / "state") == before
    assert_outside_untouched(outside)


def assert_outside_untouched(outside: Path) -> None:
    assert sorted(os.listdir(outside)) == ["victim"]
    assert (outside / "victim").read_bytes() == b"untouched"


def layer_files(driver: StorageDriver, key: str, tmp_path: Path) -> dict[str, bytes | str]:
    """What a container on layer ``key`` sees: file contents and symlink targets by path."""
    driver.prepare(f"{key}-view", [key])
    seen: dict[str, bytes | str] = {}
    with mounted(driver.mounts(f"{key}-view", [key]), tmp_path / f"{key}-mnt") as root:
        for directory, _, names in os.walk(root):
            for name in names:
                path = Path(directory, name)
                relative = str(path.relative_to(root))
                seen[relative] = os.readlink(path) if path.is_symlink() else path.read_bytes()
    driver.remove(f"{key}-view")
    return seen


# ------------------------------------------------------------------------------ names


def test_dotdot_component_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().file("ok", b"1").file("../outside/victim", b"pwned").build()
    refuse(driver, tmp_path, outside, layer, "'..' components")


def test_dotdot_in_the_middle_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().dir("a").file("a/../../../outside/victim", b"pwned").build()
    refuse(driver, tmp_path, outside, layer, "'..' components")


def test_absolute_path_is_contained_in_the_layer(driver, tmp_path, outside) -> None:
    victim = str(outside / "victim")
    driver.apply_layer("abs", [], LayerTar().file(victim, b"inside").file("/etc/x", b"x").stream())
    assert_outside_untouched(outside)
    files = layer_files(driver, "abs", tmp_path)
    assert files[victim.lstrip("/")] == b"inside"
    assert files["etc/x"] == b"x"


def test_overlong_name_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().file("d/" * 2500 + "f", b"x").build()
    refuse(driver, tmp_path, outside, layer, "longer than")


def test_whiteout_of_dotdot_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().dir("a").file("a/.wh...", b"").build()
    refuse(driver, tmp_path, outside, layer, "whiteout must name")


# ------------------------------------------------------------------------------ symlinks


def test_symlink_climbing_out_of_the_root_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().dir("a").symlink("a/escape", "../../outside").build()
    refuse(driver, tmp_path, outside, layer, "points outside")


def test_absolute_symlink_is_kept_for_the_container(driver, tmp_path, outside) -> None:
    # Absolute targets resolve inside the container's root, so they are harmless as such.
    layer = LayerTar().file("etc/passwd", b"root").symlink("link", "/etc/passwd")
    driver.apply_layer("links", [], layer.stream())
    assert layer_files(driver, "links", tmp_path)["link"] == "/etc/passwd"


def test_write_through_an_earlier_symlink_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().symlink("dir", str(outside)).file("dir/victim", b"pwned").build()
    refuse(driver, tmp_path, outside, layer, "writing through a symlink")


def test_write_through_a_symlink_inside_the_root_is_refused_too(driver, tmp_path, outside) -> None:
    layer = LayerTar().dir("real").symlink("alias", "real").file("alias/f", b"x").build()
    refuse(driver, tmp_path, outside, layer, "writing through a symlink")


def test_directory_through_a_symlink_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().symlink("dir", str(outside)).dir("dir/sub").build()
    refuse(driver, tmp_path, outside, layer, "writing through a symlink")


def test_whiteout_through_a_symlink_is_refused(driver, tmp_path, outside) -> None:
    # Applied as a deletion, this would delete the victim outside the root.
    layer = LayerTar().symlink("dir", str(outside)).whiteout("dir/victim").build()
    refuse(driver, tmp_path, outside, layer, "writing through a symlink")


def test_opaque_marker_through_a_symlink_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().symlink("dir", str(outside)).opaque("dir").build()
    refuse(driver, tmp_path, outside, layer, "writing through a symlink")


def test_file_replacing_a_symlink_does_not_write_through_it(driver, tmp_path, outside) -> None:
    layer = LayerTar().symlink("f", str(outside / "victim")).file("f", b"replaced")
    driver.apply_layer("dup", [], layer.stream())
    assert_outside_untouched(outside)
    assert layer_files(driver, "dup", tmp_path)["f"] == b"replaced"


# ------------------------------------------------------------------------------ hard links


def test_hard_link_climbing_out_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().hardlink("h", "../outside/victim").build()
    refuse(driver, tmp_path, outside, layer, "'..' components")


def test_hard_link_to_an_absolute_host_path_stays_inside(driver, tmp_path, outside) -> None:
    # "/…/outside/victim" names the layer's own path; it does not exist there.
    layer = LayerTar().hardlink("h", str(outside / "victim")).build()
    refuse(driver, tmp_path, outside, layer, "not in the layer")


def test_hard_link_through_a_symlink_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().symlink("dir", str(outside)).hardlink("h", "dir/victim").build()
    refuse(driver, tmp_path, outside, layer, "writing through a symlink")


def test_hard_link_to_a_symlink_links_the_symlink_itself(driver, tmp_path, outside) -> None:
    layer = LayerTar().symlink("s", str(outside / "victim")).hardlink("h", "s")
    driver.apply_layer("hl", [], layer.stream())
    assert layer_files(driver, "hl", tmp_path)["h"] == str(outside / "victim")
    assert_outside_untouched(outside)


def test_hard_link_to_a_directory_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().dir("d").hardlink("h", "d").build()
    refuse(driver, tmp_path, outside, layer, "hard link to directory")


# ------------------------------------------------------------------------------ types


def test_entry_below_a_regular_file_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().file("f", b"x").file("f/child", b"y").build()
    refuse(driver, tmp_path, outside, layer, "not a directory")


def test_root_that_is_not_a_directory_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().file("./", b"x").build()
    refuse(driver, tmp_path, outside, layer, "root must be a directory")


@pytest.mark.parametrize("name", ["vfs", "overlay"])
def test_device_nodes_refused_when_configured(name, tmp_path, outside) -> None:
    config = parse_config(f"[storage.{name}]\nallow-device-nodes = false\n", "test.toml")
    host = PluginHost(config, "cli").load()
    info = next(i for i in host.driver_infos(DriverKind.STORAGE) if i.name == name)
    (tmp_path / "state").mkdir()
    try:
        driver = info.factory(
            host.driver_config(DriverKind.STORAGE, name), DriverContext(tmp_path / "state")
        )
    except Exception as exc:  # the driver cannot work here at all
        pytest.skip(f"{name}: {exc}")
    layer = LayerTar().fifo("pipe").char_device("dev/mem", 1, 1).build()
    refuse(driver, tmp_path, outside, layer, "device nodes are not allowed")
    # FIFOs are not devices: still fine.
    driver.apply_layer("fifo", [], LayerTar().fifo("pipe").stream())


def test_device_nodes_allowed_by_default(driver, tmp_path) -> None:
    driver.apply_layer("dev", [], LayerTar().char_device("dev/null", 1, 3).stream())
    driver.prepare("view", ["dev"])
    with mounted(driver.mounts("view", ["dev"]), tmp_path / "mnt") as root:
        assert os.stat(root / "dev/null").st_rdev == os.makedev(1, 3)


# ------------------------------------------------------------------------------ duplicates


def test_duplicate_entries_later_wins(driver, tmp_path) -> None:
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
    files = layer_files(driver, "dups", tmp_path)
    assert files == {
        "f": b"second",
        "d": b"now a file",
        "e/child": b"e",
        "kept/child": b"k",
    }


def test_hard_link_over_itself_keeps_the_file(driver, tmp_path) -> None:
    layer = LayerTar().file("f", b"data").hardlink("g", "f").hardlink("g", "f")
    driver.apply_layer("relink", [], layer.stream())
    assert layer_files(driver, "relink", tmp_path) == {"f": b"data", "g": b"data"}


# ------------------------------------------------------------------------------ sizes


def test_absurd_file_size_is_refused_before_reading(driver, tmp_path, outside) -> None:
    entry = tarfile.TarInfo("huge")
    entry.size = 1 << 62  # 4 EiB, encoded in a PAX header; no data follows
    layer = entry.tobuf(tarfile.PAX_FORMAT) + b"\0" * 1024
    refuse(driver, tmp_path, outside, layer, "claims 4611686018427387904 bytes")


def test_absurd_extended_header_is_refused_before_reading(driver, tmp_path, outside) -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 1 << 32
    layer = header.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 4096
    refuse(driver, tmp_path, outside, layer, "extended header")


def test_truncated_layer_is_refused(driver, tmp_path, outside) -> None:
    layer = LayerTar().file("a", b"x" * 5000).file("b", b"y" * 50_000).build()[:10_240]
    refuse(driver, tmp_path, outside, layer, "truncated|unexpected end|not a valid tar")


def test_garbage_is_refused(driver, tmp_path, outside) -> None:
    refuse(driver, tmp_path, outside, os.urandom(3000), "not a valid tar")


def test_overlayfs_bookkeeping_xattrs_are_dropped(driver, tmp_path) -> None:
    # Were it kept, trusted.overlay.opaque would hide the lower layer's files from overlay.
    driver.apply_layer("l1", [], LayerTar().dir("d").file("d/lower", b"1").stream())
    forged = {"trusted.overlay.opaque": b"y", "trusted.overlay.redirect": b"/elsewhere"}
    layer = LayerTar().dir("d", xattrs=forged).file("d/upper", b"2", xattrs=forged)
    driver.apply_layer("l2", ["l1"], layer.stream())
    driver.prepare("view", ["l2", "l1"])
    with mounted(driver.mounts("view", ["l2", "l1"]), tmp_path / "mnt") as root:
        assert sorted(os.listdir(root / "d")) == ["lower", "upper"]
