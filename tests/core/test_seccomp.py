"""The default seccomp policy, installed for real in a forked process on this machine."""

from __future__ import annotations

import ctypes
import errno
import os

import pytest

from dockyard.core.capabilities import DEFAULT_CAPABILITIES
from dockyard.linux import seccomp, syscalls

libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUTS, CLONE_NEWUSER = 0x04000000, 0x10000000
SIGCHLD = 17
#: In this order: once in a new user namespace, the kernel itself refuses some of the others.
CALLS = {
    "clone()": lambda: _clone(SIGCHLD),
    "clone(CLONE_NEWUSER)": lambda: _clone(CLONE_NEWUSER | SIGCHLD),
    "clone3": lambda: libc.syscall(seccomp.SYSCALL_NUMBERS[seccomp.machine()]["clone3"], 0, 0),
    "keyctl": lambda: libc.syscall(seccomp.SYSCALL_NUMBERS[seccomp.machine()]["keyctl"], 0, 0),
    "getpid": lambda: libc.getpid(),
    "unshare(CLONE_NEWUTS)": lambda: libc.unshare(CLONE_NEWUTS),
    "unshare(CLONE_NEWUSER)": lambda: libc.unshare(CLONE_NEWUSER),
}


def _clone(flags: int) -> int:
    """clone(2) as fork does; the child exits at once."""
    pid = libc.syscall(seccomp.SYSCALL_NUMBERS[seccomp.machine()]["clone"], flags, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
    return pid


def outcomes(capabilities: tuple[str, ...]) -> dict[str, int]:
    """Each call's errno (0: allowed) in a child that installed the policy for ``capabilities``."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            syscalls.install_seccomp_filter(seccomp.filter_program(capabilities))
            results = []
            for call in CALLS.values():
                results.append(0 if call() >= 0 else ctypes.get_errno())
            os.write(write, ",".join(map(str, results)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as report:
        text = report.read()
    os.waitpid(child, 0)
    return dict(zip(CALLS, map(int, text.split(",")), strict=True))


@pytest.mark.skipif(os.geteuid() != 0, reason="installing a filter without no_new_privs needs root")
def test_default_capabilities_refuse_namespaces_keyrings_and_clone3():
    assert outcomes(DEFAULT_CAPABILITIES) == {
        "unshare(CLONE_NEWUSER)": errno.EPERM,
        "unshare(CLONE_NEWUTS)": errno.EPERM,
        "keyctl": errno.EPERM,
        "clone3": errno.ENOSYS,  # so that libc falls back to clone, which the filter can read
        "clone(CLONE_NEWUSER)": errno.EPERM,
        "clone()": 0,
        "getpid": 0,
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="installing a filter without no_new_privs needs root")
def test_a_capability_lifts_the_calls_it_governs():
    found = outcomes((*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    assert found["unshare(CLONE_NEWUTS)"] == 0 and found["clone(CLONE_NEWUSER)"] == 0
    assert found["keyctl"] == errno.EPERM  # never lifted


def test_the_policy_has_numbers_for_every_architecture_it_names():
    for arch, numbers in seccomp.SYSCALL_NUMBERS.items():
        assert {"clone", "clone3"} <= set(numbers), arch
        assert set(numbers) - {"clone", "clone3"} <= set(seccomp.DENIED), arch
        assert len(seccomp.filter_program(DEFAULT_CAPABILITIES, arch)) % 8 == 0
    with pytest.raises(seccomp.UnsupportedArchitecture):
        seccomp.filter_program(DEFAULT_CAPABILITIES, "sparc64")
