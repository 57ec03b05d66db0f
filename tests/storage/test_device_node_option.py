"""The built-in drivers' ``allow-device-nodes = false``: layers with device nodes are refused.

(The hostile layers every driver must refuse are in the conformance suite,
``dockyard.testing.storage``.)
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dockyard.core.config import parse_config
from dockyard.core.drivers import DriverContext, DriverKind
from dockyard.core.errors import InvalidParameter
from dockyard.core.plugins import PluginHost
from dockyard.testing.storage import LayerTar, stored_files


@pytest.mark.parametrize("name", ["vfs", "overlay"])
def test_device_nodes_refused_when_configured(name: str, tmp_path: Path) -> None:
    config = parse_config(f"[storage.{name}]\nallow-device-nodes = false\n", "test.toml")
    host = PluginHost(config, "cli").load()
    info = next(i for i in host.driver_infos(DriverKind.STORAGE) if i.name == name)
    state = tmp_path / "state"
    state.mkdir()
    try:
        driver = info.factory(host.driver_config(DriverKind.STORAGE, name), DriverContext(state))
    except Exception as exc:  # the driver cannot work here at all
        pytest.skip(f"{name}: {exc}")
    layer = LayerTar().fifo("pipe").char_device("dev/mem", 1, 1).build()
    with pytest.raises(InvalidParameter, match="device nodes are not allowed"):
        driver.apply_layer("hostile", [], io.BytesIO(layer))
    assert list(driver.keys()) == []
    assert stored_files(state) == []
    # FIFOs are not devices: still fine.
    driver.apply_layer("fifo", [], LayerTar().fifo("pipe").stream())
    driver.remove("fifo")
