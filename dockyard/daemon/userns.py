"""User namespace remapping (dockerd's ``userns-remap``): whose ids a container's root gets.

With remapping on, every container (unless created with ``--userns=host``) runs in a user
namespace whose id 0 is an unprivileged host id: a process escaping the container is nobody
on the host. Which host ids, comes from the same place as for dockerd: the subordinate id
ranges of a user and a group in ``/etc/subuid`` and ``/etc/subgid`` (shadow's format, one
``OWNER:START:COUNT`` a line, the owner a name or a numeric id). ``default`` means the user
and group ``dockremap``, created with a 65536-id range when missing, as dockerd does.

The runtime does the rest (see ``ContainerSpec.uid_mappings``): it presents image layers and
volumes through idmapped mounts, so nothing on disk is ever chowned.
"""

from __future__ import annotations

import grp
import pwd
import subprocess
from collections.abc import Iterable, Sequence

import attrs

from dockyard.core.errors import ConfigError
from dockyard.core.interfaces import IdMapping

SUBUID_FILE = "/etc/subuid"
SUBGID_FILE = "/etc/subgid"
#: ``userns-remap = "default"`` stands for this user and group (created when missing).
DEFAULT_SETTING = "default"
DEFAULT_USER = "dockremap"
#: Where a range made for ``dockremap`` may start at the lowest, and how big it is (dockerd's).
DEFAULT_RANGE_START = 100000
DEFAULT_RANGE_SIZE = 65536
#: The largest id a user namespace map may name, plus one.
ID_LIMIT = 1 << 32


@attrs.frozen
class SubordinateRange:
    """One line of a subordinate id file: ``owner`` may use host ids ``[start, end)``."""

    owner: str
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


@attrs.frozen
class RemapSetting:
    """The ``userns-remap`` value, parsed: a user and group by name or numeric id."""

    user: str
    #: Empty: the group of the same name (or, for a numeric user, the same id), as dockerd.
    group: str = ""

    @property
    def is_default(self) -> bool:
        return self.user == DEFAULT_USER and self.group in ("", DEFAULT_USER)


@attrs.frozen
class Remapping:
    """Remapping as in force: the host user and group and the maps every container gets."""

    user: str
    group: str
    uid_mappings: tuple[IdMapping, ...]
    gid_mappings: tuple[IdMapping, ...]

    @property
    def root_uid(self) -> int:
        """The host uid of the containers' root (the first range's start)."""
        return self.uid_mappings[0].host_id

    @property
    def root_gid(self) -> int:
        return self.gid_mappings[0].host_id


def parse_setting(value: str) -> RemapSetting | None:
    """``""`` (off), ``"default"``, or ``"USER[:GROUP]"``; raises :class:`ConfigError`."""
    value = value.strip()
    if not value:
        return None
    if value == DEFAULT_SETTING:
        return RemapSetting(DEFAULT_USER)
    user, colon, group = value.partition(":")
    if not user or (colon and not group) or ":" in group:
        raise ConfigError(
            f"userns-remap: invalid value {value!r}: expected USER[:GROUP] or 'default'"
        )
    return RemapSetting(user, group)


def parse_subordinate_ids(text: str, source: str) -> list[SubordinateRange]:
    """The ranges of a subordinate id file; blank lines and ``#`` comments are skipped."""
    ranges = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(":")
        try:
            if len(fields) != 3 or not fields[0]:
                raise ValueError
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            raise ConfigError(
                f"{source}:{number}: malformed line {line!r}: expected OWNER:START:COUNT"
            ) from None
        if start < 0 or count <= 0 or start + count > ID_LIMIT:
            raise ConfigError(
                f"{source}:{number}: the range {start}:{count} is not within 0..{ID_LIMIT - 1}"
            )
        ranges.append(SubordinateRange(fields[0], start, count))
    return ranges


def read_subordinate_ids(path: str) -> list[SubordinateRange]:
    """The ranges in file ``path``; a missing file has none."""
    try:
        with open(path) as source:
            text = source.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    return parse_subordinate_ids(text, path)


def id_mappings(ranges: Iterable[SubordinateRange]) -> tuple[IdMapping, ...]:
    """One namespace map from several ranges: container ids count on from 0 across them in
    the order of their host start, as dockerd joins them."""
    mappings = []
    next_id = 0
    for found in sorted(ranges, key=lambda r: r.start):
        mappings.append(IdMapping(next_id, found.start, found.count))
        next_id += found.count
    return tuple(mappings)


def first_free_start(
    ranges: Sequence[SubordinateRange],
    size: int = DEFAULT_RANGE_SIZE,
    lowest: int = DEFAULT_RANGE_START,
) -> int:
    """The lowest start at or above ``lowest`` of ``size`` ids no range of the file holds."""
    start = lowest
    moved = True
    while moved:
        moved = False
        for taken in ranges:
            if taken.start < start + size and start < taken.end:
                start, moved = taken.end, True
    return start


def _owned(ranges: Sequence[SubordinateRange], owners: set[str]) -> list[SubordinateRange]:
    return [r for r in ranges if r.owner in owners]


def resolve(
    value: str, subuid_file: str = SUBUID_FILE, subgid_file: str = SUBGID_FILE
) -> Remapping | None:
    """The remapping ``value`` asks for, or ``None`` when it is off; raises :class:`ConfigError`.

    For ``default``, the ``dockremap`` user is created (``useradd -r``) if missing, and given
    a range of 65536 ids in each file if it has none, at the first free place from 100000.
    """
    setting = parse_setting(value)
    if setting is None:
        return None
    if setting.is_default:
        _ensure_default_user(subuid_file, subgid_file)
    user = _lookup_user(setting.user)
    group = _lookup_group(setting.group or setting.user, implied=not setting.group, user=user)
    mappings = []
    for path, kind, entry, entry_id in (
        (subuid_file, "uid", user.pw_name, user.pw_uid),
        (subgid_file, "gid", group.gr_name, group.gr_gid),
    ):
        ranges = _owned(read_subordinate_ids(path), {entry, str(entry_id)})
        owner = "user" if kind == "uid" else "group"
        if not ranges:
            raise ConfigError(
                f"userns-remap: no subordinate {kind} range for {owner} {entry!r} in {path}"
            )
        if any(r.start == 0 for r in ranges):
            raise ConfigError(
                f"userns-remap: {path} gives {owner} {entry!r} a range holding host {kind} 0 "
                "(root): the containers' root would be the host's"
            )
        mappings.append(id_mappings(ranges))
    return Remapping(user.pw_name, group.gr_name, mappings[0], mappings[1])


def _lookup_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except KeyError:
        raise ConfigError(f"userns-remap: user {name!r} does not exist (no passwd entry)") from None


def _lookup_group(name: str, implied: bool, user: pwd.struct_passwd) -> grp.struct_group:
    # dockerd: a numeric user without a group takes its uid as the gid, a named one the group
    # of the same name.
    try:
        if name.isdigit():
            return grp.getgrgid(user.pw_uid if implied else int(name))
        return grp.getgrnam(name)
    except KeyError:
        hint = " (give USER:GROUP)" if implied else ""
        raise ConfigError(
            f"userns-remap: group {name!r} does not exist (no group entry){hint}"
        ) from None


def _ensure_default_user(subuid_file: str, subgid_file: str) -> None:
    """Create ``dockremap`` and its ranges where missing; running it again changes nothing."""
    try:
        pwd.getpwnam(DEFAULT_USER)
    except KeyError:
        _run_tool(["useradd", "-r", "-s", "/bin/false", DEFAULT_USER])
    try:
        grp.getgrnam(DEFAULT_USER)
    except KeyError:  # useradd makes no group of the same name where USERGROUPS_ENAB is off
        _run_tool(["groupadd", "-r", DEFAULT_USER])
    uid, gid = pwd.getpwnam(DEFAULT_USER).pw_uid, grp.getgrnam(DEFAULT_USER).gr_gid
    for path, own_id in ((subuid_file, uid), (subgid_file, gid)):
        ranges = read_subordinate_ids(path)
        if not _owned(ranges, {DEFAULT_USER, str(own_id)}):
            _append_range(path, first_free_start(ranges))


def _run_tool(argv: list[str]) -> None:
    try:
        subprocess.run(argv, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise ConfigError(
            f"userns-remap: cannot create {DEFAULT_USER!r} with {argv[0]}: {detail.strip()}"
        ) from None


def _append_range(path: str, start: int) -> None:
    line = f"{DEFAULT_USER}:{start}:{DEFAULT_RANGE_SIZE}\n"
    try:
        with open(path, "a+") as target:
            target.seek(0)
            text = target.read()
            target.write(("\n" if text and not text.endswith("\n") else "") + line)
    except OSError as exc:
        raise ConfigError(f"userns-remap: cannot add a range to {path}: {exc.strerror}") from None
