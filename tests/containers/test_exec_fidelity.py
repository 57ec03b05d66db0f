"""Exec and attach as clients rely on them, against our daemon: docker-py reading an exec's
stream by the Tty it sent to start, the stream's first bytes held until the client has read
the head, exit 126 for a command that cannot start, ``exec_*`` and
``attach``/``detach`` events, detach keys on attach and exec, and ``top -o``."""

from __future__ import annotations

import json
import socket
import time

import docker as docker_py
import pytest

from tests.conftest import eventually
from tests.containers.conftest import IMAGE
from tests.containers.test_health import Docker, run


@pytest.fixture(scope="module")
def docker(shared_daemon):
    client = Docker(shared_daemon.host)
    client.made = []  # type: ignore[attr-defined]
    yield client
    if client.made:  # type: ignore[attr-defined]
        client("rm", "-f", *client.made, check=False)  # type: ignore[attr-defined]


def hijack(socket_path: str, path: str, body: dict | None = None,
           send: tuple[bytes, ...] = ()) -> tuple[bytes, bytes, bool]:  # fmt: skip
    """POST ``path`` with ``Upgrade: tcp``, send ``send`` (a pause before each), read until
    the daemon closes or 2 s of quiet; (head, body, whether the daemon closed)."""
    data = json.dumps(body or {}).encode()
    connection = socket.socket(socket.AF_UNIX)
    connection.connect(socket_path)
    connection.settimeout(2)
    connection.sendall(
        f"POST /v1.41{path} HTTP/1.1\r\nHost: x\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    received = b""
    while b"\r\n\r\n" not in received:
        received += connection.recv(65536)
    for chunk in send:
        time.sleep(0.3)
        try:
            connection.sendall(chunk)
        except OSError:
            break
    closed = False
    try:
        while True:
            more = connection.recv(65536)
            if not more:
                closed = True
                break
            received += more
    except TimeoutError:
        pass
    finally:
        connection.close()
    head, _, rest = received.partition(b"\r\n\r\n")
    return head, rest, closed


def running(docker: Docker, name: str) -> bool:
    return docker.inspect(name)["State"]["Running"]


def test_docker_py_reads_the_stream_by_the_start_requests_tty(docker, shared_daemon):
    name = run(docker)
    client = docker_py.DockerClient(base_url=shared_daemon.host, version="1.41")
    try:
        api = client.api
        # The output comes a moment after the head: docker-py loses stream bytes that arrive
        # with it (docker-py #3332), which a loaded machine can make happen.
        late_output = ["sh", "-c", "sleep 0.3; echo out"]
        plain = api.exec_create(name, late_output, tty=False)["Id"]
        assert api.exec_start(plain, tty=True) == b"out\n"  # raw: no frame header as data
        with_terminal = api.exec_create(name, late_output, tty=True)["Id"]
        assert api.exec_start(with_terminal, tty=False) == b"out\r\n"  # framed, demuxed
    finally:
        client.close()


def test_the_stream_waits_until_the_client_has_read_the_head(docker, shared_daemon):
    # A client slow to read the head (docker-py on a loaded machine) must find it alone: it
    # parses the head through a buffered reader, and stream bytes read with it are lost to it.
    name = run(docker)
    with docker_py.APIClient(base_url=shared_daemon.host, version="1.41") as api:
        created = api.exec_create(name, ["echo", "in exec"], stderr=False)["Id"]
    connection = socket.socket(socket.AF_UNIX)
    connection.connect(shared_daemon.socket_path)
    connection.settimeout(10)
    with connection:
        connection.sendall(
            f"POST /v1.41/exec/{created}/start HTTP/1.1\r\nHost: x\r\nUpgrade: tcp\r\n"
            "Connection: Upgrade\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            "\r\n{}".encode()
        )
        time.sleep(0.5)  # the echo has long run and written
        first = connection.recv(65536)
        assert first.startswith(b"HTTP/1.1 101 ") and first.endswith(b"\r\n\r\n"), first
        rest = b""
        while more := connection.recv(65536):
            rest += more
    assert rest == b"\x01\x00\x00\x00\x00\x00\x00\x08in exec\n"


def test_an_exec_that_cannot_start_exits_126_with_dockerds_message(docker):
    name = run(docker)
    missing = docker("exec", name, "nosuch", check=False)
    assert missing.returncode == 126
    # On the exec's stdout stream, as dockerd writes it.
    assert missing.stdout.strip() == (
        'OCI runtime exec failed: exec failed: unable to start container process: exec: '
        '"nosuch": executable file not found in $PATH: unknown'
    )  # fmt: skip
    directory = docker("exec", name, "/etc", check=False)
    assert directory.returncode == 126
    assert '"/etc": permission denied: unknown' in directory.stdout
    # A user not in the container's files: created, and its start fails the same way.
    stranger = docker("exec", "-u", "nobody", name, "true", check=False)
    assert (stranger.returncode, stranger.stdout.strip()) == (
        126, "unable to find user nobody: no matching entries in passwd file",
    )  # fmt: skip


def test_exec_and_attach_events(docker, shared_daemon):
    name = run(docker)
    since = time.time() - 1
    docker("exec", name, "ls")
    docker("exec", name, "sh", "-c", "exit 3", check=False)
    shared_daemon.request("POST", f"/v1.41/containers/{name}/attach?logs=1&stdout=1")
    events = [e for e in docker.events(since, name) if e["Action"].startswith(("exec", "att"))]
    actions = [e["Action"] for e in events]
    assert actions == [
        "exec_create: ls ", "exec_start: ls ", "exec_die",
        "exec_create: sh -c exit 3", "exec_start: sh -c exit 3", "exec_die", "attach",
    ]  # fmt: skip
    create, start, die = (e["Actor"]["Attributes"] for e in events[3:6])
    assert create == start == {"execID": create["execID"], "image": IMAGE, "name": name}
    assert die == {**create, "exitCode": "3"}


def test_detach_keys_on_attach(docker, shared_daemon):
    name = run(docker, "-it", command=("sh",))
    path = f"/containers/{name}/attach?stream=1&stdin=1&stdout=1&stderr=1"
    # Custom keys: what comes before them is delivered, the stream closes, it runs on.
    _, body, closed = hijack(shared_daemon.socket_path, path + "&detachKeys=ctrl-x,y",
                             send=(b"echo a\x18", b"y", b"echo after\n"))  # fmt: skip
    assert closed and running(docker, name)
    assert b"after" not in body
    # A broken-off sequence is delivered as typed; dockerd's default is ctrl-p,ctrl-q.
    _, body, closed = hijack(shared_daemon.socket_path, path,
                             send=(b"\x10", b"hi\n", b"\x10\x11"))  # fmt: skip
    assert closed and running(docker, name)
    assert b"hi\r\n" in body
    assert [e["Action"] for e in docker.events(time.time() - 10, name)].count("detach") == 2
    refused = shared_daemon.request("POST", f"/v1.41{path}&detachKeys=bogus")
    assert (refused.status, refused.json()) == (
        400, {"message": "Invalid detach keys (bogus) provided"},
    )  # fmt: skip


def test_without_a_tty_detach_keys_are_input(docker, shared_daemon):
    name = run(docker, "-i", command=("sh", "-c", "read line; echo got:$line; sleep 300"))
    path = f"/containers/{name}/attach?stream=1&stdin=1&stdout=1&detachKeys=x"
    _, body, closed = hijack(shared_daemon.socket_path, path, send=(b"axb\n",))
    assert not closed and body.endswith(b"got:axb\n")


def test_detach_keys_on_exec(docker, shared_daemon):
    name = run(docker)
    for bad in ("ctrl-P", "ab", "ctrl-a,,b"):
        reply = shared_daemon.request(
            "POST", f"/v1.41/containers/{name}/exec", {"Content-Type": "application/json"},
            json.dumps({"Cmd": ["true"], "DetachKeys": bad}).encode(),
        )  # fmt: skip
        assert (reply.status, reply.json()) == (
            400, {"message": f"Invalid escape keys ({bad}) provided"},
        )  # fmt: skip
    created = shared_daemon.request(
        "POST", f"/v1.41/containers/{name}/exec", {"Content-Type": "application/json"},
        json.dumps({"Cmd": ["sh", "-c", "read x; sleep 300"], "Tty": True,
                    "AttachStdin": True, "AttachStdout": True, "DetachKeys": "ctrl-x"}).encode(),
    ).json()["Id"]  # fmt: skip
    _, body, closed = hijack(shared_daemon.socket_path, f"/exec/{created}/start", {"Tty": True},
                             send=(b"\x18",))  # fmt: skip
    assert closed
    assert body.endswith(b"exec attach failed: error on attach stdin: read escape sequence\r\n")
    assert shared_daemon.request("GET", f"/v1.41/exec/{created}/json").json()["Running"]


def test_top_passes_ps_options(docker):
    name = run(docker, command=("sh", "-c", "sleep 300 & sleep 301"))
    # busybox's sh execs its last command: two processes.
    eventually(lambda: len(docker("top", name).stdout.splitlines()) == 3)
    lines = docker("top", name, "-o", "pid,args").stdout.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"]
    commands = sorted(line.split(None, 1)[1] for line in lines[1:])
    assert commands == ["sleep 300", "sleep 301"]
    bogus = docker("top", name, "-o", "bogus", check=False)
    assert 'ps: error: unknown user-defined format specifier "bogus"' in bogus.stderr
    renamed = docker("top", name, "-eo", "pid,user=PID", check=False)
    assert 'specifying "pid,user=PID" is not allowed' in renamed.stderr


def test_our_cli_sends_its_detach_keys_to_the_daemon(docker, cli):
    name = run(docker)
    # Our client reads ctrl-P as ctrl-p; the daemon, like dockerd, takes lower case only:
    # its refusal shows the keys were sent.
    refused = cli("exec", "--detach-keys", "ctrl-P", name, "true")
    assert refused.returncode != 0
    assert "Invalid escape keys (ctrl-P) provided" in refused.stderr
    assert cli("exec", "--detach-keys", "ctrl-x,y", name, "true").returncode == 0
