"""Bind mounts side by side: the docker CLI (and raw HTTP) against our daemon and a real
dockerd 20.10. Propagation as the container and the host see it, non-recursive binds,
inspect's Mounts, what both refuse and with which words, empty masked and read-only path
lists, and a tmpfs over an image's anonymous volume. Our daemon runs the namespaces runtime;
tests/containers/test_binds.py runs both runtimes against the answers checked here."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from dockyard.testing.peers import RealDockerd
from tests.conftest import Daemon, busybox_archive, docker_load, http_request
from tests.containers.conftest import runtime_daemon
from tests.containers.engine_api import Api
from tests.containers.test_binds import (
    IMAGE,
    PROPAGATION_AS_DOCKERD,
    REFUSED_AT_CREATE,
    docker,
    mounts_shown,
    propagation_seen,
    refusal,
    restricted_counts,
    shared_tree,
)
from tests.containers.test_mounts import FILLED, import_filled

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp("binds-ours")
    with runtime_daemon(base, "namespaces", "binds") as (daemon, _parent):
        docker_load(daemon.host, busybox_archive(base))
        import_filled(daemon.host, base)
        yield daemon


@pytest.fixture(scope="module")
def dockerd(real_dockerd, tmp_path_factory) -> RealDockerd:
    base = tmp_path_factory.mktemp("binds-dockerd")
    docker_load(real_dockerd.host, busybox_archive(base))
    import_filled(real_dockerd.host, base)
    return real_dockerd


@pytest.fixture(scope="module")
def hosts(ours, dockerd) -> tuple[str, str]:
    return ours.host, dockerd.host


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Iterator[Path]:
    with shared_tree(tmp_path_factory.mktemp("binds-interop-tree")) as root:
        yield root


def test_propagation_is_dockerds(hosts, tree):
    ours, theirs = (propagation_seen(host, tree) for host in hosts)
    assert ours == theirs == PROPAGATION_AS_DOCKERD


def test_inspect_mounts_are_dockerds(hosts, tree):
    ours, theirs = (mounts_shown(host, tree) for host in hosts)
    assert ours == theirs


def test_refusals_are_dockerds(hosts, tree, tmp_path):
    refused = [*(flags for flags, _message in REFUSED_AT_CREATE),
               # at start: the source's mount propagates nothing (the host's / is private)
               ["-v", f"{tmp_path}:/x:rshared"], ["-v", f"{tmp_path}:/x:slave"],
               ["-v", "/:/x:rslave"]]  # fmt: skip
    for flags in refused:
        ours, theirs = (refusal(host, tree, flags) for host in hosts)
        if flags[0] == "--volumes-from":
            ours = ours.replace("HostConfig.VolumesFrom: ", "")  # ours names the field
        assert ours == theirs, flags


def test_binds_of_the_data_root_and_above_run_as_under_dockerd(hosts):
    for host in hosts:
        root = docker(host, "info", "-f", "{{.DockerRootDir}}").stdout.decode().strip()
        for flags in (["-v", f"{root}:/r"], ["-v", "/:/r"], ["-v", f"{root}:/r:rshared"]):
            ran = docker(host, "run", "--rm", *flags, IMAGE, "true")
            assert ran.returncode == 0, (host, flags, ran.stderr)


def test_empty_masked_and_read_only_lists_are_dockerds(ours, dockerd):
    # Api needs only a request method: dockerd's socket's.
    socket_path = dockerd.host.removeprefix("unix://")
    theirs = Api(SimpleNamespace(request=functools.partial(http_request, socket_path)))
    assert restricted_counts(Api(ours)) == restricted_counts(theirs)


def test_a_tmpfs_over_the_images_volume_replaces_it_as_under_dockerd(hosts):
    shown = []
    for host in hosts:
        created = docker(host, "create", "--tmpfs", "/d", FILLED, "sh", "-c",
                         "grep -c ' /d ' /proc/self/mountinfo; ls -A /d")  # fmt: skip
        container = created.stdout.decode().strip()
        try:
            mounts = json.loads(docker(host, "inspect", "-f", "{{json .Mounts}}", container).stdout)
            ran = docker(host, "start", "-a", container)
            shown.append((mounts, ran.returncode, ran.stdout))
        finally:
            docker(host, "rm", "-v", container)
    assert shown[0] == shown[1] == ([], 0, b"1\n")
