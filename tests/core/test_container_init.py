"""The daemon's hold on a container's init process (``daemon.containers.init_process``).

A record's pid is trusted only as far as the process behind it is still the one that was
launched: started at the recorded time, and a child of the container's supervisor (this test
process plays the supervisor).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import pytest

from dockyard.daemon.containers.init_process import hold_init
from dockyard.daemon.containers.model import ContainerState
from dockyard.linux.processes import start_time


@pytest.fixture
def init() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(["sleep", "30"])
    yield process
    process.kill()
    process.wait()


def state_of(pid: int, started: int | None = None, supervisor: int | None = None) -> ContainerState:
    """A running container's state as the daemon recorded it (by default: truly)."""
    return ContainerState(
        status="running",
        pid=pid,
        init_start_time=start_time(pid) if started is None else started,
        supervisor_pid=os.getpid() if supervisor is None else supervisor,
    )


def test_the_launched_process_is_held_and_signalled(init):
    handle = hold_init(state_of(init.pid))
    assert handle is not None
    with handle:
        assert handle.send_signal(signal.SIGTERM)
        assert init.wait(5) == -signal.SIGTERM
        assert not handle.send_signal(signal.SIGKILL)  # reaped: to nobody


def test_another_process_under_the_recorded_pid_is_not_held(init):
    later = state_of(init.pid, started=start_time(init.pid) + 1)
    assert hold_init(later) is None
    assert hold_init(state_of(init.pid, supervisor=1)) is None  # not the supervisor's child
    assert init.poll() is None


def test_a_record_without_a_start_time_relies_on_parentage(init):
    # Written by a daemon from before start times were recorded.
    handle = hold_init(state_of(init.pid, started=0))
    assert handle is not None
    handle.close()
    assert hold_init(state_of(init.pid, started=0, supervisor=1)) is None


def test_an_exited_init_is_not_held(init):
    init.kill()
    init.wait()
    assert hold_init(state_of(init.pid, started=1)) is None
