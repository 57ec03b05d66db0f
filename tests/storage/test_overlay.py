"""What is particular to the overlay driver: availability checks, on-disk forms, long chains."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.core.config import Config
from dockyard.core.drivers import DriverKind
from dockyard.core.errors import DriverUnavailable, InvalidParameter
from dockyard.core.plugins import PluginHost
from dockyard.plugins.storage import overlay
from dockyard.plugins.storage.overlay import OPTIONS_LIMIT, OverlayDriver
from dockyard.testing.storage import LayerTar, mounted, mounts_below, stored_files

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounts overlayfs: needs root")


@pytest.fixture
def usable() -> None:
    try:
        overlay.check()
    except DriverUnavailable as exc:
        pytest.skip(f"overlay unavailable here: {exc}")


@pytest.fixture
def driver(usable, tmp_path: Path) -> OverlayDriver:
    return OverlayDriver(tmp_path / "state")


def test_auto_selection_prefers_overlay_where_it_works(usable) -> None:
    host = PluginHost(Config(), "daemon").load()
    assert host.selected(DriverKind.STORAGE) == "overlay"


def test_filesystem_type_of_known_mounts(tmp_path: Path) -> None:
    assert overlay.filesystem_type("/proc/self") == "proc"
    assert overlay.filesystem_type(tmp_path) not in ("", "overlay")


def test_state_dir_on_overlayfs_is_unavailable(usable, tmp_path: Path) -> None:
    for name in ("lower", "upper", "work", "merged"):
        (tmp_path / name).mkdir()
    options = [
        f"lowerdir={tmp_path / 'lower'}",
        f"upperdir={tmp_path / 'upper'}",
        f"workdir={tmp_path / 'work'}",
    ]
    overlay.mount_overlay(str(tmp_path / "merged"), options)
    try:
        with pytest.raises(DriverUnavailable, match="is itself on overlayfs"):
            OverlayDriver(tmp_path / "merged" / "state")
    finally:
        overlay.unmount(str(tmp_path / "merged"))


def test_state_dir_with_option_separators_is_refused(usable, tmp_path: Path) -> None:
    with pytest.raises(InvalidParameter, match="cannot carry"):
        OverlayDriver(tmp_path / "a:b")


def test_layers_store_whiteouts_in_overlay_form(driver: OverlayDriver) -> None:
    driver.apply_layer("l1", [], LayerTar().file("gone", b"x").dir("d").file("d/x").stream())
    driver.apply_layer("l2", ["l1"], LayerTar().whiteout("gone").dir("d").opaque("d").stream())
    layer_dir = driver.store.path(overlay.Kind.LAYER, "l2") / "diff"
    info = os.lstat(layer_dir / "gone")
    assert stat.S_ISCHR(info.st_mode) and info.st_rdev == 0
    assert os.getxattr(layer_dir / "d", "trusted.overlay.opaque") == b"y"
    assert not (layer_dir / ".wh.gone").exists()


def test_short_chains_mount_directly_with_short_links(driver: OverlayDriver) -> None:
    driver.apply_layer("sha256:one", [], LayerTar().file("a").stream())
    (mount,) = driver.prepare("c", ["sha256:one"])
    assert mount.type == "overlay"
    (lowerdir,) = [opt for opt in mount.options if opt.startswith("lowerdir=")]
    link = Path(lowerdir.removeprefix("lowerdir="))
    assert link.parent == driver.links and link.is_symlink()
    assert ":" not in link.name, "keys never reach mount options"


def test_chain_past_the_option_page_is_mounted_by_the_driver(
    driver: OverlayDriver, tmp_path: Path
) -> None:
    chain: list[str] = []
    absolute_length = len(str(driver.links)) + 20
    count = OPTIONS_LIMIT // absolute_length + 5
    for index in range(count):
        driver.apply_layer(f"l{index}", chain, LayerTar().file(f"f{index}").stream())
        chain.insert(0, f"l{index}")
    (mount,) = driver.prepare("deep", chain)
    assert mount.type == "bind"
    with mounted([mount], tmp_path / "root") as root:
        assert len(os.listdir(root)) == count
        (root / "written").write_bytes(b"up")
    out = io.BytesIO()
    driver.diff("deep", chain, out)
    assert b"written" in out.getvalue()
    # mounts() after the driver's own mount went away (a reboot) mounts it again.
    overlay.unmount(mount.source)
    (again,) = OverlayDriver(tmp_path / "state").mounts("deep", chain)
    with mounted([again], tmp_path / "root2") as root:
        assert (root / "written").read_bytes() == b"up"
    driver.remove("deep")
    assert mounts_below(tmp_path) == []


def test_crash_leftovers_are_cleaned_on_start(driver: OverlayDriver, tmp_path: Path) -> None:
    driver.apply_layer("l1", [], LayerTar().file("a").stream())
    (driver.links / "DANGLINGLINK").symlink_to("../layers/nothing/diff")
    half_built = driver.store.new_staging()
    (half_built / "file").write_text("partial")
    OverlayDriver(tmp_path / "state")
    assert not (driver.links / "DANGLINGLINK").is_symlink()
    assert not half_built.exists()
    driver.remove("l1")
    assert stored_files(tmp_path / "state") == []


def test_without_mount_privileges_overlay_is_skipped_and_vfs_selected(usable) -> None:
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is needed to drop CAP_SYS_ADMIN")
    script = (
        "from dockyard.core.config import Config\n"
        "from dockyard.core.drivers import DriverKind\n"
        "from dockyard.core.plugins import PluginHost\n"
        "host = PluginHost(Config(), 'cli').load()\n"
        "print(host.selected(DriverKind.STORAGE))\n"
        "for plugin in host.report():\n"
        "    for driver in plugin.drivers:\n"
        "        print(driver.name, driver.status, driver.reason)\n"
    )
    result = subprocess.run(
        [setpriv, "--bounding-set=-sys_admin,-mknod", "--inh-caps=-all", sys.executable],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == "vfs"
    (overlay_line,) = [line for line in lines if line.startswith("overlay ")]
    assert overlay_line.startswith("overlay skip ")
    assert "Operation not permitted" in overlay_line
