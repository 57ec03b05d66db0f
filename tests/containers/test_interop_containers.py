"""The real docker CLI and docker-py running containers on our daemon."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import termios
import time

import docker as docker_sdk
import pytest

from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import eventually, restarted
from tests.containers.engine_api import Api

pytestmark = pytest.mark.interop


@pytest.fixture(params=["namespaces", "runc"])
def api(request, start_daemon) -> Api:
    """A daemon with busybox, once per runtime (runc's only where its binary is installed)."""
    if (
        request.param == "runc"
        and shutil.which("runc", path="/usr/sbin:/usr/bin:/sbin:/bin") is None
    ):
        pytest.skip("the runc binary is not installed")
    return Api.with_busybox(start_daemon("--runtime", request.param))


def docker(
    api: Api, *args: str, input: bytes | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args],
        env=docker_env(api.daemon.host),
        input=input,
        capture_output=True,
        timeout=timeout,
    )


def test_run_rm_prints_output_and_leaves_nothing(api):
    result = docker(api, "run", "--rm", "busybox", "echo", "hello")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"hello\n", b"")
    assert docker(api, "ps", "-aq").stdout == b""


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (["sh", "-c", "exit 3"], 3, b""),
        (["nosuchcommand"], 127, b"executable file not found in $PATH"),
        (["/etc"], 126, b"permission denied"),
    ],
)
def test_run_exit_codes(api, args, code, stderr):
    result = docker(api, "run", "--rm", "busybox", *args)
    assert result.returncode == code
    assert stderr in result.stderr


def test_run_unknown_image_is_125_with_no_such_image(api):
    result = docker(api, "run", "--rm", "--pull", "never", "nosuchimage", "true")
    assert result.returncode == 125
    assert b"No such image: nosuchimage:latest" in result.stderr


def test_run_i_pipes_stdin(api):
    result = docker(
        api,
        "run",
        "--rm",
        "-i",
        "busybox",
        "sh",
        "-c",
        "cat; echo done",
        input=b"line one\nline two\n",
    )
    assert result.stdout == b"line one\nline two\ndone\n"


def test_run_it_through_a_terminal_with_resize(api):
    pid, terminal = pty.fork()
    if pid == 0:  # the child: a terminal of 30 rows and 100 columns
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        os.execvpe(
            docker_cli(),
            [docker_cli(), "run", "--rm", "-it", "busybox", "sh"],
            docker_env(api.daemon.host),
        )
    output = b""

    def read_for(seconds: float) -> None:
        nonlocal output
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if select.select([terminal], [], [], 0.05)[0]:
                try:
                    output += os.read(terminal, 4096)
                except OSError:
                    return

    read_for(1.0)
    os.write(terminal, b"stty size; tty; exit 4\r")
    read_for(2.0)
    _, status = os.waitpid(pid, 0)
    text = output.decode(errors="replace").replace("\r", "")
    assert "30 100\n" in text
    assert os.waitstatus_to_exitcode(status) == 4


def test_detached_logs_follow_stop_rm(api):
    container = docker(
        api,
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    )
    assert len(container.stdout.strip()) == 64
    time.sleep(0.5)
    follower = subprocess.Popen(
        [docker_cli(), "logs", "-f", "ticker"],
        env=docker_env(api.daemon.host),
        stdout=subprocess.PIPE,
    )
    time.sleep(0.5)
    assert docker(api, "stop", "ticker").stdout == b"ticker\n"
    followed, _ = follower.communicate(timeout=10)  # -f ends when the container stops
    lines = followed.decode().splitlines()
    assert lines[0] == "tick 0" and lines[-1] == "bye"
    ps = docker(api, "ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.decode()
    assert ps.startswith("ticker Exited (0)")
    assert docker(api, "rm", "ticker").stdout == b"ticker\n"


def test_exec_plain_interactive_and_detached(api):
    docker(api, "run", "-d", "--name", "host", "busybox", "sleep", "60")
    assert docker(api, "exec", "host", "sh", "-c", "echo $$ pid; exit 2").returncode == 2
    assert (
        docker(api, "exec", "host", "hostname").stdout.decode().strip()
        == docker(api, "inspect", "-f", "{{.Config.Hostname}}", "host").stdout.decode().strip()
    )
    assert docker(api, "exec", "-i", "host", "cat", input=b"via stdin\n").stdout == b"via stdin\n"
    assert (
        docker(api, "exec", "-d", "host", "sh", "-c", "echo detached > /tmp/mark").returncode == 0
    )
    eventually(
        lambda: docker(api, "exec", "host", "cat", "/tmp/mark").stdout == b"detached\n",
        what="the detached exec's file",
    )
    missing = docker(api, "exec", "host", "nosuch")
    assert (
        missing.returncode == 126  # as with dockerd
        and b"executable file not found" in missing.stdout + missing.stderr
    )
    docker(api, "rm", "-f", "host")


def test_inspect_wait_kill(api):
    docker(api, "run", "-d", "--name", "victim", "busybox", "sleep", "60")
    assert (
        docker(api, "inspect", "-f", "{{.State.Status}} {{.Name}}", "victim").stdout
        == b"running /victim\n"
    )
    waiter = subprocess.Popen(
        [docker_cli(), "wait", "victim"], env=docker_env(api.daemon.host), stdout=subprocess.PIPE
    )
    assert docker(api, "kill", "-s", "KILL", "victim").returncode == 0
    assert waiter.communicate(timeout=10)[0] == b"137\n"
    refused = docker(api, "kill", "victim")
    assert refused.returncode == 1 and b"is not running" in refused.stderr
    assert docker(api, "inspect", "nosuch").returncode == 1


def test_containers_survive_a_daemon_restart_under_the_cli(api):
    docker(
        api,
        "run",
        "-d",
        "--name",
        "lasting",
        "busybox",
        "sh",
        "-c",
        "while true; do echo alive; sleep 0.2; done",
    )
    daemon = api.daemon
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait()
    with restarted(daemon):
        assert docker(api, "ps", "--format", "{{.Names}}").stdout == b"lasting\n"
        assert docker(api, "exec", "lasting", "echo", "still here").stdout == b"still here\n"
        assert docker(api, "rm", "-f", "lasting").returncode == 0


def test_docker_py_containers(api):
    client = docker_sdk.DockerClient(base_url=api.daemon.host)
    try:
        assert client.containers.run("busybox", "echo hello-py", remove=True) == b"hello-py\n"
        with pytest.raises(docker_sdk.errors.ContainerError) as failed:
            client.containers.run("busybox", "sh -c 'echo bad >&2; exit 3'", remove=True)
        assert failed.value.exit_status == 3 and failed.value.stderr == b"bad\n"
        container = client.containers.run(
            "busybox", "sh -c 'echo up; sleep 60'", detach=True, name="py"
        )
        eventually(lambda: container.logs() == b"up\n", what="the container's line")
        result = container.exec_run("sh -c 'echo in exec; exit 5'")
        assert (result.exit_code, result.output) == (5, b"in exec\n")
        container.stop(timeout=1)
        container.reload()
        assert container.status == "exited"
        container.remove()
        with pytest.raises(docker_sdk.errors.NotFound):
            client.containers.get("py")
        with pytest.raises(docker_sdk.errors.ImageNotFound):
            client.api.create_container("nosuchimage", "true")
    finally:
        client.close()
