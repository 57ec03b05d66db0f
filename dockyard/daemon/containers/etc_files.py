"""The files the daemon writes for a container's ``/etc``: ``hostname``, ``hosts``, ``resolv.conf``.

They live in the container's state directory and the runtime bind-mounts them at their
container paths (``ContainerSpec.etc_files``), as docker does, so a container's edits stay in
its own copies.
"""

from __future__ import annotations

from pathlib import Path


def write_etc_files(
    directory: Path, hostname: str, network_host: bool
) -> tuple[tuple[str, str], ...]:
    """Write the container's ``/etc/hostname``, ``resolv.conf`` and ``hosts`` in ``directory``;
    returns (host file, container path) pairs, as ``ContainerSpec.etc_files`` holds them."""
    hosts = directory / "hosts"
    host_hosts = Path("/etc/hosts")
    if network_host and host_hosts.is_file():
        # The host's names on the host's network, as a copy: the container's writes to its
        # /etc/hosts must not reach the host's.
        hosts.write_text(host_hosts.read_text(errors="replace"))
    else:
        hosts.write_text(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\n"
            f"ff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
        )
    (directory / "hostname").write_text(f"{hostname}\n")
    resolv = directory / "resolv.conf"
    try:
        resolv.write_text(Path("/etc/resolv.conf").read_text())
    except OSError:
        resolv.write_text("")
    return (
        (str(directory / "hostname"), "/etc/hostname"),
        (str(resolv), "/etc/resolv.conf"),
        (str(hosts), "/etc/hosts"),
    )


def resolv_conf(
    host_text: str,
    dns: list[str] | None,
    dns_search: list[str] | None,
    dns_options: list[str] | None,
    embedded: bool,
) -> str:
    """A container's resolv.conf from the host's and the ``--dns*`` options."""
    servers, search, options = [], [], []
    for line in host_text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            servers.append(fields[1])
        elif fields and fields[0] in ("search", "domain"):
            search = fields[1:]
        elif fields and fields[0] == "options":
            options += fields[1:]
    if embedded:
        servers = ["127.0.0.11"]
    else:
        servers = dns or [s for s in servers if not s.startswith("127.") and s != "::1"]
        servers = servers or ["8.8.8.8", "8.8.4.4"]
    if dns_search:
        search = [] if dns_search == ["."] else list(dns_search)
    if dns_options:
        options = list(dns_options)
    if embedded and not any(o.startswith("ndots:") for o in options):
        options.append("ndots:0")
    lines = [f"nameserver {server}" for server in servers]
    if search:
        lines.append("search " + " ".join(search))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n"


def hosts_file(
    hostname: str, domainname: str, addresses: list[str], extra_hosts: list[tuple[str, str]]
) -> str:
    """A container's /etc/hosts: localhost, the extra hosts, then its own addresses."""
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters",
    ]
    lines += [f"{address}\t{name}" for name, address in extra_hosts]
    lines += [f"{address}\t{names}" for address in addresses or ["127.0.1.1"]]
    return "\n".join(lines) + "\n"


def parse_extra_host(text: str, host_gateway: str) -> tuple[str, str]:
    """``--add-host name:ip`` (``host-gateway``: the default bridge's gateway)."""
    import ipaddress

    from dockyard.core.errors import InvalidParameter

    name, separator, address = text.partition(":")
    if not separator or not name:
        raise InvalidParameter(f"bad format for add-host: {text!r}")
    if address == "host-gateway":
        if not host_gateway:
            raise InvalidParameter("add-host: host-gateway needs the default bridge network")
        address = host_gateway
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise InvalidParameter(f"invalid IP address in add-host: {address!r}") from None
    return name, address
