"""ASGI middleware and error handlers shared by every Engine API route.

Plain ASGI (not ``BaseHTTPMiddleware``) so streamed and long-lived responses pass untouched.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import MutableMapping
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import dockyard
from dockyard.core.errors import DockyardError

API_VERSION = "1.41"
#: As dockerd 20.10: the oldest version it answers, keeping what clients of each older version
#: rely on (the routes check :func:`api_older_than`).
MIN_API_VERSION = "1.12"
#: Up to this version dockerd answers errors as plain text (Go's ``http.Error``), not JSON.
LAST_PLAIN_TEXT_ERRORS_VERSION = (1, 23)

_VERSION_PREFIX = re.compile(r"^/v(\d+)\.(\d+)(/.*)$")
_log = structlog.get_logger("dockyard.api")


def _version_tuple(text: str) -> tuple[int, int]:
    major, minor = text.split(".")
    return int(major), int(minor)


def api_version(request: Request) -> tuple[int, int]:
    """The API version the request was made at (its ``/v1.NN`` prefix, else the newest)."""
    return _version_tuple(request.scope.get("api_version", API_VERSION))


def api_older_than(request: Request, version: str) -> bool:
    """Whether the request comes at an API version before ``version`` (dockerd's
    ``versions.LessThan``), for the behaviours dockerd keeps for old clients."""
    return api_version(request) < _version_tuple(version)


def error_response(status: int, message: str) -> JSONResponse:
    """The Engine API error form: ``{"message": ...}`` with exactly ``application/json``."""
    return JSONResponse({"message": message}, status_code=status)


class EngineHeadersMiddleware:
    """Strips and checks the ``/v1.NN`` prefix and adds Docker's headers to every response."""

    HEADERS = [
        (b"server", f"Dockyard/{dockyard.__version__} (linux)".encode()),
        (b"api-version", API_VERSION.encode()),
        (b"ostype", b"linux"),
        (b"docker-experimental", b"false"),
        (b"builder-version", b"1"),
        (b"swarm", b"inactive"),
    ]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + self.HEADERS
            await send(message)

        match = _VERSION_PREFIX.match(scope["path"])
        reply = send_with_headers
        if match:
            requested = (int(match.group(1)), int(match.group(2)))
            if requested <= LAST_PLAIN_TEXT_ERRORS_VERSION:
                reply = _plain_text_errors(send_with_headers)
            version = f"{requested[0]}.{requested[1]}"
            problem = None
            if requested > _version_tuple(API_VERSION):
                problem = (
                    f"client version {version} is too new. "
                    f"Maximum supported API version is {API_VERSION}"
                )
            elif requested < _version_tuple(MIN_API_VERSION):
                problem = (
                    f"client version {version} is too old. Minimum supported API version is "
                    f"{MIN_API_VERSION}, please upgrade your client to a newer version"
                )
            if problem:
                await error_response(400, problem)(scope, receive, reply)
                return
            scope = dict(scope, path=match.group(3), raw_path=match.group(3).encode())
            scope["api_version"] = version
        else:
            scope = dict(scope, api_version=API_VERSION)
        await self.app(scope, receive, reply)


def _plain_text_errors(send: Any) -> Any:
    """``send`` turning a JSON error (``{"message": ...}``, status 400 and up) into the plain
    text dockerd answers clients of API 1.23 and older with: the message and a newline,
    ``text/plain``, as Go's ``http.Error`` writes it. Other responses pass untouched."""
    held: MutableMapping[str, Any] | None = None
    body = bytearray()

    async def send_plain(message: MutableMapping[str, Any]) -> None:
        nonlocal held
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if message["status"] >= 400 and headers.get(b"content-type") == b"application/json":
                held = message
                return
        elif message["type"] == "http.response.body" and held is not None:
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            try:
                text = json.loads(body)["message"].encode() + b"\n"
            except (ValueError, KeyError, TypeError, AttributeError):
                text = bytes(body)  # not the error form: as it was
            kept = [
                (name, value)
                for name, value in held.get("headers", [])
                if name not in (b"content-type", b"content-length")
            ]
            await send(
                {
                    **held,
                    "headers": [
                        *kept,
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"x-content-type-options", b"nosniff"),
                        (b"content-length", str(len(text)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": text})
            return
        await send(message)

    return send_plain


class RequestTooLarge(DockyardError):
    status_code = 413


#: Requests whose bodies are streams the daemon consumes as they come (an image archive, a
#: build context, a tar to unpack), not JSON read whole into memory: no size limit.
STREAMED_BODIES = (
    ("POST", re.compile(r"^/images/(load|create)$")),
    ("POST", re.compile(r"^/build$")),
    ("PUT", re.compile(r"^/containers/[^/]+/archive$")),
)


class JsonBodyLimitMiddleware:
    """Refuses, with 413, a request body larger than ``limit`` bytes (``max-json-body``), except
    the streamed uploads of :data:`STREAMED_BODIES`. Sits inside :class:`EngineHeadersMiddleware`,
    so paths are already without their ``/v1.NN``.

    A declared ``Content-Length`` over the limit is refused before anything is read; a chunked
    body is counted as it comes and refused once it passes the limit. The connection is closed
    after the answer, since the rest of the body may still be on its way.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _problem(self) -> str:
        return (
            f"request body is larger than {self.limit} bytes, the daemon's limit "
            "(max-json-body in its config)"
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] != "http"
            or not self.limit
            or any(
                scope["method"] == method and pattern.match(scope["path"])
                for method, pattern in STREAMED_BODIES
            )
        ):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.limit:
            response = error_response(413, self._problem())
            response.headers["Connection"] = "close"
            await response(scope, receive, send)
            return
        received = 0
        overflowed = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received, overflowed
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    overflowed = True
                    raise RequestTooLarge(self._problem())
            return message

        async def closing_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and overflowed:
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, counting_receive, closing_send)


class BearerTokenMiddleware:
    """Refuses requests without ``Authorization: Bearer <token>`` (the daemon's TCP sockets)."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                response = error_response(401, "authentication required: send a bearer token")
                response.headers["WWW-Authenticate"] = 'Bearer realm="dockyard"'
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def handle_dockyard_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DockyardError)
    if exc.status_code >= 500:
        _log.error("request failed", error=exc.message)
    return error_response(exc.status_code, exc.message)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    # An unknown route or method is "not implemented here": 404 lets docker's generic
    # inspect move on to the next object type.
    if exc.status_code in (404, 405):
        return error_response(404, "page not found")
    return error_response(exc.status_code, str(exc.detail))


async def handle_unexpected_error(request: Request, exc: Exception) -> Response:
    _log.exception("unexpected error", error=repr(exc))
    return error_response(500, f"internal error: {exc}")
