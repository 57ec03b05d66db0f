"""The daemon and the registry under slow and oversized requests, over raw sockets against the
real servers: the JSON body size limit (413), the request head deadline, the body read timeout,
slowloris, and long answers (events, ``logs -f``, attach) that the timeouts must not cut.

Timeouts are set short through the config file (1 s) so the tests take seconds.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from tests.conftest import Daemon, free_port, plugin_env, serving, shut_down, spawn_daemon
from tests.registry.conftest import wait_for_port

TIMEOUT = 1.0
LIMIT = 4096
CONFIG = f"""
[daemon]
header-timeout = {TIMEOUT}
body-timeout = {TIMEOUT}
max-json-body = {LIMIT}

[registry]
header-timeout = {TIMEOUT}
body-timeout = {TIMEOUT}
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("limits-daemon")
    (base / "config.toml").write_text(CONFIG)
    socket_path = str(base / "dockyard.sock")
    args = ["daemon", "--data-root", str(base / "root"), "-H", f"unix://{socket_path}"]
    args += ["--config", str(base / "config.toml")]
    started = serving(
        spawn_daemon(args, plugin_env([]), socket_path, base / "root", base / "daemon.log")
    )
    try:
        yield started
    finally:
        shut_down(started)


@pytest.fixture(scope="module")
def registry_port(tmp_path_factory) -> Iterator[int]:
    base = tmp_path_factory.mktemp("limits-registry")
    (base / "config.toml").write_text(CONFIG)
    port = free_port()
    with open(base / "registry.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "dockyard", "registry", "--config", str(base / "config.toml"),
             "--root", str(base / "storage"), "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, env=plugin_env([]),
        )  # fmt: skip
    try:
        wait_for_port(port, process=process)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def unix_socket(daemon: Daemon) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(daemon.socket_path)
    return sock


def read_until_closed(sock: socket.socket, limit: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - started


def read_until(sock: socket.socket, wanted: bytes, limit: float = 10) -> bytes:
    sock.settimeout(limit)
    received = b""
    while wanted not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    return received


def response_of(sock: socket.socket, request: bytes) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(request)
    raw, _ = read_until_closed(sock)
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def test_a_json_body_over_the_limit_is_413_with_docker_py(daemon: Daemon) -> None:
    client = docker.APIClient(base_url=daemon.host, version="1.41")
    with pytest.raises(docker.errors.APIError) as refused:
        client.create_container("busybox", environment={"BIG": "x" * (LIMIT + 1)})
    assert refused.value.response.status_code == 413
    assert "max-json-body" in refused.value.explanation
    # Under the limit the same request reaches the handler (which knows no such image).
    with pytest.raises(docker.errors.ImageNotFound):
        client.create_container("busybox", environment={"SMALL": "x"})


def test_a_chunked_json_body_is_counted_as_it_comes(daemon: Daemon) -> None:
    chunk = b"x" * 1024
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(8)) + b"0\r\n\r\n"
    with unix_socket(daemon) as sock:
        status, headers, body = response_of(
            sock,
            b"POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks,
        )
    assert status == 413, body
    assert headers["content-type"] == "application/json"
    assert "max-json-body" in json.loads(body)["message"]
    assert headers["connection"] == "close"


def test_streamed_uploads_are_not_limited(daemon: Daemon) -> None:
    archive = image_archive([busybox_rootfs()], ["limits:big"])
    assert len(archive) > LIMIT
    reply = daemon.request(
        "POST", "/v1.41/images/load?quiet=1", {"Content-Type": "application/x-tar"}, archive
    )
    assert reply.status == 200, reply.body
    assert daemon.request("GET", "/images/limits:big/json").status == 200


def test_a_client_that_stops_mid_head_is_dropped(daemon: Daemon, registry_port: int) -> None:
    connections = (
        lambda: unix_socket(daemon),
        lambda: socket.create_connection(("127.0.0.1", registry_port)),
    )
    for connect in connections:
        with connect() as sock:
            sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Slow: ")
            received, took = read_until_closed(sock)
            assert received == b""
            assert TIMEOUT * 0.8 < took < TIMEOUT + 3


def test_a_connection_that_sends_nothing_is_dropped(daemon: Daemon) -> None:
    with unix_socket(daemon) as sock:
        _, took = read_until_closed(sock)
        assert took < TIMEOUT + 3


def test_a_trickled_head_gains_nothing(daemon: Daemon) -> None:
    """The head has a deadline, not an idle limit: a byte every 0.3 s is still dropped."""
    with unix_socket(daemon) as sock:
        started = time.monotonic()
        sock.settimeout(0.3)
        dropped = False
        for byte in b"GET /_ping HTTP/1.1\r\nX-Slowly: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    dropped = True
                    break
            except TimeoutError:
                continue
            except OSError:
                dropped = True
                break
        assert dropped
        assert time.monotonic() - started < TIMEOUT + 3


def test_a_client_that_stops_mid_body_gets_408(daemon: Daemon, registry_port: int) -> None:
    with unix_socket(daemon) as sock:
        status, headers, body = response_of(
            sock,
            b"POST /v1.41/containers/create HTTP/1.1\r\nHost: d\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"Image":',
        )
    assert status == 408
    assert headers["connection"] == "close"
    assert "did not arrive" in json.loads(body)["message"]

    with socket.create_connection(("127.0.0.1", registry_port)) as sock:
        sock.sendall(
            b"POST /v2/limits/blobs/uploads/ HTTP/1.1\r\nHost: r\r\nContent-Length: 0\r\n\r\n"
        )
        head = sock.recv(65536).decode()
        location = next(
            line.split(": ", 1)[1]
            for line in head.split("\r\n")
            if line.lower().startswith("location:")
        )
        path = location.removeprefix(f"http://127.0.0.1:{registry_port}").encode()
        status, headers, body = response_of(
            sock,
            b"PATCH " + path + b" HTTP/1.1\r\nHost: r\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 1000\r\n\r\nonly the start",
        )
    assert status == 408, body
    assert headers["connection"] == "close"
    assert json.loads(body)["errors"][0]["code"] == "UNKNOWN"


@pytest.mark.parametrize("server", ["daemon", "registry"])
def test_400_slow_clients_hold_nothing_up(server: str, daemon: Daemon, registry_port: int) -> None:
    def connect() -> socket.socket:
        if server == "daemon":
            return unix_socket(daemon)
        return socket.create_connection(("127.0.0.1", registry_port))

    request = (
        b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n"
        if server == "daemon"
        else (b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\n")
    )
    slow = []
    try:
        for _ in range(400):
            sock = connect()
            sock.sendall(request[:20])
            slow.append(sock)
        started = time.monotonic()
        with connect() as sock:
            sock.sendall(request)
            sock.settimeout(5)
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 0.5
        # And every slow one is dropped at its deadline.
        deadline = time.monotonic() + TIMEOUT + 5
        for sock in slow:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            assert sock.recv(1) == b""
    finally:
        for sock in slow:
            sock.close()


def test_long_answers_outlive_the_timeouts(daemon: Daemon) -> None:
    """events, logs -f and attach stay open past both timeouts and deliver what comes late."""
    archive = image_archive([busybox_rootfs()], ["limits:box"])
    assert daemon.request("POST", "/images/load?quiet=1", {}, archive).status == 200
    since = int(time.time()) - 1
    created = daemon.request(
        "POST", "/containers/create", {"Content-Type": "application/json"},
        json.dumps({"Image": "limits:box", "Cmd": ["sh", "-c", f"sleep {TIMEOUT * 2.5}; echo late"]}).encode(),
    )  # fmt: skip
    container = created.json()["Id"]
    events = unix_socket(daemon)
    events.sendall(f"GET /v1.41/events?since={since} HTTP/1.1\r\nHost: d\r\n\r\n".encode())
    attach = unix_socket(daemon)
    attach.sendall(
        f"POST /v1.41/containers/{container}/attach?stream=1&stdout=1&stderr=1 HTTP/1.1\r\n"
        "Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode()
    )
    assert b"101" in attach.recv(65536).split(b"\r\n")[0]
    assert daemon.request("POST", f"/containers/{container}/start").status == 204
    logs = unix_socket(daemon)
    logs.sendall(
        f"GET /v1.41/containers/{container}/logs?follow=1&stdout=1 HTTP/1.1\r\nHost: d\r\n\r\n".encode()
    )
    started = time.monotonic()
    try:
        for sock, wanted in ((attach, b"late"), (logs, b"late"), (events, b'"die"')):
            read_until(sock, wanted)
        assert time.monotonic() - started > TIMEOUT * 2
    finally:
        for sock in (events, attach, logs):
            sock.close()


def test_timeouts_must_be_positive(tmp_path: Path) -> None:
    """From the config file or from the flag of the same name."""
    (tmp_path / "config.toml").write_text("[daemon]\nbody-timeout = 0\n")
    for extra, problem in (
        (["--config", str(tmp_path / "config.toml")], "body-timeout must be more than 0"),
        (["--header-timeout", "0"], "header-timeout must be more than 0"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "dockyard", "daemon", *extra,
             "--data-root", str(tmp_path / "root"), "-H", f"unix://{tmp_path}/d.sock"],
            capture_output=True, text=True, env=plugin_env([]), timeout=30,
        )  # fmt: skip
        assert result.returncode != 0
        assert problem in result.stderr
