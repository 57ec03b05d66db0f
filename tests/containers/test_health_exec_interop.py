"""Health checks, exec, detach keys and ``top -o`` side by side: the same docker CLI and raw
API calls against a real dockerd 20.10 and against our daemon, the same answers (ids, pids and
times taken out)."""

from __future__ import annotations

import json
import re
import secrets
import time

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from tests.conftest import docker_load, eventually
from tests.containers.test_exec_fidelity import hijack
from tests.containers.test_health import Docker

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def engines(real_dockerd, shared_daemon, tmp_path_factory) -> dict[str, tuple[Docker, str]]:
    archive = tmp_path_factory.mktemp("health-interop") / "busybox.tar"
    archive.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
    pairs = {
        "dockerd": (Docker(real_dockerd.host), str(real_dockerd.root / "docker.sock")),
        "dockyard": (Docker(shared_daemon.host), shared_daemon.socket_path),
    }
    for docker, _ in pairs.values():
        docker_load(docker.host, archive)
    yield pairs
    for docker, _ in pairs.values():
        names = [n for n in docker.names() if n.startswith("hi-")]
        if names:
            docker("rm", "-f", *names, check=False)


def both(engines, scenario) -> None:
    """Run ``scenario(docker, socket_path, name)`` on each engine; the results must match."""
    results = {}
    for engine, (docker, socket_path) in engines.items():
        results[engine] = scenario(docker, socket_path, f"hi-{secrets.token_hex(3)}")
    assert results["dockyard"] == results["dockerd"], json.dumps(results, default=str)


def start(docker: Docker, name: str, *args: str, command: tuple[str, ...] = ("sleep", "300")):
    docker("run", "-d", "--name", name, *args, "busybox", *command)


def test_health_states_as_dockerd(engines):
    def scenario(docker, _socket, name):
        start(docker, name, "--health-cmd", "echo out; exit 1", "--health-interval", "1s",
              "--health-timeout", "2s", "--health-retries", "2", "--health-start-period", "1ms")  # fmt: skip
        start(docker, name + "-ok", "--health-cmd", "true", "--health-interval", "1s")
        start(docker, name + "-off", "--no-healthcheck")
        first = sorted(docker.health(name))  # its fields (a probe may have run already)
        eventually(lambda: docker.health(name)["Status"] == "unhealthy", 15)
        eventually(lambda: docker.health(name + "-ok")["Status"] == "healthy", 15)
        failing = docker.health(name)
        entry = failing["Log"][0]
        listed = {
            value: sorted(n.removeprefix(name) for n in docker.names(f"health={value}")
                          if n.startswith(name))
            for value in ("starting", "healthy", "unhealthy", "none")
        }  # fmt: skip
        status = docker("ps", "--filter", f"name={name}-ok", "--format", "{{.Status}}").stdout
        return (
            first,
            docker.inspect(name)["Config"]["Healthcheck"],
            docker.inspect(name + "-off")["Config"]["Healthcheck"],
            docker.health(name + "-off"),
            (entry["ExitCode"], entry["Output"], failing["FailingStreak"] >= 2),
            listed,
            re.sub(r"Up .* \(", "Up (", status),
            docker("ps", "--filter", "health=sick", check=False).stderr,
        )

    both(engines, scenario)


def test_probe_timeout_and_refused_settings_as_dockerd(engines):
    def scenario(docker, _socket, name):
        start(docker, name, "--health-cmd", "sleep 5", "--health-interval", "100ms",
              "--health-timeout", "300ms")  # fmt: skip
        entry = eventually(lambda: (h := docker.health(name)) and h["Log"] and h["Log"][0])
        refused = [
            docker("run", "--name", f"{name}-{i}", *flags, "busybox", "true", check=False).stderr
            for i, flags in enumerate(
                (["--health-interval", "100us"], ["--health-timeout", "1us"],
                 ["--health-start-period", "5us"])
            )
        ]  # fmt: skip
        return entry["ExitCode"], entry["Output"], refused

    both(engines, scenario)


def test_exec_exit_codes_messages_and_events_as_dockerd(engines):
    """Exec outcomes and events; inspect's ExecIDs lists only unfinished execs, none once stopped."""

    def scenario(docker, socket_path, name):
        start(docker, name)
        since = time.time()
        outcomes = []
        for command in (["nosuch"], ["/etc"], ["sh", "-c", "exit 3"], ["ls", "/"]):
            result = docker("exec", name, *command, check=False)
            outcomes.append((result.returncode, result.stdout if result.returncode else ""))
        for user in ("nobody", "4242"):
            result = docker("exec", "-u", user, name, "id", "-u", check=False)
            outcomes.append((result.returncode, result.stdout if result.returncode else ""))
        time.sleep(0.2)
        events = [
            (e["Action"], sorted(k for k in e["Actor"]["Attributes"]),
             e["Actor"]["Attributes"].get("exitCode"))
            for e in docker.events(since, name)
        ]  # fmt: skip
        finished = docker.inspect(name)["ExecIDs"]
        _post(socket_path, f"/containers/{name}/exec", json.dumps({"Cmd": ["true"]}))
        created = len(docker.inspect(name)["ExecIDs"] or ())
        docker("kill", name)
        stopped = docker.inspect(name)["ExecIDs"]
        return outcomes, events, (finished, created, stopped)

    both(engines, scenario)


def test_detach_keys_as_dockerd(engines):
    def scenario(docker, socket_path, name):
        start(docker, name, "-it", command=("sh",))
        path = f"/containers/{name}/attach?stream=1&stdin=1&stdout=1&stderr=1"
        attached = []
        for query, keys in (("&detachKeys=ctrl-x,y", (b"echo ab\x18", b"y", b"echo no\n")),
                            ("", (b"\x10", b"\x10\x11"))):  # fmt: skip
            _, body, closed = hijack(socket_path, path + query, send=keys)
            attached.append((closed, docker.inspect(name)["State"]["Running"]))
        return attached

    both(engines, scenario)


def test_exec_detach_stream_end_as_dockerd(engines):
    def scenario(docker, socket_path, name):
        start(docker, name)
        body = json.dumps({"Cmd": ["sh", "-c", "read x; sleep 300"], "Tty": True,
                           "AttachStdin": True, "AttachStdout": True, "DetachKeys": "ctrl-x"})  # fmt: skip
        reply = _post(socket_path, f"/containers/{name}/exec", body)
        exec_id = json.loads(reply)["Id"]
        _, stream, closed = hijack(socket_path, f"/exec/{exec_id}/start", {"Tty": True},
                                   send=(b"\x18",))  # fmt: skip
        bad = _post(socket_path, f"/containers/{name}/exec",
                    json.dumps({"Cmd": ["true"], "DetachKeys": "ctrl-P"}))  # fmt: skip
        return closed, stream, json.loads(bad)

    both(engines, scenario)


def _post(socket_path: str, path: str, body: str) -> bytes:
    import socket

    connection = socket.socket(socket.AF_UNIX)
    connection.connect(socket_path)
    data = body.encode()
    connection.sendall(
        f"POST /v1.41{path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    connection.close()
    return received.partition(b"\r\n\r\n")[2].strip()


def test_top_with_ps_options_as_dockerd(engines):
    def scenario(docker, _socket, name):
        start(docker, name, command=("sh", "-c", "sleep 300 & sleep 301"))
        eventually(lambda: len(docker("top", name).stdout.splitlines()) == 3)
        results = []
        for options in (["-o", "pid,args"], ["aux"], ["-o", "bogus"], ["-eo", "pid,user=PID"]):
            result = docker("top", name, *options, check=False)
            rows = [line.split() for line in result.stdout.splitlines()]
            # Titles and the command column; pids, times and sizes differ by nature.
            results.append((rows[0] if rows else [], sorted(r[-2:] for r in rows[1:]),
                            result.stderr))  # fmt: skip
        return results

    both(engines, scenario)
