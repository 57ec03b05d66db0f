"""The two built-in runtimes, configured for tests, for the conformance suite and their own tests.

Containers are started by :mod:`dockyard.testing.runtimes` (its ``RuntimeHarness`` fixtures):
real containers on a busybox image, launched from a supervisor stand-in. Both runtimes put
their cgroups under a parent of the tests' own, so a leftover can never be mistaken for a
real container.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.linux import layertar
from dockyard.plugins.runtimes.namespaces import plugin as namespaces_plugin
from dockyard.plugins.runtimes.namespaces.plugin import NamespacesConfig, NamespacesRuntime
from dockyard.plugins.runtimes.runc import plugin as runc_plugin
from dockyard.plugins.runtimes.runc.launch import Runc
from dockyard.plugins.runtimes.runc.plugin import RuncRuntime

CGROUP_PARENT = "dockyard-test"
RUNC = runc_plugin.find_binary("runc")
needs_runc = pytest.mark.skipif(
    RUNC is None or os.geteuid() != 0, reason="needs root and the runc binary"
)
#: What each runtime declares, as the plugin host reads it.
RUNTIME_CAPABILITIES = {
    "namespaces": namespaces_plugin.dockyard_runtimes().capabilities,
    "runc": runc_plugin.dockyard_runtimes().capabilities,
}


@pytest.fixture
def namespaces_runtime() -> NamespacesRuntime:
    return NamespacesRuntime(NamespacesConfig(cgroup_parent=CGROUP_PARENT))


@pytest.fixture
def runc_runtime(tmp_path: Path) -> Iterator[RuncRuntime]:
    """runc with a private state root (as the daemon gives it one)."""
    assert RUNC is not None
    root = tmp_path / "runc-root"
    root.mkdir(mode=0o700)
    yield RuncRuntime(Runc(binary=RUNC, root=str(root), cgroup_parent=CGROUP_PARENT))
    layertar.remove_tree(root)
