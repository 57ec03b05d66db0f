"""Docker's default seccomp profile end to end: the same calls get the same errnos in a container
on either runtime, and on dockerd.

The calls are made by ``syscall_probe.c`` (built static with gcc into a busybox image), with
arguments chosen so that a call the filter lets through gets an answer of the kernel's own
(ESRCH, EFAULT, EBADF, EINVAL...) distinct from the filter's EPERM or ENOSYS.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockyard.core.capabilities import DEFAULT_CAPABILITIES
from dockyard.linux import seccomp
from dockyard.testing.images import busybox_rootfs, image_archive
from tests import bpf
from tests.containers.engine_api import Api

IMAGE = "seccomp-probe:latest"
SOURCE = Path(__file__).with_name("syscall_probe.c")
X86_64 = os.uname().machine == "x86_64"
CLONE_NEWUTS, CLONE_NEWUSER, CLONE_FS, SIGCHLD = 0x04000000, 0x10000000, 0x200, 17
READ_IMPLIES_EXEC, PERSONALITY_QUERY = 0x0400000, 0xFFFFFFFF
BAD_FD = 0xFFFFFFFF
PTRACE_PEEKDATA = 2

#: The prober's ABI names, and libseccomp's (None: this machine's own).
ABIS = {"native": None, "x32": "x32", "i386": "x86"}
#: label -> (ABI, call or number, arguments...).
PROBES: dict[str, tuple[Any, ...]] = {
    "getpid": ("native", "getpid"),
    "clone()": ("native", "clone", SIGCHLD),
    # CLONE_FS beside CLONE_NEWUSER: the kernel refuses it (EINVAL) if the filter does not.
    "clone(CLONE_NEWUSER)": ("native", "clone", CLONE_NEWUSER | CLONE_FS | SIGCHLD),
    "clone3": ("native", "clone3"),
    "unshare(CLONE_NEWUTS)": ("native", "unshare", CLONE_NEWUTS),
    "mount": ("native", "mount"),
    "keyctl": ("native", "keyctl", 0, 0),
    "kcmp": ("native", "kcmp"),
    "pidfd_getfd": ("native", "pidfd_getfd", BAD_FD),
    "personality(READ_IMPLIES_EXEC)": ("native", "personality", READ_IMPLIES_EXEC),
    "personality(query)": ("native", "personality", PERSONALITY_QUERY),
    "ptrace(PEEKDATA, 1)": ("native", "ptrace", PTRACE_PEEKDATA, 1),
    "chroot": ("native", "chroot"),
    "fchmodat2": ("native", "fchmodat2", BAD_FD),  # newer than the profile
    "syscall 1000": ("native", 1000),
}
if X86_64:
    PROBES.update({
        "i386 getpid": ("i386", "getpid"),
        "i386 kcmp": ("i386", "kcmp"),
        "i386 unshare(CLONE_NEWUTS)": ("i386", "unshare", CLONE_NEWUTS),
        "i386 personality(READ_IMPLIES_EXEC)": ("i386", "personality", READ_IMPLIES_EXEC),
        "i386 clone3": ("i386", "clone3"),
        "i386 fchmodat2": ("i386", "fchmodat2", BAD_FD),
        "x32 kcmp": ("x32", "kcmp"),
    })  # fmt: skip

#: What each probe gets with docker's default capabilities.
DEFAULT = {
    "getpid": 0,
    "clone()": 0,
    "clone(CLONE_NEWUSER)": errno.EPERM,
    "clone3": errno.ENOSYS,
    "unshare(CLONE_NEWUTS)": errno.EPERM,
    "mount": errno.EPERM,
    "keyctl": errno.EPERM,
    "kcmp": errno.EPERM,
    "pidfd_getfd": errno.EPERM,
    "personality(READ_IMPLIES_EXEC)": errno.EPERM,
    "personality(query)": 0,
    "ptrace(PEEKDATA, 1)": errno.ESRCH,
    "chroot": errno.EFAULT,
    "fchmodat2": errno.ENOSYS,
    "syscall 1000": errno.ENOSYS,
    "i386 getpid": 0,
    "i386 kcmp": errno.EPERM,
    "i386 unshare(CLONE_NEWUTS)": errno.EPERM,
    "i386 personality(READ_IMPLIES_EXEC)": errno.EPERM,
    "i386 clone3": errno.ENOSYS,
    "i386 fchmodat2": errno.ENOSYS,
    "x32 kcmp": errno.EPERM,
}
#: name -> (the container's HostConfig, docker run's flags, what differs from DEFAULT).
CASES: dict[str, tuple[dict[str, Any], list[str], dict[str, int]]] = {
    "default": ({}, [], {}),
    "cap-add SYS_ADMIN": (
        {"CapAdd": ["SYS_ADMIN"]},
        ["--cap-add", "SYS_ADMIN"],
        {
            "clone(CLONE_NEWUSER)": errno.EINVAL,
            "clone3": errno.EINVAL,  # the kernel's: too small a struct clone_args
            "unshare(CLONE_NEWUTS)": 0,
            "mount": errno.EFAULT,
            "i386 unshare(CLONE_NEWUTS)": 0,
            "i386 clone3": errno.EINVAL,
        },
    ),
    "cap-add SYS_PTRACE": (
        {"CapAdd": ["SYS_PTRACE"]},
        ["--cap-add", "SYS_PTRACE"],
        {
            "kcmp": errno.ESRCH,
            "pidfd_getfd": errno.EBADF,
            "i386 kcmp": errno.ESRCH,
            "x32 kcmp": errno.ENOSYS,  # let through, to a kernel without the x32 ABI
        },
    ),
    "cap-drop SYS_CHROOT": ({"CapDrop": ["SYS_CHROOT"]}, ["--cap-drop", "SYS_CHROOT"], {"chroot": errno.EPERM}),
    "unconfined": (
        {"SecurityOpt": ["seccomp=unconfined"]},
        ["--security-opt", "seccomp=unconfined"],
        {
            "clone(CLONE_NEWUSER)": errno.EINVAL,
            "clone3": errno.EINVAL,
            "mount": errno.EFAULT,
            "keyctl": errno.EINVAL,
            "kcmp": errno.ESRCH,
            "pidfd_getfd": errno.EBADF,
            "personality(READ_IMPLIES_EXEC)": 0,
            "fchmodat2": errno.EFAULT,
            "i386 kcmp": errno.ESRCH,
            "i386 personality(READ_IMPLIES_EXEC)": 0,
            "i386 clone3": errno.EINVAL,
            "i386 fchmodat2": errno.EFAULT,
            "x32 kcmp": errno.ENOSYS,  # this kernel has no x32 ABI
        },
    ),
}  # fmt: skip


def expected(case: str) -> dict[str, int]:
    return {label: code for label, code in {**DEFAULT, **CASES[case][2]}.items() if label in PROBES}


def probe_command() -> list[str]:
    command = ["/bin/probe"]
    for label, (abi, call, *args) in PROBES.items():
        number = call if isinstance(call, int) else seccomp.syscall_number(call, ABIS[abi])
        assert number is not None, (abi, call)
        command.append(":".join([f"{label}={abi}", str(number), *map(str, args)]))
    return command


def parse(output: bytes | str) -> dict[str, int]:
    text = output.decode() if isinstance(output, bytes) else output
    return {
        label: int(code) for label, _, code in (line.rpartition(" ") for line in text.splitlines())
    }


@pytest.fixture(scope="module")
def probe_archive(tmp_path_factory) -> Path:
    """A busybox image with the static prober as /bin/probe, as a ``docker save`` archive."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the syscall prober")
    binary = tmp_path_factory.mktemp("probe") / "probe"
    built = subprocess.run(
        [compiler, "-static", "-O2", "-o", str(binary), str(SOURCE)], capture_output=True, text=True
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build a static binary here (libc6-dev?): {built.stderr[-500:]}")
    archive = binary.with_name("image.tar")
    archive.write_bytes(
        image_archive([busybox_rootfs({"bin/probe": binary.read_bytes()})], [IMAGE])
    )
    return archive


def load(api: Api, archive: Path) -> None:
    reply = api.daemon.request("POST", "/v1.41/images/load", body=archive.read_bytes())
    assert reply.status == 200, reply.body


def run_in_dockyard(api: Api, case: str) -> dict[str, int]:
    code, out, err = api.run(probe_command(), Image=IMAGE, HostConfig=CASES[case][0])
    assert code == 0, err
    return parse(out)


@pytest.mark.parametrize("case", CASES)
def test_each_call_gets_dockers_errno(api, probe_archive, case):
    load(api, probe_archive)
    assert run_in_dockyard(api, case) == expected(case)


def test_an_exec_gets_the_containers_filter(api, probe_archive):
    load(api, probe_archive)
    for host_config, case in (({}, "default"), ({"CapAdd": ["SYS_ADMIN"]}, "cap-add SYS_ADMIN")):
        container = api.create(["sleep", "30"], Image=IMAGE, HostConfig=host_config)
        api.start(container)
        try:
            code, out, err = api.exec(container, probe_command())
            assert code == 0, err
            assert parse(out) == expected(case)
        finally:
            api.call("DELETE", f"/containers/{container}?force=1")


@pytest.mark.interop
@pytest.mark.parametrize("case", CASES)
def test_same_errnos_as_dockerd(api, real_dockerd, probe_archive, case):
    real_dockerd.docker("load", "-i", str(probe_archive))
    theirs = real_dockerd.docker(
        "run", "--rm", "--network", "none", *CASES[case][1], IMAGE, *probe_command()
    )
    load(api, probe_archive)
    assert run_in_dockyard(api, case) == parse(theirs.stdout) == expected(case)


def samples() -> list[bytes]:
    """seccomp_data for every call number of each x86_64 ABI up to past the newest, and the
    argument values the profile looks at."""
    x86_64, i386, aarch64 = 0xC000003E, 0x40000003, 0xC00000B7
    found = [bpf.seccomp_data(arch, nr) for arch in (x86_64, i386) for nr in range(1100)]
    found += [bpf.seccomp_data(x86_64, 0x40000000 | nr) for nr in range(1100)]
    found += [bpf.seccomp_data(aarch64, 0)]  # an ABI the filter does not cover
    for abi, arch in ((None, x86_64), ("x86", i386)):
        clone = seccomp.syscall_number("clone", abi)
        personality = seccomp.syscall_number("personality", abi)
        assert clone is not None and personality is not None
        for flags in (SIGCHLD, CLONE_NEWUTS | SIGCHLD, CLONE_NEWUSER, 0x20000, 1 << 32):
            found.append(bpf.seccomp_data(arch, clone, (flags,)))
        for persona in (*seccomp.PERSONAS, READ_IMPLIES_EXEC, 1 << 32, 0x20000 | 1 << 32):
            found.append(bpf.seccomp_data(arch, personality, (persona,)))
    return found


@pytest.mark.skipif(not X86_64, reason="the samples are x86_64's")
@pytest.mark.parametrize(
    ("host_config", "capabilities"),
    [
        ({}, DEFAULT_CAPABILITIES),
        ({"CapAdd": ["SYS_ADMIN"]}, (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN")),
    ],
    ids=["default", "cap-add SYS_ADMIN"],
)
def test_the_installed_filter_is_the_profiles(api, host_config, capabilities):
    """What the container runs under is what :func:`seccomp.filter_program` compiles: libseccomp's
    program byte for byte (runc compiles the OCI form with the same library), behind an ENOSYS
    stub runc lays out its own way, with the same answers."""
    container = api.create(["sleep", "30"], HostConfig=host_config)
    api.start(container)
    try:
        installed = bpf.installed_filter(api.inspect(container)["State"]["Pid"])
    finally:
        api.call("DELETE", f"/containers/{container}?force=1")
    if installed is None:
        pytest.skip("this kernel does not show a process's seccomp filter")
    ours = seccomp.filter_program(capabilities)
    rules = seccomp.rules_for(capabilities)
    stub = seccomp.enosys_stub(seccomp.newest_calls(rules, seccomp.abis()))
    assert installed.endswith(ours[len(stub) :])
    for data in samples():
        assert bpf.run(installed, data) == bpf.run(ours, data), data
