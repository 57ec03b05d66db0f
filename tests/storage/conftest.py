"""Fixtures for the storage tests: every installed storage driver, found the way the daemon does."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest

from dockyard.core.config import Config
from dockyard.core.drivers import DriverContext, DriverKind
from dockyard.core.interfaces import StorageDriver
from dockyard.core.plugins import OK, PluginHost

BUILTIN_STORAGE_DRIVERS = ("overlay", "vfs")


@attrs.frozen
class InstalledDriver:
    """One storage driver the plugin host knows, with its status on this machine."""

    name: str
    status: str
    reason: str
    factory: Callable[[Path], StorageDriver]


def installed_storage_drivers() -> list[InstalledDriver]:
    """Every storage driver the plugins of this environment provide, third-party ones included."""
    host = PluginHost(Config(), "cli").load()
    reports = {
        driver.name: driver
        for plugin in host.report()
        for driver in plugin.drivers
        if driver.kind is DriverKind.STORAGE
    }
    found = []
    for info in host.driver_infos(DriverKind.STORAGE):
        config = host.driver_config(DriverKind.STORAGE, info.name)

        def factory(state_dir: Path, info=info, config=config) -> StorageDriver:
            return info.factory(config, DriverContext(state_dir=state_dir))

        report = reports[info.name]
        found.append(InstalledDriver(info.name, report.status, report.reason, factory))
    return sorted(found, key=lambda driver: driver.name)


INSTALLED = installed_storage_drivers()


def usable_factory(driver: InstalledDriver) -> Callable[[Path], StorageDriver]:
    """The driver's factory, or a skip (with the driver's own reason) where it cannot work."""
    if os.geteuid() != 0:
        pytest.skip("the storage suite mounts filesystems and sets ownership: it needs root")
    if driver.status != OK:
        if driver.name in BUILTIN_STORAGE_DRIVERS and driver.status != "skip":
            pytest.fail(f"built-in driver {driver.name} is {driver.status}: {driver.reason}")
        pytest.skip(f"storage driver {driver.name} is {driver.status} here: {driver.reason}")
    return driver.factory


@pytest.fixture(params=INSTALLED, ids=[driver.name for driver in INSTALLED])
def any_driver_factory(request: pytest.FixtureRequest) -> Callable[[Path], StorageDriver]:
    """Each installed storage driver in turn."""
    return usable_factory(request.param)
