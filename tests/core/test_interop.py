"""The real docker CLI and docker-py against our daemon (system flows of issue 2)."""

from __future__ import annotations

import json
import os
import subprocess

import docker
import pytest

from tests.conftest import docker_cli

pytestmark = pytest.mark.interop


def run_docker(host: str, *args: str, config_dir: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = host
    if config_dir:
        env["DOCKER_CONFIG"] = config_dir
    return subprocess.run(
        [docker_cli(), *args], capture_output=True, text=True, env=env, timeout=30
    )


def test_docker_version(daemon):
    result = run_docker(daemon.host, "version")
    assert result.returncode == 0, result.stderr
    assert "Server: dockyard 0.1.0" in result.stdout
    assert "API version:      1.41 (minimum version 1.12)" in result.stdout
    formatted = run_docker(daemon.host, "version", "--format", "{{json .Server}}")
    server = json.loads(formatted.stdout)
    assert server["ApiVersion"] == "1.41" and server["Os"] == "linux"


def test_docker_info(daemon):
    result = run_docker(daemon.host, "info", "--format", "{{json .}}")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["DockerRootDir"] == str(daemon.data_root)
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    human = run_docker(daemon.host, "info")
    assert human.returncode == 0, human.stderr
    assert " Server Version: 0.1.0" in human.stdout
    assert "WARNING" not in human.stderr or "swarm" not in human.stderr.lower()


def test_docker_generic_inspect_gets_404s_and_reports_no_such_object(daemon):
    result = run_docker(daemon.host, "inspect", "nothing-here")
    assert result.returncode == 1
    assert "No such object: nothing-here" in result.stderr


def test_docker_over_tcp_with_token(start_daemon, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("tok-123")
    daemon = start_daemon("--token-file", str(token_file), tcp=True)
    host = f"tcp://127.0.0.1:{daemon.tcp_port}"
    refused = run_docker(host, "version")
    assert refused.returncode == 1
    assert "authentication required" in refused.stderr
    config_dir = tmp_path / "docker-config"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(
        json.dumps({"HttpHeaders": {"Authorization": "Bearer tok-123"}})
    )
    allowed = run_docker(host, "version", config_dir=str(config_dir))
    assert allowed.returncode == 0, allowed.stderr
    assert "Server: dockyard" in allowed.stdout


def test_docker_py_version_info_ping(daemon):
    client = docker.DockerClient(base_url=daemon.host)
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"] == "1.41"
        assert client.api.api_version == "1.41"
        info = client.info()
        assert info["DockerRootDir"] == str(daemon.data_root)
        with pytest.raises(docker.errors.NotFound):
            client.containers.get("nope")
    finally:
        client.close()


def test_docker_py_over_tcp_with_token(start_daemon, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("tok-456")
    daemon = start_daemon("--token-file", str(token_file), tcp=True)
    client = docker.APIClient(base_url=f"tcp://127.0.0.1:{daemon.tcp_port}", version="1.41")
    client.headers["Authorization"] = "Bearer tok-456"
    try:
        assert client.ping() is True
        assert client.version()["ApiVersion"] == "1.41"
    finally:
        client.close()
