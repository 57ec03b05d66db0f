"""``docker exec``: extra processes in a running container, run by the daemon itself.

Unlike the container's own process, an exec process is the daemon's child: its output goes to
the client that started it (it is not logged, as in Docker) and its exit code is recorded the
moment it exits, before the output stream closes, because clients ask for it right after.
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
        while True:
            data = await read_stdin()
            if not data:
                break
            with contextlib.suppress(OSError):
                await run_in_threadpool(os.write, stdin_fd, data)
        if stdin_fd != instance.terminal_fd:
            with contextlib.suppress(OSError):
                os.close(stdin_fd)
                ours.remove(stdin_fd)

    async def finish() -> None:
        stdin_task = None
        if read_stdin is not None and stdin_fd is not None:
            stdin_task = asyncio.ensure_future(pump_stdin())
        status = await run_in_threadpool(os.waitpid, instance.pid, 0)
        instance.exit_code = os.waitstatus_to_exitcode(status[1])
        if instance.exit_code < 0:
            instance.exit_code = 128 - instance.exit_code
        instance.running = False
        # Output still buffered in the pipes or pty arrives shortly; a process that left a
        # child holding them must not keep the stream open for ever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process_done.wait(), 2.0)
        for fd in list(open_readers):
            loop.remove_reader(fd)
        if stdin_task is not None:
            stdin_task.cancel()
        for fd in ours:
            with contextlib.suppress(OSError):
                os.close(fd)
        instance.terminal_fd = None
        output.queue.put_nowait(None)

    output.task = asyncio.ensure_future(finish())  # type: ignore[attr-defined]
    return output


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
