"""Requests that wait long or race each other, against a real daemon.

Starlette runs blocking endpoint work in a pool of 40 worker threads: anything that holds one
for as long as a process runs (an exec's wait, a write to a pipe nobody reads) would stall every
other request once 40 of them pile up. Racing creates and renames must agree on one owner of a
name.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import Reply, restarted
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


# ------------------------------------------------------------------------------ name races


@pytest.fixture
def namespaces_api(start_daemon) -> Api:
    return Api.with_busybox(start_daemon("--runtime", "namespaces"))


def race(count: int, work: Callable[[int], Reply]) -> list[Reply]:
    """``work(i)`` for ``i`` in ``range(count)``, from as many threads released at once."""
    barrier = threading.Barrier(count)
    replies: list[Reply | None] = [None] * count

    def run(index: int) -> None:
        barrier.wait()
        replies[index] = work(index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(reply is not None for reply in replies)
    return [reply for reply in replies if reply is not None]


def named(api: Api, name: str) -> list[dict[str, Any]]:
    listing = api.call("GET", "/containers/json?all=1").json()
    return [c for c in listing if f"/{name}" in c["Names"]]


def test_concurrent_creates_with_one_name_make_one_container(namespaces_api):
    api = namespaces_api
    replies = race(
        16,
        lambda _: api.call(
            "POST", "/containers/create?name=racer", {"Image": "busybox", "Cmd": ["true"]}
        ),
    )
    created = [r for r in replies if r.status == 201]
    assert len(created) == 1, [(r.status, r.body) for r in replies]
    winner = created[0].json()["Id"]
    for reply in replies:
        if reply.status != 201:
            assert reply.status == 409, reply.body
            assert reply.json()["message"] == (
                f'Conflict. The container name "/racer" is already in use by container '
                f'"{winner}". You have to remove (or rename) that container to be able to '
                "reuse that name."
            )
    assert [c["Id"] for c in named(api, "racer")] == [winner]
    assert len(api.call("GET", "/containers/json?all=1").json()) == 1
    # Nothing of the losers is left behind.
    directories = [p.name for p in (api.daemon.data_root / "containers").iterdir()]
    assert directories == [winner]
    # The name is free again once its container is gone, or when the create failed after
    # taking it (dockerd looks the user up after reserving the name).
    assert api.call("DELETE", "/containers/racer").status == 204
    failed = api.call(
        "POST", "/containers/create?name=racer", {"Image": "busybox", "User": "nobody-at-all"}
    )
    assert failed.status == 400, failed.body
    assert api.create(["true"], name="racer")


def test_concurrent_renames_to_one_name_give_it_to_one_container(namespaces_api):
    api = namespaces_api
    containers = [api.create(["true"], name=f"old{i}") for i in range(8)]
    replies = race(
        8, lambda i: api.call("POST", f"/containers/{containers[i]}/rename?name=renamed")
    )
    assert sorted(r.status for r in replies) == [204] + [409] * 7, [r.body for r in replies]
    winner = containers[[r.status for r in replies].index(204)]
    for reply in replies:
        if reply.status == 409:
            assert reply.json()["message"] == (
                'Error when allocating new name: Conflict. The container name "/renamed" is '
                f'already in use by container "{winner}". You have to remove (or rename) that '
                "container to be able to reuse that name."
            )
    assert [c["Id"] for c in named(api, "renamed")] == [winner]
    # The winner's old name is free again, the losers keep theirs.
    old = f"old{containers.index(winner)}"
    names = sorted(c["Names"][0] for c in api.call("GET", "/containers/json?all=1").json())
    assert names == sorted(["/renamed", *(f"/old{i}" for i in range(8) if f"old{i}" != old)])
    assert api.create(["true"], name=old)
    same = api.call("POST", "/containers/renamed/rename?name=renamed")
    assert same.status == 400
    assert same.json()["message"] == "Renaming a container with the same name as its current name"


def test_a_rename_cannot_take_the_name_of_a_create_under_way(namespaces_api):
    api = namespaces_api
    other = api.create(["true"], name="mover")
    directories = api.daemon.data_root / "containers"
    before = set(os.listdir(directories))
    created: list[Reply] = []
    creating = threading.Thread(
        target=lambda: created.append(
            api.call("POST", "/containers/create?name=prize", {"Image": "busybox"})
        )
    )
    creating.start()
    # The create's state directory appears once it holds the name, before its slow work
    # (the root filesystem, the image's users): a rename then must find the name taken.
    deadline = time.monotonic() + 10
    while set(os.listdir(directories)) == before and time.monotonic() < deadline:
        pass
    renamed = api.call("POST", f"/containers/{other}/rename?name=prize")
    creating.join(30)
    assert created[0].status == 201, created[0].body
    assert renamed.status == 409, renamed.body
    assert [c["Id"] for c in named(api, "prize")] == [created[0].json()["Id"]]


def test_duplicate_names_stored_by_an_earlier_version_are_resolved_at_start(namespaces_api):
    # Versions before the name reservations could store two containers with one name.
    api = namespaces_api
    first = api.create(["true"], name="twin")
    second = api.create(["true"], name="sibling")
    daemon = api.daemon
    daemon.process.kill()
    daemon.process.wait()
    record = daemon.data_root / "containers" / second / "container.json"
    record.write_text(record.read_text().replace('"name": "sibling"', '"name": "twin"'))
    with restarted(daemon) as again:
        again_api = Api(again)
        names = {
            c["Id"]: c["Names"][0] for c in again_api.call("GET", "/containers/json?all=1").json()
        }
        assert set(names) == {first, second}
        assert sorted(names.values()).count("/twin") == 1
        other = next(i for i, name in names.items() if name != "/twin")
        again_api.call("POST", f"/containers/{other}/rename?name=free-again")
        assert again_api.inspect("twin")["Id"] != other
