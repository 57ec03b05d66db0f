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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import attrs
from starlette.concurrency import run_in_threadpool

from dockyard.core.errors import Conflict, NotFound
from dockyard.core.interfaces import LaunchError, ProcessSpec, Runtime
from dockyard.daemon.containers.config import ExecConfig
from dockyard.daemon.containers.model import Container
from dockyard.daemon.containers.supervisor import set_window_size


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
) -> ExecOutput:
    """Start the process; output arrives on the returned :class:`ExecOutput`.

    ``read_stdin`` (when the client attached stdin) is awaited for input; ``b""`` ends it.
    """
    if instance.started:
        raise Conflict(f"Error: Exec command {instance.id} has already run")
    if container.state.status != "running":
        raise Conflict(f"Container {container.id} is not running")
    instance.started = True
    loop = asyncio.get_running_loop()
    output = ExecOutput()
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
        instance.exit_code = exc.exit_code
        output.queue.put_nowait((1, f"OCI runtime exec failed: {exc}: unknown\r\n".encode()))
        output.queue.put_nowait(None)
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

    output.task = asyncio.ensure_future(finish())  # type: ignore[attr-defined]
    return output


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


def check_can_exec(container: Container) -> None:
    """Refuse, as docker does, an exec into a container that is not running."""
    if container.state.status == "paused":
        raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
    if container.state.status != "running":
        raise Conflict(f"Container {container.id} is not running")


class ExecRegistry:
    """Exec instances by id, as long as their container exists."""

    def __init__(self) -> None:
        self._instances: dict[str, ExecInstance] = {}

    def create(
        self, container: Container, config: ExecConfig, process: ProcessSpec
    ) -> ExecInstance:
        check_can_exec(container)
        instance = ExecInstance(
            id=secrets.token_hex(32),
            container_id=container.id,
            process=process,
            attach_stdin=config.attach_stdin,
            attach_stdout=config.attach_stdout,
            attach_stderr=config.attach_stderr,
            detach_keys=config.detach_keys,
        )
        self._instances[instance.id] = instance
        return instance

    def get(self, exec_id: str) -> ExecInstance:
        try:
            return self._instances[exec_id]
        except KeyError:
            raise NotFound(f"No such exec instance: {exec_id}") from None

    def of_container(self, container_id: str) -> list[str]:
        return [i.id for i in self._instances.values() if i.container_id == container_id]

    def forget_container(self, container_id: str) -> None:
        for exec_id in self.of_container(container_id):
            del self._instances[exec_id]
