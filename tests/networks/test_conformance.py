"""The network-driver conformance suite over the built-in drivers: none, host and bridge (cni's
runs in test_cni.py, with the conflists it needs)."""

from __future__ import annotations

import secrets

import pytest

from dockyard.core.drivers import DriverKind
from dockyard.plugins.networks.bridge.plugin import BridgeConfig, BridgeNetwork
from dockyard.plugins.networks.simple import HostNetwork, NoNetwork
from dockyard.testing.networks import NetworkDriverConformance
from tests.conftest import builtin_driver_names
from tests.networks import test_cni  # a module, so its class is not collected here again


class TestNone(NetworkDriverConformance):
    PLUMBS = PUBLISHES = ADDRESSES = False

    @pytest.fixture
    def driver_factory(self):
        return NoNetwork


class TestHost(NetworkDriverConformance):
    PLUMBS = PUBLISHES = ADDRESSES = False

    @pytest.fixture
    def driver_factory(self):
        return HostNetwork


class TestBridge(NetworkDriverConformance):
    @pytest.fixture
    def driver_factory(self):
        # A table of the test's own: another test's (or a daemon's) rules are never touched.
        # ip-forward off: the test never changes the host's forwarding setting.
        config = BridgeConfig(instance=f"dyt{secrets.token_hex(4)}", ip_forward=False)
        return lambda: BridgeNetwork(config)


#: Built-in network drivers and the class running the suite for each (the guard below keeps
#: this complete, so a new driver cannot go unchecked).
COVERED = {
    "null": TestNone,
    "host": TestHost,
    "bridge": TestBridge,
    "cni": test_cni.TestCni,
}


def test_every_builtin_network_driver_runs_the_suite():
    builtin = builtin_driver_names(DriverKind.NETWORK)
    assert builtin == set(COVERED), f"add a suite class for {builtin - set(COVERED)}"
    assert all(issubclass(cls, NetworkDriverConformance) for cls in COVERED.values())
