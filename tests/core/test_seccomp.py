"""Docker's default seccomp profile: its data, its OCI form, and the filter installed for real in
a forked process on this machine, whose calls get the errno docker's filter gives them."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
from collections.abc import Callable

import pytest

from dockyard.core.capabilities import DEFAULT_CAPABILITIES
from dockyard.linux import seccomp, syscalls
from tests import bpf

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
CLONE_NEWUTS, CLONE_NEWUSER, CLONE_FS = 0x04000000, 0x10000000, 0x00000200
SIGCHLD = 17
READ_IMPLIES_EXEC = 0x0400000
PERSONALITY_QUERY = 0xFFFFFFFF
X86_64 = os.uname().machine == "x86_64"
ENOSYS = 0x00050000 | errno.ENOSYS  # SECCOMP_RET_ERRNO
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="installing a filter without no_new_privs needs root"
)


def number(name: str, abi: str | None = None) -> int:
    found = seccomp.syscall_number(name, abi)
    assert found is not None, (name, abi)
    return found


def call(name: str, *args: int, abi: str | None = None) -> Callable[[], int]:
    """A system call by name, to make later: its result, or -errno."""
    return raw(number(name, abi), *args)


def raw(nr: int, *args: int) -> Callable[[], int]:
    arguments = [ctypes.c_ulong(a) for a in args]

    def make() -> int:
        result = libc.syscall(ctypes.c_long(nr), *arguments)
        return result if result >= 0 else -ctypes.get_errno()

    return make


def _i386_trampoline() -> Callable[[int, int, int], int]:
    """``int 0x80`` from this 64-bit process: the kernel runs it as an i386 call (seccomp sees
    AUDIT_ARCH_I386), with the number in eax and arguments in ebx, ecx, edx (esi and edi,
    the fourth and fifth, zero)."""
    code = bytes.fromhex(
        "53"  # push rbx (callee-saved)
        "89f8"  # mov eax, edi: the call number
        "89f3"  # mov ebx, esi: first argument
        "87d1"  # xchg ecx, edx: second argument to ecx, third to edx
        "31f6"  # xor esi, esi
        "31ff"  # xor edi, edi
        "cd80"  # int 0x80
        "5b"  # pop rbx
        "4898"  # cdqe: -errno, sign-extended
        "c3"  # ret
    )
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    function = ctypes.CFUNCTYPE(
        ctypes.c_long, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint
    )(address)
    function.page = page  # type: ignore[attr-defined]  # keep the code mapped
    return function


def i386(name: str, *args: int) -> Callable[[], int]:
    nr = number(name, "x86")
    padded = (*args, 0, 0, 0)[:3]
    trampoline = _i386_trampoline()
    return lambda: trampoline(nr, *padded)


def _clone(flags: int) -> Callable[[], int]:
    """clone(2) as fork does (the child exits at once); flags with CLONE_FS beside
    CLONE_NEWUSER make the kernel itself refuse with EINVAL, so nothing is created."""
    make = call("clone", flags, 0, 0, 0, 0)

    def clone() -> int:
        pid = make()
        if pid == 0:
            os._exit(0)
        if pid > 0:
            os.waitpid(pid, 0)
            return 0
        return pid

    return clone


def outcomes(
    capabilities: tuple[str, ...] | None, calls: dict[str, Callable[[], int]]
) -> dict[str, int]:
    """Each call's errno (0: it went through) in a child that installed the filter for
    ``capabilities`` (None: no filter)."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            if capabilities is not None:
                syscalls.install_seccomp_filter(seccomp.filter_program(capabilities))
            results = [max(0, -make()) for make in calls.values()]
            os.write(write, ",".join(map(str, results)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as report:
        text = report.read()
    os.waitpid(child, 0)
    return dict(zip(calls, map(int, text.split(",")), strict=True))


def common_calls() -> dict[str, Callable[[], int]]:
    pid = os.getpid()
    return {
        "getpid": call("getpid"),
        "clone()": _clone(SIGCHLD),
        "clone(CLONE_NEWUSER|CLONE_FS)": _clone(CLONE_NEWUSER | CLONE_FS | SIGCHLD),
        "clone3": call("clone3", 0, 0),  # EINVAL from the kernel itself: too small
        "unshare(CLONE_NEWUTS)": call("unshare", CLONE_NEWUTS),
        "mount": call("mount", 0, 0, 0, 0, 0),  # EFAULT from the kernel itself
        "keyctl": call("keyctl", 0, 0),
        "kcmp": call("kcmp", pid, pid, 0, 0, 0),  # KCMP_FILE of fd 0 with itself: 0
        "pidfd_getfd": call("pidfd_getfd", 2**32 - 1, 0, 0),  # EBADF from the kernel itself
        "personality(READ_IMPLIES_EXEC)": call("personality", READ_IMPLIES_EXEC),
        "personality(query)": call("personality", PERSONALITY_QUERY),
        "personality(PER_LINUX)": call("personality", 0),
        # The newest call the profile names, and one it is too old to know (the kernel has
        # it: without the filter it fails with EFAULT, not ENOSYS).
        "futex_waitv": call("futex_waitv", 0, 0, 0, 0, 0),  # EINVAL from the kernel itself
        "fchmodat2": call("fchmodat2", 2**32 - 1, 0, 0, 0),
    }


@needs_root
def test_default_capabilities_get_dockers_errnos():
    assert outcomes(DEFAULT_CAPABILITIES, common_calls()) == {
        "getpid": 0,
        "clone()": 0,
        "clone(CLONE_NEWUSER|CLONE_FS)": errno.EPERM,  # namespace flags: refused by the filter
        "clone3": errno.ENOSYS,  # so that libc falls back to clone, which the filter can read
        "unshare(CLONE_NEWUTS)": errno.EPERM,
        "mount": errno.EPERM,
        "keyctl": errno.EPERM,
        "kcmp": errno.EPERM,  # not in the profile: a denylist let it through
        "pidfd_getfd": errno.EPERM,
        "personality(READ_IMPLIES_EXEC)": errno.EPERM,
        "personality(query)": 0,
        "personality(PER_LINUX)": 0,
        "futex_waitv": errno.EINVAL,
        "fchmodat2": errno.ENOSYS,  # newer than the profile: as if the kernel lacked it
    }


def test_without_a_filter_the_kernel_answers_each_call_otherwise():
    found = outcomes(None, common_calls())
    assert found["clone(CLONE_NEWUSER|CLONE_FS)"] == errno.EINVAL
    assert found["clone3"] == errno.EINVAL
    assert found["kcmp"] == 0 and found["pidfd_getfd"] == errno.EBADF
    assert found["personality(READ_IMPLIES_EXEC)"] == 0
    assert found["fchmodat2"] == errno.EFAULT


@needs_root
def test_capabilities_lift_the_calls_they_govern():
    with_admin = outcomes((*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"), common_calls())
    assert with_admin["unshare(CLONE_NEWUTS)"] == 0
    assert with_admin["clone(CLONE_NEWUSER|CLONE_FS)"] == errno.EINVAL  # the kernel's answer
    assert with_admin["clone3"] == errno.EINVAL
    assert with_admin["mount"] == errno.EFAULT
    assert with_admin["keyctl"] == errno.EPERM  # never lifted
    assert with_admin["kcmp"] == errno.EPERM  # CAP_SYS_PTRACE's
    with_ptrace = outcomes((*DEFAULT_CAPABILITIES, "CAP_SYS_PTRACE"), common_calls())
    assert with_ptrace["kcmp"] == 0 and with_ptrace["pidfd_getfd"] == errno.EBADF
    assert with_ptrace["mount"] == errno.EPERM
    # Dropping a default capability takes its calls away: chroot is CAP_SYS_CHROOT's.
    chroot = {"chroot": call("chroot", 0)}
    assert outcomes(DEFAULT_CAPABILITIES, chroot) == {"chroot": errno.EFAULT}
    without = tuple(c for c in DEFAULT_CAPABILITIES if c != "CAP_SYS_CHROOT")
    assert outcomes(without, chroot) == {"chroot": errno.EPERM}


@needs_root
@pytest.mark.skipif(not X86_64, reason="the i386 and x32 ABIs are x86_64's")
def test_the_i386_and_x32_abis_are_filtered_too():
    # The kernel here may lack x32 (then an allowed x32 call gets its ENOSYS); the filter's
    # EPERM comes first either way.
    x32_enabled = call("getpid", abi="x32")() >= 0
    found = outcomes(
        DEFAULT_CAPABILITIES,
        {
            "i386 getpid": i386("getpid"),
            "i386 kcmp": i386("kcmp"),
            "i386 unshare(CLONE_NEWUTS)": i386("unshare", CLONE_NEWUTS),
            "i386 personality(READ_IMPLIES_EXEC)": i386("personality", READ_IMPLIES_EXEC),
            "i386 personality(query)": i386("personality", PERSONALITY_QUERY),
            "i386 clone3": i386("clone3"),
            "i386 fchmodat2": i386("fchmodat2", 2**32 - 1),
            "x32 getpid": call("getpid", abi="x32"),
            "x32 kcmp": call("kcmp", abi="x32"),
            "x32 unshare": call("unshare", CLONE_NEWUTS, abi="x32"),
        },
    )
    assert found == {
        "i386 getpid": 0,
        "i386 kcmp": errno.EPERM,
        "i386 unshare(CLONE_NEWUTS)": errno.EPERM,
        "i386 personality(READ_IMPLIES_EXEC)": errno.EPERM,
        "i386 personality(query)": 0,
        "i386 clone3": errno.ENOSYS,
        "i386 fchmodat2": errno.ENOSYS,
        "x32 getpid": 0 if x32_enabled else errno.ENOSYS,
        "x32 kcmp": errno.EPERM,
        "x32 unshare": errno.EPERM,
    }


@needs_root
def test_a_call_numbered_beyond_every_table_gets_enosys():
    newest = seccomp.newest_calls(seccomp.rules_for(DEFAULT_CAPABILITIES), seccomp.abis())
    native = newest[seccomp.abis()[0]]
    found = outcomes(DEFAULT_CAPABILITIES, {"newest + 1": raw(native + 1), "1000": raw(1000)})
    assert found == {"newest + 1": errno.ENOSYS, "1000": errno.ENOSYS}


def test_the_oci_profile_is_dockers_for_the_capabilities():
    profile = seccomp.oci_profile(DEFAULT_CAPABILITIES, "x86_64")
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO" and profile["defaultErrnoRet"] == 1
    assert profile["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    rules = profile["syscalls"]
    allowed = {
        n for r in rules if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r for n in r["names"]
    }
    assert {"read", "chroot", "arch_prctl", "ptrace", "socket"} <= allowed
    assert not {"mount", "kcmp", "keyctl", "clone", "set_tls", "personality"} & allowed
    by_name = {
        n: r for r in rules for n in r["names"] if "args" in r or r["action"] != "SCMP_ACT_ALLOW"
    }
    assert by_name["clone"]["args"] == [
        {"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}
    ]
    assert by_name["clone3"] == {
        "names": ["clone3"],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": errno.ENOSYS,
    }
    personas = sorted(r["args"][0]["value"] for r in rules if r["names"] == ["personality"])
    assert personas == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]

    admin = seccomp.oci_profile((*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"), "x86_64")["syscalls"]
    assert all("clone3" not in r["names"] for r in admin if r["action"] != "SCMP_ACT_ALLOW")
    assert any("clone" in r["names"] and "args" not in r for r in admin)
    assert any("mount" in r["names"] for r in admin)

    arm = seccomp.oci_profile(DEFAULT_CAPABILITIES, "aarch64")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    arm_names = {n for r in arm["syscalls"] for n in r["names"]}
    assert "set_tls" in arm_names and "arch_prctl" not in arm_names
    with pytest.raises(seccomp.UnsupportedArchitecture):
        seccomp.oci_profile(DEFAULT_CAPABILITIES, "sparc64")


def test_rules_follow_capabilities_and_the_kernel():
    def names(capabilities, kernel=(6, 1)):
        return {n for r in seccomp.rules_for(capabilities, "x86_64", kernel) for n in r.calls}

    assert "ptrace" in names(DEFAULT_CAPABILITIES)
    assert "ptrace" not in names(DEFAULT_CAPABILITIES, kernel=(4, 7))  # seccomp's ptrace hole
    assert "chroot" not in names(())
    assert {"reboot", "acct", "vhangup", "open_by_handle_at"} <= names(seccomp.BY_CAPABILITY)


def test_every_call_the_profile_names_is_known_to_libseccomp():
    # A misspelt name would silently be refused (runc ignores names libseccomp does not know).
    names = {n for rule in seccomp.PROFILE for n in rule.calls}
    unknown = {
        n
        for n in names
        if all(
            seccomp.syscall_number(n, abi) is None
            for abi in ("x86_64", "x86", "x32", "aarch64", "arm", "ppc64le")
        )
    }
    assert unknown == set()


@pytest.mark.parametrize(
    ("arch", "nr", "outcome"),
    [
        (0xC000003E, 449, bpf.FELL_THROUGH),  # x86_64: the newest call the profile names
        (0xC000003E, 450, ENOSYS),
        (0xC000003E, 0x40000000 | 547, bpf.FELL_THROUGH),  # x32's newest
        (0xC000003E, 0x40000000 | 548, ENOSYS),
        (0x40000003, 0, bpf.FELL_THROUGH),  # i386
        (0x40000003, 441, ENOSYS),
        (0xC00000B7, 1000, bpf.FELL_THROUGH),  # an ABI the stub does not know: the profile's
    ],
)
def test_the_enosys_stub_refuses_only_calls_newer_than_the_profile(arch, nr, outcome):
    stub = seccomp.enosys_stub({"x86_64": 449, "x86": 440, "x32": 0x40000000 | 547})
    assert bpf.run(stub, bpf.seccomp_data(arch, nr)) == outcome


def test_without_libseccomp_the_filter_is_refused_not_skipped(monkeypatch):
    monkeypatch.setattr(seccomp, "_library", "the seccomp filter needs libseccomp: not found")
    monkeypatch.setattr(seccomp, "_programs", {})
    with pytest.raises(seccomp.SeccompUnavailable, match="needs libseccomp"):
        seccomp.filter_program(DEFAULT_CAPABILITIES)
    seccomp.precompile(DEFAULT_CAPABILITIES)  # at import: says nothing, the start will
    assert seccomp.oci_profile(DEFAULT_CAPABILITIES, "x86_64")["syscalls"]  # runc's own
