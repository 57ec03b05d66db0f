"""The users file and the rules file: read strictly, re-read when they change.

Both are TOML (their formats are in the package's docstring and README). Anything unknown is
refused with a :class:`ConfigError` naming the file and the key. A serving registry looks at
each file's identity (inode, size, mtime) at most once a second and reloads it when it changed;
a file that turns bad while serving keeps the last good version in force and is logged.
"""

from __future__ import annotations

import re
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import attrs
import structlog

from dockyard.core.errors import ConfigError
from dockyard.core.interfaces import Access
from dockyard.core.repository_names import is_repository_name

_log = structlog.get_logger("dockyard.auth.token")

#: User names: what a person types after ``-u``; no ``:`` (Basic auth), nothing rules reserve.
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: Names rules reserve for themselves.
RESERVED_NAMES = frozenset({"anonymous"})
GROUP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
#: A bcrypt hash, as bcrypt and ``htpasswd -B`` write it (``$2b$``, ``$2y$``, ``$2a$``).
BCRYPT_HASH = re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")

REPOSITORY_ACTIONS = ("pull", "push", "delete")
#: Characters a repository glob may hold besides ``{user}``.
_GLOB_CHARS = re.compile(r"[a-z0-9._/*-]+")
USER_PLACEHOLDER = "{user}"


def _unknown_key(path: Path, where: str, key: str, allowed: tuple[str, ...]) -> ConfigError:
    return ConfigError(
        f"{path}: unknown key '{where}{key}'; allowed keys: {', '.join(allowed) or 'none'}"
    )


def _check_keys(path: Path, table: Mapping[str, Any], where: str, allowed: tuple[str, ...]) -> None:
    for key in table:
        if key not in allowed:
            raise _unknown_key(path, where, key, allowed)


def read_toml(path: Path) -> dict[str, Any]:
    """The document in ``path``; a missing file is an empty document."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


# --------------------------------------------------------------------------------------------
# Users
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Users:
    """User name -> bcrypt hash."""

    hashes: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def parse(cls, document: Mapping[str, Any], path: Path) -> Users:
        _check_keys(path, document, "", ("users",))
        table = document.get("users", {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: 'users' must be a table ([users.NAME])")
        hashes = {}
        for name, entry in table.items():
            if not isinstance(entry, dict):
                raise ConfigError(f"{path}: 'users.{name}' must be a table")
            _check_keys(path, entry, f"users.{name}.", ("password",))
            password = entry.get("password")
            if not isinstance(password, str) or not BCRYPT_HASH.fullmatch(password):
                raise ConfigError(
                    f"{path}: 'users.{name}.password' must be a bcrypt hash ($2b$...); "
                    "set passwords with `dockyard registry user add NAME`"
                )
            hashes[name] = password
        return cls(hashes)

    def render(self) -> str:
        lines = [
            "# Registry users and their bcrypt password hashes.",
            "# Written by `dockyard registry user add/rm`, which rewrites it whole (comments go).",
        ]
        for name in sorted(self.hashes):
            lines += ["", f'[users."{name}"]', f'password = "{self.hashes[name]}"']
        return "\n".join(lines) + "\n"


def check_user_name(name: str) -> str | None:
    """Why ``name`` cannot be a user name, or ``None`` when it can."""
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved for rules"
    if not USER_NAME.fullmatch(name):
        return "user names are 1-64 letters, digits, '.', '_', '@' or '-', starting alphanumeric"
    return None


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


def _glob_regex(glob: str) -> str:
    """``*`` matches within one path component, ``**`` across them, ``{user}`` the caller."""
    out = []
    named = False
    for index, part in enumerate(re.split(r"(\*\*|\*|\{user\})", glob)):
        if index % 2 == 0:
            out.append(re.escape(part))
        elif part == "**":
            out.append(".*")
        elif part == "*":
            out.append("[^/]*")
        else:
            # The first {user} captures the name; later ones must repeat it.
            out.append("(?P=user)" if named else "(?P<user>[^/]+)")
            named = True
    return "".join(out)


@attrs.frozen
class RepositoryRule:
    """Subjects that get ``actions`` on repositories matching one of ``patterns``."""

    subjects: frozenset[str]
    patterns: tuple[re.Pattern[str], ...]
    actions: frozenset[str]

    def matches(self, name: str, user: str) -> bool:
        for pattern in self.patterns:
            match = pattern.fullmatch(name)
            if match is not None and match.groupdict().get("user", user) == user:
                return True
        return False


@attrs.frozen
class Rules:
    """The rules file: groups, repository rules, and who may list the catalog.

    Rules only allow; what a caller may do is the union of every rule that names them. What
    ``anonymous`` may do, every caller may do.
    """

    groups: Mapping[str, frozenset[str]] = attrs.field(factory=dict)
    repository_rules: tuple[RepositoryRule, ...] = ()
    catalog_subjects: frozenset[str] = frozenset()

    @classmethod
    def everyone_authenticated(cls) -> Rules:
        """The rules without a rules file: every user may do everything, anonymous nothing."""
        rule = RepositoryRule(
            frozenset({"*"}), (re.compile(".*"),), frozenset({*REPOSITORY_ACTIONS, "*"})
        )
        return cls({}, (rule,), frozenset({"*"}))

    @classmethod
    def parse(cls, document: Mapping[str, Any], path: Path) -> Rules:
        _check_keys(path, document, "", ("groups", "rules"))
        groups_table = document.get("groups", {})
        if not isinstance(groups_table, dict):
            raise ConfigError(f"{path}: 'groups' must be a table of NAME = [users]")
        groups: dict[str, frozenset[str]] = {}
        for name, members in groups_table.items():
            if not GROUP_NAME.fullmatch(name):
                raise ConfigError(f"{path}: invalid group name 'groups.{name}'")
            if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise ConfigError(f"{path}: 'groups.{name}' must be a list of user names")
            groups[name] = frozenset(members)
        rules_list = document.get("rules", [])
        if not isinstance(rules_list, list):
            raise ConfigError(f"{path}: 'rules' must be an array of tables ([[rules]])")
        repository_rules = []
        catalog: set[str] = set()
        for index, rule in enumerate(rules_list):
            where = f"rules[{index}]."
            if not isinstance(rule, dict):
                raise ConfigError(f"{path}: 'rules[{index}]' must be a table ([[rules]])")
            _check_keys(path, rule, where, ("subjects", "repositories", "actions", "catalog"))
            subjects = _subjects(rule.get("subjects"), groups, path, where)
            if "catalog" in rule:
                if rule["catalog"] is not True or set(rule) - {"catalog", "subjects"}:
                    raise ConfigError(
                        f"{path}: '{where}catalog' must be true, in a rule of its own with "
                        "only 'subjects' beside it"
                    )
                catalog |= subjects
                continue
            patterns = _patterns(rule.get("repositories"), path, where)
            actions = rule.get("actions")
            allowed = (*REPOSITORY_ACTIONS, "*")
            if (
                not isinstance(actions, list)
                or not actions
                or not all(isinstance(a, str) and a in allowed for a in actions)
            ):
                raise ConfigError(
                    f"{path}: '{where}actions' must be a non-empty list of {', '.join(allowed)}"
                )
            expanded = set(actions)
            if "*" in expanded:
                expanded |= set(REPOSITORY_ACTIONS)
            repository_rules.append(RepositoryRule(subjects, patterns, frozenset(expanded)))
        return cls(groups, tuple(repository_rules), frozenset(catalog))

    def principals(self, user: str) -> frozenset[str]:
        """What rules may name to mean ``user`` (``""``: anonymous)."""
        if not user:
            return frozenset({"anonymous"})
        names = {"anonymous", "*", user}
        names.update(f"group:{group}" for group, members in self.groups.items() if user in members)
        return frozenset(names)

    def groups_of(self, user: str) -> tuple[str, ...]:
        return tuple(sorted(group for group, members in self.groups.items() if user in members))

    def allowed(self, user: str, access: Access) -> tuple[str, ...]:
        """The actions of ``access`` the rules give ``user`` (``""``: anonymous)."""
        principals = self.principals(user)
        if access.type == "registry":
            if access.name == "catalog" and principals & self.catalog_subjects:
                return access.actions
            return ()
        if access.type != "repository" or not is_repository_name(access.name):
            return ()
        granted: set[str] = set()
        for rule in self.repository_rules:
            if rule.subjects & principals and rule.matches(access.name, user):
                granted |= rule.actions
        return tuple(a for a in access.actions if a in granted)


def _subjects(
    value: Any, groups: Mapping[str, frozenset[str]], path: Path, where: str
) -> frozenset[str]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise ConfigError(
            f"{path}: '{where}subjects' must be a non-empty list: user names, 'group:NAME', "
            "'*' (any user) or 'anonymous'"
        )
    for subject in value:
        if subject.startswith("group:"):
            if subject[6:] not in groups:
                raise ConfigError(
                    f"{path}: '{where}subjects' names {subject!r}, which [groups] does not define"
                )
        elif subject not in ("*", "anonymous") and check_user_name(subject):
            raise ConfigError(f"{path}: '{where}subjects': {subject!r} is not a user name")
    return frozenset(value)


def _patterns(value: Any, path: Path, where: str) -> tuple[re.Pattern[str], ...]:
    if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
        raise ConfigError(
            f"{path}: '{where}repositories' must be a non-empty list of repository globs "
            "('library/*', 'team/**', '{user}/**'), or the rule needs 'catalog = true'"
        )
    patterns = []
    for glob in value:
        if not _GLOB_CHARS.fullmatch(glob.replace(USER_PLACEHOLDER, "u")):
            raise ConfigError(
                f"{path}: '{where}repositories': {glob!r} can match no repository name "
                "(lower-case letters, digits, '._-/', '*', '**' and '{user}' only)"
            )
        patterns.append(re.compile(_glob_regex(glob)))
    return tuple(patterns)


# --------------------------------------------------------------------------------------------
# Watching and writing
# --------------------------------------------------------------------------------------------

T = TypeVar("T")

#: Seconds between two looks at a file's identity while serving.
RECHECK_INTERVAL = 1.0


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class WatchedFile(Generic[T]):
    """A parsed file, parsed again when it changes (looked at once a second at most)."""

    def __init__(self, path: Path, parse: Callable[[Mapping[str, Any], Path], T]) -> None:
        self.path = path
        self._parse = parse
        self._lock = threading.Lock()
        self._identity = _identity(path)
        self._value = parse(read_toml(path), path)
        self._checked = time.monotonic()

    def current(self) -> T:
        now = time.monotonic()
        if now - self._checked < RECHECK_INTERVAL:
            return self._value
        with self._lock:
            if now - self._checked < RECHECK_INTERVAL:
                return self._value
            self._checked = now
            identity = _identity(self.path)
            if identity != self._identity:
                try:
                    self._value = self._parse(read_toml(self.path), self.path)
                    _log.info("reloaded", file=str(self.path))
                except ConfigError as exc:
                    _log.error("kept the previous version of a bad file", error=str(exc))
                self._identity = identity
            return self._value

    def fresh(self) -> T:
        """Parse the file now (for commands that change it)."""
        with self._lock:
            self._identity = _identity(self.path)
            self._value = self._parse(read_toml(self.path), self.path)
            self._checked = time.monotonic()
            return self._value
