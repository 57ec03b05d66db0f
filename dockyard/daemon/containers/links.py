"""Legacy links (``--link NAME:ALIAS``) on the default bridge, as dockerd 20.10 makes them.

A link is the linking container's (the parent's): the child it names, by id, and the alias.
Its name is ``/PARENT/ALIAS``, made from the parent's *current* name and the child's current
name each time it is shown, so links survive a rename of either side (dockerd keeps them in
its name index; here they are records on the parent, which is the same thing seen from one
side). When the parent starts on the default bridge, each child must be running there; the
parent then gets the child's variables (``ALIAS_PORT_80_TCP_ADDR``..., ``ALIAS_NAME``,
``ALIAS_ENV_X``) and ``/etc/hosts`` lines naming the child's address by alias, hostname and
name. On ``none`` links are kept and do nothing (as dockerd); on a user-defined network they
are the endpoint's (see :mod:`~dockyard.daemon.containers.networking`). Pure functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from dockyard.core.errors import InvalidParameter, NotFound
from dockyard.daemon.networks.records import parse_link

HOST_MODE_REFUSED = (
    "conflicting options: host type networking can't be used with links. "
    "This would result in undefined behavior"
)
CONTAINER_MODE_REFUSED = (
    "conflicting options: container type network can't be used with links. "
    "This would result in undefined behavior"
)
#: Variables of the child that its parents do not get (dockerd's rule: set by every image).
_NOT_PASSED = ("HOME", "PATH")


@attrs.define
class LegacyLink:
    child_id: str
    alias: str
    #: The child's name when last seen: shown once the child is gone, as dockerd shows it.
    child_name: str = ""


def links_from_json(raw: Sequence[Any]) -> list[LegacyLink]:
    return [entry if isinstance(entry, LegacyLink) else LegacyLink(**entry) for entry in raw]


@attrs.frozen
class Child:
    """What a link needs to know of the container it names."""

    id: str
    name: str
    network_mode: str


def plan(given: Sequence[str] | None, find: Callable[[str], Child]) -> list[LegacyLink]:
    """``HostConfig.Links`` of a container on a predefined network, checked as dockerd checks
    them at create: each child must exist and not use the host's network."""
    links: list[LegacyLink] = []
    for entry in given or ():
        if not entry:
            continue
        name, alias = parse_link(entry)
        try:
            child = find(name)
        except NotFound as exc:
            # A 404 would make the docker CLI pull the image and try again.
            raise InvalidParameter(f"could not get container for {name}: {exc.message}") from None
        if child.network_mode == "host":
            raise InvalidParameter(HOST_MODE_REFUSED)
        if any(link.alias == alias for link in links):
            # dockerd keeps the first and drops the others without a word.
            raise InvalidParameter(f"HostConfig.Links: the alias {alias} is given twice")
        links.append(LegacyLink(child.id, alias, child.name))
    return links


def link_name(parent_name: str, alias: str) -> str:
    return f"/{parent_name}/{alias}"


def shown(parent_name: str, links: Sequence[LegacyLink], names: Mapping[str, str]) -> list[str]:
    """``HostConfig.Links`` as dockerd's inspect shows them: ``/CHILD:/PARENT/ALIAS``, with
    the names of now (``names``: container name by id)."""
    return [
        f"/{names.get(link.child_id, link.child_name)}:{link_name(parent_name, link.alias)}"
        for link in links
    ]


def _ports(exposed: Mapping[str, Any] | None) -> list[tuple[int, str]]:
    """``Config.ExposedPorts`` keys as (number, protocol), in dockerd's order: by number,
    TCP first."""
    found = []
    for key in exposed or {}:
        number, _, protocol = key.partition("/")
        low, _, high = number.partition("-")
        for port in range(int(low), int(high or low) + 1):
            found.append((port, (protocol or "tcp").lower()))
    return sorted(set(found), key=lambda p: (p[0], p[1] != "tcp"))


def _range_end(ports: Sequence[tuple[int, str]], index: int) -> int:
    """The index of the last port of the run that starts at ``index``: each next port at
    most one above the count so far (dockerd's rule, which counts a second protocol of one
    port as a step)."""
    value = ports[index][0]
    for later in range(index + 1, len(ports)):
        if ports[later][0] > value + 1:
            return later - 1
        value += 1
    return len(ports) - 1


def environment(
    name: str, child_ip: str, exposed: Mapping[str, Any] | None, child_env: Sequence[str] | None
) -> list[str]:
    """The variables a link gives its parent, named after the alias (upper case, ``-`` as
    ``_``): the first port, runs of three ports or more, each port, the link's name and the
    child's own variables."""
    prefix = name.rpartition("/")[2].upper().replace("-", "_")
    ports = _ports(exposed)
    env = []
    if ports:
        env.append(f"{prefix}_PORT={ports[0][1]}://{child_ip}:{ports[0][0]}")
    index = 0
    while index < len(ports):
        end = _range_end(ports, index)
        if end <= index + 1:
            index += 1
            continue
        (first, protocol), (last, last_protocol) = ports[index], ports[end]
        start = f"{prefix}_PORT_{first}_{protocol.upper()}"
        env += [
            f"{start}_START={protocol}://{child_ip}:{first}",
            f"{start}_ADDR={child_ip}",
            f"{start}_PROTO={protocol}",
            f"{start}_PORT_START={first}",
        ]
        end_key = f"{prefix}_PORT_{first}_{last_protocol.upper()}"
        env += [f"{end_key}_END={last_protocol}://{child_ip}:{last}", f"{end_key}_PORT_END={last}"]
        index = end + 1
    for number, protocol in ports:
        key = f"{prefix}_PORT_{number}_{protocol.upper()}"
        env += [
            f"{key}={protocol}://{child_ip}:{number}",
            f"{key}_ADDR={child_ip}",
            f"{key}_PORT={number}",
            f"{key}_PROTO={protocol}",
        ]
    env.append(f"{prefix}_NAME={name}")
    for entry in child_env or ():
        variable, equals, value = entry.partition("=")
        if equals and variable not in _NOT_PASSED:
            env.append(f"{prefix}_ENV_{variable}={value}")
    return env


def with_environment(
    env: Sequence[str], added: Sequence[str], previous: Sequence[str]
) -> list[str]:
    """``env`` without the link variables of the last start (``previous``), with ``added``
    but for those the container sets itself (its own variables win, as under dockerd)."""
    kept = [entry for entry in env if entry not in previous]
    own = {entry.partition("=")[0] for entry in kept}
    return [*kept, *(entry for entry in added if entry.partition("=")[0] not in own)]


def hosts_names(alias: str, child_name: str, child_hostname: str) -> str:
    """The names of a child's ``/etc/hosts`` line: alias, hostname, and its name unless that
    is the alias."""
    names = [alias, child_hostname]
    if alias != child_name:
        names.append(child_name)
    return " ".join(names)
