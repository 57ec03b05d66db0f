"""The runtime conformance suite runs for a runtime tested outside this repository.

A test module in a directory of its own (as a runtime author's would be) subclasses the suite;
a child pytest, started there, must collect and pass it: nothing in the suite may depend on
this repository's tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

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
    project = tmp_path / "my-runtime"
    project.mkdir()
    (project / "test_my_runtime.py").write_text(AUTHORS_TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "test_my_runtime.py", "-q", "-p", "no:cacheprovider",
         "-k", "protocol or exit_codes or processes or signals or cleanup",
         f"--basetemp={tmp_path / 'child'}"],
        cwd=project, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 5, summary
    assert "failed" not in summary and "skipped" not in summary, summary
