"""``POST /build``'s query string, decoded into :class:`BuildOptions` where it enters.

The parameters are dockerd's (moby's ``newImageBuildOptions``). Those dockyard does not
implement are refused with a 400 naming them when they ask for something; the defaults the
clients always send (docker-py's ``pull=False``, ``squash=False``) pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.containers.config import Ulimit
from dockyard.daemon.distribution.pull import parse_platform, this_platform
from dockyard.distribution.reference import Reference, parse_reference

#: Parameters we refuse unless they ask for nothing: what each would need.
_REFUSED = {
    "remote": "a remote build context (a Git repository or URL)",
    "squash": "squash (dockerd allows it only in experimental mode)",
    "session": "a BuildKit session",
    "outputs": "BuildKit outputs",
    "securityopt": "security options on build",
    "buildid": "a build id (builds cannot be cancelled by id here)",
}
_KNOWN = {
    "dockerfile", "t", "extrahosts", "q", "nocache", "cachefrom", "pull", "rm", "forcerm",
    "memory", "memswap", "cpushares", "cpusetcpus", "cpusetmems", "cpuperiod", "cpuquota",
    "cgroupparent", "buildargs", "shmsize", "labels", "networkmode", "platform", "target",
    "ulimits", "isolation", "buildid", "version", *_REFUSED,
}  # fmt: skip


@attrs.frozen
class ResourceLimits:
    """Limits for the containers of ``RUN`` steps, as for ``docker run``."""

    memory: int = 0
    memory_swap: int = 0
    cpu_shares: int = 0
    cpu_period: int = 0
    cpu_quota: int = 0
    cpuset_cpus: str = ""
    cpuset_mems: str = ""
    cgroup_parent: str = ""
    ulimits: tuple[Ulimit, ...] = ()


@attrs.frozen
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: tuple[Reference, ...] = ()
    #: ``--build-arg NAME`` with no value and none in the client's environment is ``None``:
    #: it is still reported when no ``ARG`` consumes it.
    build_args: Mapping[str, str | None] = attrs.Factory(dict)
    target: str = ""
    no_cache: bool = False
    labels: Mapping[str, str] = attrs.Factory(dict)
    remove: bool = True
    force_remove: bool = False
    quiet: bool = False
    pull: bool = False
    cache_from: tuple[str, ...] = ()
    network_mode: str = ""
    extra_hosts: tuple[str, ...] = ()
    shm_size: int = 0
    limits: ResourceLimits = attrs.Factory(ResourceLimits)


def _bool(name: str, value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    lowered = value.lower()
    if lowered in ("1", "true", "t"):
        return True
    if lowered in ("0", "false", "f"):
        return False
    raise InvalidParameter(f"invalid boolean value {value!r} for query parameter {name}")


def _int(name: str, value: str | None) -> int:
    if value is None or value == "":
        return 0
    try:
        return int(value, 10)
    except ValueError:
        raise InvalidParameter(f"invalid value {value!r} for {name}: not an integer") from None


def _json(name: str, value: str | None, what: str) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"error reading {what}: {exc}") from None


def _string_map(name: str, value: str | None, what: str, nulls: bool) -> dict[str, Any]:
    raw = _json(name, value, what)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidParameter(f"error reading {what}: {name} must be a JSON object")
    for key, item in raw.items():
        if not (isinstance(item, str) or (nulls and item is None)):
            raise InvalidParameter(f"error reading {what}: {name}.{key} must be a string")
    return raw


def _ulimits(value: str | None) -> tuple[Ulimit, ...]:
    raw = _json("ulimits", value, "ulimit settings")
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidParameter("error reading ulimit settings: ulimits must be a JSON array")
    found = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise InvalidParameter(f"error reading ulimit settings: ulimits[{index}] not an object")
        name, soft, hard = item.get("Name"), item.get("Soft"), item.get("Hard")
        if not isinstance(name, str) or not isinstance(soft, int) or not isinstance(hard, int):
            raise InvalidParameter(
                f"error reading ulimit settings: ulimits[{index}] needs Name, Soft and Hard"
            )
        found.append(Ulimit(name=name, soft=soft, hard=hard))
    return tuple(found)


def check_platform(text: str, where: str) -> None:
    """Refuse a platform other than this machine's: the builder runs steps natively (no
    emulation) and picks no base image by platform."""
    wanted, here = parse_platform(text), this_platform()
    if (wanted.os, wanted.architecture) != (here.os, here.architecture):
        raise InvalidParameter(
            f"{where} {text}: only {here.os}/{here.architecture} images can be built here"
        )


def parse_build_query(query: Mapping[str, str], multi: Mapping[str, Sequence[str]]) -> BuildOptions:
    """Decode the query string: ``query`` has each parameter's last value, ``multi`` all."""
    unknown = sorted(set(query) - _KNOWN)
    if unknown:
        raise InvalidParameter(f"unknown build parameter: {', '.join(unknown)}")
    for name, what in _REFUSED.items():
        value = query.get(name, "")
        if value and not (name == "squash" and not _bool(name, value)):
            raise InvalidParameter(f"{name}: {what} is not supported by this daemon")
    version = query.get("version", "")
    if version not in ("", "1"):
        raise InvalidParameter(
            f"version {version}: only the classic builder (version=1) is available"
            if version == "2"
            else f"invalid version {version}"
        )
    isolation = query.get("isolation", "")
    if isolation not in ("", "default"):
        raise InvalidParameter(f'Unsupported isolation: "{isolation}"')
    platform = query.get("platform", "")
    if platform:
        check_platform(platform, "platform")
    force_remove = _bool("forcerm", query.get("forcerm"))
    cache_from = _json("cachefrom", query.get("cachefrom"), "cache-from")
    if cache_from is not None and not (
        isinstance(cache_from, list) and all(isinstance(item, str) for item in cache_from)
    ):
        raise InvalidParameter("cachefrom must be a JSON array of image names")
    shm_size = _int("shmsize", query.get("shmsize"))
    if shm_size < 0:
        raise InvalidParameter("shmsize can not be less than 0")
    tags = []
    for name in multi.get("t", ()):
        if name:
            reference = parse_reference(name)
            if reference.digest is not None:
                raise InvalidParameter(f"invalid tag {name!r}: a tag cannot name a digest")
            tags.append(reference)
    return BuildOptions(
        dockerfile=query.get("dockerfile") or "Dockerfile",
        tags=tuple(tags),
        build_args=_string_map("buildargs", query.get("buildargs"), "build args", nulls=True),
        target=query.get("target", ""),
        no_cache=_bool("nocache", query.get("nocache")),
        labels=_string_map("labels", query.get("labels"), "labels", nulls=False),
        remove=True if force_remove else _bool("rm", query.get("rm"), default=True),
        force_remove=force_remove,
        quiet=_bool("q", query.get("q")),
        pull=_bool("pull", query.get("pull")),
        cache_from=tuple(cache_from or ()),
        network_mode=query.get("networkmode", ""),
        extra_hosts=tuple(host for host in multi.get("extrahosts", ()) if host),
        shm_size=shm_size,
        limits=ResourceLimits(
            memory=_int("memory", query.get("memory")),
            memory_swap=_int("memswap", query.get("memswap")),
            cpu_shares=_int("cpushares", query.get("cpushares")),
            cpu_period=_int("cpuperiod", query.get("cpuperiod")),
            cpu_quota=_int("cpuquota", query.get("cpuquota")),
            cpuset_cpus=query.get("cpusetcpus", ""),
            cpuset_mems=query.get("cpusetmems", ""),
            cgroup_parent=query.get("cgroupparent", ""),
            ulimits=_ulimits(query.get("ulimits")),
        ),
    )
