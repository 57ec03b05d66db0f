"""Log drivers side by side: the same docker CLI lines against dockerd 20.10 and against us.

Each case runs with ``$DOCKER`` pointed first at a real dockerd, then at our daemon, both
holding the same busybox image; the output (stdout and stderr together) must be the same.
Known differences: dockerd checks most option values when the container starts ("failed to
initialize logging driver: ..."), we when it is created, with the same words; and we refuse
options that dockerd takes and ignores (see the refusal cases).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import Daemon, docker_load, module_daemon

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(os.geteuid() != 0, reason="containers need root"),
]

# stdout only: dockerd copies the two streams in two goroutines, so where a last stderr line
# lands among the stdout lines of the same moment varies from run to run.
LINES = "for i in $(seq 1 100); do echo line-$i-xxxxxxxxxxxxxxxxxx; done"
INSPECT = "$DOCKER inspect -f '{{json .HostConfig.LogConfig}}'"

#: Container names of their own: other modules use the same session dockerd.
CASES = {
    "json-file-default": f"$DOCKER create --name logs-j0 busybox true >/dev/null; {INSPECT} logs-j0; "
    "$DOCKER rm logs-j0 >/dev/null",
    "json-file-compressed": "$DOCKER run --name logs-j1 --log-opt max-size=1k --log-opt max-file=3 "
    f"--log-opt compress=true busybox sh -c '{LINES}' >/dev/null 2>&1; "
    f"$DOCKER logs --tail 3 logs-j1 2>&1; {INSPECT} logs-j1; $DOCKER rm logs-j1 >/dev/null",
    "local-defaults": f"$DOCKER create --name logs-l0 --log-driver local busybox true >/dev/null; "
    f"{INSPECT} logs-l0; $DOCKER rm logs-l0 >/dev/null",
    "local-rotated": "$DOCKER run --name logs-l1 --log-driver local --log-opt max-size=1k "
    f"--log-opt max-file=3 busybox sh -c '{LINES}' >/dev/null 2>&1; "
    f"$DOCKER logs --tail 3 logs-l1 2>&1; $DOCKER logs logs-l1 2>/dev/null | tail -n 2; {INSPECT} logs-l1; "
    "$DOCKER rm logs-l1 >/dev/null",
    "local-follow": "$DOCKER run -d --name logs-l2 --log-driver local busybox sh -c "
    "'echo early; sleep 1; echo late >&2' >/dev/null; $DOCKER logs -f logs-l2 2>&1; "
    "$DOCKER logs -f --tail 1 logs-l2 2>&1; $DOCKER rm logs-l2 >/dev/null",
    "none": "$DOCKER run --name logs-n1 --log-driver none busybox echo hi; "
    "$DOCKER logs logs-n1; echo rc=$?; $DOCKER start -a logs-n1; "
    f"{INSPECT} logs-n1; $DOCKER rm logs-n1 >/dev/null",
    "none-attach": "$DOCKER run -d --name logs-n2 --log-driver none busybox sh -c "
    "'sleep 1; echo later' >/dev/null; $DOCKER attach logs-n2; echo rc=$?; $DOCKER rm logs-n2 >/dev/null",
}

#: Refused by both, for the same reason. ``docker run`` so that dockerd, which checks values
#: at start, refuses them too.
#: (An unknown driver is not run here: dockerd looks for a plugin of that name for 15 s first.
#: test_log_drivers.py checks our answer against the words dockerd 20.10 gives.)
REFUSALS = {
    "unknown-option": "--log-opt nosuch=1",
    "local-unknown-option": "--log-driver local --log-opt nosuch=1",
    "compress-without-rotation": "--log-opt compress=true",
    "compress-not-a-bool": "--log-opt max-size=1k --log-opt max-file=2 --log-opt compress=maybe",
    "local-bad-size": "--log-driver local --log-opt max-size=1q",
    "local-bad-count": "--log-driver local --log-opt max-file=x",
    "local-negative-count": "--log-driver local --log-opt max-file=-1",
    "local-compress-one-file": "--log-driver local --log-opt max-file=1",
    "local-bad-compress": "--log-driver local --log-opt compress=x",
    "none-with-options": "--log-driver none --log-opt max-size=1m",
}


@pytest.fixture(scope="module")
def engines(real_dockerd, tmp_path_factory) -> Iterator[dict[str, str]]:
    archive = tmp_path_factory.mktemp("logs-interop") / "busybox.tar"
    archive.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
    ours: Daemon
    with module_daemon(tmp_path_factory.mktemp("logs-interop-daemon")) as ours:
        hosts = {"dockerd": real_dockerd.host, "dockyard": ours.host}
        for host in hosts.values():
            docker_load(host, archive)
        yield hosts


def shell(host: str, line: str, config: Path | None = None) -> str:
    env = docker_env(host, config) | {"DOCKER": docker_cli()}
    result = subprocess.run(
        ["sh", "-c", line], env=env, capture_output=True, text=True, timeout=120
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_output_as_dockerd(engines, case):
    outputs = {name: shell(host, CASES[case]) for name, host in engines.items()}
    assert outputs["dockyard"] == outputs["dockerd"]


def core_message(output: str) -> str:
    """The daemon's reason, without the CLI's framing and dockerd's start-time prefix."""
    first = output.strip().splitlines()[0]
    first = re.sub(r"^(docker: )?Error response from daemon: ", "", first)
    first = first.removeprefix("failed to initialize logging driver: ")
    return first.removeprefix("docker: ")


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_as_by_dockerd(engines, case):
    line = f"$DOCKER run --rm {REFUSALS[case]} busybox echo ran; echo rc=$?"
    outputs = {name: shell(host, line) for name, host in engines.items()}
    for output in outputs.values():
        assert "ran" not in output.splitlines() and "rc=125" in output, output
    # Ours may add which drivers exist after dockerd's words.
    assert core_message(outputs["dockyard"]).startswith(core_message(outputs["dockerd"]))
