"""``POST /images/create?fromImage=``: a pull, as a JSON-message stream; and
``GET /distribution/{name}/json``, what a reference resolves to on its registry.

Everything that can fail before the first byte of the image (a bad reference, credentials,
an unreachable registry, an unknown manifest) is an HTTP error with dockerd's status and text;
once the stream started, a failure is its last message (``errorDetail`` and ``error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from dockyard.core.errors import DockyardError, InvalidParameter
from dockyard.daemon.api.middleware import api_older_than
from dockyard.daemon.api.system import service_of
from dockyard.daemon.distribution import progress
from dockyard.daemon.distribution.authconfig import credentials_of, decode_registry_auth
from dockyard.daemon.distribution.pull import Puller, ResolvedPull, parse_platform
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.reference import parse_reference, parse_repository_and_tag

_log = structlog.get_logger("dockyard.api.pull")

#: Parameters of ``POST /images/create`` that belong to an import, not to a pull.
_IMPORT_ONLY = ("fromSrc", "repo", "changes", "message")

_DONE = object()


def _puller(request: Request) -> Puller:
    puller = service_of(request).pulls
    assert puller is not None
    return puller


def _credentials(request: Request) -> Credentials:
    return credentials_of(
        decode_registry_auth(request.headers.get("x-registry-auth")), "X-Registry-Auth"
    )


async def distribution_inspect(request: Request) -> Response:
    reference = parse_reference(request.path_params["name"])
    answer = await _puller(request).inspect(
        reference, _credentials(request), request.headers.get("user-agent", "")
    )
    return JSONResponse(answer)


def routes() -> list[Route]:
    return [Route("/distribution/{name:path}/json", distribution_inspect)]


async def pull_image(request: Request) -> Response:
    query = request.query_params
    refused = [name for name in _IMPORT_ONLY if name in query]
    if refused:
        raise InvalidParameter(f"{', '.join(refused)}: not used when pulling (fromImage)")
    reference = parse_repository_and_tag(query["fromImage"], query.get("tag") or None)
    # dockerd 20.10 takes a platform from clients of API 1.32 and later.
    wanted = query.get("platform") if not api_older_than(request, "1.32") else None
    platform = parse_platform(wanted) if wanted else None
    puller = _puller(request)
    resolved = await puller.resolve(
        reference, _credentials(request), platform, request.headers.get("user-agent", "")
    )
    return StreamingResponse(_stream(puller, resolved), media_type="application/json")


async def _stream(puller: Puller, resolved: ResolvedPull) -> AsyncIterator[bytes]:
    messages: asyncio.Queue[Any] = asyncio.Queue()

    async def run() -> None:
        try:
            await puller.pull(resolved, messages.put_nowait)
        except DockyardError as exc:
            messages.put_nowait(progress.error(exc.message))
        except Exception as exc:  # the stream has started: its last message says why
            _log.exception("pull failed", reference=str(resolved.reference))
            messages.put_nowait(progress.error(str(exc) or type(exc).__name__))
        finally:
            messages.put_nowait(_DONE)

    task = asyncio.ensure_future(run())
    try:
        while (message := await messages.get()) is not _DONE:
            yield json.dumps(message).encode() + b"\r\n"
    finally:
        # The client went away (or we are done): a pull nobody reads stops, as dockerd's.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
