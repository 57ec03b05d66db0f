"""A small Engine API client over a Unix socket or TCP (optionally TLS), standard library only.

This is the CLI's transport. It must stay cheap to import: no third-party packages.
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from typing import Any, NamedTuple
from urllib.parse import urlencode

from dockyard.core.hosts import Host

API_VERSION = "1.41"


class DaemonUnreachable(Exception):
    def __init__(self, host: Host) -> None:
        super().__init__(f"cannot connect to the dockyard daemon at {host}: is it running?")


class APIError(Exception):
    """The daemon answered with an error status; ``str()`` is its message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class TLSOptions(NamedTuple):
    ca: str = ""
    cert: str = ""
    key: str = ""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if self.timeout is not None:
            sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class EngineClient:
    def __init__(
        self,
        host: Host,
        tls: TLSOptions | None = None,
        token: str = "",
        timeout: float | None = 60.0,
    ) -> None:
        self.host = host
        self.tls = tls
        self.token = token
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        if self.host.scheme == "unix":
            return _UnixConnection(self.host.path, self.timeout)
        if self.tls is None:
            return http.client.HTTPConnection(
                self.host.address, self.host.port, timeout=self.timeout
            )
        context = ssl.create_default_context(cafile=self.tls.ca or None)
        if self.tls.cert:
            context.load_cert_chain(self.tls.cert, self.tls.key or None)
        return http.client.HTTPSConnection(
            self.host.address, self.host.port, timeout=self.timeout, context=context
        )

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
        versioned: bool = True,
    ) -> http.client.HTTPResponse:
        """Send one request; returns the open response (status < 400) for the caller to read."""
        url = f"/v{API_VERSION}{path}" if versioned else path
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"User-Agent": "dockyard-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        connection = self._connection()
        try:
            connection.request(method, url, body=payload, headers=headers)
            response = connection.getresponse()
        except (TimeoutError, ConnectionError, FileNotFoundError, socket.gaierror):
            raise DaemonUnreachable(self.host) from None
        except OSError as exc:
            if isinstance(exc, ssl.SSLError):
                raise
            raise DaemonUnreachable(self.host) from None
        if response.status >= 400:
            raw = response.read()
            try:
                message = json.loads(raw)["message"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode(errors="replace").strip() or response.reason
            raise APIError(response.status, message)
        return response

    def get_json(self, path: str, query: dict[str, Any] | None = None) -> Any:
        return json.loads(self.request("GET", path, query).read())
