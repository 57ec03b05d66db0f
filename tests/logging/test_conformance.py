"""The log-driver conformance suite over the built-in drivers: json-file, local and none."""

from __future__ import annotations

import pytest

from dockyard.core.drivers import DriverKind
from dockyard.plugins.logging.json_file.plugin import DRIVER as JSON_FILE
from dockyard.plugins.logging.local.plugin import DRIVER as LOCAL
from dockyard.plugins.logging.none.plugin import DRIVER as NO_LOGS
from dockyard.testing.logging import LogDriverConformance
from tests.conftest import builtin_driver_names


class TestJsonFile(LogDriverConformance):
    ACCEPTED_OPTIONS = (
        {},
        {"max-size": "10m"},
        {"max-size": "1k", "max-file": "3"},
        {"max-size": "1k", "max-file": "2", "compress": "true"},
    )
    REFUSED_OPTIONS = (
        {"no-such-option": "1"},
        {"tag": "{{.Name}}"},  # dockerd's, not applied here
        {"max-size": "1q"},
        {"max-size": "0"},
        {"max-file": "0", "max-size": "1k"},
        {"max-file": "3"},  # without max-size it would never rotate
        {"compress": "true"},  # needs rotation
        {"compress": "maybe", "max-size": "1k", "max-file": "2"},
    )
    ROTATING_OPTIONS = {"max-size": "1k", "max-file": "3", "compress": "true"}

    @pytest.fixture
    def driver_factory(self):
        return lambda: JSON_FILE


class TestLocal(LogDriverConformance):
    ACCEPTED_OPTIONS = (
        {},
        {"max-size": "1m", "max-file": "2"},
        {"compress": "false", "max-file": "1"},
        {"max-size": "0"},
    )
    REFUSED_OPTIONS = (
        {"no-such-option": "1"},
        {"tag": "x"},
        {"max-size": "1q"},
        {"max-file": "x"},
        {"max-file": "-1"},
        {"max-file": "1"},  # compression (on by default) needs a second file
        {"compress": "x"},
    )
    ROTATING_OPTIONS = {"max-size": "1k", "max-file": "3"}

    @pytest.fixture
    def driver_factory(self):
        return lambda: LOCAL


class TestNone(LogDriverConformance):
    REFUSED_OPTIONS = ({"no-such-option": "1"}, {"max-size": "1m"})

    @pytest.fixture
    def driver_factory(self):
        return lambda: NO_LOGS


#: Built-in log drivers and the class running the suite for each (the guard below keeps this
#: complete, so a new driver cannot go unchecked).
COVERED = {"json-file": TestJsonFile, "local": TestLocal, "none": TestNone}


def test_every_builtin_log_driver_runs_the_suite():
    builtin = builtin_driver_names(DriverKind.LOG)
    assert builtin == set(COVERED), f"add a suite class for {builtin - set(COVERED)}"
    assert all(issubclass(cls, LogDriverConformance) for cls in COVERED.values())
