"""The small grammars of docker's options, read the way dockerd reads them.

Pure functions over typed records and strings: container names, signal names and numbers,
``-v`` specs and ``--mount`` entries, ``--user`` against the image's files, capabilities,
restart policies, ``--security-opt``, entrypoint and command resolution.
"""

from __future__ import annotations

import posixpath
import re
import secrets
import signal
from collections.abc import Sequence

import attrs

from dockyard.core.capabilities import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from dockyard.core.errors import InvalidParameter
from dockyard.daemon import volumes
from dockyard.daemon.containers.binds import check_propagation
from dockyard.daemon.containers.config import (
    ContainerConfig,
    MountConfig,
    RestartPolicy,
)
from dockyard.linux.mounts import PROPAGATION_FLAGS

NAME_PATTERN = re.compile(r"/?[a-zA-Z0-9][a-zA-Z0-9_.-]+")
RESTART_POLICIES = ("", "no", "always", "unless-stopped", "on-failure")


_ADJECTIVES = (
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "proud", "quirky", "serene", "sharp", "tender", "upbeat", "vivid", "witty", "zen",
)  # fmt: skip
_NOUNS = (
    "anchor", "barge", "buoy", "cargo", "crane", "dinghy", "ferry", "galley", "harbor", "hull",
    "keel", "lighthouse", "mast", "pier", "quay", "rudder", "schooner", "tug", "wharf", "yacht",
)  # fmt: skip


def random_name() -> str:
    return f"{secrets.choice(_ADJECTIVES)}_{secrets.choice(_NOUNS)}"


def check_name(name: str) -> str:
    """A valid container name, without the leading slash."""
    if not NAME_PATTERN.fullmatch(name):
        raise InvalidParameter(
            f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    return name.removeprefix("/")


def parse_signal(value: str | int | None, default: int = signal.SIGKILL) -> int:
    """``KILL``, ``SIGKILL``, ``kill`` and ``9`` all name SIGKILL."""
    if value is None or value == "":
        return default
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        if 0 < number < signal.NSIG:
            return number
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else f"SIG{name}"
        found = getattr(signal.Signals, name, None) if name in signal.Signals.__members__ else None
        if found is not None:
            return int(found)
    raise InvalidParameter(f"Invalid signal: {value}")


def parse_restart_policy(policy: RestartPolicy) -> RestartPolicy:
    """``HostConfig.RestartPolicy`` checked, with "no" spelled "" as dockerd reports it."""
    name = "" if policy.name == "no" else policy.name
    if name not in RESTART_POLICIES:
        raise InvalidParameter(f"invalid restart policy '{policy.name}'")
    retries = policy.maximum_retry_count
    if retries and name != "on-failure":
        raise InvalidParameter(
            "maximum retry count cannot be used with restart policy '" + policy.name + "'"
        )
    if retries < 0:
        raise InvalidParameter("maximum retry count cannot be negative")
    return RestartPolicy(name=name, maximum_retry_count=retries)


@attrs.frozen
class VolumeSpec:
    """One ``-v`` entry: a host path or a named volume, at a container path."""

    source: str  # absolute host path, or a volume name
    destination: str
    read_only: bool = False
    #: ``nocopy``/``volume-nocopy``: a new volume is not filled with the image's files.
    no_copy: bool = False
    #: ``volume-label``: the labels a volume this mount creates gets.
    labels: tuple[tuple[str, str], ...] = ()
    #: ``volume-opt``: the local driver's options for a volume this mount creates.
    driver_options: tuple[tuple[str, str], ...] = ()
    #: A bind's propagation as asked (``rshared``, ``slave``...; empty: none asked).
    propagation: str = ""
    #: ``BindOptions.NonRecursive``: the mounts below a bind's source are not taken.
    non_recursive: bool = False


_VOLUME_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")


#: The kinds of ``-v`` mode words; a mode names each kind at most once (dockerd's rule).
#: The consistency words are Docker Desktop's leave to relax file sharing: a bind here is
#: always fully consistent, which keeps every one of them.
_MODE_KINDS = {
    "ro": "rw", "rw": "rw", "z": "label", "Z": "label", "nocopy": "copy",
    "consistent": "consistency", "cached": "consistency", "delegated": "consistency",
    **{word: "propagation" for word in PROPAGATION_FLAGS},
}  # fmt: skip


def parse_bind(text: str) -> VolumeSpec:
    """``/host:/ctr[:MODE]`` or ``name:/ctr[:MODE]``, MODE being words such as ``ro,rshared``."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise InvalidParameter(f"invalid volume specification: '{text}'")
    source, destination = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    kinds = [_MODE_KINDS.get(option) for option in options]
    if None in kinds or len(set(kinds)) != len(kinds):
        raise InvalidParameter(f"invalid mode: {parts[2]}")
    if not destination.startswith("/"):
        raise InvalidParameter(
            f"invalid volume specification: '{text}': invalid mount config for type \"bind\": "
            "invalid mount path: '" + destination + "' mount path must be absolute"
        )
    is_bind = source.startswith("/")
    if not is_bind and not _VOLUME_NAME.fullmatch(source):
        raise InvalidParameter(
            f"invalid volume name '{source}': only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )
    if is_bind:
        source = posixpath.normpath(source)  # as dockerd shows it: /srv/../data is /data
    propagation = next((o for o in options if o in PROPAGATION_FLAGS), "")
    # As dockerd reads the mode: propagation is a bind's option, nocopy a volume's.
    extra = "BindOptions" if propagation and not is_bind else ""
    extra = "VolumeOptions" if "nocopy" in options and is_bind else extra
    if extra:
        kind = "bind" if is_bind else "volume"
        raise InvalidParameter(
            f"invalid volume specification: '{text}': invalid mount config for type "
            f'"{kind}": field {extra} must not be specified'
        )
    return VolumeSpec(
        source,
        destination,
        "ro" in options,
        no_copy="nocopy" in options,
        propagation=propagation,
    )


def shown_modes(binds: Sequence[str] | None) -> dict[str, str]:
    """The ``Mode`` inspect shows for each ``-v`` entry, by destination: its mode as given
    (``ro,rshared``), as dockerd shows it; ``--mount`` entries show none."""
    modes = {}
    for text in binds or ():
        parts = text.split(":")
        if len(parts) == 3:
            modes[parts[1]] = parts[2]
    return modes


def asked_propagations(
    binds: Sequence[str] | None, mounts: Sequence[MountConfig] | None
) -> set[str]:
    """The destinations whose ``-v`` or ``--mount`` entry named a propagation."""
    given = [parse_bind(text) for text in binds or ()]
    given += [parse_mount(mount) for mount in mounts or () if mount.type == "bind"]
    return {spec.destination for spec in given if spec.propagation}


def parse_mount(mount: MountConfig) -> VolumeSpec:
    """One ``--mount`` entry (``HostConfig.Mounts``) of type bind or volume."""
    kind = mount.type or "volume"
    source, target = mount.source, mount.target
    if kind not in ("bind", "volume"):
        raise InvalidParameter(f"mount type {kind!r} is not supported")
    if not target.startswith("/"):
        raise InvalidParameter(f"invalid mount config: mount path must be absolute: {target!r}")
    if kind == "bind" and not source.startswith("/"):
        raise InvalidParameter(f'invalid mount config for type "bind": invalid source {source!r}')
    if kind == "bind":
        source = posixpath.normpath(source)
    if mount.tmpfs_options is not None:
        raise InvalidParameter(f"TmpfsOptions must not be specified on mount type {kind!r}")
    if mount.bind_options is not None and kind != "bind":
        raise InvalidParameter(
            f'invalid mount config for type "{kind}": field BindOptions must not be specified'
        )
    volume = mount.volume_options
    if volume is None:
        bind = mount.bind_options
        if bind is None:
            return VolumeSpec(source, target, mount.read_only)
        if bind.propagation:
            check_propagation(bind.propagation, 'invalid mount config for type "bind"')
        return VolumeSpec(
            source,
            target,
            mount.read_only,
            propagation=bind.propagation,
            non_recursive=bind.non_recursive,
        )
    if kind == "bind":
        raise InvalidParameter("VolumeOptions must not be specified on mount type 'bind'")
    driver = volume.driver_config
    driver_options = dict((driver.options or {}) if driver else {})
    if driver is not None:
        volumes.check_driver(driver.name, "VolumeOptions.DriverConfig.Name")
    if driver_options:
        volumes.check_options(driver_options)
    return VolumeSpec(
        source,
        target,
        mount.read_only,
        no_copy=volume.no_copy,
        labels=tuple(sorted((volume.labels or {}).items())),
        driver_options=tuple(sorted(driver_options.items())),
    )


def check_env(entries: Sequence[str]) -> None:
    """Refuse an entry without a name (``""``, ``=``, ``=X``) as dockerd does; names are not
    otherwise checked (dockerd leaves that to the program that reads them)."""
    for index, entry in enumerate(entries):
        if not entry.partition("=")[0]:
            raise InvalidParameter(f"Config.Env[{index}]: invalid environment variable: {entry}")


def container_env(image_env: Sequence[str], request_env: Sequence[str]) -> list[str]:
    """``Config.Env`` as dockerd makes it at create: the request's entries as given, then the
    image's whose names the request does not set."""
    given = {entry.partition("=")[0] for entry in request_env}
    return [*request_env, *(e for e in image_env if e.partition("=")[0] not in given)]


def merge_env(image_env: Sequence[str], request_env: Sequence[str]) -> list[str]:
    """The request's variables override the image's of the same name, order kept."""
    merged: dict[str, str] = {}
    for item in [*image_env, *request_env]:
        key = item.split("=", 1)[0]
        merged[key] = item
    return list(merged.values())


def resolve_command(
    image: ContainerConfig, request: ContainerConfig
) -> tuple[list[str], list[str]]:
    """(entrypoint, cmd) as docker resolves them: a request entrypoint drops the image's cmd."""
    entrypoint: list[str] | None = request.entrypoint
    cmd: list[str] | None = request.cmd
    if entrypoint is None:
        entrypoint = image.entrypoint or []
        if cmd is None:
            cmd = image.cmd or []
    if entrypoint == [""]:
        entrypoint = []
    return list(entrypoint), list(cmd or [])


def capabilities(
    cap_add: Sequence[str] | None, cap_drop: Sequence[str] | None, privileged: bool
) -> tuple[str, ...]:
    if privileged:
        return ALL_CAPABILITIES

    def normal(name: str) -> str:
        upper = name.upper()
        return upper if upper.startswith("CAP_") or upper == "ALL" else f"CAP_{upper}"

    adds = [normal(c) for c in cap_add or []]
    drops = [normal(c) for c in cap_drop or []]
    for name in adds + drops:
        if name != "ALL" and name not in ALL_CAPABILITIES:
            raise InvalidParameter(f"invalid capability: {name}")
    if "ALL" in drops:
        kept = [c for c in adds if c != "ALL"]
    else:
        base = ALL_CAPABILITIES if "ALL" in adds else DEFAULT_CAPABILITIES
        kept = [c for c in base if c not in drops]
        kept += [c for c in adds if c != "ALL" and c not in base and c not in drops]
    return tuple(kept)


@attrs.frozen
class ResolvedUser:
    """Who a container's (or an exec's) process runs as, from ``--user`` and the image's files."""

    uid: int
    gid: int
    #: As docker sets them: the primary group first, then every group that lists the user as a
    #: member (none when a ``:group`` was given explicitly).
    additional_gids: tuple[int, ...]
    #: From the passwd entry; ``/`` for a uid the image does not know (runc's default).
    home: str = "/"


def parse_user(user: str, passwd: str | None, group: str | None) -> ResolvedUser:
    """``--user`` (``uid``, ``name``, ``uid:gid``, ``name:group``; empty is root) against the
    image's ``/etc/passwd`` and ``/etc/group`` (``None`` when the image has none)."""
    name, _, group_name = (user or "0").partition(":")
    users = _parse_colon_file(passwd or "")
    groups = _parse_colon_file(group or "")
    if name.isdigit():
        uid = int(name)
        entry = next((u for u in users if u[2] == name), None)
        gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    else:
        entry = next((u for u in users if u[0] == name), None)
        if entry is None:
            raise InvalidParameter(
                f"unable to find user {name}: no matching entries in passwd file"
            )
        uid, gid = int(entry[2]), int(entry[3])
    if group_name:
        if group_name.isdigit():
            gid = int(group_name)
        else:
            found = next((g for g in groups if g[0] == group_name), None)
            if found is None:
                raise InvalidParameter(
                    f"unable to find group {group_name}: no matching entries in group file"
                )
            gid = int(found[2])
    user_name = entry[0] if entry and not group_name else None
    members_of = (
        int(g[2])
        for g in groups
        if user_name and len(g) > 3 and user_name in g[3].split(",") and g[2].isdigit()
    )
    home = entry[5] if entry and len(entry) > 5 and entry[5] else "/"
    return ResolvedUser(uid, gid, tuple(dict.fromkeys((gid, *members_of))), home)


def with_home(env: Sequence[str], home: str) -> list[str]:
    """``env`` with ``HOME`` set to the user's home unless it sets one itself, as runc does."""
    if any(entry.startswith("HOME=") for entry in env):
        return list(env)
    return [*env, f"HOME={home}"]


@attrs.frozen
class SecurityOptions:
    """What ``--security-opt`` asked for (``HostConfig.SecurityOpt``)."""

    no_new_privileges: bool = False
    #: ``systempaths=unconfined``: no masked or read-only paths under /proc and /sys.
    unconfined_system_paths: bool = False
    #: ``seccomp=unconfined``: no seccomp filter (see :mod:`dockyard.linux.seccomp`).
    unconfined_seccomp: bool = False


def parse_security_options(entries: Sequence[str] | None) -> SecurityOptions:
    """``--security-opt`` as dockerd reads it (``key=value``, or the older ``key:value``).

    There is no AppArmor profile to turn off and no SELinux labelling on this engine, so their
    ``unconfined``/``disable`` forms are accepted and do nothing. The seccomp policy is the
    built-in default or none: asking for a profile file is refused rather than not applied.
    """
    no_new_privileges = unconfined = unconfined_seccomp = False
    for entry in entries or ():
        key, separator, value = entry.partition("=")
        if not separator:
            key, separator, value = entry.partition(":")
        if key == "no-new-privileges":
            if value.lower() not in ("", "true", "false", "1", "0"):
                raise InvalidParameter(f'invalid --security-opt 2: "{entry}"')
            no_new_privileges = value.lower() in ("", "true", "1")
        elif key == "systempaths" and value == "unconfined":
            unconfined = True
        elif key == "seccomp" and value == "unconfined":
            unconfined_seccomp = True
        elif key == "apparmor" and value == "unconfined":
            continue
        elif key == "label":
            continue  # SELinux labels: nothing to label with, as dockerd without SELinux
        elif key in ("seccomp", "apparmor"):
            raise InvalidParameter(
                f"{key} profiles are not supported by this engine (only {key}=unconfined)"
            )
        else:
            raise InvalidParameter(f'invalid --security-opt 2: "{entry}"')
    return SecurityOptions(no_new_privileges, unconfined, unconfined_seccomp)


def _parse_colon_file(text: str) -> list[list[str]]:
    return [
        line.split(":")
        for line in text.splitlines()
        if line and not line.startswith("#") and line.count(":") >= 2
    ]
