"""What is particular to the vfs driver: full copies and the diffs its tree comparison makes."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard.core.interfaces import StorageDriver
from dockyard.plugins.storage.overlay import filesystem_type, mount_overlay, unmount
from dockyard.plugins.storage.vfs import VfsDriver
from dockyard.testing.storage import LayerTar, StorageDriverConformance, archive_names, mounted

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="sets ownership and mounts: needs root")


@pytest.fixture
def driver(tmp_path: Path) -> VfsDriver:
    return VfsDriver(tmp_path / "state")


def diff_names(driver: VfsDriver, parents: list[str], tmp_path: Path, change) -> list[str]:
    driver.prepare("c", parents)
    with mounted(driver.mounts("c", parents), tmp_path / "root") as root:
        change(root)
    out = io.BytesIO()
    driver.diff("c", parents, out)
    return archive_names(out.getvalue())


def test_layers_are_independent_full_copies(driver: VfsDriver) -> None:
    driver.apply_layer("l1", [], LayerTar().file("a", b"1").stream())
    driver.apply_layer("l2", ["l1"], LayerTar().file("b", b"2").stream())
    driver.remove("l1")
    layer = driver.store.path(driver.store.find("l2")[0], "l2") / "fs"
    assert sorted(os.listdir(layer)) == ["a", "b"]


def test_replaced_directory_becomes_opaque(driver: VfsDriver, tmp_path: Path) -> None:
    driver.apply_layer("l1", [], LayerTar().dir("d").file("d/x").file("d/y").stream())

    def replace(root: Path) -> None:
        for name in ("x", "y"):
            (root / "d" / name).unlink()
        (root / "d/z").write_bytes(b"z")

    names = diff_names(driver, ["l1"], tmp_path, replace)
    assert "d/.wh..wh..opq" in names and "d/z" in names
    assert not any(name.startswith("d/.wh.x") or name.startswith("d/.wh.y") for name in names)


def test_partial_deletion_uses_whiteouts(driver: VfsDriver, tmp_path: Path) -> None:
    driver.apply_layer("l1", [], LayerTar().dir("d").file("d/x").file("d/y").stream())
    names = diff_names(driver, ["l1"], tmp_path, lambda root: (root / "d/x").unlink())
    assert "d/.wh.x" in names and "d/.wh..wh..opq" not in names


def test_changed_hard_linked_file_carries_all_its_names(driver: VfsDriver, tmp_path: Path) -> None:
    layer = LayerTar().dir("d").file("d/f", b"v1").hardlink("d/g", "d/f").file("other")
    driver.apply_layer("l1", [], layer.stream())
    names = diff_names(driver, ["l1"], tmp_path, lambda root: os.chmod(root / "d/f", 0o600))
    assert {"d/f", "d/g"} <= set(names)
    assert "other" not in names


def test_parent_directories_of_changes_are_listed(driver: VfsDriver, tmp_path: Path) -> None:
    driver.apply_layer("l1", [], LayerTar().dir("a/b", mode=0o700).file("a/b/f", b"1").stream())

    def rewrite(root: Path) -> None:
        info = (root / "a/b").stat()
        (root / "a/b/f").write_bytes(b"2")
        os.utime(root / "a/b", ns=(info.st_atime_ns, info.st_mtime_ns))

    names = diff_names(driver, ["l1"], tmp_path, rewrite)
    assert names == ["a", "a/b", "a/b/f"]


class TestVfsOnOverlayfs(StorageDriverConformance):
    """vfs works anywhere: here its whole state lives on an overlayfs mount."""

    # The long-running chain tests add nothing on this filesystem.
    test_deep_chain = None
    test_nesting_deeper_than_pythons_stack = None

    @pytest.fixture
    def state_dir(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
        base = tmp_path_factory.mktemp("overlay-host")
        for name in ("lower", "upper", "work", "merged"):
            (base / name).mkdir()
        options = [f"lowerdir={base / 'lower'}", f"upperdir={base / 'upper'}"]
        options.append(f"workdir={base / 'work'}")
        try:
            mount_overlay(str(base / "merged"), options)
        except OSError as exc:
            pytest.skip(f"cannot mount overlayfs here: {exc}")
        state = base / "merged" / "state"
        state.mkdir()
        assert filesystem_type(state) == "overlay"
        yield state
        unmount(str(base / "merged"))

    @pytest.fixture
    def driver_factory(self) -> Callable[[Path], StorageDriver]:
        return lambda state_dir: VfsDriver(state_dir)
