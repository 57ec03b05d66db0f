"""The daemon as a process: Engine API basics, sockets, locking, logs, shutdown, TCP auth."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import time

import pytest

from dockyard.plugins.networks.bridge.plugin import instance_for
from tests.conftest import free_port, run_dockyard

ENGINE_HEADERS = {"api-version": "1.41", "ostype": "linux", "docker-experimental": "false"}


def test_ping_head_and_get(daemon):
    for method, body in (("HEAD", b""), ("GET", b"OK")):
        for path in ("/_ping", "/v1.41/_ping", "/v1.24/_ping"):
            reply = daemon.request(method, path)
            assert reply.status == 200
            assert reply.body == body
            for key, value in ENGINE_HEADERS.items():
                assert reply.headers[key] == value
            assert reply.headers["cache-control"] == "no-cache, no-store, must-revalidate"


def test_version_has_what_docker_clients_need(daemon):
    for path in ("/version", "/v1.41/version"):
        body = daemon.request("GET", path).json()
        assert body["ApiVersion"] == "1.41"
        assert body["MinAPIVersion"] == "1.12"
        assert body["Os"] == "linux"
        assert body["Components"][0]["Name"] == "Engine"
        assert body["Components"][0]["Details"]["ApiVersion"] == "1.41"
        assert body["Version"] == body["Components"][0]["Version"]


def test_info_reports_drivers_plugins_and_docker_fields(daemon):
    body = daemon.request("GET", "/v1.41/info").json()
    for key in (
        "ID",
        "Containers",
        "Images",
        "Driver",
        "ServerVersion",
        "OSType",
        "NCPU",
        "MemTotal",
    ):
        assert key in body
    assert body["DockerRootDir"] == str(daemon.data_root)
    assert body["Swarm"]["LocalNodeState"] == "inactive"
    assert body["Swarm"]["ControlAvailable"] is False
    assert body["LoggingDriver"] == "json-file"
    # the default seccomp profile, as dockerd lists it; "name=userns" only with userns-remap
    assert body["SecurityOptions"] == ["name=seccomp,profile=default"]
    assert body["MemTotal"] > 0 and body["NCPU"] >= 1
    plugins = body["Dockyard"]["Plugins"]
    selected = {driver["Name"] for p in plugins for driver in p["Drivers"] if driver["Selected"]}
    assert (body["Driver"] in selected) if body["Driver"] else True
    # The engine ID is stable across restarts of the same data root.
    assert (daemon.data_root / "engine-id").read_text().strip() == body["ID"]


def test_unsupported_versions_are_refused_with_docker_messages(daemon):
    reply = daemon.request("GET", "/v1.99/version")
    assert reply.status == 400
    assert reply.json() == {
        "message": "client version 1.99 is too new. Maximum supported API version is 1.41"
    }
    reply = daemon.request("GET", "/v1.11/version")
    assert reply.status == 400
    # Before API 1.24 errors are plain text, as dockerd writes them.
    assert b"client version 1.11 is too old. Minimum supported API version is 1.12" in reply.body


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nope"), ("GET", "/v1.41/swarm/nope"), ("POST", "/version")]
)
def test_unknown_routes_are_404_json(daemon, method, path):
    reply = daemon.request(method, path)
    assert reply.status == 404
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"message": "page not found"}
    assert reply.headers["api-version"] == "1.41"


def test_logs_are_json_lines_with_request_fields(daemon):
    daemon.request("GET", "/v1.41/version")
    assert daemon.stop() == 0
    lines = daemon.log_lines()  # every line parses as JSON
    requests = [line for line in lines if line.get("event") == "request"]
    version = next(line for line in requests if line["path"] == "/v1.41/version")
    assert version["method"] == "GET" and version["status"] == 200
    assert len(version["request_id"]) == 16 and version["duration_ms"] >= 0
    assert any(line.get("event") == "daemon ready" for line in lines)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_clean_shutdown_on_signal_removes_the_socket(start_daemon, sig):
    daemon = start_daemon()
    assert daemon.stop(sig) == 0
    assert not __import__("os").path.exists(daemon.socket_path)
    assert any(line.get("event") == "daemon stopped" for line in daemon.log_lines())


def test_stale_socket_file_is_replaced(start_daemon, tmp_path):
    first = start_daemon()
    first.process.kill()  # leaves the socket file behind
    first.process.wait()
    assert __import__("os").path.exists(first.socket_path)
    second = start_daemon(
        "--data-root", str(tmp_path / "other-root"), "-H", f"unix://{first.socket_path}"
    )
    assert second.request("GET", "/_ping").body == b"OK"


def test_second_daemon_on_the_same_data_root_is_refused(daemon, tmp_path):
    result = run_dockyard(
        ["daemon", "--data-root", str(daemon.data_root), "-H", f"unix://{tmp_path}/other.sock"]
    )
    assert result.returncode == 1
    assert (
        f"data root {daemon.data_root} is in use by another dockyard daemon (pid {daemon.process.pid})"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert daemon.request("GET", "/_ping").status == 200


def test_live_socket_is_not_stolen(daemon, tmp_path):
    result = run_dockyard(
        ["daemon", "--data-root", str(tmp_path / "r2"), "-H", f"unix://{daemon.socket_path}"]
    )
    assert result.returncode == 1
    assert f"another server is already listening on unix://{daemon.socket_path}" in result.stderr
    assert daemon.request("GET", "/_ping").status == 200


def test_events_stream_daemon_start(daemon):
    now = time.time()
    reply = daemon.request("GET", f"/v1.41/events?since=0&until={now + 0.3:.3f}")
    assert reply.status == 200
    events = [json.loads(line) for line in reply.body.splitlines()]
    assert {"Type": "daemon", "Action": "start"}.items() <= events[0].items()
    filtered = daemon.request(
        "GET", f'/events?since=0&until={now + 0.3:.3f}&filters={{"type":["image"]}}'
    )
    assert filtered.body == b""
    bad = daemon.request("GET", "/events?filters=%7Bnot-json")
    assert bad.status == 400 and "invalid filters" in bad.json()["message"]


def tcp_get(port: int, path: str, headers=None, context=None):
    if context is None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    else:
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    connection.request("GET", path, headers=headers or {})
    response = connection.getresponse()
    return response.status, response.read()


def test_tcp_without_token_on_loopback(start_daemon):
    daemon = start_daemon(tcp=True)
    assert tcp_get(daemon.tcp_port, "/v1.41/_ping") == (200, b"OK")


def test_tcp_token_is_required_when_configured(start_daemon, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("sekrit-token\n")
    daemon = start_daemon("--token-file", str(token_file), tcp=True)
    status, body = tcp_get(daemon.tcp_port, "/_ping")
    assert status == 401 and "bearer token" in json.loads(body)["message"]
    assert tcp_get(daemon.tcp_port, "/_ping", {"Authorization": "Bearer wrong"})[0] == 401
    assert tcp_get(daemon.tcp_port, "/_ping", {"Authorization": "Bearer sekrit-token"}) == (
        200,
        b"OK",
    )
    # The Unix socket is guarded by file permissions, not the token.
    assert daemon.request("GET", "/_ping").status == 200


def test_exposed_tcp_without_auth_is_refused(tmp_path):
    result = run_dockyard(
        ["daemon", "--data-root", str(tmp_path / "r"), "-H", f"tcp://0.0.0.0:{free_port()}"]
    )
    assert result.returncode == 1
    assert "refusing to serve tcp://0.0.0.0:" in result.stderr
    assert "without client authentication" in result.stderr


def test_busy_tcp_port_is_a_clear_error(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_dockyard(
            [
                "daemon",
                "--data-root",
                str(tmp_path / "r"),
                "-H",
                f"unix://{tmp_path}/d.sock",
                "-H",
                f"tcp://127.0.0.1:{port}",
            ]
        )
    assert result.returncode == 1
    assert f"cannot listen on tcp://127.0.0.1:{port}: Address already in use" in result.stderr
    assert not (tmp_path / "d.sock").exists()
    # Nor a default bridge: the networks are made once the sockets are the daemon's.
    instance = instance_for(tmp_path / "r" / "network" / "bridge")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"alias {instance}:" not in links


def test_bad_host_syntax(tmp_path):
    result = run_dockyard(["daemon", "--data-root", str(tmp_path), "-H", "udp://1.2.3.4"])
    assert result.returncode == 1
    assert "invalid host 'udp://1.2.3.4': use unix:///PATH or tcp://ADDRESS:PORT" in result.stderr


def test_network_driver_options_are_used(start_daemon, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[networks.bridge]\nbip = "10.99.0.1/24"\n')
    daemon = start_daemon("--config", str(config), network=True)
    bridge = daemon.request("GET", "/v1.41/networks/bridge").json()
    assert bridge["IPAM"]["Config"] == [{"Subnet": "10.99.0.0/24", "Gateway": "10.99.0.1"}]


def test_a_bad_network_driver_option_stops_the_start(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[networks.bridge]\nbip = "not-an-address"\n')
    result = run_dockyard(
        ["daemon", "--config", str(config), "--data-root", str(tmp_path / "root"),
         "-H", f"unix://{tmp_path / 'd.sock'}"]
    )  # fmt: skip
    assert result.returncode == 1
    assert "networks.bridge.bip" in result.stderr
    assert not (tmp_path / "d.sock").exists()


def test_plugin_routes_hooks_and_events_all_run(plugin_sites, start_daemon, tmp_path):
    """Every hook spec is exercised: the recorder plugin implements all of them."""
    from dockyard.core import hookspecs

    record = tmp_path / "record.jsonl"
    daemon = start_daemon(
        sites=[plugin_sites["dockyard-test-plugins"]], env={"DOCKYARD_TEST_RECORD": str(record)}
    )
    for path in ("/recorder/hello", "/v1.41/recorder/hello"):
        reply = daemon.request("GET", path)
        assert reply.status == 200 and reply.json() == {
            "hello": "daemon",
            "path": "/recorder/hello",
        }
        assert reply.headers["api-version"] == "1.41"
    failing = daemon.request("GET", "/recorder/fail")
    assert failing.status == 500
    assert failing.json() == {"message": "internal error: the recorder's route failed on purpose"}
    assert daemon.stop() == 0
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    called = {call["hook"] for call in calls}
    specs = {name for name in dir(hookspecs) if name.startswith("dockyard_")}
    assert called == specs
    by_hook = {call["hook"]: call for call in calls}
    assert by_hook["dockyard_configure"]["program"] == "daemon"
    assert by_hook["dockyard_startup"]["data_root"] == str(daemon.data_root)
    events = [(c["type"], c["action"]) for c in calls if c["hook"] == "dockyard_event"]
    assert events == [("daemon", "start"), ("daemon", "shutdown")]
    order = [
        call["hook"]
        for call in calls
        if call["hook"] in ("dockyard_startup", "dockyard_shutdown") and "plugin" not in call
    ]
    assert order == ["dockyard_startup", "dockyard_shutdown"]
    # Shutdown goes through pluggy plugin by plugin: an implementation without arguments
    # runs, and so does every other after one that failed, whose failure is logged.
    assert {"hook": "dockyard_shutdown", "plugin": "bare"} in calls
    failed = [line for line in daemon.log_lines() if line.get("event") == "shutdown hook failed"]
    assert [line["plugin"] for line in failed] == ["unruly"]
    assert "the unruly plugin will not shut down (daemon)" in failed[0]["exception"]
    assert any(
        "internal error" in json.dumps(line) or line.get("event") == "unexpected error"
        for line in daemon.log_lines()
    )
