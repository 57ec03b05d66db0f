"""Docker's default seccomp profile (docker 20.10), as data, compiled with libseccomp.

The profile is an allow list: a call it does not name fails with EPERM. Some calls are allowed
only with certain arguments (``personality`` with the personas docker allows, ``clone``
without namespace flags) or only for a container holding a capability (``--cap-add
SYS_ADMIN`` allows ``mount``, ``unshare``, ``clone`` with any flags...). ``clone3`` fails with
ENOSYS without CAP_SYS_ADMIN: its flags live in memory a filter cannot read, and ENOSYS makes
libc fall back to ``clone``. ``--privileged`` and ``--security-opt seccomp=unconfined`` apply
no filter at all (the runtimes' business: this module is only the policy).

Both runtimes apply the same rules, from the same data: :func:`oci_profile` is the profile in
the OCI form runc compiles; :func:`filter_program` is the classic BPF program the
``namespaces`` runtime installs, made the way runc makes it:

* libseccomp compiles the rules for every ABI of the machine (docker's "archMap": on x86_64
  the i386 and x32 ABIs too, on aarch64 32-bit ARM), so that ``int 0x80`` or an x32 call
  number is no way around the filter;
* a stub in front of libseccomp's program makes a call numbered above the highest one the
  profile names (per ABI) fail with ENOSYS rather than EPERM: such a call is newer than the
  profile, and ENOSYS is what makes libc fall back to an older one (runc does the same).

libseccomp is reached through ctypes rather than a Python binding: the exec helper imports
this module with ``python -S`` (no site-packages), and the toolkit is standard library and
ctypes only. Compiling takes about 10 ms (three ABIs on x86_64), so a program is kept per
capability set, and the one for docker's default capabilities is compiled at import by the
``namespaces`` runtime (see :func:`precompile`), in the zygote every container's supervisor is
forked from: a default container start only looks it up.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import struct
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

# --------------------------------------------------------------------------------------------
# The profile
# --------------------------------------------------------------------------------------------


class ArgumentCheck(NamedTuple):
    """A condition on one argument of a call: ``arg == value``, or with ``mask``,
    ``arg & mask == value``. ``argument`` counts from 0."""

    argument: int
    value: int
    mask: int | None = None


class Rule(NamedTuple):
    """What happens to some calls, and when the rule applies at all."""

    calls: tuple[str, ...]
    #: None: the calls are allowed; else they fail with this errno.
    fails_with: int | None = None
    #: Conditions that must all hold for the rule to match a call.
    args: tuple[ArgumentCheck, ...] = ()
    #: The rule applies only to a container holding all of these capabilities...
    capabilities: tuple[str, ...] = ()
    #: ...and holding none of these.
    unless_capabilities: tuple[str, ...] = ()
    #: The rule applies only on these machines (``uname -m``); empty: everywhere.
    machines: tuple[str, ...] = ()
    #: The rule applies only on this kernel (major, minor) or later.
    min_kernel: tuple[int, int] = (0, 0)


def _calls(names: str) -> tuple[str, ...]:
    return tuple(names.split())


#: Allowed to every container, by topic. Names a machine lacks (the ``*32`` and ``*64``
#: variants of 32-bit ABIs, ``socketcall``...) are simply absent from its tables.
ALLOWED: Mapping[str, tuple[str, ...]] = {
    "files": _calls("""
        open openat openat2 creat close close_range read readv pread64 preadv preadv2 write
        writev pwrite64 pwritev pwritev2 lseek _llseek dup dup2 dup3 fcntl fcntl64 ioctl flock
        pipe pipe2 splice tee vmsplice sendfile sendfile64 copy_file_range readahead
        fadvise64 fadvise64_64 fallocate truncate truncate64 ftruncate ftruncate64 fsync
        fdatasync sync syncfs sync_file_range
    """),
    "paths and metadata": _calls("""
        stat stat64 lstat lstat64 fstat fstat64 newfstatat fstatat64 statx statfs statfs64
        fstatfs fstatfs64 access faccessat faccessat2 chdir fchdir getcwd getdents getdents64
        mkdir mkdirat mknod mknodat rmdir link linkat symlink symlinkat readlink readlinkat
        unlink unlinkat rename renameat renameat2 chmod fchmod fchmodat chown chown32 fchown
        fchown32 lchown lchown32 fchownat umask utime utimes utimensat utimensat_time64
        futimesat
    """),
    "extended attributes": _calls("""
        getxattr lgetxattr fgetxattr setxattr lsetxattr fsetxattr listxattr llistxattr
        flistxattr removexattr lremovexattr fremovexattr
    """),
    "waiting on descriptors": _calls("""
        select _newselect pselect6 pselect6_time64 poll ppoll ppoll_time64 epoll_create
        epoll_create1 epoll_ctl epoll_ctl_old epoll_wait epoll_wait_old epoll_pwait
        epoll_pwait2 eventfd eventfd2 signalfd signalfd4 inotify_init inotify_init1
        inotify_add_watch inotify_rm_watch fanotify_mark
    """),
    "asynchronous I/O": _calls("""
        io_setup io_destroy io_submit io_cancel io_getevents io_pgetevents
        io_pgetevents_time64 io_uring_setup io_uring_enter io_uring_register
    """),
    "memory": _calls("""
        brk mmap mmap2 munmap mremap mprotect madvise mincore msync mlock mlock2 mlockall
        munlock munlockall remap_file_pages membarrier memfd_create memfd_secret
    """),
    "processes and threads": _calls("""
        fork vfork execve execveat exit exit_group wait4 waitid waitpid getpid getppid gettid
        getpgid getpgrp setpgid getsid setsid set_tid_address get_robust_list
        set_robust_list get_thread_area set_thread_area rseq restart_syscall futex
        futex_time64 futex_waitv prctl capget capset seccomp pidfd_open pidfd_send_signal
        process_mrelease landlock_create_ruleset landlock_add_rule landlock_restrict_self
    """),
    "scheduling and limits": _calls("""
        sched_yield sched_getaffinity sched_setaffinity sched_getattr sched_setattr
        sched_getparam sched_setparam sched_getscheduler sched_setscheduler
        sched_get_priority_max sched_get_priority_min sched_rr_get_interval
        sched_rr_get_interval_time64 getpriority setpriority ioprio_get ioprio_set getrlimit
        ugetrlimit setrlimit prlimit64 getrusage getcpu times sysinfo uname getrandom
    """),
    "credentials": _calls("""
        getuid getuid32 geteuid geteuid32 getgid getgid32 getegid getegid32 getresuid
        getresuid32 getresgid getresgid32 getgroups getgroups32 setuid setuid32 setgid
        setgid32 setreuid setreuid32 setregid setregid32 setresuid setresuid32 setresgid
        setresgid32 setfsuid setfsuid32 setfsgid setfsgid32 setgroups setgroups32
    """),
    "signals": _calls("""
        kill tkill tgkill rt_sigaction rt_sigprocmask sigprocmask rt_sigpending rt_sigsuspend
        rt_sigtimedwait rt_sigtimedwait_time64 rt_sigqueueinfo rt_tgsigqueueinfo
        rt_sigreturn sigreturn sigaltstack pause alarm
    """),
    "clocks and timers": _calls("""
        time gettimeofday clock_gettime clock_gettime64 clock_getres clock_getres_time64
        clock_nanosleep clock_nanosleep_time64 nanosleep adjtimex clock_adjtime
        clock_adjtime64 getitimer setitimer timer_create timer_delete timer_getoverrun
        timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
        timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
    """),
    "System V and POSIX IPC": _calls("""
        ipc msgget msgsnd msgrcv msgctl semget semop semtimedop semtimedop_time64 semctl
        shmget shmat shmdt shmctl mq_open mq_unlink mq_timedsend mq_timedsend_time64
        mq_timedreceive mq_timedreceive_time64 mq_notify mq_getsetattr
    """),
    "sockets": _calls("""
        socket socketpair socketcall bind listen accept accept4 connect shutdown getsockname
        getpeername getsockopt setsockopt send sendto sendmsg sendmmsg recv recvfrom recvmsg
        recvmmsg recvmmsg_time64
    """),
}  # fmt: skip

#: Allowed to a container holding the capability: the calls it governs.
BY_CAPABILITY: Mapping[str, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": _calls("""
        mount umount umount2 open_tree move_mount fsopen fsconfig fsmount fspick
        mount_setattr unshare setns clone clone3 sethostname setdomainname bpf perf_event_open
        fanotify_init name_to_handle_at lookup_dcookie quotactl quotactl_fd syslog
    """),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_CHROOT": ("chroot",),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYS_PTRACE": _calls("""
        ptrace kcmp pidfd_getfd process_vm_readv process_vm_writev process_madvise
    """),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime"),
    "CAP_SYS_TTY_CONFIG": ("vhangup",),
    "CAP_SYS_NICE": ("get_mempolicy", "set_mempolicy", "mbind"),
    "CAP_SYSLOG": ("syslog",),
}  # fmt: skip

#: ``clone`` flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
#: NEWPID, NEWNET): without CAP_SYS_ADMIN, ``clone`` is allowed only with none of them.
CLONE_NAMESPACE_FLAGS = 0x7E020000
#: ``personality`` arguments allowed: PER_LINUX, PER_LINUX32, UNAME26, both of these, and
#: the query (0xffffffff), which changes nothing. READ_IMPLIES_EXEC and the rest are refused.
PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

#: The rules that are not plain "allowed to everyone" or "allowed with a capability".
SPECIAL_RULES: tuple[Rule, ...] = (
    # Before 4.8 a tracer could change a call after seccomp had let it through.
    Rule(("ptrace",), min_kernel=(4, 8)),
    *(Rule(("personality",), args=(ArgumentCheck(0, persona),)) for persona in PERSONAS),
    Rule(
        ("clone",),
        args=(ArgumentCheck(0, 0, mask=CLONE_NAMESPACE_FLAGS),),
        unless_capabilities=("CAP_SYS_ADMIN",),
    ),
    Rule(("clone3",), fails_with=errno.ENOSYS, unless_capabilities=("CAP_SYS_ADMIN",)),
    Rule(("arch_prctl", "modify_ldt"), machines=("x86_64",)),
    Rule(
        _calls("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush "
               "set_tls"),
        machines=("aarch64",),
    ),
)  # fmt: skip

PROFILE: tuple[Rule, ...] = (
    Rule(tuple(name for calls in ALLOWED.values() for name in calls)),
    *(Rule(calls, capabilities=(capability,)) for capability, calls in BY_CAPABILITY.items()),
    *SPECIAL_RULES,
)
#: What a call no rule allows gets.
DEFAULT_ERRNO = errno.EPERM

#: The ABIs a machine's filter covers, native first (libseccomp's names).
ABIS: Mapping[str, tuple[str, ...]] = {
    "x86_64": ("x86_64", "x86", "x32"),
    "aarch64": ("aarch64", "arm"),
}
#: seccomp_data.arch of each ABI's calls (linux/audit.h). x32 calls come as x86_64's, told
#: apart by a bit of the call number.
AUDIT_ARCH = {
    "x86_64": 0xC000003E, "x32": 0xC000003E, "x86": 0x40000003,
    "aarch64": 0xC00000B7, "arm": 0x40000028,
}  # fmt: skip
X32_SYSCALL_BIT = 0x40000000


class SeccompUnavailable(Exception):
    """The filter cannot be made here: a runtime must refuse to start rather than run the
    container unfiltered."""


class UnsupportedArchitecture(SeccompUnavailable):
    """The profile has no ABI table for this machine."""


class LibseccompError(SeccompUnavailable):
    """libseccomp is missing or refused a step of compiling the filter."""


def machine() -> str:
    return os.uname().machine


def _kernel_version() -> tuple[int, int]:
    major, _, rest = os.uname().release.partition(".")
    minor = rest.split(".")[0]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def abis(arch: str | None = None) -> tuple[str, ...]:
    arch = arch or machine()
    found = ABIS.get(arch)
    if found is None:
        raise UnsupportedArchitecture(f"no seccomp profile for {arch}")
    return found


def rules_for(
    capabilities: Iterable[str],
    arch: str | None = None,
    kernel: tuple[int, int] | None = None,
) -> list[Rule]:
    """The profile's rules that apply to a container with ``capabilities`` on this machine."""
    arch = arch or machine()
    kernel = kernel or _kernel_version()
    held = set(capabilities)
    return [
        rule
        for rule in PROFILE
        if held.issuperset(rule.capabilities)
        and not held.intersection(rule.unless_capabilities)
        and (not rule.machines or arch in rule.machines)
        and kernel >= rule.min_kernel
    ]


# --------------------------------------------------------------------------------------------
# The OCI form, for runc
# --------------------------------------------------------------------------------------------


def _oci_argument(check: ArgumentCheck) -> dict[str, Any]:
    if check.mask is None:
        return {"index": check.argument, "value": check.value, "op": "SCMP_CMP_EQ"}
    return {
        "index": check.argument,
        "value": check.mask,
        "valueTwo": check.value,
        "op": "SCMP_CMP_MASKED_EQ",
    }


def oci_profile(capabilities: Iterable[str], arch: str | None = None) -> dict[str, Any]:
    """The profile for ``capabilities`` as an OCI ``linux.seccomp`` object.

    runc compiles it with the same libseccomp and adds the same ENOSYS stub, so a container
    gets the same filter on either runtime.
    """
    arch = arch or machine()
    syscalls = []
    for rule in rules_for(capabilities, arch):
        entry: dict[str, Any] = {"names": list(rule.calls)}
        if rule.fails_with is None:
            entry["action"] = "SCMP_ACT_ALLOW"
        else:
            entry["action"] = "SCMP_ACT_ERRNO"
            entry["errnoRet"] = rule.fails_with
        if rule.args:
            entry["args"] = [_oci_argument(check) for check in rule.args]
        syscalls.append(entry)
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": DEFAULT_ERRNO,
        "architectures": [f"SCMP_ARCH_{abi.upper()}" for abi in abis(arch)],
        "syscalls": syscalls,
    }


# --------------------------------------------------------------------------------------------
# The BPF program, for the namespaces runtime
# --------------------------------------------------------------------------------------------

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000  # | errno
_NR_SCMP_ERROR = -1
_SCMP_CMP_EQ = 4
_SCMP_CMP_MASKED_EQ = 7
LIBSECCOMP = "libseccomp.so.2"


class _ArgumentComparison(ctypes.Structure):
    """``struct scmp_arg_cmp``."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _load_libseccomp() -> ctypes.CDLL | str:
    """The library with its signatures declared, or why it could not be loaded.

    Loaded at import, not when first needed: a program for a capability set not compiled yet
    is compiled in the container's process, after it has left the host's root behind.
    """
    try:
        library = ctypes.CDLL(LIBSECCOMP)
    except OSError as exc:
        return f"the seccomp filter needs libseccomp ({LIBSECCOMP}): {exc}"
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_release.argtypes = [ctypes.c_void_p]
    library.seccomp_release.restype = None
    library.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    library.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_syscall_resolve_name_arch.argtypes = [ctypes.c_uint32, ctypes.c_char_p]
    library.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
        ctypes.POINTER(_ArgumentComparison),
    ]  # fmt: skip
    library.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return library


_library = _load_libseccomp()


def _libseccomp() -> ctypes.CDLL:
    if isinstance(_library, str):
        raise LibseccompError(_library)
    return _library


def _check(result: int, what: str) -> None:
    if result < 0:
        raise LibseccompError(f"libseccomp {what}: {os.strerror(-result)}")


def _arch_token(library: ctypes.CDLL, abi: str) -> int:
    token = library.seccomp_arch_resolve_name(abi.encode())
    if not token:
        raise LibseccompError(f"libseccomp does not know the {abi} ABI")
    return token


def _action(rule: Rule) -> int:
    return SCMP_ACT_ALLOW if rule.fails_with is None else SCMP_ACT_ERRNO | rule.fails_with


def _comparisons(rule: Rule) -> ctypes.Array[_ArgumentComparison]:
    comparisons = (_ArgumentComparison * max(len(rule.args), 1))()
    for slot, check in zip(comparisons, rule.args, strict=False):
        slot.arg = check.argument
        if check.mask is None:
            slot.op, slot.datum_a = _SCMP_CMP_EQ, check.value
        else:
            slot.op, slot.datum_a, slot.datum_b = _SCMP_CMP_MASKED_EQ, check.mask, check.value
    return comparisons


def _libseccomp_program(rules: list[Rule], abis: tuple[str, ...]) -> bytes:
    """libseccomp's BPF for ``rules``, covering ``abis``."""
    library = _libseccomp()
    context = library.seccomp_init(SCMP_ACT_ERRNO | DEFAULT_ERRNO)
    if not context:
        raise LibseccompError("libseccomp seccomp_init failed")
    try:
        for abi in abis:
            result = library.seccomp_arch_add(context, _arch_token(library, abi))
            if result != -errno.EEXIST:  # the native ABI is there from the start
                _check(result, f"seccomp_arch_add({abi})")
        for rule in rules:
            comparisons = _comparisons(rule)
            for name in rule.calls:
                number = library.seccomp_syscall_resolve_name(name.encode())
                if number == _NR_SCMP_ERROR:
                    continue  # unknown to this libseccomp: left to the default, as runc does
                _check(
                    library.seccomp_rule_add_array(
                        context, _action(rule), number, len(rule.args), comparisons
                    ),
                    f"seccomp_rule_add({name})",
                )
        descriptor = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _check(library.seccomp_export_bpf(context, descriptor), "seccomp_export_bpf")
            size = os.lseek(descriptor, 0, os.SEEK_END)
            return os.pread(descriptor, size, 0)
        finally:
            os.close(descriptor)
    finally:
        library.seccomp_release(context)


def syscall_number(name: str, abi: str | None = None) -> int | None:
    """The number of call ``name`` in ``abi`` (this machine's native one by default), as
    libseccomp knows it; None where the ABI lacks the call. x32 numbers carry their bit."""
    library = _libseccomp()
    abi = abi or abis()[0]
    number = library.seccomp_syscall_resolve_name_arch(_arch_token(library, abi), name.encode())
    return number if number >= 0 else None  # a negative pseudo-number: absent there


def newest_calls(rules: list[Rule], abis: tuple[str, ...]) -> dict[str, int]:
    """For each ABI, the highest call number any of ``rules`` names."""
    library = _libseccomp()
    names = {name.encode() for rule in rules for name in rule.calls}
    newest = {}
    for abi in abis:
        token = _arch_token(library, abi)
        # Calls the ABI lacks resolve to negative pseudo-numbers.
        numbers = (library.seccomp_syscall_resolve_name_arch(token, name) for name in names)
        highest = max(numbers, default=-1)
        if highest >= 0:
            newest[abi] = highest
    return newest


# Classic BPF, as seccomp runs it (linux/filter.h): opcodes and seccomp_data offsets.
_LD_W_ABS = 0x20
_JA = 0x05
_JGT_K = 0x25
_JEQ_K = 0x15
_JSET_K = 0x45
_RET_K = 0x06
_NR_OFFSET, _ARCH_OFFSET = 0, 4


def enosys_stub(newest: Mapping[str, int]) -> bytes:
    """BPF to run before the profile's program: a call numbered above ``newest[abi]`` for its
    ABI fails with ENOSYS; anything else goes on to the instruction after the stub.

    A call newer than the profile is one it could not name: refusing it with ENOSYS, as if the
    kernel lacked it, lets libc fall back to the call it replaces (as for ``clone3``,
    ``faccessat2`` or ``fchmodat2``), where EPERM would be taken for a real refusal.
    """
    by_arch: dict[int, dict[str, int]] = {}
    for abi, highest in newest.items():
        by_arch.setdefault(AUDIT_ARCH[abi], {})[abi] = highest
    # (opcode, jump if true, jump if false, operand): jumps, and the operand of an
    # unconditional one, name labels resolved once the layout is known.
    program: list[tuple[int, str, str, int | str]] = [(_LD_W_ABS, "", "", _ARCH_OFFSET)]
    labels: dict[str, int | None] = {"": None}  # "": no jump
    for audit_arch in by_arch:
        program.append((_JEQ_K, f"{audit_arch:#x}", "", audit_arch))
    program.append((_JA, "", "", "profile"))
    for audit_arch, limits in by_arch.items():
        labels[f"{audit_arch:#x}"] = len(program)
        program.append((_LD_W_ABS, "", "", _NR_OFFSET))
        x32 = limits.pop("x32", None)
        if x32 is not None:  # x32 calls share x86_64's arch value; a bit of the number tells
            program.append((_JSET_K, "x32", "", X32_SYSCALL_BIT))
        (highest,) = limits.values()
        program.append((_JGT_K, "enosys", "profile", highest))
        if x32 is not None:
            labels["x32"] = len(program)
            program.append((_JGT_K, "enosys", "profile", x32))
    labels["enosys"] = len(program)
    program.append((_RET_K, "", "", SCMP_ACT_ERRNO | errno.ENOSYS))
    labels["profile"] = len(program)

    def offset(position: int, label: str) -> int:
        target = labels[label]
        return 0 if target is None else target - position - 1

    code = bytearray()
    for position, (opcode, when_true, when_false, operand) in enumerate(program):
        if isinstance(operand, str):
            operand = offset(position, operand)
        jumps = offset(position, when_true), offset(position, when_false)
        code += struct.pack("=HBBI", opcode, *jumps, operand)
    return bytes(code)


#: Compiled programs by capability set: the launcher's module is imported (and the default
#: set compiled, see :func:`precompile`) once in the zygote every supervisor is forked from.
_programs: dict[frozenset[str], bytes] = {}


def filter_program(capabilities: Iterable[str]) -> bytes:
    """The profile for ``capabilities`` on this machine as a seccomp BPF program
    (``struct sock_filter[]``): the ENOSYS stub, then libseccomp's program.

    Compiled once per capability set (about 10 ms on x86_64 for its three ABIs).
    Raises :class:`SeccompUnavailable`.
    """
    held = frozenset(capabilities)
    program = _programs.get(held)
    if program is None:
        rules = rules_for(held)
        covered = abis()
        program = enosys_stub(newest_calls(rules, covered)) + _libseccomp_program(rules, covered)
        _programs[held] = program
    return program


def precompile(capabilities: Iterable[str]) -> None:
    """Compile and keep the program for ``capabilities`` now, in a process that later ones
    are forked from. A failure is left for :func:`filter_program` to raise where it counts."""
    with contextlib.suppress(SeccompUnavailable):
        filter_program(capabilities)
