"""A stats frame side by side with a real dockerd 20.10's: the same keys, nested, for a
container on a bridge network (after CPU work, a direct write and a read) and for a ``none``
one, at API 1.41 and 1.20.

Each side gets a user-defined bridge network of its own (the session's dockerd runs
``--bridge=none``); both are removed at the end, and our daemon's module leaves the host's
network as it found it.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.testing.networks import host_left_as_found
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import (
    busybox_archive,
    daemon_in,
    docker_load,
    eventually,
    http_request,
    serving,
    shut_down,
)
from tests.containers.test_stats import BUSY_THEN_IDLE, written

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def engines(real_dockerd, tmp_path_factory) -> Iterator[dict[str, str]]:
    base = tmp_path_factory.mktemp("stats-interop")
    archive = busybox_archive(base)
    docker_load(real_dockerd.host, archive)
    with host_left_as_found():
        daemon = serving(daemon_in(base, network=True))
        try:
            docker_load(daemon.host, archive)
            yield {"dockerd": real_dockerd.host, "dockyard": daemon.host}
        finally:
            shut_down(daemon)


def docker(host: str, *args: str) -> str:
    done = subprocess.run(
        [docker_cli(), *args], env=docker_env(host), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, (host, args, done.stderr)
    return done.stdout.strip()


def shape(value: Any, path: str = "") -> set[str]:
    """Every key path in ``value``, with the kind of each object, list and null in it."""
    if isinstance(value, dict):
        found = {f"{path}:object"}
        for key, item in value.items():
            found |= shape(item, f"{path}.{key}")
        return found
    if isinstance(value, list):
        return {f"{path}:list"}.union(*(shape(item, f"{path}[]") for item in value))
    return {f"{path}:null"} if value is None else {path}


def frames(host: str, network: str) -> dict[str, dict[str, Any]]:
    """Frames (``stream=false``) of a container on ``network`` and of a ``none`` one."""
    made = {
        "bridge": docker(host, "run", "-d", "--network", network, "busybox",
                         "sh", "-c", BUSY_THEN_IDLE),
        "none": docker(host, "run", "-d", "--network", "none", "busybox", "sleep", "60"),
    }  # fmt: skip
    try:
        for container in made.values():
            eventually(lambda c=container: "sleep" in docker(host, "top", c), what="the sleep")
        socket_path = host.removeprefix("unix://")
        found = {}
        for kind, container in made.items():
            for version in ("1.41", "1.20"):
                path = f"/v{version}/containers/{container}/stats?stream=false"
                reply = http_request(socket_path, "GET", path)
                assert reply.status == 200, reply.body
                found[f"{kind} at {version}"] = reply.json()
        return found
    finally:
        docker(host, "rm", "-f", *made.values())


def test_a_frame_has_dockerds_keys(engines):
    seen = {}
    for name, host in engines.items():
        network = "stats-" + secrets.token_hex(4)
        subnet = f"10.{secrets.choice(range(200, 250))}.{secrets.randbelow(256)}.0/24"
        docker(host, "network", "create", "--subnet", subnet, network)
        try:
            seen[name] = frames(host, network)
        finally:
            docker(host, "network", "rm", network)
    theirs, ours = seen["dockerd"], seen["dockyard"]
    assert set(theirs) == set(ours) and len(theirs) == 4
    assert ".networks.eth0.rx_bytes" in shape(theirs["bridge at 1.41"])
    for kind in theirs:
        missing = shape(theirs[kind]) - shape(ours[kind])
        extra = shape(ours[kind]) - shape(theirs[kind])
        assert not missing and not extra, (kind, sorted(missing), sorted(extra))
    # The direct write reached the disk on both sides.
    for side in seen.values():
        assert written(side["bridge at 1.41"]["blkio_stats"]) >= 4 << 20
