"""Processes by identity (``dockyard.linux.processes``): pidfd handles and ``ps`` records.

The pid-reuse case runs in a pid namespace of its own (``unshare --pid --mount-proc``), where
the test can make the kernel hand a dead process's pid to the next one (``ns_last_pid``)
without disturbing the host's numbering.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dockyard.linux.processes import ProcessHandle, describe, describe_all, in_cgroup, start_time

ROOT = Path(__file__).resolve().parents[2]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

REUSE_SCRIPT = textwrap.dedent(
    """
    import os, signal, subprocess, time
    from dockyard.linux.processes import ProcessHandle, start_time

    first = subprocess.Popen(["sleep", "30"])
    pid, started = first.pid, start_time(first.pid)
    handle = ProcessHandle.open(pid, started, parent=os.getpid())
    assert handle is not None and handle.send_signal(0)
    first.kill()
    first.wait()
    time.sleep(0.05)  # past a clock tick: the next process's start time differs
    with open("/proc/sys/kernel/ns_last_pid", "w") as last:
        last.write(str(pid - 1))
    second = subprocess.Popen(["sleep", "30"])
    try:
        assert second.pid == pid, (second.pid, pid)
        print("sent:", handle.send_signal(signal.SIGTERM))
        print("second alive:", second.poll() is None)
        print("reopened:", ProcessHandle.open(pid, started, parent=os.getpid()))
        print("with its own start time:", ProcessHandle.open(pid, start_time(pid)) is not None)
    finally:
        second.kill()
        second.wait()
    """
)


@needs_root
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_a_handle_never_signals_the_process_that_reused_the_pid(tmp_path):
    script = tmp_path / "reuse.py"
    script.write_text(REUSE_SCRIPT)
    result = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, str(script)],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "sent: False",
        "second alive: True",
        "reopened: None",
        "with its own start time: True",
    ]


def test_a_handle_signals_its_process_and_sees_it_exit():
    child = subprocess.Popen(["sleep", "30"])
    try:
        started = start_time(child.pid)
        assert ProcessHandle.open(child.pid, started + 1) is None  # another start: not ours
        assert ProcessHandle.open(child.pid, started, parent=child.pid) is None  # nor parent
        handle = ProcessHandle.open(child.pid, started, parent=os.getpid())
        assert handle is not None
        with handle:
            assert not handle.has_exited()
            assert handle.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5
            while not handle.has_exited():
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert child.wait(5) == -signal.SIGTERM
            assert not handle.send_signal(signal.SIGTERM)  # reaped: nothing is sent
        assert not handle.send_signal(signal.SIGTERM)  # closed
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert ProcessHandle.open(child.pid, started) is None
    assert ProcessHandle.open(0, 0) is None


def test_describe_shows_what_ps_shows():
    command = ("sh", "-c", "sleep 30; true", "an argument with spaces")
    child = subprocess.Popen(command, start_new_session=True)
    try:
        # Popen returns once the exec closed its error pipe: a moment before the kernel set
        # up the new program's arguments, which read as none until then.
        deadline = time.monotonic() + 5
        while (described := describe(child.pid)) is not None and not described.args:
            assert time.monotonic() < deadline
            time.sleep(0.001)
        assert described is not None
        assert described.args == command
        assert (described.pid, described.ppid, described.uid) == (child.pid, os.getpid(), 0)
        assert abs(described.started - time.time()) < 30
        assert described.cpu_seconds >= 0
        mine = describe(os.getpid())
        assert mine is not None and mine.cpu_seconds > 0
        own_cgroup = Path(f"/proc/{child.pid}/cgroup").read_text().splitlines()[0]
        assert describe(child.pid, cgroup=own_cgroup.split(":", 2)[2] or "/") is not None
        assert describe(child.pid, cgroup="/no/such/cgroup") is None
        assert [p.pid for p in describe_all([child.pid, os.getpid()])] == sorted(
            [child.pid, os.getpid()]
        )
    finally:
        os.killpg(child.pid, signal.SIGKILL)  # sh and its sleep
        child.wait()
    assert describe(child.pid) is None
    assert describe_all([child.pid]) == []


def test_cgroup_membership_by_path_suffix():
    lines = "12:pids:/dockyard/abc\n4:memory:/outer/dockyard/abc\n0::/\n"
    assert in_cgroup(lines, "/dockyard/abc")
    assert in_cgroup(lines, "dockyard/abc/")
    assert not in_cgroup(lines, "/dockyard/ab")
    assert not in_cgroup("0::/dockyard/abcd\n", "/dockyard/abc")
