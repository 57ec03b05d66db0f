"""The ``token`` auth provider: bearer tokens for the registry, and the token service's side.

It is an :class:`~dockyard.core.interfaces.AuthProvider` (verifies bearer tokens, applies the
rules), a :class:`~dockyard.core.interfaces.TokenIssuer` (checks passwords and refresh tokens,
mints tokens) and a :class:`~dockyard.core.interfaces.UserManager` (the users file).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import bcrypt
import structlog

from dockyard.core.durable import replace_file
from dockyard.core.errors import ConfigError, InvalidCredentials, InvalidParameter, NotFound
from dockyard.core.httpauth import format_challenge
from dockyard.core.interfaces import Access, AuthRequest, Identity, IssuedToken
from dockyard.plugins.auth.token.accounts import Rules, Users, WatchedFile, check_user_name
from dockyard.plugins.auth.token.config import TokenConfig
from dockyard.plugins.auth.token.files import locked
from dockyard.plugins.auth.token.keys import load_signing_key, load_trusted_keys
from dockyard.plugins.auth.token.signed_tokens import TokenSigner, rfc3339

_log = structlog.get_logger("dockyard.auth.token")

#: bcrypt reads at most this many bytes of a password; longer ones are refused, not cut.
MAX_PASSWORD_BYTES = 72
MIN_LIFETIME = 60  # the token spec: never hand out a token with less than 60 s to live
HASH_COSTS = range(4, 17)

_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9_.=+/-]+) *")
# What a Host header may hold to be put into a realm (a name or address, and a port).
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](?::[0-9]{1,5})?")


def password_fingerprint(password_hash: str) -> str:
    """What a refresh token keeps of its user's password hash: a new password, and so a new
    salted hash, no longer matches it. (A digest of the salted hash: it tells nothing about the
    password without the hash itself.)"""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


def check_options(config: TokenConfig) -> None:
    if config.lifetime < MIN_LIFETIME:
        raise ConfigError(f"[auth.token] lifetime must be at least {MIN_LIFETIME} seconds")
    if config.refresh_lifetime < config.lifetime:
        raise ConfigError("[auth.token] refresh-lifetime must be at least lifetime")
    if config.hash_cost not in HASH_COSTS:
        raise ConfigError(
            f"[auth.token] hash-cost must be {HASH_COSTS.start}-{HASH_COSTS.stop - 1}; "
            f"got {config.hash_cost}"
        )
    for name in ("issuer", "service"):
        if not getattr(config, name):
            raise ConfigError(f"[auth.token] {name} must not be empty")


class TokenProvider:
    """Bearer-token auth over a users file and a rules file, with its own token service."""

    def __init__(self, config: TokenConfig, state_dir: Path) -> None:
        check_options(config)
        self.config = config
        self.service = config.service
        key = load_signing_key(
            config.signing_key, config.algorithm, config.certificate, state_dir, config.issuer
        )
        self.signer = TokenSigner(
            key,
            load_trusted_keys(config.trusted_certs),
            config.issuer,
            config.service,
            config.lifetime,
            config.refresh_lifetime,
        )
        self.users_path = Path(config.users_file) if config.users_file else state_dir / "users.toml"
        self._users = WatchedFile(self.users_path, Users.parse)
        if config.rules_file:
            if not Path(config.rules_file).is_file():
                raise ConfigError(f"[auth.token] rules-file {config.rules_file} does not exist")
            self._rules: WatchedFile[Rules] | None = WatchedFile(
                Path(config.rules_file), Rules.parse
            )
        else:
            self._rules = None
        self._dummy_hash: bytes | None = None
        self._dummy_lock = threading.Lock()

    @property
    def certificate_path(self) -> Path:
        return self.signer.key.certificate_path

    def _current_rules(self) -> Rules:
        if self._rules is None:
            return _DEFAULT_RULES
        return self._rules.current()

    def _identity(self, subject: str, granted: tuple[Access, ...] | None = None) -> Identity:
        groups = self._current_rules().groups_of(subject) if subject else ()
        return Identity(subject, groups, granted)

    # ------------------------------------------------------------------ AuthProvider

    def authenticate(self, request: AuthRequest) -> Identity | None:
        """A bearer token's identity, limited to its ``access`` claim.

        Like the CNCF registry in token mode, only ``Bearer`` credentials count: a request
        with none, or with Basic credentials, is anonymous (Basic belongs to the token
        endpoint, which turns it into a token).
        """
        header = request.headers.get("authorization", "")
        if not header[:7].lower().startswith("bearer "):
            return None
        match = _BEARER.fullmatch(header)
        if match is None:
            raise InvalidCredentials("malformed bearer token")
        verified = self.signer.verify_access(match.group(1))
        return self._identity(verified.subject, verified.granted)

    def authorize(self, identity: Identity | None, access: Access) -> tuple[str, ...]:
        """The actions the rules give ``identity``. A subject that is not a user any more (or
        the empty subject of an anonymous token) gets what anonymous gets."""
        subject = identity.subject if identity is not None else ""
        if subject and subject not in self._users.current().hashes:
            subject = ""
        return self._current_rules().allowed(subject, access)

    def challenge(
        self, request: AuthRequest, wanted: Sequence[Access], error: str = ""
    ) -> dict[str, str]:
        params = {"realm": self.realm(request), "service": self.service}
        if wanted:
            params["scope"] = " ".join(str(a) for a in wanted)
        if error:
            params["error"] = error
        return {"WWW-Authenticate": format_challenge("Bearer", params)}

    def realm(self, request: AuthRequest) -> str:
        """The configured realm, or this server's own ``/token`` as the request reached it."""
        if self.config.realm:
            return self.config.realm
        host = request.headers.get("host", "")
        if not _HOST.fullmatch(host):
            host = "localhost"
        scheme = "https" if request.scheme == "https" else "http"
        return f"{scheme}://{host}/token"

    # ------------------------------------------------------------------ TokenIssuer

    def _check_password(self, password: str, stored: str | None) -> bool:
        """bcrypt's own check (constant-time); an unknown user costs as much as a known one."""
        candidate = password.encode()
        if stored is None or len(candidate) > MAX_PASSWORD_BYTES:
            with self._dummy_lock:
                if self._dummy_hash is None:
                    salt = bcrypt.gensalt(self.config.hash_cost)
                    self._dummy_hash = bcrypt.hashpw(b"not a password", salt)
            bcrypt.checkpw(candidate[:MAX_PASSWORD_BYTES], self._dummy_hash)
            return False
        return bcrypt.checkpw(candidate, stored.encode())

    def login(self, username: str, password: str) -> Identity:
        stored = self._users.current().hashes.get(username)
        if not self._check_password(password, stored):
            raise InvalidCredentials("wrong user name or password", subject=username)
        return self._identity(username)

    def refresh(self, refresh_token: str) -> Identity:
        verified = self.signer.verify_refresh(refresh_token)
        stored = self._users.current().hashes.get(verified.subject)
        expected = password_fingerprint(stored) if stored is not None else ""
        # Constant-time: the fingerprint is a secret the token proves knowledge of.
        if not hmac.compare_digest(expected, verified.password_fingerprint) or not stored:
            raise InvalidCredentials(
                "refresh token revoked: its user was removed or changed password",
                subject=verified.subject,
            )
        return self._identity(verified.subject)

    def issue(
        self,
        identity: Identity | None,
        granted: Sequence[Access],
        service: str,
        client_id: str = "",
        offline: bool = False,
    ) -> IssuedToken:
        if service != self.service:
            raise InvalidParameter(
                f"unknown service {service[:100]!r}: this token server issues tokens for "
                f"{self.service!r}"
            )
        subject = identity.subject if identity is not None else ""
        token, claims = self.signer.access_token(subject, granted)
        refresh_token = ""
        if offline and subject:
            stored = self._users.current().hashes.get(subject)
            if stored is None:
                raise InvalidCredentials("no such user", subject=subject)
            refresh_token = self.signer.refresh_token(subject, password_fingerprint(stored))
        _log.info(
            "token issued",
            subject=subject or "<anonymous>",
            client_id=client_id[:100],
            access=[str(a) for a in granted],
            jti=claims["jti"],
            refresh=bool(refresh_token),
        )
        return IssuedToken(
            token=token,
            expires_in=claims["exp"] - claims["iat"],
            issued_at=rfc3339(claims["iat"]),
            refresh_token=refresh_token,
        )

    def signing_certificates(self) -> str:
        return self.signer.key.certificate_pem

    # ------------------------------------------------------------------ UserManager

    def add_user(self, name: str, password: str) -> bool:
        problem = check_user_name(name)
        if problem:
            raise InvalidParameter(f"invalid user name {name[:100]!r}: {problem}")
        if not password:
            raise InvalidParameter("the password must not be empty")
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            raise InvalidParameter(
                f"the password is longer than bcrypt's {MAX_PASSWORD_BYTES} bytes"
            )
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(self.config.hash_cost)).decode()
        with locked(self.users_path):
            users = self._users.fresh()
            created = name not in users.hashes
            self._write_users(Users({**users.hashes, name: hashed}))
        _log.info("user added" if created else "password changed", user=name)
        return created

    def remove_user(self, name: str) -> None:
        with locked(self.users_path):
            users = self._users.fresh()
            if name not in users.hashes:
                raise NotFound(f"no such user: {name[:100]!r}")
            self._write_users(Users({k: v for k, v in users.hashes.items() if k != name}))
        _log.info("user removed", user=name)

    def users(self) -> list[str]:
        return sorted(self._users.fresh().hashes)

    def _write_users(self, users: Users) -> None:
        replace_file(self.users_path, users.render().encode(), 0o600)
        self._users.fresh()


_DEFAULT_RULES = Rules.everyone_authenticated()
