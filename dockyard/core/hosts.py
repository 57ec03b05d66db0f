"""``-H`` host addresses, shared by the client and the daemon.

This module is on the client's import path, so it uses the standard library only (a NamedTuple
rather than attrs: the CLI's start-up time is a feature).
"""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

DEFAULT_TCP_PORT = 2375


class Host(NamedTuple):
    """``unix:///run/dockyard.sock`` or ``tcp://127.0.0.1:2375``."""

    scheme: str  # "unix" or "tcp"
    path: str = ""  # unix socket path
    address: str = ""  # tcp address
    port: int = 0

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        address = f"[{self.address}]" if ":" in self.address else self.address
        return f"tcp://{address}:{self.port}"


def parse_host(text: str) -> Host:
    """Parse a ``-H`` value; raises ``ValueError`` with a message fit for the user."""
    if text.startswith("unix://"):
        path = text[len("unix://") :]
        if not path.startswith("/"):
            raise ValueError(f"invalid host {text!r}: a unix socket needs an absolute path")
        return Host("unix", path=path)
    if text.startswith("/"):
        return Host("unix", path=text)
    if text.startswith("tcp://") or "://" not in text:
        parts = urlsplit(text if "://" in text else f"tcp://{text}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"invalid host {text!r}: bad port") from None
        if not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"invalid host {text!r}: expected tcp://ADDRESS:PORT")
        return Host("tcp", address=parts.hostname, port=port or DEFAULT_TCP_PORT)
    raise ValueError(f"invalid host {text!r}: use unix:///PATH or tcp://ADDRESS:PORT")
