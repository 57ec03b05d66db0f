"""``WWW-Authenticate`` challenges (RFC 7235), as registries send them on a 401.

A registry names how to authenticate: ``Basic realm="..."`` (htpasswd), or
``Bearer realm="https://auth/token",service="registry",scope="repository:x:pull"`` (docker's
token authentication). One header may carry several challenges, and a response several headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf"\s*({_TOKEN})\s*=\s*(?:({_TOKEN})|\"((?:[^\"\\]|\\.)*)\")")
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})")
_TOKEN68 = re.compile(r"\s+[A-Za-z0-9._~+/-]+=*(?=\s*(?:,|$))")
_SEPARATOR = re.compile(r"\s*,")
_ESCAPE = re.compile(r"\\(.)")


@attrs.frozen
class Challenge:
    """One challenge: its scheme in lower case (``basic``, ``bearer``) and its parameters, keys
    in lower case."""

    scheme: str
    params: Mapping[str, str] = attrs.field(factory=dict)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """The challenges of ``WWW-Authenticate`` header values, in order. What cannot be read as
    a challenge ends that header's parsing (a registry's malformed header is not our error)."""
    found: list[Challenge] = []
    for header in headers:
        found.extend(_parse_one(header))
    return found


def _parse_one(header: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    position = 0
    while True:
        scheme = _SCHEME.match(header, position)
        if scheme is None:
            return challenges
        position = scheme.end()
        params: dict[str, str] = {}
        token68 = _TOKEN68.match(header, position)
        if token68 is not None:  # e.g. "Negotiate abc=="; no registry scheme uses one
            position = token68.end()
        while (param := _PARAM.match(header, position)) is not None:
            name, token, quoted = param.groups()
            params[name.lower()] = token if token is not None else _ESCAPE.sub(r"\1", quoted)
            position = param.end()
            separator = _SEPARATOR.match(header, position)
            if separator is None:
                break
            # After a comma comes another parameter, or the next challenge's scheme.
            if _PARAM.match(header, separator.end()) is None:
                break
            position = separator.end()
        challenges.append(Challenge(scheme.group(1).lower(), params))
        # The next challenge, if any, comes after a comma; anything else ends the header.
        separator = _SEPARATOR.match(header, position)
        if separator is None:
            return challenges
        position = separator.end()
