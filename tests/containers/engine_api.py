"""A small JSON client for the Engine API of a test daemon, and stdcopy frame splitting."""

from __future__ import annotations

import json
import time
from typing import Any

import attrs

from dockyard.testing.images import busybox_rootfs, image_archive
from tests.conftest import Daemon, Reply


@attrs.frozen
class Api:
    """Engine API calls with JSON bodies, through the daemon's Unix socket."""

    daemon: Daemon
    #: The cgroup parent its runtime puts containers under (one per test, so checks for
    #: leftovers see only this test's containers).
    cgroup_parent: str = "dockyard"

    @classmethod
    def with_busybox(cls, daemon: Daemon) -> Api:
        archive = image_archive([busybox_rootfs()], ["busybox:latest"])
        reply = daemon.request("POST", "/v1.41/images/load", body=archive)
        assert reply.status == 200, reply.body
        return cls(daemon)

    def call(self, method: str, path: str, body: Any = None) -> Reply:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        return self.daemon.request(method, f"/v1.41{path}", headers, data)

    def create(self, cmd: list[str] | None = None, name: str | None = None, **config: Any) -> str:
        body = {"Image": "busybox", **config}
        if cmd is not None:
            body["Cmd"] = cmd
        reply = self.call("POST", "/containers/create" + (f"?name={name}" if name else ""), body)
        assert reply.status == 201, reply.body
        return reply.json()["Id"]

    def start(self, container: str) -> None:
        reply = self.call("POST", f"/containers/{container}/start")
        assert reply.status == 204, reply.body

    def inspect(self, container: str) -> dict[str, Any]:
        reply = self.call("GET", f"/containers/{container}/json")
        assert reply.status == 200, reply.body
        return reply.json()

    def wait(self, container: str, condition: str = "not-running") -> dict[str, Any]:
        return self.call("POST", f"/containers/{container}/wait?condition={condition}").json()

    def run(self, cmd: list[str], **config: Any) -> tuple[int, bytes, bytes]:
        """Create, start, wait; returns (exit code, stdout, stderr) from the logs."""
        container = self.create(cmd, **config)
        self.start(container)
        code = self.wait(container)["StatusCode"]
        return code, self.logs(container, "stdout"), self.logs(container, "stderr")

    def exec(self, container: str, cmd: list[str], **config: Any) -> tuple[int, bytes, bytes]:
        """Run an exec to its end: (exit code, stdout, stderr)."""
        body = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True, **config}
        created = self.call("POST", f"/containers/{container}/exec", body)
        assert created.status == 201, created.body
        exec_id = created.json()["Id"]
        output = self.call("POST", f"/exec/{exec_id}/start", {"Detach": False, "Tty": False})
        received = frames(output.body)
        code = self.call("GET", f"/exec/{exec_id}/json").json()["ExitCode"]
        stdout = b"".join(payload for stream, payload in received if stream == 1)
        stderr = b"".join(payload for stream, payload in received if stream == 2)
        return code, stdout, stderr

    def logs(self, container: str, stream: str = "stdout") -> bytes:
        reply = self.call("GET", f"/containers/{container}/logs?{stream}=1")
        return b"".join(payload for _kind, payload in frames(reply.body))

    def wait_for(self, container: str, status: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.inspect(container)["State"]
            if state["Status"] == status:
                return state
            time.sleep(0.05)
        raise AssertionError(f"{container} never became {status}: {state}")


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """Split a stdcopy stream into (stream, payload) frames."""
    found = []
    while data:
        assert len(data) >= 8 and data[1:4] == b"\0\0\0", data[:16]
        length = int.from_bytes(data[4:8], "big")
        found.append((data[0], data[8 : 8 + length]))
        data = data[8 + length :]
    return found
