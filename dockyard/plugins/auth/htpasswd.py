"""Auth provider ``htpasswd``: HTTP Basic against an Apache htpasswd file of bcrypt hashes.

It behaves as the CNCF registry's htpasswd auth does:

* a request without Basic credentials gets ``WWW-Authenticate: Basic realm="..."``; a user
  whose password matches may do everything (pull, push, delete, the catalog); nobody else may
  do anything;
* only bcrypt entries (``$2y$``, ``$2b$``, ``$2a$``: what ``htpasswd -B`` writes) are used;
  entries of other formats are skipped with a warning naming the line, and those users cannot
  log in, as the CNCF registry documents ("entries with other hash types are ignored");
* the file is read again when it changes (the CNCF registry compares its modification time on
  each request), so ``htpasswd -B FILE USER`` applies without a restart.

Where we differ, on purpose:

* a missing file stops the start with the command that makes one; the CNCF registry creates it
  with a generated password for a user ``docker`` and prints that password to its log, and a
  secret in a log is what our logging promises never to write;
* a line that is not ``user:hash`` stops the start naming the line. After the start, a file
  that stops parsing (caught half-written, say) is logged and the last good one stays in use
  until the file changes again; a file that disappears lets nobody in until it is back;
* an unknown user costs one bcrypt check of a dummy hash *of the file's usual cost* (the CNCF
  registry's dummy has cost 5 whatever the file's cost), so the time of a refusal tells nobody
  whether the user exists;
* of two lines for one user the first counts (as Apache httpd reads the file), with a warning.
"""

from __future__ import annotations

import collections
import os
import re
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs
import structlog

from dockyard.core.config import option
from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.errors import ConfigError, DriverUnavailable, InvalidCredentials
from dockyard.core.hookspecs import hookimpl
from dockyard.core.httpauth import basic_credentials, format_challenge
from dockyard.core.interfaces import Access, AuthRequest, Identity

_log = structlog.get_logger("dockyard.auth.htpasswd")

#: A bcrypt hash as htpasswd -B (and every bcrypt library) writes it: prefix, cost, 22
#: characters of salt and 31 of checksum in bcrypt's base64 alphabet.
_BCRYPT = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
#: bcrypt hashes the first 72 bytes of a password and ignores the rest; htpasswd -B made the
#: file's hashes so. The Python package refuses longer input instead of cutting it.
_BCRYPT_MAX_PASSWORD = 72
#: The cost htpasswd -B uses unless given -C: the dummy's cost when the file has no entries.
_HTPASSWD_DEFAULT_COST = 5
#: What an entry's hash looks like when it is not bcrypt, for the warning (never the hash).
_OTHER_FORMATS = {
    "$apr1$": "MD5 (apr1)",
    "{SHA}": "SHA-1",
    "$1$": "MD5-crypt",
    "$5$": "SHA-256-crypt",
    "$6$": "SHA-512-crypt",
}

REFUSED = "wrong user name or password"


@attrs.frozen
class HtpasswdConfig:
    path: str = option("", "htpasswd file of bcrypt entries (htpasswd -B); re-read on change")
    realm: str = option("dockyard", "realm named in the Basic challenge")


class HtpasswdSyntaxError(ValueError):
    """A line of the file is not ``user:hash``."""


@attrs.frozen
class _FileState:
    """What identifies one version of the file: a change to any of these means read it again.

    The size and both times catch an edit within one tick of the coarse file clock (a new
    bcrypt hash has the same length as the old one, but the file is truncated first).
    """

    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, stat: os.stat_result) -> _FileState:
        return cls(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


#: The state of a file that is not there (nothing to compare but its absence).
_MISSING = _FileState(0, 0, -1, 0, 0)


@attrs.frozen
class Users:
    """The usable entries of one version of the file, and the dummy hash for unknown users."""

    hashes: Mapping[str, bytes]
    dummy_hash: bytes
    state: _FileState
    warnings: tuple[str, ...] = ()


def parse_htpasswd(text: bytes, source: str) -> tuple[dict[str, bytes], list[str]]:
    """The bcrypt entries of an htpasswd file and warnings for the lines skipped.

    Blank lines and lines starting with ``#`` are ignored, like the CNCF registry does.
    Raises :class:`HtpasswdSyntaxError` naming the first line that is not ``user:hash``.
    """
    hashes: dict[str, bytes] = {}
    first_line: dict[str, int] = {}
    warnings: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        user_bytes, colon, hash_bytes = line.partition(b":")
        if not colon:
            raise HtpasswdSyntaxError(f"{source} line {number}: no ':' between user and hash")
        if not user_bytes:
            raise HtpasswdSyntaxError(f"{source} line {number}: empty user name")
        try:
            user = user_bytes.decode()
        except UnicodeDecodeError:
            warnings.append(f"{source} line {number}: the user name is not UTF-8; skipped")
            continue
        if user in first_line:
            warnings.append(
                f"{source} line {number}: user {user!r} is already on line "
                f"{first_line[user]}, which counts; this line is skipped"
            )
            continue
        first_line[user] = number
        hash_text = hash_bytes.decode("ascii", "replace")
        if not _BCRYPT.fullmatch(hash_text):
            warnings.append(
                f"{source} line {number}: user {user!r} cannot log in: {_unusable(hash_text)}"
            )
            continue
        hashes[user] = hash_bytes
    return hashes, warnings


def _unusable(hash_text: str) -> str:
    """Why an entry's hash cannot be used, without quoting it."""
    if hash_text.startswith("$2"):
        return "its bcrypt hash is malformed"
    kind = next(
        (name for prefix, name in _OTHER_FORMATS.items() if hash_text.startswith(prefix)),
        "crypt or plain text",
    )
    return f"its hash is {kind}, not bcrypt (make it with `htpasswd -B`)"


def _usual_cost(hashes: Mapping[str, bytes]) -> int:
    """The most common bcrypt cost in the file (the higher one on a tie)."""
    costs = collections.Counter(int(h[4:6]) for h in hashes.values())
    if not costs:
        return _HTPASSWD_DEFAULT_COST
    return max(costs, key=lambda cost: (costs[cost], cost))


class HtpasswdAuth:
    """The ``htpasswd`` provider. Thread-safe: the registry calls it from worker threads."""

    def __init__(self, config: HtpasswdConfig) -> None:
        import bcrypt  # here, not at the top: every process that lists plugins imports this module

        self._bcrypt = bcrypt
        if not config.path:
            raise ConfigError(
                "[auth.htpasswd] path is not set: name an htpasswd file of bcrypt entries "
                "(make one with: htpasswd -cB FILE USER)"
            )
        try:
            self._challenge = {
                "WWW-Authenticate": format_challenge("Basic", {"realm": config.realm})
            }
        except ValueError as exc:
            raise ConfigError(f"[auth.htpasswd] realm: {exc}") from None
        self.path = Path(config.path)
        self._lock = threading.Lock()
        self._users = self._load_at_start()

    # ---------------------------------------------------------------- the file

    def _load_at_start(self) -> Users:
        if not self.path.exists():
            raise ConfigError(
                f"[auth.htpasswd] path: {self.path} does not exist; make it with: "
                f"htpasswd -cB {self.path} USER"
            )
        try:
            users = self._read()
        except OSError as exc:
            raise ConfigError(
                f"[auth.htpasswd] path: cannot read {self.path}: {exc.strerror}"
            ) from None
        except HtpasswdSyntaxError as exc:
            raise ConfigError(f"[auth.htpasswd] {exc}") from None
        self._log_loaded(users, "htpasswd file loaded")
        return users

    def _read(self) -> Users:
        with open(self.path, "rb") as file:
            # The state before reading: a change made while we read shows as a difference at
            # the next request, which reads the file again.
            state = _FileState.of(os.fstat(file.fileno()))
            text = file.read()
        hashes, warnings = parse_htpasswd(text, str(self.path))
        dummy = self._bcrypt.hashpw(b"no such user", self._bcrypt.gensalt(_usual_cost(hashes)))
        return Users(hashes, dummy, state, tuple(warnings))

    def _log_loaded(self, users: Users, event: str) -> None:
        for warning in users.warnings:
            _log.warning("htpasswd entry skipped", detail=warning)
        _log.info(event, path=str(self.path), users=len(users.hashes))

    def users(self) -> Users:
        """The entries of the file as it is now, read again if it changed since last time."""
        try:
            state = _FileState.of(os.stat(self.path))
        except FileNotFoundError:
            state = _MISSING
        except OSError:
            state = attrs.evolve(self._users.state, size=-2)  # unreadable: try again below
        if state == self._users.state:
            return self._users
        with self._lock:
            if state != self._users.state:  # another thread may have read it meanwhile
                self._users = self._reread(state)
            return self._users

    def _reread(self, state: _FileState) -> Users:
        if state == _MISSING:
            _log.error("htpasswd file is missing: nobody can log in", path=str(self.path))
            return Users({}, self._users.dummy_hash, _MISSING)
        try:
            users = self._read()
        except (OSError, HtpasswdSyntaxError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            _log.error(
                "htpasswd file not reloaded: the last good version stays in use",
                path=str(self.path),
                reason=reason,
            )
            # Remember this version so it is not read again on every request.
            return attrs.evolve(self._users, state=state)
        self._log_loaded(users, "htpasswd file reloaded")
        return users

    # ---------------------------------------------------------------- AuthProvider

    def authenticate(self, request: AuthRequest) -> Identity | None:
        credentials = basic_credentials(request.headers)
        if credentials is None:
            return None
        users = self.users()
        password = credentials.password.encode()[:_BCRYPT_MAX_PASSWORD]
        stored = users.hashes.get(credentials.username)
        # An unknown user costs a check of the dummy hash, so the time taken tells nothing.
        # checkpw compares the digests in constant time.
        matches = self._bcrypt.checkpw(password, stored or users.dummy_hash)
        if stored is None or not matches:
            raise InvalidCredentials(REFUSED, subject=credentials.username)
        return Identity(subject=credentials.username)

    def authorize(self, identity: Identity | None, access: Access) -> tuple[str, ...]:
        # As the CNCF registry: whoever logs in may do everything, nobody else anything.
        return access.actions if identity is not None else ()

    def challenge(
        self, request: AuthRequest, wanted: Sequence[Access], error: str = ""
    ) -> dict[str, str]:
        # Basic has no scope and no error parameter (RFC 7617): the realm says it all.
        return dict(self._challenge)


def check() -> None:
    try:
        import bcrypt  # noqa: F401
    except ImportError:
        raise DriverUnavailable("bcrypt is not installed (pip install bcrypt)") from None


def build(config: HtpasswdConfig, context: DriverContext) -> HtpasswdAuth:
    return HtpasswdAuth(config)


@hookimpl
def dockyard_auth_providers() -> DriverInfo:
    return DriverInfo(
        name="htpasswd",
        kind=DriverKind.AUTH,
        factory=build,
        config_class=HtpasswdConfig,
        description="HTTP Basic against an htpasswd file of bcrypt hashes (htpasswd -B)",
        check=check,
    )
