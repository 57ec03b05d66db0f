"""``docker exec``: extra processes in a running container, run by the daemon itself.

Unlike the container's own process, an exec process is the daemon's child: its output goes to
the client that started it (it is not logged, as in Docker) and its exit code is recorded the
moment it exits, before the output stream closes, because clients ask for it right after.

Everything that lasts as long as the process does (the wait for its exit, its output, its
stdin) runs on the event loop, never in a worker thread: there are only 40 of those, and
requests that have nothing to do with execs need them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
from starlette.concurrency import run_in_threadpool

from dockyard.core.errors import Conflict, DockyardError, InvalidParameter, NotFound
from dockyard.core.interfaces import LaunchError, ProcessSpec, Runtime
from dockyard.core.timestamps import now_rfc3339
from dockyard.daemon.build.changes import go_duration
from dockyard.daemon.containers import options
from dockyard.daemon.containers.config import ExecConfig
from dockyard.daemon.containers.detach import EXEC_REFUSAL, detach_keys
from dockyard.daemon.containers.health import OutputBuffer, ProbeResult
from dockyard.daemon.containers.model import Container
from dockyard.daemon.containers.spec import console_size
from dockyard.daemon.containers.supervisor import set_window_size
from dockyard.linux import inroot

#: Emits a container event: (action, container, extra attributes).
EmitEvent = Callable[[str, Container, dict[str, str]], None]
#: How long a probe that outlived its timeout has to end after SIGTERM, before SIGKILL
#: (dockerd's ``termProcessTimeout``).
TERM_GRACE_SECONDS = 10.0


@attrs.define
class ExecInstance:
    id: str
    container_id: str
    process: ProcessSpec
    attach_stdin: bool
    attach_stdout: bool
    attach_stderr: bool
    detach_keys: str = ""
    running: bool = False
    exit_code: int | None = None
    pid: int = 0
    terminal_fd: int | None = None
    started: bool = False
    #: The detach sequence, when the process has a terminal (docker watches for it on a TTY's
    #: input only).
    detach_sequence: bytes = b""
    #: Why it cannot start, known at create (its user is not in the container's files).
    start_error: str = ""

    @property
    def command_text(self) -> str:
        """The command as dockerd's exec events name it: the program, a space, the arguments
        (so ``ls`` alone reads ``ls ``)."""
        args = self.process.args
        return f"{args[0]} {' '.join(args[1:])}" if args else ""

    def to_engine_api(self) -> dict[str, Any]:
        return {
            "ID": self.id,
            "Running": self.running,
            "ExitCode": self.exit_code,
            "ProcessConfig": {
                "tty": self.process.terminal,
                "entrypoint": self.process.args[0] if self.process.args else "",
                "arguments": list(self.process.args[1:]),
                "privileged": False,
                "user": str(self.process.uid) if self.process.uid else "",
            },
            "OpenStdin": self.attach_stdin,
            "OpenStderr": self.attach_stderr,
            "OpenStdout": self.attach_stdout,
            "CanRemove": False,
            "ContainerID": self.container_id,
            "DetachKeys": self.detach_keys,
            "Pid": self.pid,
        }


class ExecOutput:
    """What a started exec yields: (stream, bytes) chunks until the process is done."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue()
        #: Set when nobody reads any more (the client detached): output is dropped.
        self.discarding = False
        #: Waits for the process and closes up after it (none when it never started).
        self.task: asyncio.Future[None] | None = None

    async def __aiter__(self) -> AsyncIterator[tuple[int, bytes]]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item


async def start_exec(
    instance: ExecInstance,
    container: Container,
    runtime: Runtime,
    read_stdin: Callable[[], Awaitable[bytes]] | None,
    on_exit: Callable[[int], None] | None = None,
) -> ExecOutput:
    """Start the process; output arrives on the returned :class:`ExecOutput`.

    ``read_stdin`` (when the client attached stdin) is awaited for input; ``b""`` ends it.
    ``on_exit`` is called with the exit code once the process has exited (not when it could
    not be started: dockerd reports no ``exec_die`` then either).
    """
    if instance.started:
        raise Conflict(f"Error: Exec command {instance.id} has already run")
    if container.state.status != "running":
        raise Conflict(f"Container {container.id} is not running")
    instance.started = True
    loop = asyncio.get_running_loop()
    output = ExecOutput()
    if instance.start_error:
        _cannot_start(instance, output, instance.start_error)
        return output
    ours: list[int] = []  # our ends of the process's stdio
    if instance.process.terminal:
        master, slave = pty.openpty()
        rows, columns = instance.process.console_size
        set_window_size(master, rows, columns)
        stdio = (slave, slave, slave)
        readers = {master: 1}
        stdin_fd: int | None = master if instance.attach_stdin else None
        instance.terminal_fd = master
        ours.append(master)
        theirs = [slave]
    else:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        if instance.attach_stdin:
            in_r, stdin_fd = os.pipe()
        else:
            in_r, stdin_fd = os.open(os.devnull, os.O_RDONLY), None
        stdio = (in_r, out_w, err_w)
        readers = {out_r: 1, err_r: 2}
        ours += [out_r, err_r] + ([stdin_fd] if stdin_fd is not None else [])
        theirs = [in_r, out_w, err_w]
    try:
        instance.pid = await run_in_threadpool(
            runtime.exec, container.spec, container.state.pid, instance.process, stdio
        )
    except LaunchError as exc:
        for fd in ours:
            os.close(fd)
        _cannot_start(instance, output, exec_start_error(exc))
        return output
    finally:
        for fd in theirs:
            os.close(fd)
    instance.running = True
    open_readers = set(readers)
    process_done = asyncio.Event()

    def readable(fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if data:
            if not output.discarding:
                output.queue.put_nowait((readers[fd], data))
            return
        loop.remove_reader(fd)
        open_readers.discard(fd)
        if not open_readers:
            process_done.set()

    for fd in readers:
        os.set_blocking(fd, False)
        loop.add_reader(fd, readable, fd)

    async def pump_stdin() -> None:
        assert read_stdin is not None and stdin_fd is not None
        os.set_blocking(stdin_fd, False)
        try:
            while True:
                data = await read_stdin()
                if not data:
                    break
                await write_all(stdin_fd, data)
        except OSError:
            return  # the process closed its stdin: the rest has nowhere to go
        if stdin_fd != instance.terminal_fd:
            with contextlib.suppress(OSError):
                os.close(stdin_fd)
                ours.remove(stdin_fd)

    async def finish() -> None:
        stdin_task = None
        if read_stdin is not None and stdin_fd is not None:
            stdin_task = asyncio.ensure_future(pump_stdin())
        instance.exit_code = await wait_for_child(instance.pid)
        instance.running = False
        if on_exit is not None:
            on_exit(instance.exit_code)
        # Output still buffered in the pipes or pty arrives shortly; a process that left a
        # child holding them must not keep the stream open for ever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process_done.wait(), 2.0)
        for fd in list(open_readers):
            loop.remove_reader(fd)
        if stdin_task is not None:
            # Done before the descriptors close: it may be waiting on one to become writable.
            stdin_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stdin_task
        for fd in ours:
            with contextlib.suppress(OSError):
                os.close(fd)
        instance.terminal_fd = None
        output.queue.put_nowait(None)

    output.task = asyncio.ensure_future(finish())
    return output


def _cannot_start(instance: ExecInstance, output: ExecOutput, message: str) -> None:
    """End an exec that could not start as dockerd does: exit code 126 (a missing command
    too: 127 is for a container's own process), the reason on the stream's stdout."""
    instance.exit_code = 126
    output.queue.put_nowait((1, (message + "\r\n").encode()))
    output.queue.put_nowait(None)


async def _until_ready(fd: int, watch: Callable[..., Any], unwatch: Callable[[int], Any]) -> None:
    """Wait until the event loop finds ``fd`` ready; ``watch`` and ``unwatch`` are the loop's
    ``add_reader``/``remove_reader`` or ``add_writer``/``remove_writer``."""
    ready = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    watch(fd, wake)
    try:
        await ready
    finally:
        unwatch(fd)


async def wait_for_child(pid: int) -> int:
    """Wait for child ``pid`` to exit, on the event loop (a pidfd becomes readable), and reap
    it; its exit code, 128 + the signal's number when a signal ended it (as docker reports)."""
    loop = asyncio.get_running_loop()
    pidfd = os.pidfd_open(pid)  # works on a child that already exited: it is not reaped yet
    try:
        await _until_ready(pidfd, loop.add_reader, loop.remove_reader)
    finally:
        os.close(pidfd)
    _, status = os.waitpid(pid, os.WNOHANG)
    exit_code = os.waitstatus_to_exitcode(status)
    return 128 - exit_code if exit_code < 0 else exit_code


async def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to non-blocking ``fd``, waiting on the event loop while the other
    side is not reading. Raises OSError once it is gone (EPIPE, EIO)."""
    loop = asyncio.get_running_loop()
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            await _until_ready(fd, loop.add_writer, loop.remove_writer)


def exec_start_error(exc: LaunchError) -> str:
    """dockerd's message for an exec the runtime could not start."""
    return f"OCI runtime exec failed: exec failed: {exc}: unknown"


def check_can_exec(container: Container) -> None:
    """Refuse, as docker does, an exec into a container that is not running."""
    if container.state.status == "paused":
        raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
    if container.state.status != "running":
        raise Conflict(f"Container {container.id} is not running")


async def exec_process(container: Container, config: ExecConfig) -> tuple[ProcessSpec, str]:
    """The process an exec runs: the container's own settings, with the exec's command,
    environment, user, working directory and terminal; and why it cannot start, when its
    user is not in the container's files (dockerd creates such an exec, and its start fails
    with 126)."""
    if not config.cmd:
        raise InvalidParameter("No exec command specified")
    check_can_exec(container)
    base = container.spec.process
    env = options.merge_env(base.env, config.env or [])
    uid, gid, groups = base.uid, base.gid, base.additional_gids
    start_error = ""
    if config.user:
        # The container's files as they are now (it may have added the user itself).
        root = f"/proc/{container.state.pid}/root"
        passwd = await run_in_threadpool(inroot.read_text, root, "/etc/passwd")
        group = await run_in_threadpool(inroot.read_text, root, "/etc/group")
        try:
            user = options.parse_user(config.user, passwd, group)
        except InvalidParameter as exc:
            start_error = exc.message
        else:
            uid, gid, groups = user.uid, user.gid, user.additional_gids
            # The exec user's home, unless the container's config or the exec set HOME.
            configured = [*(container.config.env or []), *(config.env or [])]
            if not any(entry.startswith("HOME=") for entry in configured):
                env = options.merge_env(env, [f"HOME={user.home}"])
    process = ProcessSpec(
        args=tuple(config.cmd),
        env=tuple(env),
        cwd=config.working_dir or base.cwd,
        uid=uid,
        gid=gid,
        additional_gids=groups,
        terminal=config.tty,
        capabilities=options.ALL_CAPABILITIES if config.privileged else base.capabilities,
        no_new_privileges=base.no_new_privileges,
        console_size=console_size(config.console_size, "ConsoleSize"),
        seccomp=base.seccomp,  # the container's policy, --privileged or not (as docker)
        rlimits=base.rlimits,  # as dockerd: an exec gets the container's process limits
        oom_score_adj=base.oom_score_adj,
    )
    return process, start_error


class ExecRegistry:
    """Exec instances by id, as long as their container exists; emits the ``exec_create``,
    ``exec_start`` and ``exec_die`` events dockerd emits."""

    def __init__(self, emit: EmitEvent | None = None) -> None:
        self._instances: dict[str, ExecInstance] = {}
        self._emit = emit or (lambda action, container, attributes: None)
        #: Probes being ended after their timeout (a reference keeps each task alive).
        self._ending: set[asyncio.Future[None]] = set()

    def create(
        self, container: Container, config: ExecConfig, process: ProcessSpec, start_error: str = ""
    ) -> ExecInstance:
        check_can_exec(container)
        detach_sequence = detach_keys(config.detach_keys, EXEC_REFUSAL)
        instance = ExecInstance(
            id=secrets.token_hex(32),
            container_id=container.id,
            process=process,
            attach_stdin=config.attach_stdin,
            attach_stdout=config.attach_stdout,
            attach_stderr=config.attach_stderr,
            detach_keys=config.detach_keys,
            detach_sequence=detach_sequence if process.terminal else b"",
            start_error=start_error,
        )
        self._instances[instance.id] = instance
        self._emit(f"exec_create: {instance.command_text}", container, {"execID": instance.id})
        return instance

    async def start(
        self,
        instance: ExecInstance,
        container: Container,
        runtime: Runtime,
        read_stdin: Callable[[], Awaitable[bytes]] | None,
    ) -> ExecOutput:
        """:func:`start_exec`, with its events."""
        if not instance.started and container.state.status == "running":
            self._emit(f"exec_start: {instance.command_text}", container, {"execID": instance.id})

        def died(exit_code: int) -> None:
            attributes = {"execID": instance.id, "exitCode": str(exit_code)}
            self._emit("exec_die", container, attributes)

        return await start_exec(instance, container, runtime, read_stdin, died)

    async def run_probe(
        self, container: Container, runtime: Runtime, command: list[str], timeout_ns: int
    ) -> ProbeResult:
        """Run a health probe as an exec (stdout and stderr together, no stdin, no terminal)
        and wait for it, at most ``timeout_ns``. The probe is forgotten once done: dockerd
        keeps none of them either, and one a second would pile up."""
        start = now_rfc3339()
        buffer = OutputBuffer()
        try:
            config = ExecConfig(cmd=command, attach_stdout=True, attach_stderr=True)
            instance = self.create(container, config, *await exec_process(container, config))
        except DockyardError as exc:
            return ProbeResult(start, now_rfc3339(), -1, exc.message)
        starting = asyncio.ensure_future(self.start(instance, container, runtime, None))
        output: ExecOutput | None = None
        try:
            # Shielded: a probe stopped while its process starts still gets it waited for.
            output = await asyncio.shield(starting)
            if output.task is None:
                # It never started: dockerd's probe reports the error itself.
                message = b"".join([data async for _, data in output]).decode(errors="replace")
                return ProbeResult(start, now_rfc3339(), -1, message.strip())

            async def collect(output: ExecOutput) -> None:
                async for _, data in output:
                    buffer.write(data)
                assert output.task is not None
                await output.task

            try:
                await asyncio.wait_for(collect(output), timeout_ns / 1e9)
            except TimeoutError:
                self._end_probe(instance, output)
                message = f"Health check exceeded timeout ({go_duration(timeout_ns)})"
                return ProbeResult(start, now_rfc3339(), -1, message)
            assert instance.exit_code is not None
            return ProbeResult(start, now_rfc3339(), instance.exit_code, buffer.text())
        except asyncio.CancelledError:
            # The checks stop (the container stops or pauses): the probe ends too, as in
            # dockerd, and is still waited for.
            if output is None and not starting.cancelled():
                starting.add_done_callback(
                    lambda done: (
                        self._end_probe(instance, done.result())
                        if not done.cancelled() and done.exception() is None
                        else None
                    )
                )
            elif output is not None:
                self._end_probe(instance, output)
            raise
        finally:
            self._instances.pop(instance.id, None)

    def _end_probe(self, instance: ExecInstance, output: ExecOutput) -> None:
        """Stop reading a probe that is no longer waited for, and end its process."""
        output.discarding = True
        ending = asyncio.ensure_future(_end_process(instance))
        self._ending.add(ending)
        ending.add_done_callback(self._ending.discard)

    def get(self, exec_id: str) -> ExecInstance:
        try:
            return self._instances[exec_id]
        except KeyError:
            raise NotFound(f"No such exec instance: {exec_id}") from None

    def of_container(self, container_id: str) -> list[str]:
        return [i.id for i in self._instances.values() if i.container_id == container_id]

    def unfinished_of_container(self, container_id: str) -> list[str]:
        """Inspect's ``ExecIDs``: dockerd lets an exec go from its container's list when its
        process ends (it stays inspectable by ID)."""
        return [
            i.id
            for i in self._instances.values()
            if i.container_id == container_id and i.exit_code is None
        ]

    def forget_container(self, container_id: str) -> None:
        for exec_id in self.of_container(container_id):
            del self._instances[exec_id]


async def _end_process(instance: ExecInstance) -> None:
    """SIGTERM a probe that outlived its timeout, SIGKILL it if it is still there later. By
    pid: it is our child and not reaped before it exits, so the pid is still its own."""
    for signum, grace in ((signal.SIGTERM, TERM_GRACE_SECONDS), (signal.SIGKILL, 0.0)):
        if not instance.running:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(instance.pid, signum)
        deadline = asyncio.get_running_loop().time() + grace
        while instance.running and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
