"""``inroot``'s resolution inside a root when renames elsewhere on the host race with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.linux import inroot
from tests.conftest import eventually

#: Renames a file back and forth until killed: any rename on the host makes the kernel unsure
#: that a concurrent ``..`` stayed inside the root.
RENAMER = """
import os, sys
a, b = sys.argv[1], sys.argv[2]
while True:
    os.rename(a, b)
    os.rename(b, a)
"""


def resolves(root: Path, path: str) -> bool:
    try:
        os.close(inroot.open_in_root(str(root), path, os.O_PATH))
    except OSError:
        return False
    return True


def test_a_resolution_that_races_with_a_rename_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / "f").write_text("")
    (tmp_path / "x").write_text("")
    renamer = subprocess.Popen(
        [sys.executable, "-c", RENAMER, str(tmp_path / "x"), str(tmp_path / "y")]
    )
    try:
        with monkeypatch.context() as once:
            once.setattr(inroot, "OPENAT2_TRIES", 1)
            # The race is real here: a single try fails once the renamer runs.
            eventually(lambda: not resolves(root, "a/b/../../f"), what="a racing resolution")
        assert all(resolves(root, "a/b/../../f") for _ in range(3000))
    finally:
        renamer.kill()
        renamer.wait()
