"""A registry's ``WWW-Authenticate`` challenges, read the way docker's client reads them.

A registry names how to authenticate: ``Basic realm="..."`` (htpasswd), or
``Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"`` (docker's
token authentication). :func:`dockyard.core.httpauth.parse_challenges` reads one header
strictly; a client reads every header of a response and passes over one it cannot read (a
registry's malformed header is not the client's error, and docker's client does the same).
"""

from __future__ import annotations

from collections.abc import Iterable

from dockyard.core.httpauth import Challenge, parse_challenges


def read_challenges(headers: Iterable[str]) -> list[Challenge]:
    """The challenges of a response's ``WWW-Authenticate`` headers, in order."""
    found: list[Challenge] = []
    for header in headers:
        try:
            found.extend(parse_challenges(header))
        except ValueError:
            continue
    return found


def is_scheme(challenge: Challenge, scheme: str) -> bool:
    """Schemes compare case-insensitively (RFC 7235)."""
    return challenge.scheme.lower() == scheme
