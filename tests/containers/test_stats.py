"""A running container's stats frame moves with what it does, as dockerd 20.10's does: CPU
work raises user time, a direct write raises the block I/O written, reading a file fills the
page cache in ``memory_stats.stats``, and pinging the container from the host raises its
``eth0`` counters; ``none`` and ``host`` containers have no ``networks``; ``container:``
ones report the joined namespace's interfaces; before API 1.21 one summed ``network``.

One daemon with networking (the default bridge) per runtime: it holds the host-network
lock and leaves the host's links, addresses and ruleset as it found them. Traffic goes only
to the containers' own addresses.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.linux.cgroups import DOCKER_MEMORY_STAT, detect_layout
from dockyard.testing.images import BUSYBOX
from dockyard.testing.networks import host_left_as_found
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import daemon_in, eventually, serving, shut_down
from tests.containers.engine_api import Api
from tests.runtimes.conftest import needs_runc

#: CPU work, a direct 4 MiB write (past the page cache: the disk sees it in the container's
#: cgroup), the file read back (into the page cache, charged to the container), then idle.
BUSY_THEN_IDLE = (
    "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; "
    "dd if=/dev/zero of=/written bs=1M count=4 oflag=direct 2>/dev/null; "
    "cat /written > /dev/null; exec sleep 60"
)
MiB = 1 << 20


@pytest.fixture(
    scope="module",
    params=["namespaces", pytest.param("runc", marks=needs_runc)],
)
def api(request, tmp_path_factory) -> Iterator[Api]:
    """A daemon on each runtime: both fill the frame from their ``stats()``."""
    base = tmp_path_factory.mktemp("stats-daemon")
    with host_left_as_found():
        daemon = serving(daemon_in(base, network=True, extra_args=["--runtime", request.param]))
        try:
            yield Api.with_busybox(daemon)
        finally:
            shut_down(daemon)


@contextlib.contextmanager
def running(api: Api, script: str, **host_config: Any) -> Iterator[str]:
    """A container running ``script``, once its init has reached its closing ``sleep``."""
    container = api.create(["sh", "-c", script], HostConfig=host_config)
    try:
        api.start(container)

        def idle() -> bool:
            top = api.call("GET", f"/containers/{container}/top").json()
            return any(row[-1].startswith("sleep") for row in top["Processes"])

        eventually(idle, what="the container's closing sleep")
        yield container
    finally:
        api.call("DELETE", f"/containers/{container}?force=1")


def frame(api: Api, container: str, version: str = "1.41") -> dict[str, Any]:
    reply = api.daemon.request("GET", f"/v{version}/containers/{container}/stats?stream=false")
    assert reply.status == 200, reply.body
    return reply.json()


def ping(address: str, count: int = 3) -> None:
    """Ping a container's address from the host (busybox's ping: the host may have none)."""
    done = subprocess.run(
        [BUSYBOX, "ping", "-c", str(count), "-i", "0.2", "-W", "5", address],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def written(blkio: dict[str, Any]) -> int:
    return sum(
        entry["value"]
        for entry in blkio["io_service_bytes_recursive"] or ()
        if entry["op"] in ("Write", "write")
    )


def test_each_figure_moves_with_the_containers_use(api: Api) -> None:
    with running(api, BUSY_THEN_IDLE) as container:
        before = frame(api, container)
        cpu = before["cpu_stats"]
        usage = cpu["cpu_usage"]
        assert usage["usage_in_usermode"] >= 100_000_000, usage  # the loop
        assert usage["usage_in_kernelmode"] + usage["usage_in_usermode"] <= (
            usage["total_usage"] + 50_000_000
        )
        assert set(cpu["throttling_data"]) == {"periods", "throttled_periods", "throttled_time"}
        version = detect_layout().version
        memory = before["memory_stats"]
        assert set(memory["stats"]) == set(DOCKER_MEMORY_STAT[version])
        if version == 1:
            assert len(usage["percpu_usage"]) >= 1
            assert abs(sum(usage["percpu_usage"]) - usage["total_usage"]) < 10_000_000
            assert memory["max_usage"] >= memory["usage"]
            # The file read back is page cache (most of it: pages may be reclaimed already),
            # which docker stats leaves out of MEM USAGE.
            assert memory["stats"]["total_cache"] >= 3 * MiB
            assert memory["stats"]["total_inactive_file"] > 0
        else:
            assert memory["stats"]["file"] >= 3 * MiB
        assert written(before["blkio_stats"]) >= 4 * MiB
        serviced = before["blkio_stats"]["io_serviced_recursive"]
        if serviced is not None:
            assert sum(e["value"] for e in serviced if e["op"] == "Write") >= 4
        assert "storage_stats" in before and before["pids_stats"] == {"current": 1}

        eth0 = before["networks"]["eth0"]
        ping(api.inspect(container)["NetworkSettings"]["IPAddress"])
        after = frame(api, container)["networks"]["eth0"]
        assert after["rx_packets"] >= eth0["rx_packets"] + 3, (eth0, after)
        assert after["tx_packets"] >= eth0["tx_packets"] + 3, (eth0, after)
        assert after["rx_bytes"] >= eth0["rx_bytes"] + 3 * 84  # an echo is 84 bytes of IP

        # Before 1.21 one "network", the sum of every interface's counters.
        old = frame(api, container, "1.20")
        assert "networks" not in old and old["network"]["rx_packets"] >= after["rx_packets"]


def test_a_cpu_quota_shows_in_throttling_data(api: Api) -> None:
    # Two busy loops under a tenth of a CPU want twenty times the quota, so periods are
    # throttled however loaded the machine is (one loop under half a CPU was not, on a machine
    # that gave it less than half a CPU anyway).
    loops = "while :; do :; done & while :; do :; done & exec sleep 60"
    with running(api, loops, NanoCpus=100_000_000) as container:

        def throttled() -> dict[str, int] | None:
            throttling = frame(api, container)["cpu_stats"]["throttling_data"]
            return throttling if throttling["throttled_periods"] > 0 else None

        throttling = eventually(throttled, timeout=20, what="a throttled period")
    assert throttling["periods"] >= throttling["throttled_periods"], throttling
    assert throttling["throttled_time"] > 0, throttling


def test_none_and_host_containers_have_no_networks_and_container_mode_shares(
    api: Api,
) -> None:
    for mode in ("none", "host"):
        with running(api, "exec sleep 60", NetworkMode=mode) as container:
            document = frame(api, container)
            assert "networks" not in document, (mode, document.get("networks"))
            # Before 1.21 dockerd sends the sum all the same: zeros.
            assert set(frame(api, container, "1.20")["network"].values()) == {0}
    with contextlib.ExitStack() as stack:
        owner = stack.enter_context(running(api, "exec sleep 60"))
        joined = stack.enter_context(
            running(api, "exec sleep 60", NetworkMode=f"container:{owner}")
        )
        ping(api.inspect(owner)["NetworkSettings"]["IPAddress"], count=1)
        shared = frame(api, joined)["networks"]
        own = frame(api, owner)["networks"]
    assert set(shared) == set(own) == {"eth0"}
    assert shared["eth0"]["rx_packets"] >= 1


def test_docker_stats_shows_net_and_block_io(api: Api) -> None:
    with running(api, BUSY_THEN_IDLE) as container:
        ping(api.inspect(container)["NetworkSettings"]["IPAddress"])
        done = subprocess.run(
            [docker_cli(), "stats", "--no-stream", "--format", "{{json .}}", container],
            env=docker_env(api.daemon.host), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    received, _, sent = row["NetIO"].partition(" / ")
    wrote = row["BlockIO"].partition(" / ")[2]
    assert received != "0B" and sent != "0B", row
    assert wrote.endswith("MB") and float(wrote[:-2]) >= 4, row
    # MEM USAGE leaves the page cache out: the 4 MiB read back does not count.
    used = row["MemUsage"].partition(" / ")[0]
    assert used.endswith("KiB") or (used.endswith("MiB") and float(used[:-3]) < 4), row
