"""A container's /etc/hosts and /etc/resolv.conf by dockerd 20.10's rules (libnetwork's
sandbox, resolvconf and etchosts code), for host files the interop tests cannot set up: local
and IPv6 nameservers, systemd-resolved, the embedded server's file; and docker's refusals."""

from __future__ import annotations

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.containers import etc_files
from dockyard.daemon.containers.etc_files import (
    host_resolv_conf,
    hosts_file,
    parse_extra_host,
    resolv_conf,
    user_sets_ndots,
    write_etc_files,
)

HOST = (
    "# written by hand\n"
    "search corp.example lab.example\n"
    "nameserver 10.0.0.2\n"
    "nameserver 127.0.0.53\n"
    "nameserver 2001:db8::53\n"
    "nameserver ::1\n"
    "options edns0 trust-ad\n"
)
LOCAL_ONLY = "nameserver 127.0.0.53\noptions edns0\n"


def test_default_network_drops_local_and_ipv6_nameservers_and_keeps_the_rest_as_written():
    assert resolv_conf(HOST) == (
        "# written by hand\n"
        "search corp.example lab.example\n"
        "nameserver 10.0.0.2\n"
        "options edns0 trust-ad\n"
    )


def test_ipv6_networks_keep_ipv6_nameservers_but_not_the_local_one():
    assert resolv_conf(HOST, ipv6=True).splitlines()[2:4] == [
        "nameserver 10.0.0.2",
        "nameserver 2001:db8::53",
    ]


def test_no_reachable_nameserver_left_falls_back_to_googles_as_dockerd():
    # dockerd appends "\n" + the lines, without a final newline: byte for byte.
    assert resolv_conf(LOCAL_ONLY) == "options edns0\n\nnameserver 8.8.8.8\nnameserver 8.8.4.4"
    assert resolv_conf("") == "\nnameserver 8.8.8.8\nnameserver 8.8.4.4"
    assert resolv_conf("", ipv6=True).endswith(
        "nameserver 2001:4860:4860::8888\nnameserver 2001:4860:4860::8844"
    )


def test_dns_options_rebuild_the_file_from_the_hosts_lines_they_do_not_replace():
    # The host's nameservers, local ones included, as dockerd's Build writes them.
    assert resolv_conf(HOST, dns_search=["x.example"]) == (
        "search x.example\n"
        "nameserver 10.0.0.2\nnameserver 127.0.0.53\nnameserver 2001:db8::53\nnameserver ::1\n"
        "options edns0 trust-ad\n"
    )
    assert resolv_conf(HOST, dns=["9.9.9.9"], dns_options=["ndots:3"]) == (
        "search corp.example lab.example\nnameserver 9.9.9.9\noptions ndots:3\n"
    )


def test_dns_search_dot_writes_no_search_line():
    assert resolv_conf(HOST, dns_search=["."]).startswith("nameserver 10.0.0.2\n")
    assert resolv_conf(HOST, dns_search=[".", "a.example"]).startswith("search . a.example\n")


def test_host_network_copies_the_hosts_file_unless_dns_options_are_given():
    assert resolv_conf(HOST, host_network=True) == HOST
    assert resolv_conf(HOST, dns=["1.1.1.1"], host_network=True).splitlines() == [
        "search corp.example lab.example",
        "nameserver 1.1.1.1",
        "options edns0 trust-ad",
    ]


def test_embedded_server_file_names_it_only_and_sets_ndots_0():
    assert resolv_conf(HOST, embedded=True) == (
        "search corp.example lab.example\nnameserver 127.0.0.11\noptions edns0 trust-ad ndots:0\n"
    )
    # IPv6 nameservers stay listed: the embedded server forwards to IPv4 upstreams only.
    assert "nameserver 2001:db8::53" in resolv_conf(HOST, embedded=True, ipv6=True)
    assert resolv_conf(LOCAL_ONLY, embedded=True) == (
        "nameserver 127.0.0.11\noptions edns0 ndots:0\n"
    )


def test_embedded_server_file_keeps_a_users_ndots_and_overrides():
    assert resolv_conf(HOST, dns=["9.9.9.9"], dns_options=["ndots:2"], embedded=True) == (
        "search corp.example lab.example\nnameserver 127.0.0.11\noptions ndots:2\n"
    )
    assert resolv_conf("options ndots:1\n", embedded=True).endswith("options ndots:1\n")
    assert user_sets_ndots("options ndots:1\n")
    assert user_sets_ndots(HOST, ["ndots:0"])
    assert not user_sets_ndots(HOST)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("ndots:x", "invalid number for ndots option: x"),
        ("ndots:-1", "invalid number for ndots option: -1"),
        ("ndots:1:2", "invalid ndots option ndots:1:2"),
    ],
)
def test_bad_ndots_refused_in_dockerds_words(option, message):
    with pytest.raises(InvalidParameter, match=f"^{message}$"):
        resolv_conf(HOST, dns_options=[option], embedded=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"dns": ["dns.example"]},
            'invalid argument "dns.example" for "--dns" flag: dns.example is not an ip address',
        ),
        ({"dns": ["1.2.3.4\nnameserver 6.6.6.6"]}, "is not an ip address"),
        (
            {"dns_search": ["bad_domain"]},
            'invalid argument "bad_domain" for "--dns-search" flag: bad_domain is not a valid domain',
        ),
        ({"dns_search": ["a.example\noptions debug"]}, "is not a valid domain"),
        ({"dns_options": ["two words"]}, 'invalid argument "two words" for "--dns-option" flag'),
        ({"dns_options": [""]}, "--dns-option"),
    ],
)
def test_bad_dns_values_refused_before_reaching_the_file(kwargs, message):
    with pytest.raises(InvalidParameter) as refused:
        resolv_conf(HOST, **kwargs)
    assert message in str(refused.value)


def test_the_host_file_as_dockerd_picks_it(tmp_path):
    etc, systemd = tmp_path / "resolv.conf", tmp_path / "systemd.conf"
    assert host_resolv_conf(etc, systemd) == ""
    etc.write_text("nameserver 127.0.0.53\nsearch x\n")
    assert host_resolv_conf(etc, systemd) == etc.read_text()  # no systemd file: the stub's
    systemd.write_text("nameserver 192.0.2.1\n")
    assert host_resolv_conf(etc, systemd) == "nameserver 192.0.2.1\n"
    etc.write_text("nameserver 127.0.0.53\nnameserver 192.0.2.9\n")
    assert host_resolv_conf(etc, systemd) == etc.read_text()


def test_hosts_file_lists_the_containers_addresses_after_the_extra_hosts():
    preamble = (
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
    )
    assert hosts_file("c0ffee") == preamble
    assert hosts_file("c0ffee", addresses=["172.17.0.2"]) == preamble + "172.17.0.2\tc0ffee\n"
    assert hosts_file(
        "web", "example.com", ["10.1.0.2", "10.2.0.2"], [("db", "10.9.9.9")]
    ) == preamble + ("10.9.9.9\tdb\n10.1.0.2\tweb.example.com web\n10.2.0.2\tweb.example.com web\n")
    # A dotted hostname is a fully qualified one: its first label is the bare name.
    assert hosts_file("a.b.c", addresses=["10.0.0.2"]).endswith("10.0.0.2\ta.b.c a\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("db:10.0.0.1", ("db", "10.0.0.1")),
        ("db:2001:db8::1", ("db", "2001:db8::1")),
        ("db:::ffff:10.0.0.1", ("db", "::ffff:10.0.0.1")),
        ("gw:host-gateway", ("gw", "172.17.0.1")),
    ],
)
def test_extra_hosts_parsed_as_dockerd(value, expected):
    assert parse_extra_host(value, host_gateway="172.17.0.1") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("db", 'bad format for add-host: "db"'),
        (":1.2.3.4", 'bad format for add-host: ":1.2.3.4"'),
        ("db:1.2", 'invalid IP address in add-host: "1.2"'),
        ('db:"x"', 'invalid IP address in add-host: "\\"x\\""'),
        ("db\n6.6.6.6 evil:1.2.3.4", "bad format for add-host"),
        ("gw:host-gateway", "unable to derive the IP value for host-gateway"),
    ],
)
def test_bad_extra_hosts_refused_in_dockerds_words(value, message):
    with pytest.raises(InvalidParameter) as refused:
        parse_extra_host(value)
    assert str(refused.value).startswith(message)


def test_write_etc_files_writes_the_three_files(tmp_path):
    pairs = write_etc_files(
        tmp_path,
        "web",
        False,
        addresses=["10.1.0.2"],
        extra_hosts=[("db", "10.9.9.9")],
        embedded_dns=True,
        host_resolv_conf_text=HOST,
    )
    assert dict((dest, src) for src, dest in pairs) == {
        "/etc/hostname": str(tmp_path / "hostname"),
        "/etc/resolv.conf": str(tmp_path / "resolv.conf"),
        "/etc/hosts": str(tmp_path / "hosts"),
    }
    assert (tmp_path / "hostname").read_text() == "web\n"
    assert (tmp_path / "hosts").read_text() == hosts_file(
        "web", addresses=["10.1.0.2"], extra_hosts=[("db", "10.9.9.9")]
    )
    assert (tmp_path / "resolv.conf").read_text() == resolv_conf(HOST, embedded=True)


def test_write_etc_files_on_the_host_network_copies_the_hosts_hosts_file(tmp_path):
    hosts = tmp_path / "host-hosts"
    hosts.write_text("127.0.0.1 localhost me\n")
    (tmp_path / "c").mkdir()
    write_etc_files(tmp_path / "c", "me", True, host_resolv_conf_text=HOST, host_hosts=hosts)
    assert (tmp_path / "c" / "hosts").read_text() == hosts.read_text()
    assert (tmp_path / "c" / "resolv.conf").read_text() == HOST
    write_etc_files(
        tmp_path / "c",
        "me",
        True,
        extra_hosts=[("db", "10.9.9.9")],
        host_resolv_conf_text=HOST,
        host_hosts=hosts,
    )
    assert (tmp_path / "c" / "hosts").read_text() == hosts_file(
        "me", extra_hosts=[("db", "10.9.9.9")]
    )


def test_nothing_is_written_when_a_value_is_refused(tmp_path):
    with pytest.raises(InvalidParameter):
        write_etc_files(tmp_path, "web", False, dns=["nope"], host_resolv_conf_text=HOST)
    assert list(tmp_path.iterdir()) == []
    assert etc_files.EMBEDDED_NAMESERVER == "127.0.0.11"
