"""The same docker CLI command lines against dockerd and against our daemon: same output.

Each case is a shell line run with ``$DOCKER`` (the real docker CLI) pointed first at a real
dockerd (Debian's docker.io: containerd and runc) and then at our daemon, both holding the same
busybox image. What the container sees (ids, groups, HOME, capabilities, mounts, limits), exit
codes and the CLI's own output must be identical. Known, deliberate differences are listed in
the closing notes, not here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import docker_load

pytestmark = pytest.mark.interop

CASES = {
    "hostname": "$DOCKER run --rm --hostname hh busybox sh -c 'cat /etc/hostname; hostname'",
    "root": "$DOCKER run --rm busybox sh -c 'id; echo $HOME; umask; pwd'",
    "uid-gid": "$DOCKER run --rm -u 1000:1000 busybox sh -c 'id; echo $HOME; touch /tmp/x && echo ok'",
    "uid-only": "$DOCKER run --rm -u 1000 busybox id",
    "user-name": "$DOCKER run --rm --user root busybox id",
    "env": "$DOCKER run --rm -e FOO=bar busybox env | grep -v HOSTNAME | sort",
    "tty-env": "$DOCKER run --rm -t busybox env | grep -v HOSTNAME | sort",
    "workdir": "$DOCKER run --rm -w /new/dir busybox sh -c 'pwd; ls -ld /new/dir | cut -c1-10'",
    "tree": '$DOCKER run --rm busybox sh -c \'ls -ld /tmp /etc /proc /sys /dev | cut -c1-10; ls /dev | tr "\\n" " "\'',
    "caps": "$DOCKER run --rm busybox grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
    "cap-drop": "$DOCKER run --rm --cap-drop ALL --cap-add NET_ADMIN busybox grep CapEff /proc/self/status",
    "seccomp": "$DOCKER run --rm busybox sh -c 'grep Seccomp /proc/self/status; busybox unshare -U true 2>/dev/null; echo $?'",
    "seccomp-unconfined": "$DOCKER run --rm --security-opt seccomp=unconfined busybox grep Seccomp /proc/self/status",
    "no-new-privs": "$DOCKER run --rm --security-opt no-new-privileges busybox grep NoNewPrivs /proc/self/status",
    "read-only": "$DOCKER run --rm --read-only busybox sh -c 'touch /x; echo $?; touch /dev/shm/y; echo $?'",
    "masked": "$DOCKER run --rm busybox sh -c 'ls /proc/keys /proc/timer_list /sys/firmware 2>&1; echo 1 > /proc/sys/kernel/hostname; echo $?'",
    "exit": "$DOCKER run --rm busybox sh -c 'echo out; echo err >&2; exit 42'; echo rc=$?",
    "not-found": "$DOCKER run --rm busybox nosuchcmd 2>/dev/null; echo rc=$?",
    "not-executable": "$DOCKER run --rm busybox /etc 2>/dev/null; echo rc=$?",
    "entrypoint": "$DOCKER run --rm --entrypoint echo busybox hi there",
    "network-none": "$DOCKER run --rm --network none busybox ls /sys/class/net",
    "limits": "$DOCKER run --rm -m 64m --pids-limit 5 busybox sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max'",
    "stdin": "echo piped | $DOCKER run --rm -i busybox cat",
    "exec": "$DOCKER run -d --name e1 busybox sleep 60 >/dev/null; $DOCKER exec -u 1000 e1 sh -c 'id; echo $HOME'; $DOCKER exec e1 mkdir /bin/made && echo made; $DOCKER exec -w /etc e1 pwd; $DOCKER exec e1 sh -c 'exit 5'; echo rc=$?; $DOCKER rm -f e1 >/dev/null",
    "lifecycle": "$DOCKER run -d --name l1 busybox sh -c 'echo one; echo two; sleep 60' >/dev/null; sleep 0.5; $DOCKER logs --tail 1 l1; $DOCKER kill -s USR1 l1 >/dev/null; sleep 0.3; $DOCKER inspect -f '{{.State.Status}} {{.State.ExitCode}}' l1; $DOCKER rm l1",
    "wait": "$DOCKER run --name w1 busybox sh -c 'exit 3'; echo rc=$?; $DOCKER wait w1; $DOCKER inspect -f '{{.State.Status}} {{.State.ExitCode}} {{.Path}} {{.Args}}' w1; $DOCKER rm w1",
    "pause": "$DOCKER run -d --name p1 busybox sleep 60 >/dev/null; $DOCKER pause p1; $DOCKER inspect -f '{{.State.Status}} {{.State.Paused}}' p1; $DOCKER unpause p1; $DOCKER rm -f p1",
    "create-start": "$DOCKER create --name c6 busybox echo hi >/dev/null; $DOCKER start -a c6; $DOCKER rename c6 c7; $DOCKER ps -a --filter name=c7 --format '{{.Names}}'; $DOCKER rm c7",
    "volume": "$DOCKER volume create vv >/dev/null; $DOCKER run --rm -v vv:/data busybox sh -c 'echo kept > /data/f'; $DOCKER run --rm -v vv:/data busybox cat /data/f; $DOCKER volume rm vv",
    "bind": "$DOCKER run --rm -v \"$SHARED:/h:ro\" busybox sh -c 'cat /h/note; touch /h/x 2>/dev/null; echo $?'",
    "image": "$DOCKER image inspect -f '{{.Os}} {{.Architecture}} {{.Config.Cmd}}' busybox; $DOCKER images busybox --format '{{.Repository}}:{{.Tag}}'",
}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("parity") / "busybox.tar"
    path.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("shared")
    (directory / "note").write_text("from the host\n")
    return directory


@pytest.fixture(scope="module")
def engines(real_dockerd, shared_daemon, archive) -> dict[str, str]:
    hosts = {"dockerd": real_dockerd.host, "dockyard": shared_daemon.host}
    for host in hosts.values():
        docker_load(host, archive)
    return hosts


def run_line(line: str, host: str, shared: Path) -> tuple[str, str]:
    env = {**os.environ, **docker_env(host), "DOCKER": docker_cli(), "SHARED": str(shared)}
    result = subprocess.run(
        ["sh", "-c", line], env=env, capture_output=True, text=True, timeout=120
    )
    return result.stdout, f"exit {result.returncode}"


@pytest.mark.parametrize("line", CASES.values(), ids=CASES.keys())
def test_same_output_as_dockerd(engines, shared, line):
    theirs = run_line(line, engines["dockerd"], shared)
    ours = run_line(line, engines["dockyard"], shared)
    assert ours == theirs
