"""The runtime conformance suite (``dockyard.testing.runtimes``), run against both runtimes."""

from __future__ import annotations

import pytest

from dockyard.core.interfaces import Runtime
from dockyard.plugins.runtimes.namespaces.plugin import NamespacesRuntime
from dockyard.plugins.runtimes.runc.plugin import RuncRuntime
from dockyard.testing.runtimes import RuntimeConformance
from tests.conftest import runc_races_on_exec_nofile
from tests.runtimes.conftest import RUNTIME_CAPABILITIES, needs_runc


class TestNamespaces(RuntimeConformance):
    @pytest.fixture
    def runtime(self, namespaces_runtime: NamespacesRuntime) -> Runtime:
        return namespaces_runtime

    @pytest.fixture
    def runtime_capabilities(self) -> frozenset[str]:
        return RUNTIME_CAPABILITIES["namespaces"]


@needs_runc
class TestRunc(RuntimeConformance):
    EXEC_SOFT_NOFILE_EXACT = not runc_races_on_exec_nofile()

    @pytest.fixture
    def runtime(self, runc_runtime: RuncRuntime) -> Runtime:
        return runc_runtime

    @pytest.fixture
    def runtime_capabilities(self) -> frozenset[str]:
        return RUNTIME_CAPABILITIES["runc"]
