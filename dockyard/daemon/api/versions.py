"""What dockerd 20.10 does differently for clients of older API versions, in the requests it
takes (the routes call these with the request's version; shapes of answers are beside the
routes that give them).

Each rule is dockerd's, from its routers' ``versions.LessThan`` checks: a field added in a
later version is dropped when an older client sends it, and defaults that changed keep their
old value for old clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from dockyard.daemon.containers.config import CreateRequest, HostConfig

#: ``older_than("1.NN")``: whether the request came at an API version before 1.NN.
OlderThan = Callable[[str], bool]

#: The range of CPU shares dockerd clamps an old client's value to (Linux's own limits).
MIN_CPU_SHARES = 2
MAX_CPU_SHARES = 262144


def create_request(request: CreateRequest, older_than: OlderThan) -> CreateRequest:
    """``POST /containers/create``'s body as dockerd takes it at the request's version."""
    return attrs.evolve(request, host_config=host_config(request.host_config, older_than))


def host_config(host: HostConfig, older_than: OlderThan) -> HostConfig:
    """A ``HostConfig`` given at the request's version (on create, or on start before 1.24),
    with the fields and defaults dockerd gives that version."""
    if older_than("1.19") and host.cpu_shares:
        # Before 1.19 the kernel's bounds are applied for the client.
        shares = min(max(host.cpu_shares, MIN_CPU_SHARES), MAX_CPU_SHARES)
        host = attrs.evolve(host, cpu_shares=shares)
    if older_than("1.25"):
        # Up to 1.24 the client removes the container itself.
        host = attrs.evolve(host, auto_remove=False)
    if older_than("1.40"):
        # BindOptions.NonRecursive and KernelMemoryTCP came in 1.40; the IPC mode clients
        # before it expect by default is "shareable".
        mounts = host.mounts
        if mounts:
            mounts = [
                attrs.evolve(m, bind_options=attrs.evolve(m.bind_options, non_recursive=False))
                if m.bind_options is not None
                else m
                for m in mounts
            ]
        host = attrs.evolve(
            host,
            mounts=mounts,
            kernel_memory_tcp=0,
            ipc_mode=host.ipc_mode or "shareable",
        )
    return host


def update_request(update: HostConfig, older_than: OlderThan) -> HostConfig:
    """``POST /containers/{id}/update``'s body: ``PidsLimit`` came in 1.40."""
    if older_than("1.40"):
        return attrs.evolve(update, pids_limit=None)
    return update


#: Fields of ``Config`` that clients before 1.21 find there, ahead of where they moved.
_CONFIG_BEFORE_1_21 = ("MacAddress", "NetworkDisabled", "ExposedPorts")


def inspect_answer(body: dict[str, Any], older_than: OlderThan) -> dict[str, Any]:
    """``GET /containers/{id}/json`` at the request's version: before 1.21 ``Config`` also
    carries the MAC address, network switch, exposed ports and volume driver and
    ``NetworkSettings`` has no ``Networks``; before 1.20, ``Config`` carries the memory and
    CPU limits too, and ``Volumes``/``VolumesRW`` (by container path) stand for ``Mounts``."""
    if not older_than("1.21"):
        return body
    host = body["HostConfig"]
    config = {k: v for k, v in body["Config"].items() if k not in _CONFIG_BEFORE_1_21}
    config.update(
        MacAddress=body["Config"].get("MacAddress", ""),
        NetworkDisabled=body["Config"].get("NetworkDisabled", False),
        ExposedPorts=body["Config"].get("ExposedPorts"),
        VolumeDriver=host.get("VolumeDriver", ""),
    )
    settings = {k: v for k, v in body["NetworkSettings"].items() if k != "Networks"}
    if not older_than("1.20"):
        return {**body, "Config": config, "NetworkSettings": settings}
    config.update(
        Memory=host.get("Memory", 0),
        MemorySwap=host.get("MemorySwap", 0),
        CpuShares=host.get("CpuShares", 0),
        Cpuset=host.get("CpusetCpus", ""),
    )
    answer = {k: v for k, v in body.items() if k not in ("Mounts", "Config", "NetworkSettings")}
    mounts = body.get("Mounts") or []
    answer["Volumes"] = {m["Destination"]: m["Source"] for m in mounts}
    answer["VolumesRW"] = {m["Destination"]: m["RW"] for m in mounts}
    return {**answer, "Config": config, "NetworkSettings": settings}


_NETWORK_COUNTERS = (
    "rx_bytes", "rx_packets", "rx_errors", "rx_dropped",
    "tx_bytes", "tx_packets", "tx_errors", "tx_dropped",
)  # fmt: skip


def stats_answer(document: dict[str, Any], older_than: OlderThan) -> dict[str, Any]:
    """A stats frame at the request's version: before 1.21 without ``id`` and ``name``, and
    with one ``network`` summing every interface's counters in place of ``networks``."""
    if not older_than("1.21"):
        return document
    interfaces = (document.get("networks") or {}).values()
    answer = {k: v for k, v in document.items() if k not in ("id", "name", "networks")}
    answer["network"] = {
        counter: sum(interface.get(counter, 0) for interface in interfaces)
        for counter in _NETWORK_COUNTERS
    }
    return answer
