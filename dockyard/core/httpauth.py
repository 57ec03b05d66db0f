"""HTTP authentication on the wire: challenges (RFC 7235) and Basic credentials (RFC 7617).

Auth providers build their ``WWW-Authenticate`` challenges and read ``Authorization: Basic``
with these, the auth conformance suite parses challenges strictly with them, and a client can
read a registry's challenge with them too: this module uses the standard library only (it may
sit on the client's import path, where start-up time counts).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import NamedTuple

from dockyard.core.errors import InvalidCredentials

#: Longest ``Authorization: Basic`` value read (base64 text). htpasswd caps user names at 255
#: bytes and bcrypt reads 72 bytes of a password; anything far beyond is not a login.
MAX_BASIC_CREDENTIALS = 4096

# RFC 7230 section 3.2.6: a token, and the characters a quoted-string holds unescaped.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_QUOTED = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
_OWS = re.compile(r"[ \t]*")


class Challenge(NamedTuple):
    """One challenge of a ``WWW-Authenticate`` header: ``Bearer realm="...",scope="..."``.

    ``scheme`` is as sent (schemes compare case-insensitively); ``params`` has lower-case names.
    """

    scheme: str
    params: dict[str, str]
    token68: str = ""


class BasicCredentials(NamedTuple):
    """A user name and password from ``Authorization: Basic``."""

    username: str
    password: str

    def __repr__(self) -> str:
        # Never a password in a traceback or a log line.
        return f"BasicCredentials(username={self.username!r}, password=<hidden>)"


def quote(value: str) -> str:
    """``value`` as an HTTP quoted-string; ``ValueError`` for what no header may hold."""
    if any((ord(c) < 0x20 and c != "\t") or ord(c) >= 0x7F for c in value):
        raise ValueError(f"{value[:100]!r} holds a control or non-ASCII character")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_challenge(scheme: str, params: Mapping[str, str]) -> str:
    """``scheme name="value",name="value"``: every value quoted, as the CNCF registry writes
    them (docker's clients read quoted values)."""
    if not _TOKEN.fullmatch(scheme) or not all(_TOKEN.fullmatch(name) for name in params):
        raise ValueError(f"invalid challenge scheme or parameter name in {scheme} {list(params)}")
    joined = ",".join(f"{name}={quote(value)}" for name, value in params.items())
    return f"{scheme} {joined}" if joined else scheme


def parse_challenges(header: str) -> list[Challenge]:
    """Read a ``WWW-Authenticate`` value: one or more comma-separated challenges.

    Strict: ``ValueError`` names the first thing RFC 7235 does not allow (a missing scheme, a
    parameter without ``=``, an unterminated quoted-string, a parameter named twice).
    """
    reader = _Reader(header)
    challenges: list[Challenge] = []
    reader.skip_list_separators()
    while not reader.done():
        scheme = reader.token("an auth-scheme")
        params: dict[str, str] = {}
        token68 = ""
        if reader.space():
            if reader.at_token68():
                token68 = reader.take(_TOKEN68)
            else:
                while reader.at_param():
                    name, value = reader.param()
                    if name in params:
                        raise ValueError(f"{scheme} challenge names {name!r} twice")
                    params[name] = value
                    if not reader.comma_before_param():
                        break
        challenges.append(Challenge(scheme, params, token68))
        reader.skip_ows()
        if not reader.done() and not reader.comma():
            raise ValueError(f"unexpected {reader.rest()[:40]!r} after the {scheme} challenge")
        reader.skip_list_separators()
    if not challenges:
        raise ValueError("no challenge")
    return challenges


class _Reader:
    """A cursor over a header value."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def rest(self) -> str:
        return self.text[self.pos :]

    def take(self, pattern: re.Pattern[str]) -> str:
        match = pattern.match(self.text, self.pos)
        if not match:
            return ""
        self.pos = match.end()
        return match.group(0)

    def token(self, what: str) -> str:
        found = self.take(_TOKEN)
        if not found:
            raise ValueError(f"expected {what} at {self.rest()[:40]!r}")
        return found

    def skip_ows(self) -> None:
        self.take(_OWS)

    def space(self) -> bool:
        """One or more spaces (the separator between a scheme and what follows it)."""
        start = self.pos
        self.take(re.compile(" +"))
        return self.pos > start and not self.done()

    def comma(self) -> bool:
        """An OWS "," OWS list separator, consumed when present."""
        start = self.pos
        self.skip_ows()
        if self.text.startswith(",", self.pos):
            self.pos += 1
            self.skip_ows()
            return True
        self.pos = start
        return False

    def comma_before_param(self) -> bool:
        """A separator followed by another parameter of this challenge, consumed when so."""
        start = self.pos
        if self.comma() and self.at_param():
            return True
        self.pos = start
        return False

    def skip_list_separators(self) -> None:
        # RFC 7230 section 7: a list may hold empty elements (", ,").
        while True:
            self.skip_ows()
            if not self.text.startswith(",", self.pos):
                return
            self.pos += 1

    def _peek_after(self, pattern: re.Pattern[str]) -> str | None:
        """The character after ``pattern`` and spaces here ("" at the end); ``None`` when
        ``pattern`` does not match here. Consumes nothing."""
        match = pattern.match(self.text, self.pos)
        if not match:
            return None
        after = _OWS.match(self.text, match.end())
        assert after is not None  # _OWS matches the empty string
        return self.text[after.end() : after.end() + 1]

    def at_param(self) -> bool:
        """Whether a ``name=`` auth-param starts here (and not the next challenge's scheme)."""
        return self._peek_after(_TOKEN) == "="

    def at_token68(self) -> bool:
        # "abc=def" is a parameter; a token68 is followed by the end or the next challenge.
        return self._peek_after(_TOKEN68) in ("", ",")

    def param(self) -> tuple[str, str]:
        name = self.token("a parameter name").lower()
        self.skip_ows()
        self.pos += 1  # "=", checked by at_param
        self.skip_ows()
        if self.text.startswith('"', self.pos):
            match = _QUOTED.match(self.text, self.pos)
            if not match:
                raise ValueError(f"unterminated or invalid quoted-string for {name!r}")
            self.pos = match.end()
            return name, _QUOTED_PAIR.sub(r"\1", match.group(1))
        return name, self.token(f"a value for {name!r}")


def basic_credentials(headers: Mapping[str, str]) -> BasicCredentials | None:
    """The user name and password of an ``Authorization: Basic`` header (lower-case names).

    ``None`` when there is no such header or it names another scheme: the request carries no
    Basic credentials. Raises :class:`InvalidCredentials` for Basic credentials that cannot be
    read (not base64, no ``:``, not UTF-8, too long): the caller tried and failed. The reason
    never quotes the credentials.
    """
    header = headers.get("authorization")
    if header is None:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    encoded = encoded.strip()
    if len(encoded) > MAX_BASIC_CREDENTIALS:
        raise InvalidCredentials(f"Basic credentials longer than {MAX_BASIC_CREDENTIALS} bytes")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        raise InvalidCredentials("Basic credentials are not base64") from None
    username, colon, password = raw.partition(b":")
    if not colon:
        raise InvalidCredentials("Basic credentials have no ':' between user name and password")
    try:
        return BasicCredentials(username.decode(), password.decode())
    except UnicodeDecodeError:
        raise InvalidCredentials("Basic credentials are not UTF-8") from None
