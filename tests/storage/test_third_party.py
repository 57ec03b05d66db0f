"""A storage driver from another distribution gets the conformance suite too.

A throwaway distribution (a module plus its ``.dist-info`` with a ``dockyard.plugins`` entry
point) is put on ``PYTHONPATH`` of a child pytest, which must collect and pass the suite for it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

DRIVER_MODULE = textwrap.dedent(
    """
    from dockyard.core.drivers import DriverInfo, DriverKind
    from dockyard.core.hookspecs import hookimpl
    from dockyard.plugins.storage.vfs import VfsDriver


    @hookimpl
    def dockyard_storage_drivers():
        return DriverInfo(
            name="thirdcopy",
            kind=DriverKind.STORAGE,
            factory=lambda config, context: VfsDriver(context.state_dir),
            description="a third-party driver for the conformance test",
        )
    """
)


def make_distribution(site: Path) -> None:
    (site / "dockyard_thirdcopy.py").write_text(DRIVER_MODULE)
    info = site / "dockyard_thirdcopy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dockyard-thirdcopy\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[dockyard.plugins]\nthirdcopy = dockyard_thirdcopy\n")


def test_an_entry_point_driver_runs_the_conformance_suite(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site)
    env = {k: v for k, v in os.environ.items() if k != "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/storage/test_conformance.py",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "thirdcopy and not deep_chain and not nesting",
            f"--basetemp={tmp_path / 'child'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) >= 20, summary
    assert "failed" not in summary and "skipped" not in summary, summary
