"""The files the daemon writes for a container's ``/etc``: ``hostname``, ``hosts``, ``resolv.conf``.

They live in the container's state directory and the runtime bind-mounts them at their
container paths (``ContainerSpec.etc_files``), as docker does, so a container's edits stay in
its own copies.

Their contents follow dockerd 20.10 (libnetwork's sandbox, ``resolvconf`` and ``etchosts``):

- ``resolv.conf`` of a container on the host's network is the host's, unless ``--dns*`` options
  are given. Otherwise, with no ``--dns*`` option, it is the host's with the local nameservers
  (``127.x``, ``::1``; unreachable from the container's namespace) and, without IPv6, the IPv6
  ones taken out, and Google's resolvers added when none remain. Any ``--dns``,
  ``--dns-search`` or ``--dns-option`` rebuilds it from the host's lines with the given ones
  replacing theirs. On a network served by the embedded DNS server it names ``127.0.0.11``
  only (plus IPv6 nameservers, which the server does not forward to) and adds ``ndots:0``
  unless an ``ndots`` option is set, so that a container's name is looked up as it is first.
- ``hosts``: the localhost and IPv6 lines, the ``--add-host`` entries, then one line per
  address of the container with its names; on the host's network without ``--add-host``, the
  host's file.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from pathlib import Path

from dockyard.core.errors import InvalidParameter

#: The embedded DNS server's address, which containers on user-defined networks use.
EMBEDDED_NAMESERVER = "127.0.0.11"
#: dockerd's fallback nameservers when the host names none a container can reach.
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
FALLBACK_NAMESERVERS_IPV6 = ("2001:4860:4860::8888", "2001:4860:4860::8844")
#: The value of ``--add-host NAME:host-gateway``, replaced by the daemon's host gateway address.
HOST_GATEWAY = "host-gateway"

HOSTS_PREAMBLE = (
    ("127.0.0.1", "localhost"),
    ("::1", "localhost ip6-localhost ip6-loopback"),
    ("fe00::0", "ip6-localnet"),
    ("ff00::0", "ip6-mcastprefix"),
    ("ff02::1", "ip6-allnodes"),
    ("ff02::2", "ip6-allrouters"),
)

# resolv.conf as dockerd reads it. Go's \s is [\t\n\f\r ], spelled out: Python's is wider.
_S = r"[\t\n\f\r ]"
_IPV4 = r"((25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)"
# A superset of IPv6 (dockerd's own choice), with an optional zone.
_IPV6 = r"([0-9A-Fa-f]{0,4}:){2,7}([0-9A-Fa-f]{0,4})(%[0-9A-Za-z_]+)?"
_LOCALHOST_NAMESERVER = re.compile(
    rf"^nameserver{_S}+((127\.([0-9]{{1,3}}\.){{2}}[0-9]{{1,3}})|(::1)$){_S}*\n*", re.M
)
_IPV6_NAMESERVER_LINE = re.compile(rf"^nameserver{_S}+{_IPV6}{_S}*\n*", re.M)
_NAMESERVER = re.compile(rf"^{_S}*nameserver{_S}*(({_IPV4})|({_IPV6})){_S}*$")
_IPV6_NAMESERVER = re.compile(rf"^{_S}*nameserver{_S}*({_IPV6}){_S}*$")
_SEARCH = re.compile(rf"^{_S}*search{_S}*((\S+{_S}*)*)$")
_OPTIONS = re.compile(rf"^{_S}*options{_S}*((\S+{_S}*)*)$")
# docker's --dns-search check (opts.ValidateDNSSearch).
_DOMAIN = re.compile(
    r"^(:?(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
    r"([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9]))$"
)


# -- resolv.conf ------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """The lines of ``text`` without their ``#`` comments (dockerd ignores ``;`` ones)."""
    return [line.partition("#")[0] for line in text.split("\n")]


def nameservers(text: str, ipv6_only: bool = False) -> list[str]:
    """The nameservers of resolv.conf ``text``, in order (all, or the IPv6 ones)."""
    pattern = _IPV6_NAMESERVER if ipv6_only else _NAMESERVER
    found = (pattern.match(line) for line in _lines(text))
    return [match.group(1) for match in found if match]


def _last_line_words(text: str, pattern: re.Pattern[str]) -> list[str]:
    found: list[str] = []
    for line in _lines(text):
        match = pattern.match(line)
        if match:
            found = match.group(1).split()
    return found


def search_domains(text: str) -> list[str]:
    """The domains of the last ``search`` line of resolv.conf ``text``."""
    return _last_line_words(text, _SEARCH)


def options(text: str) -> list[str]:
    """The options of the last ``options`` line of resolv.conf ``text``."""
    return _last_line_words(text, _OPTIONS)


def host_resolv_conf(
    etc: Path = Path("/etc/resolv.conf"),
    systemd: Path = Path("/run/systemd/resolve/resolv.conf"),
) -> str:
    """The host resolv.conf containers start from, as dockerd picks it: systemd-resolved's
    full file when ``/etc/resolv.conf`` names only its local stub ``127.0.0.53``; "" when
    there is none."""
    try:
        text = etc.read_text(errors="replace")
    except OSError:
        return ""
    if nameservers(text) == ["127.0.0.53"]:
        try:
            return systemd.read_text(errors="replace")
        except OSError:
            pass
    return text


def _filtered(host_text: str, ipv6: bool) -> str:
    """The host's file without the nameservers a container cannot reach; Google's when none
    is left (dockerd's FilterResolvDNS, byte for byte)."""
    text = _LOCALHOST_NAMESERVER.sub("", host_text)
    if not ipv6:
        text = _IPV6_NAMESERVER_LINE.sub("", text)
    if not nameservers(text):
        fallback = FALLBACK_NAMESERVERS + (FALLBACK_NAMESERVERS_IPV6 if ipv6 else ())
        text += "\n" + "\n".join(f"nameserver {address}" for address in fallback)
    return text


def _built(servers: Sequence[str], search: Sequence[str], option_list: Sequence[str]) -> str:
    lines = []
    if search and " ".join(search).strip(" ") != ".":  # --dns-search . : no search line
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {server}" for server in servers]
    if option_list and " ".join(option_list).strip(" "):
        lines.append("options " + " ".join(option_list))
    return "".join(f"{line}\n" for line in lines)


def _check_overrides(
    dns: Sequence[str], dns_search: Sequence[str], dns_options: Sequence[str]
) -> None:
    # The docker CLI's checks, in its words; the API is checked the same way because these
    # values are written into the file line by line.
    for server in dns:
        if not _is_ip(server):
            raise InvalidParameter(
                f'invalid argument "{server}" for "--dns" flag: {server} is not an ip address'
            )
    for domain in dns_search:
        value = domain.strip(" ")
        if value != "." and not (_DOMAIN.match(value) and len(value) < 255):
            raise InvalidParameter(
                f'invalid argument "{domain}" for "--dns-search" flag: '
                f"{value} is not a valid domain"
            )
    for option in dns_options:
        if not option.strip() or any(char.isspace() for char in option.strip()):
            raise InvalidParameter(
                f'invalid argument "{option}" for "--dns-option" flag: a DNS option is one word'
            )


def _user_sets_ndots(option_list: Sequence[str]) -> bool:
    """Whether the options set ``ndots`` (then dockerd adds no ``ndots:0``); dockerd's errors
    for a malformed one."""
    for option in option_list:
        if "ndots" not in option:
            continue
        parts = option.split(":")
        if len(parts) != 2:
            raise InvalidParameter(f"invalid ndots option {option}")
        try:
            number = int(parts[1])
        except ValueError:
            raise InvalidParameter(f"invalid number for ndots option: {parts[1]}") from None
        if number < 0:
            raise InvalidParameter(f"invalid number for ndots option: {number}")
        return True
    return False


def resolv_conf(
    host_text: str,
    dns: Sequence[str] = (),
    dns_search: Sequence[str] = (),
    dns_options: Sequence[str] = (),
    embedded: bool = False,
    host_network: bool = False,
    ipv6: bool = False,
) -> str:
    """A container's resolv.conf, from the host's (``host_text``, see :func:`host_resolv_conf`)
    and its ``--dns``, ``--dns-search`` and ``--dns-option`` values.

    ``embedded``: the container uses the embedded DNS server (user-defined networks);
    ``host_network``: it shares the host's network namespace; ``ipv6``: its network has IPv6,
    so IPv6 nameservers are kept. Invalid values raise InvalidParameter.
    """
    _check_overrides(dns, dns_search, dns_options)
    overridden = bool(dns or dns_search or dns_options)
    if host_network and not overridden:
        return host_text
    if overridden:
        base = _built(
            list(dns) or nameservers(host_text),
            list(dns_search) or search_domains(host_text),
            list(dns_options) or options(host_text),
        )
    else:
        base = _filtered(host_text, ipv6)
    if not embedded:
        return base
    option_list = options(base)
    if not _user_sets_ndots(option_list):
        option_list.append("ndots:0")
    return _built(
        [EMBEDDED_NAMESERVER, *nameservers(base, ipv6_only=True)],
        search_domains(base),
        option_list,
    )


def user_sets_ndots(host_text: str, dns_options: Sequence[str] = ()) -> bool:
    """Whether a container's own options set ``ndots`` (its ``--dns-option``, else the host's),
    for ``EmbeddedDNS.attach``: dockerd then answers an unknown single-label name itself,
    empty, instead of forwarding it."""
    return _user_sets_ndots(list(dns_options) or options(host_text))


# -- hosts ------------------------------------------------------------------------------------


def _is_ip(text: str) -> bool:
    """Go's net.ParseIP on trimmed text, as docker's ValidateIPAddress: no zone, no prefix."""
    value = text.strip()
    if "%" in value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def parse_extra_host(text: str, host_gateway: str | None = None) -> tuple[str, str]:
    """``NAME:IP`` of ``--add-host`` (``HostConfig.ExtraHosts``) as (name, address).

    The address may be IPv6 (only the first ``:`` splits). ``host-gateway`` is replaced by
    ``host_gateway``, the daemon's address for the host as containers see it. dockerd's
    checks and words.
    """
    name, colon, address = text.partition(":")
    if not colon or not name or any(char in text for char in "\n\r\0"):
        raise InvalidParameter(f"bad format for add-host: {_go_quote(text)}")
    if address == HOST_GATEWAY:
        if not host_gateway:
            raise InvalidParameter("unable to derive the IP value for host-gateway")
        return name, host_gateway
    if not _is_ip(address):
        raise InvalidParameter(f"invalid IP address in add-host: {_go_quote(address)}")
    return name, address


def _go_quote(text: str) -> str:
    """``text`` as Go's %q prints the plain strings we quote."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def hosts_file(
    hostname: str,
    domainname: str = "",
    addresses: Sequence[str] = (),
    extra_hosts: Sequence[tuple[str, str]] = (),
) -> str:
    """A container's /etc/hosts: the localhost and IPv6 lines, ``extra_hosts`` ((name,
    address) pairs, see :func:`parse_extra_host`), then each of the container's
    ``addresses`` with its names (the fully qualified name first, then the bare hostname).
    With no address (``--network none``) no line names the container, as with dockerd."""
    fqdn = f"{hostname}.{domainname}" if domainname else hostname
    bare = fqdn.split(".", 1)[0]
    names = f"{fqdn} {bare}" if "." in fqdn else fqdn
    records = [*HOSTS_PREAMBLE, *((address, name) for name, address in extra_hosts)]
    records += [(address, names) for address in addresses]
    return "".join(f"{address}\t{names_}\n" for address, names_ in records)


# -- writing them -----------------------------------------------------------------------------


def write_etc_files(
    directory: Path,
    hostname: str,
    network_host: bool,
    *,
    domainname: str = "",
    addresses: Sequence[str] = (),
    extra_hosts: Sequence[tuple[str, str]] = (),
    dns: Sequence[str] = (),
    dns_search: Sequence[str] = (),
    dns_options: Sequence[str] = (),
    embedded_dns: bool = False,
    host_resolv_conf_text: str | None = None,
    host_hosts: Path = Path("/etc/hosts"),
) -> tuple[tuple[str, str], ...]:
    """Write the container's ``/etc/hostname``, ``resolv.conf`` and ``hosts`` in ``directory``;
    returns (host file, container path) pairs, as ``ContainerSpec.etc_files`` holds them.

    ``host_resolv_conf_text``: the host's resolv.conf (default: :func:`host_resolv_conf`).
    Invalid DNS values raise InvalidParameter before anything is written.
    """
    if host_resolv_conf_text is None:
        host_resolv_conf_text = host_resolv_conf()
    resolv_text = resolv_conf(
        host_resolv_conf_text,
        dns,
        dns_search,
        dns_options,
        embedded=embedded_dns,
        host_network=network_host,
    )
    hosts = directory / "hosts"
    if network_host and not extra_hosts and host_hosts.is_file():
        # The host's names on the host's network, as a copy: the container's writes to its
        # /etc/hosts must not reach the host's.
        hosts.write_text(host_hosts.read_text(errors="replace"))
    else:
        hosts.write_text(hosts_file(hostname, domainname, addresses, extra_hosts))
    (directory / "hostname").write_text(f"{hostname}\n")
    resolv = directory / "resolv.conf"
    resolv.write_text(resolv_text)
    return (
        (str(directory / "hostname"), "/etc/hostname"),
        (str(resolv), "/etc/resolv.conf"),
        (str(hosts), "/etc/hosts"),
    )
