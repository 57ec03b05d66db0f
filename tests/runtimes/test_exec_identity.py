"""An exec enters the namespaces of the container's init and of nothing else.

The daemon opens them by pid (``nsenter.open_namespaces``): a pid that no longer names a process
of the container (it exited, and the number may already be someone else's) gives no namespaces
at all, and nothing it opened stays open.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from dockyard.plugins.runtimes.namespaces.nsenter import open_namespaces

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)


def wait_until_exec(pid: int, command: str) -> None:
    """Wait until `unshare` has exec'd `command`: by then its new namespaces exist.

    A loaded machine (CI) can take far longer than a few scheduler yields to get there.
    """
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/comm") as comm:
            if comm.read().strip() == command:
                return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} did not exec {command} within 10 s")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_the_namespaces_of_a_live_process_of_the_container_are_opened():
    other = subprocess.Popen(["unshare", "--net", "--uts", "sleep", "30"])
    try:
        wait_until_exec(other.pid, "sleep")
        namespaces, cgroup_ns = open_namespaces(other.pid, lambda pid: pid == other.pid)
        try:
            opened = {kind: os.fstat(fd).st_ino for fd, kind in namespaces}
            assert opened == {
                0x04000000: os.stat(f"/proc/{other.pid}/ns/uts").st_ino,  # CLONE_NEWUTS
                0x40000000: os.stat(f"/proc/{other.pid}/ns/net").st_ino,  # CLONE_NEWNET
            }
            assert cgroup_ns == -1  # the same cgroup namespace as ours: nothing to join
        finally:
            for fd, _kind in namespaces:
                os.close(fd)
    finally:
        other.kill()
        other.wait()


def test_a_process_outside_the_container_is_refused_and_nothing_stays_open():
    stranger = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        before = open_fds()
        with pytest.raises(ProcessLookupError, match="is not the container's"):
            open_namespaces(stranger.pid, lambda pid: False)
        assert open_fds() == before
    finally:
        stranger.kill()
        stranger.wait()


def test_a_pid_whose_process_is_gone_is_refused():
    gone = subprocess.Popen(["true"])
    gone.wait()
    before = open_fds()
    with pytest.raises(ProcessLookupError):
        open_namespaces(gone.pid, lambda pid: True)
    assert open_fds() == before
