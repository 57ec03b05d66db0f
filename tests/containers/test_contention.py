"""Requests that wait long or race each other, against a real daemon.

Starlette runs blocking endpoint work in a pool of 40 worker threads: anything that holds one
for as long as a process runs (an exec's wait, a write to a pipe nobody reads) would stall every
other request once 40 of them pile up. Racing creates and renames must agree on one owner of a
name.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.containers.engine_api import Api, frames

#: More than starlette's 40 worker threads.
MANY = 45
#: Well under the time a request waits when the pool is exhausted (until an exec ends).
QUICK = 3.0


def create_exec(api: Api, container: str, cmd: list[str], **config: Any) -> str:
    created = api.call("POST", f"/containers/{container}/exec", {"Cmd": cmd, **config})
    assert created.status == 201, created.body
    return created.json()["Id"]


def hijacked_exec_start(api: Api, exec_id: str) -> socket.socket:
    """``POST /exec/{id}/start`` upgraded to a raw stream, as the docker CLI does it."""
    body = json.dumps({"Detach": False, "Tty": False}).encode()
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(10)
    connection.connect(api.daemon.socket_path)
    connection.sendall(
        f"POST /v1.41/exec/{exec_id}/start HTTP/1.1\r\nHost: docker\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
        + body
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = connection.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return connection


def timed(work: Callable[[], Any]) -> float:
    began = time.monotonic()
    work()
    return time.monotonic() - began


def create_and_start(api: Api) -> None:
    api.start(api.create(["true"]))


def test_running_execs_hold_no_worker_thread(api):
    target = api.create(["sleep", "60"])
    api.start(target)
    execs = [create_exec(api, target, ["sleep", "30"]) for _ in range(MANY)]
    try:

        def start_all() -> None:
            for exec_id in execs:
                started = api.call("POST", f"/exec/{exec_id}/start", {"Detach": True})
                assert started.status == 200, started.body

        # Each start takes a worker thread briefly (the runtime's exec): once 40 waits held
        # theirs, the 41st start would wait for an exec to end.
        assert timed(start_all) < MANY * 0.5
        assert all(api.call("GET", f"/exec/{e}/json").json()["Running"] for e in execs)
        assert timed(lambda: create_and_start(api)) < QUICK
        # Killed with their container, every exec's end is still seen.
        assert api.call("POST", f"/containers/{target}/kill").status == 204
        deadline = time.monotonic() + 10
        running = execs
        while running and time.monotonic() < deadline:
            time.sleep(0.1)
            running = [e for e in running if api.call("GET", f"/exec/{e}/json").json()["Running"]]
        assert running == []
        assert api.call("GET", f"/exec/{execs[0]}/json").json()["ExitCode"] == 137
    finally:
        api.call("DELETE", f"/containers/{target}?force=1")


def test_stdin_nobody_reads_holds_no_worker_thread(api):
    target = api.create(["sleep", "60"])
    api.start(target)
    connections = []
    try:
        for _ in range(MANY):
            exec_id = create_exec(api, target, ["sleep", "30"], AttachStdin=True, AttachStdout=True)
            connection = hijacked_exec_start(api, exec_id)
            connections.append(connection)
            # Four pipe buffers' worth: the exec never reads, so a blocking write would hang.
            connection.sendall(b"x" * (256 * 1024))
        assert timed(lambda: create_and_start(api)) < QUICK
        assert api.call("GET", "/_ping").status == 200
    finally:
        for connection in connections:
            connection.close()
        api.call("DELETE", f"/containers/{target}?force=1")


def test_stdin_larger_than_every_buffer_arrives_whole(api):
    # The writes wait for the process to read and the connection pauses while they do:
    # nothing is dropped on the way, however far the client is ahead.
    target = api.create(["sleep", "60"])
    api.start(target)
    try:
        exec_id = create_exec(
            api, target, ["sh", "-c", "wc -c"], AttachStdin=True, AttachStdout=True
        )
        connection = hijacked_exec_start(api, exec_id)
        size = 5 * 1024 * 1024 + 3

        def send() -> None:
            connection.sendall(b"y" * size)
            connection.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        sender.join()
        connection.close()
        assert [(stream, int(out)) for stream, out in frames(received)] == [(1, size)]
        assert api.call("GET", f"/exec/{exec_id}/json").json()["ExitCode"] == 0
    finally:
        api.call("DELETE", f"/containers/{target}?force=1")
