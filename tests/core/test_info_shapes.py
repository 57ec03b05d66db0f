"""/info's security options, runtimes and plugins by kind; inspect without empty fields dockerd
leaves out, StopSignal where dockerd shows it (key-by-key comparison with dockerd in
tests/images/test_tags_filters_interop.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import docker
import pytest

from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import Daemon


@pytest.fixture(scope="module")
def daemon(busybox_served) -> Daemon:
    return busybox_served.daemon


@pytest.fixture(scope="module")
def client(daemon) -> Iterator[docker.DockerClient]:
    api = docker.DockerClient(base_url=daemon.host, version="1.41")
    try:
        yield api
    finally:
        api.close()


def test_info_security_runtimes_and_plugins(daemon, client):
    info = client.info()
    assert info["SecurityOptions"] == ["name=seccomp,profile=default"]  # no userns remap here
    assert info["DefaultRuntime"] in info["Runtimes"]
    assert all(set(entry) == {"path"} for entry in info["Runtimes"].values())
    plugins = info["Plugins"]
    assert list(plugins) == ["Volume", "Network", "Authorization", "Log"]
    assert plugins["Volume"] == ["local"] and plugins["Authorization"] is None
    assert {"bridge", "host", "null"} <= set(plugins["Network"])
    assert plugins["Log"] == ["json-file", "local"]  # the log drivers that keep logs
    shown = subprocess.run(
        [docker_cli(), "info"], env=docker_env(daemon.host), capture_output=True, text=True
    )
    assert " Security Options:\n  seccomp\n   Profile: default\n" in shown.stdout
    assert " Plugins:\n  Volume: local\n" in shown.stdout


def test_inspect_leaves_out_what_dockerd_leaves_out(client):
    plain = client.containers.create("busybox", "sleep 60")
    signalled = client.containers.create("busybox", "sleep 60", stop_signal="SIGUSR1")
    try:
        config, host = plain.attrs["Config"], plain.attrs["HostConfig"]
        for absent in ("StopSignal", "Healthcheck", "ExposedPorts", "Shell", "StopTimeout"):
            assert absent not in config
        for absent in ("Mounts", "Tmpfs", "Sysctls", "StorageOpt", "Init"):
            assert absent not in host
        assert host["MemorySwappiness"] is None
        assert signalled.attrs["Config"]["StopSignal"] == "SIGUSR1"
    finally:
        plain.remove()
        signalled.remove()
    image = client.images.get("busybox").attrs
    assert "Variant" not in image
    for section in ("Config", "ContainerConfig"):
        assert list(image[section])[:6] == [
            "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
        ]  # fmt: skip
        assert image[section]["Labels"] is None and image[section]["Tty"] is False
    assert image["Config"]["Cmd"] == ["/bin/sh"]
