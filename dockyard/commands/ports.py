"""Ports as the docker CLI reads and writes them: ``-p``/``--expose`` turned into the create
body's ``ExposedPorts`` and ``PortBindings`` (refused before any request when malformed), the
``PORTS`` column of ``ps``, and the ``port`` command."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from typing import Any

from dockyard.commands.common import container_path, make_client

#: What a published port's protocol may be (docker's list).
PROTOCOLS = ("tcp", "udp", "sctp")
MAX_PORT = 65535


class PortSpecError(ValueError):
    """A ``-p``/``--expose`` value docker would refuse; ``str()`` is docker's message."""


def _port_number(text: str) -> int:
    """A port as Go's ``strconv.ParseUint(text, 10, 16)`` takes it: digits only, 0-65535."""
    if not text.isascii() or not text.isdigit():
        raise PortSpecError(f'strconv.ParseUint: parsing "{text}": invalid syntax')
    value = int(text)
    if value > MAX_PORT:
        raise PortSpecError(f'strconv.ParseUint: parsing "{text}": value out of range')
    return value


def parse_port_range(text: str) -> tuple[int, int]:
    """``80`` or ``8000-8010``: first and last port (go-connections' ``ParsePortRange``)."""
    if not text:
        raise PortSpecError("empty string specified for ports")
    if "-" not in text:
        port = _port_number(text)
        return port, port
    first_text, last_text = text.split("-")[:2]
    first, last = _port_number(first_text), _port_number(last_text)
    if last < first:
        raise PortSpecError(f"invalid range specified for port: {text}")
    return first, last


def split_proto_port(text: str) -> tuple[str, str]:
    """``80/udp`` -> ``("udp", "80")``; no protocol is tcp; nothing before the ``/`` is nothing."""
    parts = text.split("/")
    if not text or not parts[0]:
        return "", ""
    if len(parts) == 1 or not parts[1]:
        return "tcp", parts[0]
    return parts[1], parts[0]


def _split_publish(spec: str) -> tuple[str, str, str]:
    """``[ip:][hostPort:]containerPort``: the address may hold colons itself (IPv6)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def canonical_ip(text: str) -> str | None:
    """``text`` as an IP address in its canonical form, or None if it is not one."""
    import ipaddress  # ~2 ms: only for the commands that check addresses

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _host_ip(text: str) -> str:
    if text.startswith("["):  # [::1] or [127.0.0.1]: the brackets go
        inner, closed, rest = text[1:].partition("]")
        if not closed or rest:
            raise PortSpecError(f"invalid IP address {text}: address {text}: missing port")
        text = inner
    if text and canonical_ip(text) is None:
        raise PortSpecError(f"invalid IP address: {text}")
    return text


def _long_syntax(spec: str) -> str:
    """``target=80,published=8080,protocol=udp`` as ``8080:80/udp``, as the docker CLI reads it."""
    fields = {"protocol": "tcp"}
    for field in spec.split(","):
        key, sep, value = field.partition("=")
        if not sep:
            raise PortSpecError(
                f"invalid publish opts format (should be name=value but got '{field}')"
            )
        fields[key] = value.split("=")[0]
    return f"{fields.get('published', '')}:{fields.get('target', '')}/{fields['protocol']}"


def parse_publish(spec: str) -> list[tuple[str, dict[str, str]]]:
    """One ``-p`` value as (``"80/tcp"``, ``{"HostIp", "HostPort"}``) pairs, one per container
    port: ``8000-8001:80-81`` is two; ``8000-8010:80`` is one whose host port is the range to
    pick from."""
    if "=" in spec:
        spec = _long_syntax(spec)
    host_ip, host_port, container_port = _split_publish(spec)
    proto, container_port = split_proto_port(container_port)
    host_ip = _host_ip(host_ip)
    if not container_port:
        raise PortSpecError(f"no port specified: {spec}<empty>")
    try:
        first, last = parse_port_range(container_port)
    except PortSpecError:
        raise PortSpecError(f"invalid containerPort: {container_port}") from None
    host_first = host_last = 0
    if host_port:
        try:
            host_first, host_last = parse_port_range(host_port)
        except PortSpecError:
            raise PortSpecError(f"invalid hostPort: {host_port}") from None
        if last - first != host_last - host_first and last != first:
            raise PortSpecError(
                "invalid ranges specified for container and host Ports: "
                f"{container_port} and {host_port}"
            )
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise PortSpecError(f"invalid proto: {proto}")
    mappings = []
    for offset in range(last - first + 1):
        published = str(host_first + offset) if host_port else ""
        if first == last and host_first != host_last:
            published = f"{host_first}-{host_last}"  # a range to allocate one port from
        mappings.append((f"{first + offset}/{proto}", {"HostIp": host_ip, "HostPort": published}))
    return mappings


def parse_expose(spec: str) -> list[str]:
    """One ``--expose`` value (``80``, ``7000-7010/udp``) as ``ExposedPorts`` keys."""
    if ":" in spec:
        raise PortSpecError(f"invalid port format for --expose: {spec}")
    proto, port = split_proto_port(spec)
    try:
        first, last = parse_port_range(port)
    except PortSpecError as exc:
        raise PortSpecError(f"invalid range format for --expose: {spec}, error: {exc}") from None
    return [f"{number}/{proto}" for number in range(first, last + 1)]


def port_fields(
    publish: Sequence[str] | None, expose: Sequence[str] | None
) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, str]]]]:
    """``ExposedPorts`` and ``PortBindings`` from ``-p`` and ``--expose``, as the docker CLI
    builds them (every published port is exposed too)."""
    exposed: dict[str, dict[str, Any]] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in publish or ():
        for port, binding in parse_publish(spec):
            exposed[port] = {}
            bindings.setdefault(port, []).append(binding)
    for spec in expose or ():
        for port in parse_expose(spec):
            exposed.setdefault(port, {})
    return exposed, bindings


def natural_less(left: str, right: str) -> bool:
    """Whether ``left`` sorts before ``right`` in the docker CLI's natural order: runs of
    digits compare as numbers (``net9`` before ``net10``), digits before other characters."""
    i = j = 0
    while i < len(left) and j < len(right):
        a, b = left[i], right[j]
        if a.isdigit() != b.isdigit():
            return a.isdigit()
        if not a.isdigit():
            if a != b:
                return a < b
            i, j = i + 1, j + 1
            continue
        while i < len(left) and left[i] == "0":
            i += 1
        while j < len(right) and right[j] == "0":
            j += 1
        start_i, start_j = i, j
        while i < len(left) and left[i].isdigit():
            i += 1
        while j < len(right) and right[j].isdigit():
            j += 1
        number_a, number_b = left[start_i:i], right[start_j:j]
        if len(number_a) != len(number_b):
            return len(number_a) < len(number_b)
        if number_a != number_b:
            return number_a < number_b
        if start_i != start_j:  # the same number: fewer leading zeros first
            return start_i < start_j
    return len(left) < len(right)


def _natural_compare(left: str, right: str) -> int:
    return -1 if natural_less(left, right) else int(left != right)


#: A ``sorted`` key for the docker CLI's natural order.
natural_sort_key = functools.cmp_to_key(_natural_compare)


def join_host_port(host: str, port: str | int) -> str:
    """Go's ``net.JoinHostPort``: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def displayable_ports(ports: Sequence[dict[str, Any]]) -> str:
    """The ``PORTS`` column from ``/containers/json``'s ``Ports``, as the docker CLI writes it:
    consecutive unpublished ports (and ports published as themselves) collapsed into ranges,
    grouped by address and protocol, then every other published port as ``ip:host->ctr/proto``.
    """

    def order(port: dict[str, Any]) -> tuple[int, str, int, str]:
        ip = port.get("IP") or ""
        return (port.get("PrivatePort", 0), ip, port.get("PublicPort", 0), port.get("Type", ""))

    groups: dict[str, list[int]] = {}  # key -> [first, last], in the order keys appear
    shown: list[str] = []
    published: list[str] = []
    for port in sorted(ports, key=order):
        private, kind, ip = port.get("PrivatePort", 0), port.get("Type", ""), port.get("IP") or ""
        key = kind
        if ip:
            public = port.get("PublicPort", 0)
            if public != private:
                published.append(f"{join_host_port(ip, public)}->{private}/{kind}")
                continue
            key = f"{ip}/{kind}"
        group = groups.get(key)
        if group is None:
            groups[key] = [private, private]
        elif private == group[1] + 1:
            group[1] = private
        else:
            shown.append(_port_group(key, *group))
            groups[key] = [private, private]
    shown.extend(_port_group(key, *group) for key, group in groups.items())
    return ", ".join(shown + published)


def _port_group(key: str, first: int, last: int) -> str:
    # The key is "proto" or "ip/proto"; an IPv6 address is cut at its first "/" as docker's is
    # not (no address here has one), so splitting on the last "/" is the same.
    ip, _, kind = key.rpartition("/")
    numbers = str(first) if first == last else f"{first}-{last}"
    if ip:
        numbers = f"{ip}:{numbers}->{numbers}"
    return f"{numbers}/{kind}"


def port_lines(container: dict[str, Any], wanted: str | None, name: str) -> list[str]:
    """What ``port CONTAINER [PRIVATE_PORT[/PROTO]]`` prints, from the container's inspect
    document, in natural order; a :class:`PortSpecError` with docker's words for a port that
    is not a number or not published."""
    published = (container.get("NetworkSettings") or {}).get("Ports") or {}
    if wanted is None:
        lines = [
            f"{port} -> {join_host_port(b.get('HostIp', ''), b.get('HostPort', ''))}"
            for port, bindings in published.items()
            for b in bindings or ()
        ]
    else:
        number, _, proto = wanted.partition("/")
        try:
            _port_number(number)
        except PortSpecError as exc:
            raise PortSpecError(f"Error: invalid port ({number}): {exc}") from None
        bindings = published.get(f"{number}/{proto or 'tcp'}") or []
        if not bindings:
            raise PortSpecError(f"Error: No public port '{wanted}' published for {name}")
        lines = [join_host_port(b.get("HostIp", ""), b.get("HostPort", "")) for b in bindings]
    return sorted(lines, key=natural_sort_key)


def cmd_port(args: argparse.Namespace) -> int:
    container = make_client(args).get_json(container_path(args.container, "/json"))
    try:
        lines = port_lines(container, args.private_port, args.container)
    except PortSpecError as exc:
        print(exc, file=sys.stderr)  # docker's message already starts with "Error:"
        return 1
    for line in lines:
        print(line)
    return 0


def port_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
