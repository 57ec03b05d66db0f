"""The runtime conformance suite runs for a runtime tested outside this repository.

A test module in a directory of its own (as a runtime author's would be) subclasses the suite;
a child pytest, started there, must collect and pass it: nothing in the suite may depend on
this repository's tests.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import run_authors_tests

AUTHORS_TESTS = textwrap.dedent(
    """
    import pytest

    from dockyard.plugins.runtimes.namespaces.plugin import NamespacesConfig, NamespacesRuntime
    from dockyard.testing.runtimes import RuntimeConformance


    class TestMyRuntime(RuntimeConformance):
        @pytest.fixture
        def runtime(self):
            return NamespacesRuntime(NamespacesConfig(cgroup_parent="dockyard-test"))
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")
def test_a_runtime_authors_tests_run_the_suite(tmp_path: Path) -> None:
    run_authors_tests(
        tmp_path, AUTHORS_TESTS, "-k", "protocol or exit_codes or processes or signals or cleanup",
        min_passed=5,
    )  # fmt: skip
