"""Bridges between async HTTP bodies and the blocking code that produces or consumes them.

Layer and archive work is blocking (tar, hashing, syscalls) and runs in worker threads; the
request and response bodies live on the event loop. :class:`BodyPipe` hands an incoming body to
a thread as a file object, :func:`stream_from_thread` turns a thread's writes into a response
body. Both keep memory bounded: the faster side waits for the slower one.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

T = TypeVar("T")

_EOF = object()


class ClientGone(Exception):
    """The other side went away; the blocking work should stop."""


class BodyPipe(io.RawIOBase):
    """A blocking, readable file fed with the chunks of a request body."""

    def __init__(self, depth: int = 16) -> None:
        self._chunks: queue.Queue[Any] = queue.Queue(depth)
        self._pending = b""
        self._finished = False
        self.reader_done = threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if self._finished:
                return 0
            item = self._chunks.get()
            if item is _EOF:
                self._finished = True
                return 0
            if isinstance(item, BaseException):
                raise item
            self._pending = item
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _offer(self, item: Any) -> bool:
        """Put without blocking the loop for long; False once the reader stopped reading."""
        while not self.reader_done.is_set():
            try:
                self._chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    async def feed(self, request: Request) -> None:
        """Copy the request body in; called on the event loop alongside the reading thread."""
        try:
            async for chunk in request.stream():
                if not chunk:
                    continue
                try:
                    self._chunks.put_nowait(chunk)
                except queue.Full:
                    if not await run_in_threadpool(self._offer, chunk):
                        return
        except Exception:
            await run_in_threadpool(self._offer, ClientGone("the client closed the connection"))
            return
        await run_in_threadpool(self._offer, _EOF)


async def consume_body(request: Request, work: Callable[[BinaryIO], T]) -> T:
    """Run ``work(body)`` in a thread while the request body streams into it."""
    pipe = BodyPipe()
    reader = io.BufferedReader(pipe, buffer_size=1 << 20)

    def run() -> T:
        try:
            return work(reader)
        finally:
            pipe.reader_done.set()

    feeding = asyncio.ensure_future(pipe.feed(request))
    try:
        return await run_in_threadpool(run)
    finally:
        await feeding


class _QueueWriter(io.RawIOBase):
    def __init__(self, loop: asyncio.AbstractEventLoop, chunks: asyncio.Queue[Any]) -> None:
        self._loop = loop
        self._chunks = chunks
        self.cancelled = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.cancelled.is_set():
            raise ClientGone("the client closed the connection")
        block = bytes(data)
        asyncio.run_coroutine_threadsafe(self._chunks.put(block), self._loop).result()
        return len(block)


async def stream_from_thread(produce: Callable[[BinaryIO], None]) -> AsyncIterator[bytes]:
    """Run ``produce(out)`` in a thread and yield what it writes, in chunks of about 1 MiB."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[Any] = asyncio.Queue(8)
    raw = _QueueWriter(loop, chunks)
    failure: list[BaseException] = []

    def run() -> None:
        out = io.BufferedWriter(raw, buffer_size=1 << 20)
        try:
            produce(out)
            out.flush()
        except BaseException as exc:
            failure.append(exc)
        finally:
            asyncio.run_coroutine_threadsafe(chunks.put(_EOF), loop).result()

    task = loop.run_in_executor(None, run)
    try:
        while True:
            block = await chunks.get()
            if block is _EOF:
                break
            yield block
    finally:
        raw.cancelled.set()
        while not task.done():  # let the thread see the cancellation and finish
            try:
                chunks.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.01)
        await task
    if failure and not isinstance(failure[0], ClientGone):
        raise failure[0]


def json_message(**fields: Any) -> bytes:
    """One message of a JSON-message stream, as dockerd frames it."""
    return json.dumps(fields).encode() + b"\r\n"


class SpooledBody(io.RawIOBase):
    """A request body written to a file as it arrives, and read (by a worker thread) while
    it grows: a read beyond what arrived waits for more. Being a file, a tar in it can be
    extracted in place (:func:`~dockyard.linux.layertar.extract_archive` copies contents from
    it with the kernel, after :meth:`wait_for`) as the client is still sending it."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._fd = file.fileno()
        self._arrived = 0
        self._position = 0
        self._finished = False
        self._failure: BaseException | None = None
        self._changed = threading.Condition()

    # ---------------------------------------------------------------- the writer (event loop)

    def append(self, data: bytes) -> None:
        """Write the next chunk (a write into the page cache: microseconds)."""
        view = memoryview(data)
        while view:
            view = view[os.pwrite(self._fd, view, self._arrived) :]
            with self._changed:
                self._arrived += len(data) - len(view)
                self._changed.notify_all()

    def finish(self, failure: BaseException | None = None) -> None:
        """No more is coming: the end of the body, or ``failure`` (the client went away)."""
        with self._changed:
            self._finished = True
            self._failure = failure
            self._changed.notify_all()

    # ---------------------------------------------------------------- the reader (a thread)

    def wait_for(self, end: int) -> None:
        """Block until the first ``end`` bytes arrived, or the body ended before them."""
        with self._changed:
            while self._arrived < end and not self._finished:
                self._changed.wait()
            if self._failure is not None:
                raise ClientGone("the client closed the connection") from self._failure

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._position = offset
        elif whence == io.SEEK_CUR:
            self._position += offset
        else:
            self.wait_for(1 << 62)  # the end is known once everything arrived
            self._position = self._arrived + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        self.wait_for(self._position + 1)
        available = min(len(buffer), self._arrived - self._position)
        if available <= 0:
            return 0
        data = os.pread(self._fd, available, self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()
