"""The storage-driver conformance suite, run against every installed storage driver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.core.interfaces import StorageDriver
from dockyard.testing.storage import StorageDriverConformance

from .conftest import BUILTIN_STORAGE_DRIVERS, INSTALLED


def test_every_builtin_storage_driver_is_found() -> None:
    names = {driver.name for driver in INSTALLED}
    assert set(BUILTIN_STORAGE_DRIVERS) <= names


class TestInstalledStorageDriver(StorageDriverConformance):
    @pytest.fixture
    def driver_factory(
        self, any_driver_factory: Callable[[Path], StorageDriver]
    ) -> Callable[[Path], StorageDriver]:
        return any_driver_factory
