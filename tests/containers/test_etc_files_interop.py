"""A container's /etc/hosts and /etc/resolv.conf from our functions and from a real dockerd
20.10, side by side: the same host files, the same options, the same bytes.

The private dockerd runs with ``--bridge=none``, so its containers use ``--network none`` or
``host``; the bridge and user-defined cases differ only in the addresses and the embedded
server's lines, which tests/containers/test_etc_files.py covers from dockerd's rules.
"""

from __future__ import annotations

import socket
from pathlib import Path

import docker
import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.containers import etc_files
from dockyard.testing.images import busybox_rootfs, image_archive

pytestmark = pytest.mark.interop

SHOW = "cat /etc/hosts; echo ---; cat /etc/resolv.conf"


@pytest.fixture(scope="module")
def dockerd(real_dockerd, tmp_path_factory):
    archive = tmp_path_factory.mktemp("etc-files") / "busybox.tar"
    archive.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
    real_dockerd.docker("load", "-i", str(archive))
    return real_dockerd


def theirs(dockerd, *options: str) -> str:
    return dockerd.docker("run", "--rm", *options, "busybox", "sh", "-c", SHOW).stdout


def ours(hosts: str, resolv: str) -> str:
    return f"{hosts}---\n{resolv}"


HOST_RESOLV = etc_files.host_resolv_conf()


def test_network_none_as_dockerd(dockerd):
    expected = ours(etc_files.hosts_file("hh"), etc_files.resolv_conf(HOST_RESOLV))
    assert theirs(dockerd, "--network", "none", "-h", "hh") == expected


def test_network_none_with_a_domain_and_extra_hosts_as_dockerd(dockerd):
    extra = [
        etc_files.parse_extra_host(h) for h in ("db:10.1.2.3", "v6:2001:db8::1", "db:10.9.9.9")
    ]
    expected = ours(
        etc_files.hosts_file("hh", "example.com", extra_hosts=extra),
        etc_files.resolv_conf(HOST_RESOLV),
    )
    assert (
        theirs(
            dockerd,
            "--network",
            "none",
            "-h",
            "hh",
            "--domainname",
            "example.com",
            "--add-host",
            "db:10.1.2.3",
            "--add-host",
            "v6:2001:db8::1",
            "--add-host",
            "db:10.9.9.9",
        )
        == expected
    )


@pytest.mark.parametrize(
    "dns_options",
    [
        ["--dns", "9.9.9.9", "--dns", "2001:db8::53"],
        ["--dns-search", "a.example", "--dns-search", "b.example"],
        ["--dns-option", "ndots:2", "--dns-option", "timeout:1"],
        ["--dns-search", "."],
        ["--dns", "127.0.0.1", "--dns-search", "x.example", "--dns-option", "rotate"],
    ],
    ids=["dns", "search", "options", "search-dot", "all"],
)
@pytest.mark.parametrize("network", ["none", "host"])
def test_dns_options_as_dockerd(dockerd, network, dns_options):
    values: dict[str, list[str]] = {"--dns": [], "--dns-search": [], "--dns-option": []}
    for flag, value in zip(dns_options[::2], dns_options[1::2], strict=True):
        values[flag].append(value)
    resolv = etc_files.resolv_conf(
        HOST_RESOLV,
        values["--dns"],
        values["--dns-search"],
        values["--dns-option"],
        host_network=network == "host",
    )
    output = theirs(dockerd, "--network", network, "-h", "hh", *dns_options)
    assert output.split("---\n", 1)[1] == resolv


def test_host_network_copies_the_hosts_files_as_dockerd(dockerd):
    expected = ours(Path("/etc/hosts").read_text(), HOST_RESOLV)
    assert theirs(dockerd, "--network", "host") == expected


def test_host_network_with_extra_hosts_as_dockerd(dockerd):
    hosts = etc_files.hosts_file(socket.gethostname(), extra_hosts=[("db", "10.1.2.3")])
    assert theirs(dockerd, "--network", "host", "--add-host", "db:10.1.2.3") == ours(
        hosts, HOST_RESOLV
    )


def api_run(dockerd, extra_hosts: list[str]) -> str:
    """/etc/hosts of a container made through the Engine API (the CLI checks --add-host
    itself first, in the same words, so the daemon's own checks are reached this way)."""
    client = docker.APIClient(base_url=dockerd.host)
    config = client.create_host_config(extra_hosts=extra_hosts, network_mode="none")
    container = client.create_container("busybox", ["cat", "/etc/hosts"], host_config=config)
    try:
        client.start(container)
        client.wait(container)
        return client.logs(container).decode()
    finally:
        client.remove_container(container)


@pytest.mark.parametrize(
    "value", ["db:1.2", "db", ":1.2.3.4", "db:1.2.3.4/24", "db:", "db:fe80::1%eth0"]
)
def test_bad_extra_hosts_refused_in_dockerds_words(dockerd, value):
    with pytest.raises(docker.errors.APIError) as theirs_refused:
        api_run(dockerd, [value])
    assert theirs_refused.value.response.status_code == 400
    with pytest.raises(InvalidParameter) as refused:
        etc_files.parse_extra_host(value)
    assert str(refused.value) == theirs_refused.value.explanation


def test_extra_hosts_written_as_given_as_dockerd(dockerd):
    given = ["db: 1.2.3.4", "two names:10.0.0.1", "v6:::1"]
    extra = [etc_files.parse_extra_host(value) for value in given]
    assert api_run(dockerd, given) == etc_files.hosts_file("ignored", extra_hosts=extra)
