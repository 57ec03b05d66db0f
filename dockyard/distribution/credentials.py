"""What a registry exchange authenticates with. Secrets never appear in a record's ``repr``, so a
log line or a traceback cannot carry them."""

from __future__ import annotations

import hashlib
import os

import attrs

#: Per process: the token cache keys credentials by a salted digest, never by the secret.
_CACHE_SALT = os.urandom(16)


@attrs.frozen
class Credentials:
    """What a registry exchange authenticates with.

    ``identity_token`` is an OAuth2 refresh token (from an earlier login) used instead of the
    password; ``registry_token`` a bearer token the client already holds, sent as it is.
    """

    username: str = ""
    password: str = attrs.field(default="", repr=False)
    identity_token: str = attrs.field(default="", repr=False)
    registry_token: str = attrs.field(default="", repr=False)

    @property
    def has_password(self) -> bool:
        return bool(self.username and self.password)

    def cache_key(self) -> str:
        """Distinguishes credentials in the token cache without keeping their secrets."""
        material = "\0".join(
            (self.username, self.password, self.identity_token, self.registry_token)
        )
        return hashlib.sha256(_CACHE_SALT + material.encode()).hexdigest()
