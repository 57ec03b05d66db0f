"""Seccomp filters for the tests: reading the one a process runs under, and running one here.

:func:`run` interprets the classic BPF instructions libseccomp and our ENOSYS stub emit, on a
``struct seccomp_data`` made up by the test, so two filters can be compared by what they
answer rather than by their bytes.
"""

from __future__ import annotations

import ctypes
import os
import struct

#: What :func:`run` answers when the program ran past its last instruction (into whatever
#: would follow it: the profile's program, after the ENOSYS stub).
FELL_THROUGH = "fell through"
_PTRACE_DETACH = 17
_PTRACE_SEIZE = 0x4206
_PTRACE_INTERRUPT = 0x4207
_PTRACE_SECCOMP_GET_FILTER = 0x420C
_WALL = 0x40000000


def seccomp_data(arch: int, nr: int, args: tuple[int, ...] = ()) -> bytes:
    """``struct seccomp_data``: nr, arch, instruction pointer, six 64-bit arguments."""
    padded = (*args, 0, 0, 0, 0, 0, 0)[:6]
    return struct.pack("=iIQ6Q", nr, arch, 0, *padded)


def run(program: bytes, data: bytes) -> int | str:
    """The value ``program`` returns for ``data``, or :data:`FELL_THROUGH`."""
    instructions = [struct.unpack_from("=HBBI", program, at) for at in range(0, len(program), 8)]
    accumulator, position = 0, 0
    while position < len(instructions):
        code, when_true, when_false, k = instructions[position]
        position += 1
        if code == 0x20:  # ld [k]
            (accumulator,) = struct.unpack_from("=I", data, k)
        elif code == 0x54:  # and k
            accumulator &= k
        elif code == 0x06:  # ret k
            return k
        elif code == 0x05:  # ja k
            position += k
        else:
            tests = {
                0x15: accumulator == k,  # jeq
                0x25: accumulator > k,  # jgt
                0x35: accumulator >= k,  # jge
                0x45: accumulator & k != 0,  # jset
            }
            if code not in tests:
                raise ValueError(f"instruction {code:#x} is not one this interpreter knows")
            position += when_true if tests[code] else when_false
    return FELL_THROUGH


def installed_filter(pid: int) -> bytes | None:
    """The seccomp program process ``pid`` runs under (its newest, if several), read with
    PTRACE_SECCOMP_GET_FILTER; None where the kernel does not offer that (it needs
    CONFIG_CHECKPOINT_RESTORE and CAP_SYS_ADMIN)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    if libc.ptrace(_PTRACE_SEIZE, pid, None, None) != 0:
        raise OSError(ctypes.get_errno(), f"PTRACE_SEIZE of {pid}")
    try:
        if libc.ptrace(_PTRACE_INTERRUPT, pid, None, None) != 0:
            raise OSError(ctypes.get_errno(), f"PTRACE_INTERRUPT of {pid}")
        os.waitpid(pid, _WALL)
        count = libc.ptrace(_PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(0), None)
        if count < 0:
            return None
        buffer = ctypes.create_string_buffer(count * 8)
        libc.ptrace(_PTRACE_SECCOMP_GET_FILTER, pid, ctypes.c_void_p(0), buffer)
        return buffer.raw
    finally:
        libc.ptrace(_PTRACE_DETACH, pid, None, None)
