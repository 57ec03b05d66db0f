"""A process's capability sets: reading them, and setting them for a container's process.

Capability names are Docker's (``CAP_CHOWN``...), from the table in
:mod:`dockyard.core.capabilities`; numbers are the kernel's, in the same order.
"""

from __future__ import annotations

import ctypes

from dockyard.core.capabilities import ALL_CAPABILITIES
from dockyard.linux.syscalls import PR_CAPBSET_DROP, SYSCALLS, check, libc, prctl

CAPABILITY_NAMES = ALL_CAPABILITIES
CAPABILITY_NUMBERS = {name: number for number, name in enumerate(CAPABILITY_NAMES)}


def last_capability() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as source:
            return int(source.read())
    except OSError:
        return max(CAPABILITY_NUMBERS.values())


def capability_mask(names: tuple[str, ...] | list[str]) -> int:
    """Bit mask of capability names (``CAP_CHOWN`` or ``chown``); unknown names raise."""
    mask = 0
    for name in names:
        key = name.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        if key == "CAP_ALL":
            return (1 << (last_capability() + 1)) - 1
        if key not in CAPABILITY_NUMBERS:
            raise ValueError(f"unknown capability {name!r}")
        mask |= 1 << CAPABILITY_NUMBERS[key]
    return mask


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_CAPABILITY_VERSION_3 = 0x20080522


def _capability_set(field: str) -> int:
    with open("/proc/thread-self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1], 16)
    return 0


def bounding_set() -> int:
    """The calling thread's capability bounding set, from /proc."""
    return _capability_set("CapBnd")


def permitted_set() -> int:
    """The calling thread's permitted capabilities, from /proc."""
    return _capability_set("CapPrm")


def inheritable_set() -> int:
    return _capability_set("CapInh")


def effective_set() -> int:
    return _capability_set("CapEff")


def drop_bounding_set(keep: int) -> None:
    """Drop every capability outside ``keep`` from the bounding set (needs CAP_SETPCAP)."""
    current = bounding_set()
    for number in range(last_capability() + 1):
        if current & (1 << number) and not keep & (1 << number):
            prctl(PR_CAPBSET_DROP, number)


def set_capabilities(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread."""
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for index in range(2):
        shift = 32 * index
        data[index].effective = (effective >> shift) & 0xFFFFFFFF
        data[index].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[index].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    check(libc.syscall(SYSCALLS["capset"], ctypes.byref(header), ctypes.byref(data)), "capset")
