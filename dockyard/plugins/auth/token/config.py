"""``[auth.token]``: the token plugin's options."""

from __future__ import annotations

import attrs

from dockyard.core.config import option
from dockyard.plugins.auth.token.keys import ALGORITHMS

DEFAULT_ISSUER = "dockyard"
DEFAULT_SERVICE = "dockyard-registry"


@attrs.frozen
class TokenConfig:
    issuer: str = option(DEFAULT_ISSUER, "the tokens' iss claim (a verifying registry's issuer)")
    service: str = option(
        DEFAULT_SERVICE, "the tokens' aud claim: this registry's name in challenges and tokens"
    )
    realm: str = option(
        "", "token endpoint URL sent in challenges; empty: <scheme>://<Host header>/token"
    )
    users_file: str = option(
        "", "users and bcrypt hashes (TOML; `dockyard registry user`); empty: <state>/users.toml"
    )
    rules_file: str = option(
        "", "who may do what (TOML); empty: every user may do everything, anonymous nothing"
    )
    signing_key: str = option(
        "", "PEM private key (EC P-256 or RSA); empty: generated in <state>/signing-key.pem"
    )
    algorithm: str = option("ES256", "signature algorithm, and the kind of key", ALGORITHMS)
    certificate: str = option(
        "", "where the key's self-signed certificate is written; empty: <state>/token-cert.pem"
    )
    trusted_certs: list[str] = option(
        [], "PEM certificates or public keys of other token servers whose tokens are accepted"
    )
    lifetime: int = option(300, "seconds a bearer token lives (60 at least)")
    refresh_lifetime: int = option(
        90 * 86400, "seconds a refresh (identity) token lives, e.g. one `docker login`"
    )
    hash_cost: int = option(10, "bcrypt cost (log2 of the rounds) of new password hashes, 4-16")
