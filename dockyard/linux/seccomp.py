"""The default seccomp policy: the system calls a container may not make, as docker's profile.

Docker's default profile is an allow-list whose effect, for a container with docker's default
capabilities, is to refuse a few dozen system calls that could let a process out of its
container or disturb the host: kernel modules, kexec, keyrings, new mount API calls, namespace
creation (``unshare``, ``setns``, ``clone`` with namespace flags), ``bpf``, ``userfaultfd``...
A capability the container was given lifts the calls it governs, as in docker's profile
(``--cap-add SYS_ADMIN`` allows ``mount``). ``--privileged`` and ``--security-opt
seccomp=unconfined`` apply no filter.

This module is the policy, as data and as a classic BPF program; the runtimes apply it (the
``namespaces`` runtime installs the program, ``runc`` gets the policy in its bundle).
Standard library only: the launcher imports it on every container start.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Iterable, Mapping

#: System call -> the capabilities any one of which lifts the refusal (none: always refused).
DENIED: Mapping[str, tuple[str, ...]] = {
    # Namespaces, mounts and the new mount API
    "mount": ("CAP_SYS_ADMIN",),
    "umount2": ("CAP_SYS_ADMIN",),
    "unshare": ("CAP_SYS_ADMIN",),
    "setns": ("CAP_SYS_ADMIN",),
    "open_tree": ("CAP_SYS_ADMIN",),
    "move_mount": ("CAP_SYS_ADMIN",),
    "fsopen": ("CAP_SYS_ADMIN",),
    "fsconfig": ("CAP_SYS_ADMIN",),
    "fsmount": ("CAP_SYS_ADMIN",),
    "fspick": ("CAP_SYS_ADMIN",),
    "mount_setattr": ("CAP_SYS_ADMIN",),
    "name_to_handle_at": ("CAP_SYS_ADMIN",),
    "lookup_dcookie": ("CAP_SYS_ADMIN",),
    "quotactl": ("CAP_SYS_ADMIN",),
    "quotactl_fd": ("CAP_SYS_ADMIN",),
    "bpf": ("CAP_SYS_ADMIN", "CAP_BPF"),
    "perf_event_open": ("CAP_SYS_ADMIN", "CAP_PERFMON"),
    "syslog": ("CAP_SYS_ADMIN", "CAP_SYSLOG"),
    # The kernel and the machine
    "init_module": ("CAP_SYS_MODULE",),
    "finit_module": ("CAP_SYS_MODULE",),
    "delete_module": ("CAP_SYS_MODULE",),
    "reboot": ("CAP_SYS_BOOT",),
    "kexec_load": ("CAP_SYS_BOOT",),
    "kexec_file_load": ("CAP_SYS_BOOT",),
    "acct": ("CAP_SYS_PACCT",),
    "iopl": ("CAP_SYS_RAWIO",),
    "ioperm": ("CAP_SYS_RAWIO",),
    "settimeofday": ("CAP_SYS_TIME",),
    "clock_settime": ("CAP_SYS_TIME",),
    "clock_adjtime": ("CAP_SYS_TIME",),
    "get_mempolicy": ("CAP_SYS_NICE",),
    "set_mempolicy": ("CAP_SYS_NICE",),
    "mbind": ("CAP_SYS_NICE",),
    "move_pages": ("CAP_SYS_NICE",),
    "open_by_handle_at": ("CAP_DAC_READ_SEARCH",),
    # Never allowed: keyrings are not namespaced; the rest is obsolete or an exploit aid
    "keyctl": (),
    "add_key": (),
    "request_key": (),
    "userfaultfd": (),
    "uselib": (),
    "ustat": (),
    "sysfs": (),
    "_sysctl": (),
    "create_module": (),
    "get_kernel_syms": (),
    "query_module": (),
    "nfsservctl": (),
}
#: ``clone`` flags that create namespaces: refused without CAP_SYS_ADMIN (as docker's profile).
CLONE_NAMESPACE_FLAGS = 0x7E020000
#: ``clone3`` passes its flags in memory a filter cannot read: ENOSYS makes libc use ``clone``.
CLONE3_ERRNO = errno.ENOSYS

#: Numbers of the calls above, from the kernel's uapi headers (``asm/unistd_64.h`` for x86_64,
#: ``asm-generic/unistd.h`` for aarch64); a call an architecture lacks is absent.
SYSCALL_NUMBERS: Mapping[str, Mapping[str, int]] = {
    "x86_64": {
        "mount": 165, "umount2": 166, "unshare": 272, "setns": 308, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "name_to_handle_at": 303, "lookup_dcookie": 212, "quotactl": 179,
        "quotactl_fd": 443, "bpf": 321, "perf_event_open": 298, "syslog": 103,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "reboot": 169,
        "kexec_load": 246, "kexec_file_load": 320, "acct": 163, "iopl": 172, "ioperm": 173,
        "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "get_mempolicy": 239,
        "set_mempolicy": 238, "mbind": 237, "move_pages": 279, "open_by_handle_at": 304,
        "keyctl": 250, "add_key": 248, "request_key": 249, "userfaultfd": 323, "uselib": 134,
        "ustat": 136, "sysfs": 139, "_sysctl": 156, "create_module": 174,
        "get_kernel_syms": 177, "query_module": 178, "nfsservctl": 180,
        "clone": 56, "clone3": 435,
    },
    "aarch64": {
        "mount": 40, "umount2": 39, "unshare": 97, "setns": 268, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "name_to_handle_at": 264, "lookup_dcookie": 18, "quotactl": 60,
        "quotactl_fd": 443, "bpf": 280, "perf_event_open": 241, "syslog": 116,
        "init_module": 105, "finit_module": 273, "delete_module": 106, "reboot": 142,
        "kexec_load": 104, "kexec_file_load": 294, "acct": 89, "settimeofday": 170,
        "clock_settime": 112, "clock_adjtime": 266, "get_mempolicy": 236, "set_mempolicy": 237,
        "mbind": 235, "move_pages": 239, "open_by_handle_at": 265, "keyctl": 219,
        "add_key": 217, "request_key": 218, "userfaultfd": 282, "nfsservctl": 42,
        "clone": 220, "clone3": 435,
    },
}  # fmt: skip
#: seccomp_data.arch of each architecture's native calls (AUDIT_ARCH_*).
AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
#: On x86_64, calls numbered from here on are the x32 ABI's: refused, or they would be a way
#: around a filter written for the native numbers.
X32_SYSCALL_BIT = 0x40000000

# Classic BPF, as seccomp runs it (linux/filter.h, linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_KILL_PROCESS = 0x80000000
_NR_OFFSET, _ARCH_OFFSET, _ARG0_LOW_OFFSET = 0, 4, 16


class UnsupportedArchitecture(Exception):
    """No syscall table for this machine: the runtime must refuse rather than run unfiltered."""


def machine() -> str:
    return os.uname().machine


def denied_calls(capabilities: Iterable[str]) -> dict[str, int]:
    """The calls a process with ``capabilities`` is refused, with the errno each gets."""
    held = set(capabilities)
    refused = {name: errno.EPERM for name, lifts in DENIED.items() if not held & set(lifts)}
    if "CAP_SYS_ADMIN" not in held:
        refused["clone3"] = CLONE3_ERRNO
    return refused


def filter_program(capabilities: Iterable[str], arch: str | None = None) -> bytes:
    """The policy for ``capabilities`` as a seccomp BPF program (``struct sock_filter[]``).

    The policy is written for the native numbers only: a call of another architecture (a
    32-bit binary's ``int 0x80`` on x86_64) kills the process, and the x32 ABI is refused.
    """
    arch = arch or machine()
    numbers = SYSCALL_NUMBERS.get(arch)
    if numbers is None:
        raise UnsupportedArchitecture(f"no seccomp syscall table for {arch}")
    refused = {numbers[name]: code for name, code in denied_calls(capabilities).items()
               if name in numbers}  # fmt: skip
    check_clone = "CAP_SYS_ADMIN" not in set(capabilities)
    program: list[tuple[int, int, int, int]] = []

    def ret(value: int) -> None:
        program.append((_RET_K, 0, 0, value))

    program.append((_LD_W_ABS, 0, 0, _ARCH_OFFSET))
    program.append((_JEQ_K, 1, 0, AUDIT_ARCH[arch]))
    ret(SECCOMP_RET_KILL_PROCESS)  # a clear death (SIGSYS), not a process that cannot exit
    program.append((_LD_W_ABS, 0, 0, _NR_OFFSET))
    if arch == "x86_64":
        program.append((_JGE_K, 0, 1, X32_SYSCALL_BIT))
        ret(SECCOMP_RET_ERRNO | errno.EPERM)
    for number, code in sorted(refused.items()):
        program.append((_JEQ_K, 0, 1, number))
        ret(SECCOMP_RET_ERRNO | code)
    if check_clone:
        # clone(flags, ...): the low 32 bits of the first argument hold the namespace flags.
        program.append((_JEQ_K, 0, 3, numbers["clone"]))
        program.append((_LD_W_ABS, 0, 0, _ARG0_LOW_OFFSET))
        program.append((_JSET_K, 0, 1, CLONE_NAMESPACE_FLAGS))
        ret(SECCOMP_RET_ERRNO | errno.EPERM)
    ret(SECCOMP_RET_ALLOW)
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
