"""Side by side with dockerd 20.10: the docker CLI and docker-py meet the same answers from the
swarm endpoints (no swarm), ``/plugins`` (none) and ``images/load`` of a bad archive."""

from __future__ import annotations

import json
import subprocess

import docker
import pytest

from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import http_request
from tests.core.test_engine_endpoints import GARBAGE

pytestmark = pytest.mark.interop


def test_swarm_plugins_and_bad_loads_beside_dockerd(daemon, real_dockerd, tmp_path):
    hosts = {"dockyard": daemon.host, "dockerd": real_dockerd.host}

    def docker_run(host: str, *args: str) -> tuple[int, str, str]:
        done = subprocess.run(
            [docker_cli(), *args],
            env=docker_env(host, tmp_path / "client"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.returncode, done.stdout, done.stderr

    bad = tmp_path / "bad.tar"
    bad.write_bytes(GARBAGE)
    for args in (
        ["swarm", "leave"],
        ["swarm", "leave", "--force"],
        ["node", "ls"],
        ["service", "ls"],
        ["secret", "ls"],
        ["config", "ls"],
        ["stack", "ls"],
        ["plugin", "ls"],
    ):
        got = {who: docker_run(host, *args) for who, host in hosts.items()}
        assert got["dockyard"] == got["dockerd"], args

    for path in ("/swarm", "/nodes", "/services", "/tasks"):
        answers = {
            who: http_request(host.removeprefix("unix://"), "GET", f"/v1.41{path}")
            for who, host in hosts.items()
        }
        assert answers["dockyard"].status == answers["dockerd"].status == 503
        assert answers["dockyard"].json() == answers["dockerd"].json()

    # A bad archive: 200, the error in the stream; the CLI prints it and exits 1, docker-py
    # raises ImageLoadError. The words differ (dockerd's name its tar reader).
    for who, host in hosts.items():
        status, out, err = docker_run(host, "load", "-i", str(bad))
        assert (status, out) == (1, ""), who
        assert err.strip(), who
        reply = http_request(
            host.removeprefix("unix://"), "POST", "/v1.41/images/load", {}, GARBAGE
        )
        assert reply.status == 200, who
        message = json.loads(reply.body)
        assert set(message) == {"error", "errorDetail"}, who
        with pytest.raises(docker.errors.ImageLoadError):
            docker.DockerClient(base_url=host, version="1.41").images.load(GARBAGE)
