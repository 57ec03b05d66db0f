"""Network commands, under ``network``: ``create``, ``ls``, ``inspect``, ``rm``, ``prune``,
``connect``, ``disconnect``; and the networking flags of ``run``/``create``, turned into the
create body as the docker CLI fills it (bad values refused before any request)."""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from dockyard.commands.common import (
    CommandSpec,
    UsageError,
    add_command_group,
    confirm,
    for_each_name,
    make_client,
    network_path,
    parse_filters,
    parse_labels,
    table_or_json,
)
from dockyard.commands.inspection import cmd_inspect, inspect_arguments
from dockyard.commands.output import go_time_text, print_prune_report, print_rows
from dockyard.commands.ports import PortSpecError, canonical_ip, natural_sort_key, port_fields

NETWORK_HEADERS = ["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
#: Network modes that are not user-defined networks (docker's ``NetworkMode.IsUserDefined``).
BUILTIN_MODES = ("default", "bridge", "host", "none")


def is_user_defined(mode: str) -> bool:
    return mode not in BUILTIN_MODES and not mode.startswith("container:")


# --------------------------------------------------------------------------------------------
# run/create: the networking flags
# --------------------------------------------------------------------------------------------


class NetworkFlagError(ValueError):
    """A networking flag docker refuses before any request; ``str()`` is docker's message."""


def _flag_error(value: str, flag: str, reason: str) -> NetworkFlagError:
    return NetworkFlagError(f'invalid argument "{value}" for "{flag}" flag: {reason}')


def _dns_server(value: str) -> str:
    address = canonical_ip(value.strip())
    if address is None:
        reason = f"IP address is not correctly formatted: {value}"
        raise _flag_error(value, "--dns", reason)
    return address


#: Patterns as text: ``re`` compiles them on first use, not on every command's start.
_DOMAIN = (
    r"(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*"
    r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])"
)


def _dns_search(value: str) -> str:
    domain = value.strip(" ")
    if domain == ".":
        return domain
    if not re.search("[a-zA-Z]", domain) or not re.fullmatch(_DOMAIN, domain) or len(domain) >= 255:
        raise _flag_error(value, "--dns-search", f"{value} is not a valid domain")
    return domain


def extra_host(value: str) -> str:
    """``name:ip``, ``name=ip``, ``name:[v6]`` or ``name:host-gateway``, sent as ``name:ip``."""
    name, sep, address = value.partition("=")
    if not sep:
        name, sep, address = value.partition(":")
    if not sep or not name or ":" in name:
        raise _flag_error(value, "--add-host", f'bad format for add-host: "{value}"')
    if address != "host-gateway":
        if len(address) > 2 and address.startswith("[") and address.endswith("]"):
            address = address[1:-1]
        if canonical_ip(address) is None:
            reason = f'invalid IP address in add-host: "{address}"'
            raise _flag_error(value, "--add-host", reason)
    return f"{name}:{address}"


_MAC = (
    r"[0-9a-fA-F]{2}(?:([:-])[0-9a-fA-F]{2})(?:\1[0-9a-fA-F]{2}){4}"
    r"|[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}\.[0-9a-fA-F]{4}"
)


def _mac_address(value: str) -> str:
    if not re.fullmatch(_MAC, value):
        raise NetworkFlagError(f"{value} is not a valid mac address")
    return value


def endpoint_settings(
    aliases: Sequence[str] | None = None,
    ipv4: str = "",
    ipv6: str = "",
    links: Sequence[str] | None = None,
    link_local: Sequence[str] | None = None,
    driver_opts: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An ``EndpointSettings`` object (API 1.41) as the docker CLI sends it at create and
    connect: the address wishes under ``IPAMConfig`` (null when there are none)."""
    ipam: dict[str, Any] = {}
    if ipv4:
        ipam["IPv4Address"] = ipv4
    if ipv6:
        ipam["IPv6Address"] = ipv6
    if link_local:
        ipam["LinkLocalIPs"] = list(link_local)
    return {
        "IPAMConfig": ipam or None,
        "Links": list(links) if links else None,
        "Aliases": list(aliases) if aliases else None,
        "MacAddress": "",
        "DriverOpts": driver_opts or None,
    }


class Attachment(NamedTuple):
    """One ``--network`` value: a name, or docker's ``name=N,alias=A,ip=…`` form."""

    network: str
    aliases: tuple[str, ...] = ()
    ipv4: str = ""
    ipv6: str = ""
    link_local: tuple[str, ...] = ()
    driver_opts: tuple[tuple[str, str], ...] = ()


#: The fields of ``--network``'s long form that API 1.41 has room for.
_ATTACHMENT_FIELDS = {
    "name": "network",
    "alias": "aliases",
    "ip": "ipv4",
    "ip6": "ipv6",
    "link-local-ip": "link_local",
    "driver-opt": "driver_opts",
}
#: ... and those it has not: refused, not dropped.
_NEWER_FIELDS = {"mac-address": "1.44", "gw-priority": "1.48"}


def parse_attachment(value: str) -> Attachment:
    """A ``--network`` value, read as the docker CLI reads it: ``key=value`` pairs (CSV) when
    it looks like them, else a network's name."""
    if not re.search(r"\w+=\w+(,\w+=\w+)*", value):
        return Attachment(value)
    import csv

    fields: dict[str, Any] = {"aliases": (), "link_local": (), "driver_opts": ()}
    for field in next(csv.reader([value]), []):
        key, sep, text = field.partition("=")
        key, text = key.strip().lower(), text.strip()
        if not sep or not key:
            raise _flag_error(value, "--network", f"invalid field {field}")
        if key in _NEWER_FIELDS:
            raise _flag_error(
                value, "--network", f"{key} needs API {_NEWER_FIELDS[key]}; this client speaks 1.41"
            )
        name = _ATTACHMENT_FIELDS.get(key)
        if name is None:
            raise _flag_error(value, "--network", f"invalid field key {key}")
        if name == "driver_opts":
            option, sep, setting = text.partition("=")
            if not sep or not option.strip():
                reason = "invalid key value pair format in driver options"
                raise _flag_error(value, "--network", reason)
            fields[name] += ((option.strip().lower(), setting.strip()),)
        elif name in ("aliases", "link_local"):
            fields[name] += (text,)
        else:
            fields[name] = text
    if not fields.get("network"):
        raise _flag_error(value, "--network", "network name/id is not specified")
    return Attachment(**fields)


#: The flags for one endpoint: (Attachment field, flag, docker's name for the field).
_ENDPOINT_FLAGS = (
    ("aliases", "network_alias", "--network-alias", "per-network alias"),
    ("ipv4", "ip", "--ip", "per-network IPv4 address"),
    ("ipv6", "ip6", "--ip6", "per-network IPv6 address"),
    ("link_local", "link_local_ip", "--link-local-ip", "per-network link-local IP addresses"),
)


def _with_endpoint_flags(attachment: Attachment, args: argparse.Namespace) -> Attachment:
    """The first network's attachment with ``--network-alias``, ``--ip``, ``--ip6`` and
    ``--link-local-ip`` applied; each conflicts with the same field in ``--network``'s long
    form, as for docker."""
    changes: dict[str, Any] = {}
    for field, dest, flag, wording in _ENDPOINT_FLAGS:
        given = getattr(args, dest)
        if not given:
            continue
        if getattr(attachment, field):
            raise NetworkFlagError(f"conflicting options: cannot specify both {flag} and {wording}")
        changes[field] = tuple(given) if isinstance(given, list) else given
    return attachment._replace(**changes)


def _endpoints(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """``NetworkMode`` and ``EndpointsConfig`` from ``--network`` and the flags for one
    endpoint, which go to the first network, as the docker CLI puts them."""
    attachments = [parse_attachment(value) for value in args.network or ()]
    lone = len(attachments) == 1
    endpoints: dict[str, Any] = {}
    kinds = set()
    for index, attachment in enumerate(attachments or [Attachment("default")]):
        kinds.add(is_user_defined(attachment.network))
        if index == 0:
            attachment = _with_endpoint_flags(attachment, args)
        if attachment.aliases and not is_user_defined(attachment.network):
            raise NetworkFlagError(
                "network-scoped aliases are only supported for user-defined networks"
            )
        if attachment.network in endpoints:
            raise NetworkFlagError(f'network "{attachment.network}" is specified multiple times')
        settings = endpoint_settings(
            attachment.aliases,
            attachment.ipv4,
            attachment.ipv6,
            link_local=attachment.link_local,
            driver_opts=dict(attachment.driver_opts),
        )
        if not (lone and settings == endpoint_settings()):
            endpoints[attachment.network] = settings
        # else a lone network without settings: the daemon makes its endpoint
    if len(kinds) > 1:
        raise NetworkFlagError(
            "conflicting options: cannot attach both user-defined and non-user-defined "
            "network-modes"
        )
    return (attachments[0].network if attachments else "default"), endpoints


def container_network_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The create body's networking parts from ``run``/``create`` flags, as the docker CLI
    sends them: ``Config`` fields, ``HostConfig`` fields under ``"HostConfig"``, and the
    ``NetworkingConfig``. Raises :class:`NetworkFlagError` or :class:`PortSpecError`."""
    exposed, bindings = port_fields(args.publish, args.expose)
    mode, endpoints = _endpoints(args)
    host_config = {
        "NetworkMode": mode,
        "PortBindings": bindings,
        "PublishAllPorts": args.publish_all,
        "Dns": [_dns_server(v) for v in args.dns or ()],
        "DnsOptions": list(args.dns_option or ()),
        "DnsSearch": [_dns_search(v) for v in args.dns_search or ()],
        "ExtraHosts": [extra_host(v) for v in args.add_host or ()] or None,
    }
    return {
        "Hostname": args.hostname or "",
        "Domainname": args.domainname or "",
        # API 1.41 has one MAC address per container, in Config (1.44 moved it per endpoint).
        "MacAddress": _mac_address(args.mac_address) if args.mac_address else "",
        "ExposedPorts": exposed or None,
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": endpoints},
    }


def container_network_arguments(parser: argparse.ArgumentParser) -> None:
    """``run``/``create``'s networking flags (``-h/--hostname`` included)."""
    parser.add_argument(
        "-p",
        "--publish",
        action="append",
        help="publish a port: [ip:][hostPort:]containerPort[/proto], ranges as 8000-8001:80-81",
    )
    parser.add_argument(
        "-P", "--publish-all", action="store_true", help="publish every exposed port"
    )
    parser.add_argument("--expose", action="append", help="expose a port or a range (7000-7010)")
    parser.add_argument(
        "--network",
        "--net",
        action="append",
        help="a network to connect to (repeatable): a name, bridge, host, none, "
        "container:NAME, or name=N,alias=A,ip=IP,ip6=IP,link-local-ip=IP,driver-opt=K=V",
    )
    parser.add_argument("--network-alias", action="append", help="a name on the network")
    parser.add_argument("--ip", help="IPv4 address on the network (10.1.2.3)")
    parser.add_argument("--ip6", help="IPv6 address on the network")
    parser.add_argument("--link-local-ip", action="append", help="a link-local address")
    parser.add_argument("--mac-address", help="the container's MAC address")
    parser.add_argument("--dns", action="append", help="a DNS server")
    parser.add_argument("--dns-search", action="append", help="a DNS search domain")
    parser.add_argument("--dns-option", action="append", help="a resolv.conf option")
    parser.add_argument("--add-host", action="append", help="a host-to-IP mapping (host:ip)")
    parser.add_argument("-h", "--hostname", help="the container's host name")
    parser.add_argument("--domainname", help="the container's NIS domain name")


# --------------------------------------------------------------------------------------------
# The network group
# --------------------------------------------------------------------------------------------


def _contains(network: str, address: str) -> bool:
    """Whether ``address`` (an address or a CIDR) falls in the ``network`` subnet; an
    address that is not one falls in none, as for docker."""
    import ipaddress

    try:
        subnet = ipaddress.ip_network(network, strict=False)
    except ValueError:
        raise UsageError(f"invalid subnet: invalid CIDR address: {network}") from None
    try:
        ip = ipaddress.ip_interface(address).ip if "/" in address else ipaddress.ip_address(address)
    except ValueError:
        if "/" in address:
            raise UsageError(f"invalid CIDR address: {address}") from None
        return False
    return ip.version == subnet.version and ip in subnet


def ipam_config(
    subnets: Sequence[str],
    ip_ranges: Sequence[str],
    gateways: Sequence[str],
    aux_addresses: Sequence[str],
) -> list[dict[str, Any]]:
    """``IPAM.Config`` from ``--subnet``/``--ip-range``/``--gateway``/``--aux-address``: each
    range, gateway and auxiliary address goes to the subnet holding it, as docker pairs them."""
    if len(subnets) < len(ip_ranges) or len(subnets) < len(gateways):
        raise UsageError("every ip-range or gateway must have a corresponding subnet")
    pools: dict[str, dict[str, Any]] = {}
    for subnet in subnets:
        if len(subnets) > 1 and any(
            _contains(subnet, other) or _contains(other, subnet) for other in pools
        ):
            raise UsageError("multiple overlapping subnet configuration is not supported")
        pools[subnet] = {"Subnet": subnet}
    for key, label, values in (
        ("IPRange", "range", ip_ranges),
        ("Gateway", "gateway", gateways),
    ):
        for value in values:
            matched = False
            for subnet in subnets:
                if not _contains(subnet, value):
                    continue
                if key in pools[subnet]:
                    wording = "ranges" if key == "IPRange" else "gateways"
                    where = "on" if key == "IPRange" else "for"
                    raise UsageError(
                        f"cannot configure multiple {wording} ({value}, {pools[subnet][key]}) "
                        f"{where} the same subnet ({subnet})"
                    )
                pools[subnet][key] = value
                matched = True
            if not matched:
                raise UsageError(f"no matching subnet for {label} {value}")
    for pair in aux_addresses:
        name, _, address = pair.partition("=")
        holders = [s for s in subnets if _contains(s, address)]
        if not holders:
            raise UsageError(f"no matching subnet for aux-address {address}")
        for subnet in holders:
            pools[subnet].setdefault("AuxiliaryAddresses", {})[name] = address
    return list(pools.values())


def _key_values(values: Sequence[str] | None) -> dict[str, str]:
    return dict(value.partition("=")[::2] for value in values or ())


def network_create_body(args: argparse.Namespace) -> dict[str, Any]:
    """``POST /networks/create``'s body from ``network create``'s flags, as docker sends it."""
    body: dict[str, Any] = {"Name": args.name, "CheckDuplicate": True, "Driver": args.driver}
    body["Scope"] = ""
    if args.ipv6 is not None:
        body["EnableIPv6"] = args.ipv6
    body["IPAM"] = {
        "Driver": args.ipam_driver,
        "Options": _key_values(args.ipam_opt),
        "Config": ipam_config(
            args.subnet or (), args.ip_range or (), args.gateway or (), args.aux_address or ()
        ),
    }
    body.update(
        {
            "Internal": args.internal,
            "Attachable": args.attachable,
            "Ingress": False,
            "ConfigOnly": False,
            "ConfigFrom": None,
            "Options": _key_values(args.opt),
            "Labels": parse_labels(args.label),
        }
    )
    return body


def cmd_network_create(args: argparse.Namespace) -> int:
    created = make_client(args).call_json(
        "POST", "/networks/create", body=network_create_body(args)
    )
    if created.get("Warning"):
        print(f"WARNING: {created['Warning']}")
    print(created.get("Id", ""))
    return 0


def _network_row(network: dict[str, Any], truncate: bool) -> dict[str, str]:
    """One ``network ls`` row, keyed like docker's network formatter (``--format json``)."""
    network_id = network.get("Id", "")
    labels = network.get("Labels") or {}
    created = network.get("Created", "")
    return {
        "CreatedAt": go_time_text(created) if created else "",
        "Driver": network.get("Driver", ""),
        "ID": network_id[:12] if truncate else network_id,
        "IPv4": "true" if network.get("EnableIPv4") else "false",  # docker 28 shows 1.47's field
        "IPv6": "true" if network.get("EnableIPv6") else "false",
        "Internal": "true" if network.get("Internal") else "false",
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "Name": network.get("Name", ""),
        "Scope": network.get("Scope", ""),
    }


def cmd_network_ls(args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter)
    query = {"filters": json.dumps(filters) if filters else None}
    networks = make_client(args).get_json("/networks", query) or []
    networks.sort(key=lambda network: natural_sort_key(network.get("Name", "")))
    rows = [_network_row(network, not args.no_trunc) for network in networks]
    print_rows(rows, args.quiet, args.format, NETWORK_HEADERS, ["ID", "Name", "Driver", "Scope"])
    return 0


def cmd_network_inspect(args: argparse.Namespace) -> int:
    args.type = "network"
    return cmd_inspect(args)


def cmd_network_rm(args: argparse.Namespace) -> int:
    client = make_client(args)
    return for_each_name(args.names, lambda name: client.call_json("DELETE", network_path(name)))


def cmd_network_prune(args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter)
    warning = "WARNING! This will remove all custom networks not used by at least one container."
    if not args.force and not confirm(warning):
        return 0
    report = make_client(args).call_json(
        "POST", "/networks/prune", {"filters": json.dumps(filters) if filters else None}
    )
    print_prune_report("Deleted Networks:", report.get("NetworksDeleted") or [], None)
    return 0


def cmd_network_connect(args: argparse.Namespace) -> int:
    settings = endpoint_settings(
        args.alias, args.ip or "", args.ip6 or "", args.link, args.link_local_ip
    )
    # docker sends these empty rather than null here (not at create)
    settings["IPAMConfig"] = settings["IPAMConfig"] or {}
    settings["DriverOpts"] = _key_values(args.driver_opt)
    settings["Aliases"] = settings["Aliases"] or []
    body = {"Container": args.container, "EndpointConfig": settings}
    make_client(args).call_json("POST", network_path(args.network, "/connect"), body=body)
    return 0


def cmd_network_disconnect(args: argparse.Namespace) -> int:
    body = {"Container": args.container, "Force": args.force}
    make_client(args).call_json("POST", network_path(args.network, "/disconnect"), body=body)
    return 0


def _create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-d", "--driver", default="bridge", help="network driver (bridge)")
    parser.add_argument("--subnet", action="append", help="a subnet in CIDR form")
    parser.add_argument("--gateway", action="append", help="a subnet's gateway")
    parser.add_argument("--ip-range", action="append", help="addresses to allocate from (CIDR)")
    parser.add_argument("--aux-address", action="append", help="NAME=IP reserved in a subnet")
    parser.add_argument("--ipam-driver", default="default", help="IP address manager (default)")
    parser.add_argument("--ipam-opt", action="append", help="IPAM driver option KEY=VALUE")
    parser.add_argument("--internal", action="store_true", help="no traffic outside the network")
    parser.add_argument("--attachable", action="store_true", help="containers may connect")
    parser.add_argument(
        "--ipv6", action=argparse.BooleanOptionalAction, help="enable IPv6 on the network"
    )
    parser.add_argument("-o", "--opt", action="append", help="driver option KEY=VALUE")
    parser.add_argument("--label", action="append", help="KEY=VALUE metadata")
    parser.add_argument("name", metavar="NETWORK")


def _ls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    parser.add_argument("-f", "--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("--format", type=table_or_json, help="'table' (default) or 'json'")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate IDs")


def _rm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="NETWORK")


def _prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--filter", action="append", help="KEY=VALUE (until=24h, label=…)")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")


def _connect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alias", action="append", help="a name on the network")
    parser.add_argument("--ip", help="IPv4 address")
    parser.add_argument("--ip6", help="IPv6 address")
    parser.add_argument("--link", action="append", help="CONTAINER:ALIAS")
    parser.add_argument("--link-local-ip", action="append", help="a link-local address")
    parser.add_argument("--driver-opt", action="append", help="driver option KEY=VALUE")
    parser.add_argument("network", metavar="NETWORK")
    parser.add_argument("container", metavar="CONTAINER")


def _disconnect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="even if it is not running")
    parser.add_argument("network", metavar="NETWORK")
    parser.add_argument("container", metavar="CONTAINER")


NETWORK_COMMANDS: list[CommandSpec] = [
    (None, ("create",), "create a network", _create_arguments, cmd_network_create),
    (None, ("ls", "list"), "list networks", _ls_arguments, cmd_network_ls),
    (
        None,
        ("inspect",),
        "show networks' details as JSON",
        lambda parser: inspect_arguments(parser, "network"),
        cmd_network_inspect,
    ),
    (None, ("rm", "remove"), "remove networks", _rm_arguments, cmd_network_rm),
    (None, ("prune",), "remove unused networks", _prune_arguments, cmd_network_prune),
    (None, ("connect",), "connect a container", _connect_arguments, cmd_network_connect),
    (
        None,
        ("disconnect",),
        "disconnect a container",
        _disconnect_arguments,
        cmd_network_disconnect,
    ),
]


def add_parsers(commands: Any, only: str | None = None) -> None:
    add_command_group(commands, "network", "manage networks", NETWORK_COMMANDS, only=only)


__all__ = ["NetworkFlagError", "PortSpecError", "container_network_fields"]
