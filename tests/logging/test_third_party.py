"""A log driver from another distribution (tests/plugins/dockyard-hexlog), installed with pip:
it runs the conformance suite as its author would, and a daemon that sees it runs containers
with ``--log-driver hexlog``, its writer imported in each container's supervisor."""

from __future__ import annotations

import os
import subprocess
import textwrap

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import (
    docker_load,
    plugin_env,
    run_authors_tests,
    serving,
    shut_down,
    spawn_daemon,
)

AUTHORS_TESTS = textwrap.dedent(
    """
    import pytest

    from dockyard.testing.logging import LogDriverConformance
    from dockyard_hexlog import DRIVER


    class TestHexLog(LogDriverConformance):
        ACCEPTED_OPTIONS = ({}, {"max-bytes": "4096"})
        REFUSED_OPTIONS = ({"max-size": "1m"}, {"max-bytes": "lots"})
        ROTATING_OPTIONS = {"max-bytes": "1024"}

        @pytest.fixture
        def driver_factory(self):
            return lambda: DRIVER
    """
)


def test_the_example_driver_passes_the_suite(tmp_path, plugin_sites):
    run_authors_tests(
        tmp_path, AUTHORS_TESTS, sites=[plugin_sites["dockyard-hexlog"]], min_passed=10
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")
def test_a_daemon_runs_containers_with_the_installed_driver(tmp_path, plugin_sites):
    socket_path = str(tmp_path / "dockyard.sock")
    args = ["daemon", "--data-root", str(tmp_path / "root"), "-H", f"unix://{socket_path}"]
    daemon = serving(
        spawn_daemon(
            args, plugin_env([plugin_sites["dockyard-hexlog"]]), socket_path, tmp_path / "root",
            tmp_path / "daemon.log",
        )
    )  # fmt: skip
    try:
        archive = tmp_path / "busybox.tar"
        archive.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
        docker_load(daemon.host, archive)

        def docker(*argv: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [docker_cli(), *argv], env=docker_env(daemon.host), capture_output=True,
                text=True, timeout=60,
            )  # fmt: skip

        run = docker("run", "--name", "hex", "--log-driver", "hexlog", "busybox", "sh", "-c",
                     "echo hello; echo oops >&2")  # fmt: skip
        assert (run.returncode, run.stdout, run.stderr) == (0, "hello\n", "oops\n")
        logs = docker("logs", "hex")
        assert (logs.stdout, logs.stderr) == ("hello\n", "oops\n")
        full = docker("inspect", "-f", "{{.Id}}", "hex").stdout.strip()
        kept = (tmp_path / "root" / "containers" / full / "hexlog" / "container.log").read_text()
        assert f" {b'hello'.hex()}0a\n" in kept
        refused = docker("create", "--log-driver", "hexlog", "--log-opt", "max-size=1m", "busybox")
        assert "unknown log opt 'max-size' for log driver hexlog" in refused.stderr
    finally:
        shut_down(daemon)
