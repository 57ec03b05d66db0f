"""Network drivers are used side by side: the plugin host builds every usable one."""

from __future__ import annotations

import sys
import types

import attrs
import pytest

from dockyard.core import plugins
from dockyard.core.config import Config, option, parse_config
from dockyard.core.drivers import DriverInfo, DriverKind
from dockyard.core.errors import ConfigError, DriverUnavailable
from dockyard.core.hookspecs import hookimpl
from dockyard.core.plugins import PluginHost


@attrs.frozen
class MtuConfig:
    mtu: int = option(1500, "the links' MTU")


@attrs.frozen
class Built:
    name: str
    config: object
    state_dir: object


def cannot_check() -> None:
    raise DriverUnavailable("no such kernel module here")


def factory_refusing(config, context):
    raise DriverUnavailable("refused by its factory")


@pytest.fixture
def lab_networks(monkeypatch):
    """A plugin module with four network drivers: two usable, one failing its check, one its
    factory."""
    module = types.ModuleType("lab_networks")

    @hookimpl
    def dockyard_network_drivers():
        def made(name):
            return lambda config, context: Built(name, config, context.state_dir)

        return [
            DriverInfo("alpha", DriverKind.NETWORK, made("alpha"), config_class=MtuConfig),
            DriverInfo("beta", DriverKind.NETWORK, made("beta")),
            DriverInfo("gamma", DriverKind.NETWORK, made("gamma"), check=cannot_check),
            DriverInfo("delta", DriverKind.NETWORK, factory_refusing),
        ]

    module.dockyard_network_drivers = dockyard_network_drivers
    monkeypatch.setitem(sys.modules, "lab_networks", module)
    monkeypatch.setattr(plugins, "BUILTIN_PLUGINS", {"lab-networks": "lab_networks"})
    monkeypatch.setenv(plugins.AUTOLOAD_ENV, "1")


def test_every_usable_network_driver_is_built_with_its_own_options(lab_networks, tmp_path):
    config = parse_config("[networks.alpha]\nmtu = 9000\n", "c.toml")
    host = PluginHost(config, "daemon").load()
    built = host.build_every(DriverKind.NETWORK, tmp_path)
    assert sorted(built) == ["alpha", "beta"]
    assert built["alpha"].config == MtuConfig(mtu=9000)
    assert built["alpha"].state_dir == tmp_path / "alpha" and (tmp_path / "alpha").is_dir()
    assert host.selected(DriverKind.NETWORK) is None  # none is selected: all are in use
    drivers = {d.name: d for report in host.report() for d in report.drivers}
    assert {name: (d.status, d.selected) for name, d in drivers.items()} == {
        "alpha": ("ok", True),
        "beta": ("ok", True),
        "gamma": ("skip", False),
        "delta": ("skip", False),
    }
    assert drivers["gamma"].reason == "no such kernel module here"
    assert drivers["delta"].reason == "refused by its factory"
    assert drivers["alpha"].kind.label == "network driver"


def test_an_unknown_option_of_a_network_driver_is_a_config_error(lab_networks):
    config = parse_config("[networks.alpha]\nmtux = 9000\n", "c.toml")
    with pytest.raises(ConfigError, match=r"mtux"):
        PluginHost(config, "daemon").load()


def test_an_unknown_network_driver_table_is_a_config_error(lab_networks):
    config = parse_config("[networks.omega]\n", "c.toml")
    with pytest.raises(ConfigError, match=r"unknown network driver 'omega' in \[networks.omega\]"):
        PluginHost(config, "daemon").load()


def test_the_daemon_still_selects_one_storage_driver_and_one_runtime(tmp_path):
    host = PluginHost(Config(), "daemon").load()
    assert host.selected(DriverKind.STORAGE) and host.selected(DriverKind.RUNTIME)
