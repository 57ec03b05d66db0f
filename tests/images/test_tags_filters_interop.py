"""rmi of tags, filters, prunes, system df and inspect shapes: the same docker CLI lines against
a real dockerd 20.10 and against our daemon, both holding the same busybox image.

Ids, ages and sizes are masked; what is compared is which objects each command shows, its
messages and exit codes. Deliberate differences are left out of the lines and listed here:
``rmi -f`` past a stopped container deletes the image in dockerd (its layers stay with the
container) and only untags it here (the image record is what holds the layers); image sizes
differ by a few hundred bytes (dockerd counts its unpacked directories); and dockerd's
``--bridge=none`` containers sit on ``bridge`` where ours sit on ``none``.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.testing.peers import docker_cli, docker_env
from dockyard.testing.peers import real_dockerd as start_real_dockerd
from tests.conftest import docker_load

pytestmark = pytest.mark.interop

RMI = """
$DOCKER tag busybox one:1; $DOCKER tag busybox two:2
s rmi one:1
$DOCKER run -d --name u1 busybox sleep 60 >/dev/null
s rmi two:2
s rmi busybox
$DOCKER tag busybox one:1
s rmi -f one:1
s images --format '{{.Repository}}:{{.Tag}}'
ID=$($DOCKER image inspect -f '{{.Id}}' busybox)
$DOCKER tag busybox one:1
s rmi $ID
s rmi -f $ID
s rmi busybox
$DOCKER stop -t0 u1 >/dev/null
s rmi one:1
s rmi $ID
$DOCKER rm u1 >/dev/null
$DOCKER tag $ID busybox:latest
"""

FILTERS = """
$DOCKER volume create --label team=a va >/dev/null; $DOCKER volume create --label team=b vb >/dev/null
$DOCKER volume create vc >/dev/null
$DOCKER run -d --name f1 -v va:/data -l k=v busybox sleep 60 >/dev/null
$DOCKER run -d --name f2 -v /tmp:/hostmnt busybox sleep 60 >/dev/null
$DOCKER create --name f3x -l k=w busybox true >/dev/null
s ps --filter volume=va --format '{{.Names}}'
s ps --filter volume=/data --format '{{.Names}}'
s ps --filter volume=/hostmnt --format '{{.Names}}'
s ps -a --filter 'name=^f[0-9]$' --format '{{.Names}}'
s ps -a --filter 'name=x$' --format '{{.Names}}'
s ps -a --filter 'name=/f1' --format '{{.Names}}'
s ps -a --filter since=f1 --format '{{.Names}}'
s ps -a --filter before=f3x --format '{{.Names}}'
s ps -a --filter is-task=false --format '{{.Names}}'
s ps -a --filter is-task=true --format '{{.Names}}'
s ps -a --filter bogus=1
s volume ls --filter label=team --format '{{.Name}}'
s volume ls --filter label=team=b --format '{{.Name}}'
s volume ls --filter dangling=true --format '{{.Name}}'
s volume ls --filter dangling=false --format '{{.Name}}'
s volume ls --filter driver=local --format '{{.Name}}'
s volume ls --filter name=v[ab] --format '{{.Name}}'
s volume ls --filter bogus=1
s volume ls --filter dangling=maybe
s container prune -f --filter label=k=w
s container prune -f --filter until=1h
s container prune -f --filter bogus=1
s volume prune -f --filter label!=team
s volume ls --format '{{.Name}}'
s volume prune -f --filter until=1h
s volume prune -f --filter label=team=b
$DOCKER rm -f f1 f2 >/dev/null
s volume prune -f
s volume ls --format '{{.Name}}'
s image prune -f --filter bogus=1
s image prune -f --filter until=1h
s image prune -f --filter dangling=maybe
s images --filter dangling=maybe
s ps -a --filter status=bogus
s ps -a --filter is-task=maybe
s ps -a --filter 'name=['
s ps -a --filter isolation=hyperv --format '{{.Names}}'
s volume ls --filter 'name=['
"""

DISK_USAGE = """
$DOCKER volume create vd >/dev/null
$DOCKER run --name w1 -v vd:/data busybox sh -c 'head -c 100000 /dev/zero > /data/f; head -c 50000 /dev/zero > /big'
$DOCKER run -d --name w2 busybox sleep 60 >/dev/null
$DOCKER tag busybox other:1
s system df
s system df -v
s container prune -f
s volume prune -f
$DOCKER rm -f w2 >/dev/null
s system prune -f
s system prune -a -f --volumes
s images -a
"""

PRELUDE = r"""
s() { echo "\$ $*"; $DOCKER "$@" 2>&1 | sed -E 's/[0-9a-f]{64}/<id>/g; s/[0-9a-f]{12}/<id>/g'; }
"""


@pytest.fixture(scope="module")
def engines(tmp_path_factory, busybox_served) -> Iterator[dict[str, str]]:
    """A dockerd of the module's own: the scripts list, count and prune all an engine has,
    and the session's dockerd holds what other modules left."""
    try:
        with start_real_dockerd(tmp_path_factory.mktemp("dockerd-own")) as dockerd:
            docker_load(dockerd.host, busybox_served.archive)
            yield {"dockerd": dockerd.host, "dockyard": busybox_served.daemon.host}
    except RuntimeError as exc:
        pytest.fail(str(exc))


def run_script(script: str, host: str) -> str:
    env = {**docker_env(host), "DOCKER": docker_cli()}
    result = subprocess.run(
        ["sh", "-c", PRELUDE + script], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr
    # Image sizes differ by dockerd's way of counting unpacked layers, ages by timing, column
    # widths with both: masked.
    text = re.sub(r"\d+(\.\d+)?[kM]?B\b( \(\d+%\))?", "<size>", result.stdout)
    text = re.sub(r"(\d+ \w+|Less than a second|About a minute) ago", "<ago>", text)
    text = re.sub(r"Up <ago>|Up (\d+ \w+|Less than a second)", "Up", text)
    return re.sub(r" {2,}", "  ", text)


def tidy(host: str, archive: Path) -> None:
    """Back to the busybox image alone, whatever a script left."""
    run_script(
        "$DOCKER rm -f $($DOCKER ps -aq) >/dev/null 2>&1; $DOCKER volume prune -f >/dev/null",
        host,
    )
    docker_load(host, archive)


@pytest.mark.parametrize("script", [RMI, FILTERS, DISK_USAGE], ids=["rmi", "filters", "df"])
def test_same_output_as_dockerd(engines, busybox_served, script):
    try:
        theirs = run_script(script, engines["dockerd"])
        ours = run_script(script, engines["dockyard"])
    finally:
        for host in engines.values():
            tidy(host, busybox_served.archive)
    assert ours == theirs


def inspect_keys(host: str, *args: str) -> list[dict]:
    result = subprocess.run(
        [docker_cli(), *args], env=docker_env(host), capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


def shape(value, path: str = "") -> dict[str, str]:
    """Every key path of ``value`` with its JSON type (lists by their first item)."""
    if isinstance(value, dict):
        found = {path: "object"}
        for key, item in value.items():
            found.update(shape(item, f"{path}.{key}"))
        return found
    if isinstance(value, list):
        return {path: "list", **(shape(value[0], f"{path}[0]") if value else {})}
    return {path: type(value).__name__}


# Key paths where the two engines differ for reasons outside this comparison: each engine's
# own network and graph-driver details, and fields other parts of issue 13 fill.
ELSEWHERE = re.compile(
    r"^\.(NetworkSettings|GraphDriver\.Data)\.|^\.Config\.NetworkDisabled$|"
    r"^\.HostConfig\.(MaskedPaths|ReadonlyPaths|Runtime|CgroupnsMode)(\[0\])?$"
)


def test_inspect_has_dockerds_shape(engines):
    """A container's and an image's inspect, key by key: the same keys, of the same types."""
    shapes = {}
    for engine, host in engines.items():
        run_script("$DOCKER run -d --name shape busybox sleep 60 >/dev/null", host)
        try:
            container = inspect_keys(host, "inspect", "shape")[0]
            image = inspect_keys(host, "image", "inspect", "busybox")[0]
        finally:
            run_script("$DOCKER rm -f shape >/dev/null", host)
        shapes[engine] = {
            (what, path): kind
            for what, found in (("container", container), ("image", image))
            for path, kind in shape(found).items()
            if not ELSEWHERE.search(path)
        }
    assert shapes["dockyard"] == shapes["dockerd"]
