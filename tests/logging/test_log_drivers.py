"""Log drivers through the docker CLI against our daemon: json-file, local and none.

One daemon for the module (json-file by default), and one started with ``--log-driver local
--log-opt ...`` for the daemon's defaults. The side-by-side comparisons with dockerd are in
``test_log_drivers_interop.py``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.core.config import parse_config
from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import (
    Daemon,
    daemon_in,
    docker_load,
    module_daemon,
    plugin_env,
    run_dockyard,
    serving,
    shut_down,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

LINES = "for i in $(seq 1 100); do echo line-$i-xxxxxxxxxxxxxxxxxx; done; echo done >&2"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("logs-image") / "busybox.tar"
    path.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
    return path


@pytest.fixture(scope="module")
def daemon(tmp_path_factory, archive) -> Iterator[Daemon]:
    with module_daemon(tmp_path_factory.mktemp("logs-daemon")) as daemon:
        docker_load(daemon.host, archive)
        yield daemon


def docker(daemon: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [docker_cli(), *args],
        env=docker_env(daemon.host),
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check:
        assert result.returncode == 0, (args, result.stderr)
    return result


def log_config(daemon: Daemon, container: str) -> dict:
    return json.loads(
        docker(daemon, "inspect", "-f", "{{json .HostConfig.LogConfig}}", container).stdout
    )


def container_dir(daemon: Daemon, container: str) -> Path:
    full = docker(daemon, "inspect", "-f", "{{.Id}}", container).stdout.strip()
    return daemon.data_root / "containers" / full


def test_local_keeps_rotated_compressed_files_and_docker_logs_reads_them(daemon):
    docker(daemon, "run", "--name", "local1", "--log-driver", "local", "--log-opt", "max-size=1k",
           "--log-opt", "max-file=3", "busybox", "sh", "-c", LINES)  # fmt: skip
    assert log_config(daemon, "local1") == {
        "Type": "local",
        "Config": {"max-file": "3", "max-size": "1k"},
    }
    tail = docker(daemon, "logs", "--tail", "3", "local1")
    assert tail.stdout == "line-99-xxxxxxxxxxxxxxxxxx\nline-100-xxxxxxxxxxxxxxxxxx\n"
    assert tail.stderr == "done\n"
    everything = docker(daemon, "logs", "local1").stdout.splitlines()
    assert everything[-1] == "line-100-xxxxxxxxxxxxxxxxxx" and 10 < len(everything) < 100
    numbers = [int(line.split("-")[1]) for line in everything]
    assert numbers == list(range(numbers[0], 101))
    # Our own records, in dockerd's place: local-logs/, rotated files gzipped (on by default).
    logs = container_dir(daemon, "local1") / "local-logs"
    assert sorted(p.name for p in logs.iterdir()) == [
        "container.log", "container.log.1.gz", "container.log.2.gz",
    ]  # fmt: skip
    assert stat.S_IMODE(logs.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in logs.iterdir()} == {0o640}
    assert not (container_dir(daemon, "local1") / "container.log").exists()
    docker(daemon, "rm", "local1")


def test_local_timestamps_since_and_until(daemon):
    docker(daemon, "run", "--name", "local2", "--log-driver", "local", "busybox", "sh", "-c",
           "echo one; sleep 1.2; echo two")  # fmt: skip
    stamped = docker(daemon, "logs", "-t", "local2").stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["one", "two"]
    first, second = (line.split(" ", 1)[0] for line in stamped)
    assert first.endswith("Z") and len(first) == len("2026-12-05T06:23:04.123456789Z")
    assert docker(daemon, "logs", "--since", second, "local2").stdout == "two\n"
    assert docker(daemon, "logs", "--until", first, "local2").stdout == "one\n"
    docker(daemon, "rm", "local2")


def test_local_follow_ends_with_the_container(daemon):
    docker(daemon, "run", "-d", "--name", "local3", "--log-driver", "local", "busybox", "sh",
           "-c", "echo early; sleep 1; echo late")  # fmt: skip
    started = time.monotonic()
    followed = docker(daemon, "logs", "-f", "local3")
    assert followed.stdout == "early\nlate\n"
    assert time.monotonic() - started < 20
    docker(daemon, "rm", "local3")


def test_none_keeps_nothing_yet_run_and_attach_show_the_output(daemon):
    run = docker(daemon, "run", "--name", "none1", "--log-driver", "none", "busybox", "echo", "hi")
    assert run.stdout == "hi\n"
    refused = docker(daemon, "logs", "none1", check=False)
    assert refused.returncode == 1
    assert refused.stderr == (
        "Error response from daemon: configured logging driver does not support reading\n"
    )
    assert log_config(daemon, "none1") == {"Type": "none", "Config": {}}
    assert docker(daemon, "start", "-a", "none1").stdout == "hi\n"
    directory = container_dir(daemon, "none1")
    assert not [p for p in directory.iterdir() if p.name.startswith("container.log")]
    buffer = directory / "attach-buffer"
    assert stat.S_IMODE(buffer.stat().st_mode) == 0o700
    reply = daemon.request("GET", "/v1.41/containers/none1/logs?stdout=1")
    assert reply.status == 501
    docker(daemon, "rm", "none1")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--log-driver", "syslog"],
         'error looking up logging plugin syslog: plugin "syslog" not found'),
        (["--log-opt", "foo=bar"], "unknown log opt 'foo' for json-file log driver"),
        (["--log-opt", "tag=x"], "log opt 'tag' is not supported by this engine's json-file"),
        (["--log-opt", "compress=true"],
         "compress cannot be true when max-file is less than 2 or max-size is not set"),
        (["--log-driver", "local", "--log-opt", "foo=bar"], "unknown log opt 'foo' for log driver local"),
        (["--log-driver", "local", "--log-opt", "max-file=1"],
         "compression cannot be enabled when max file count is 1"),
        (["--log-driver", "local", "--log-opt", "max-size=1q"], "invalid value for max-size: 1q"),
    ],
)  # fmt: skip
def test_unknown_drivers_and_options_are_refused(daemon, flags, message):
    refused = docker(daemon, "create", *flags, "busybox", "true", check=False)
    assert refused.returncode != 0
    assert refused.stderr.startswith(f"Error response from daemon: {message}"), refused.stderr


def test_none_with_options_is_refused_at_the_api(daemon):
    # The docker CLI refuses it itself; the API does too, rather than ignore the options.
    body = {"Image": "busybox", "HostConfig": {"LogConfig": {"Type": "none", "Config": {"a": "b"}}}}
    reply = daemon.request(
        "POST",
        "/v1.41/containers/create",
        {"Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
    assert reply.status == 400
    assert b"invalid logging opts for driver none" in reply.body


def test_json_file_compresses_rotated_files(daemon):
    docker(daemon, "run", "--name", "json1", "--log-opt", "max-size=1k", "--log-opt",
           "max-file=3", "--log-opt", "compress=true", "busybox", "sh", "-c", LINES)  # fmt: skip
    directory = container_dir(daemon, "json1")
    assert sorted(p.name for p in directory.glob("container.log*")) == [
        "container.log", "container.log.1.gz", "container.log.2.gz",
    ]  # fmt: skip
    lines = docker(daemon, "logs", "json1").stdout.splitlines()
    numbers = [int(line.split("-")[1]) for line in lines]
    assert numbers == list(range(numbers[0], 101)) and len(numbers) > 15  # three files' worth
    assert log_config(daemon, "json1")["Config"] == {
        "compress": "true", "max-file": "3", "max-size": "1k",
    }  # fmt: skip
    docker(daemon, "rm", "json1")


@pytest.fixture(scope="module")
def local_daemon(tmp_path_factory, archive) -> Iterator[Daemon]:
    flags = ["--log-driver", "local", "--log-opt", "max-size=2k", "--log-opt", "max-file=2"]
    daemon = serving(daemon_in(tmp_path_factory.mktemp("logs-local-daemon"), extra_args=flags))
    try:
        docker_load(daemon.host, archive)
        yield daemon
    finally:
        shut_down(daemon)


def test_the_daemons_driver_and_options_are_the_default(local_daemon):
    docker(local_daemon, "create", "--name", "d1", "busybox", "true")
    assert log_config(local_daemon, "d1") == {
        "Type": "local",
        "Config": {"max-file": "2", "max-size": "2k"},
    }
    docker(local_daemon, "create", "--name", "d2", "--log-opt", "max-size=8k", "busybox", "true")
    assert log_config(local_daemon, "d2")["Config"] == {"max-file": "2", "max-size": "8k"}
    docker(local_daemon, "create", "--name", "d3", "--log-driver", "json-file", "busybox", "true")
    assert log_config(local_daemon, "d3") == {"Type": "json-file", "Config": {}}
    info = docker(local_daemon, "info", "--format", "{{.LoggingDriver}}").stdout
    assert info == "local\n"
    assert docker(local_daemon, "start", "-a", "d1").returncode == 0
    assert (container_dir(local_daemon, "d1") / "local-logs" / "container.log").exists()
    docker(local_daemon, "rm", "d1", "d2", "d3")


def test_a_daemon_whose_default_driver_cannot_work_does_not_start(tmp_path):
    flags = ["--log-driver", "local", "--log-opt", "max-file=1"]
    daemon = daemon_in(tmp_path, extra_args=flags)
    try:
        assert daemon.process.wait(60) == 1
    finally:
        shut_down(daemon)
    output = daemon.log_path.read_text()
    assert "[daemon] log-driver 'local'" in output
    assert "compression cannot be enabled when max file count is 1" in output


def test_the_config_file_takes_log_driver_and_log_opts():
    config = parse_config(
        '[daemon]\nlog-driver = "local"\nlog-opts = { "max-size" = "5m" }\n', "c.toml"
    )
    assert (config.daemon.log_driver, config.daemon.log_opts) == ("local", {"max-size": "5m"})


def test_our_cli_takes_log_driver_and_log_opt(daemon):
    def dockyard(*args: str) -> subprocess.CompletedProcess:
        return run_dockyard(["-H", daemon.host, *args], env=plugin_env([]))

    run = dockyard("run", "--name", "own1", "--log-driver", "local", "--log-opt", "max-size=4k",
                   "busybox", "echo", "from our cli")  # fmt: skip
    assert (run.returncode, run.stdout) == (0, "from our cli\n"), run.stderr
    assert log_config(daemon, "own1") == {"Type": "local", "Config": {"max-size": "4k"}}
    assert dockyard("logs", "own1").stdout == "from our cli\n"
    refused = dockyard("create", "--log-driver", "none", "--log-opt", "a=b", "busybox")
    assert refused.returncode == 125
    assert "invalid logging opts for driver none" in refused.stderr
    docker(daemon, "rm", "own1")
