"""``POST /images/{name}/push`` (``GET /distribution/{name}/json`` is with the pulls)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dockyard.core.errors import DockyardError, InvalidParameter
from dockyard.daemon.api.streams import json_message
from dockyard.daemon.api.system import registries_of, service_of
from dockyard.daemon.distribution import progress
from dockyard.daemon.distribution.authconfig import credentials_of, decode_registry_auth
from dockyard.daemon.distribution.push import NoLocalImage, NoSuchTag, PushSettings, push
from dockyard.daemon.images.compression import Compression
from dockyard.distribution.reference import parse_reference

_log = structlog.get_logger("dockyard.distribution")


async def push_image(request: Request) -> Response:
    """``POST /images/{name}/push?tag=``: the tag, or every tag of the repository."""
    service = service_of(request)
    reference = parse_reference(request.path_params["name"], default_tag=None)
    if reference.digest is not None:
        raise InvalidParameter("cannot push a digest reference")
    tag = request.query_params.get("tag")
    if tag:
        reference = parse_reference(f"{reference.name}:{tag}", default_tag=None)
    credentials = credentials_of(decode_registry_auth(request.headers.get("x-registry-auth")))
    settings = PushSettings(
        Compression(service.config.daemon.push_compression),
        concurrency=max(1, service.config.daemon.max_concurrent_uploads),
        attempts=max(1, service.config.daemon.max_upload_attempts),
    )
    assert service.images is not None and service.blob_sources is not None
    messages: asyncio.Queue[bytes | None] = asyncio.Queue(64)

    async def emit(message: dict[str, Any]) -> None:
        await messages.put(json_message(**message))

    async def run() -> None:
        try:
            await push(
                registries_of(service),
                service.images,  # type: ignore[arg-type]
                service.blob_sources,  # type: ignore[arg-type]
                reference,
                credentials,
                settings,
                emit,
                request.headers.get("user-agent", ""),
            )
        except (NoLocalImage, NoSuchTag, DockyardError) as exc:
            _log.info("push failed", reference=str(reference), error=str(exc))
            await emit(progress.error(str(exc)))
        except Exception as exc:
            _log.exception("push failed", reference=str(reference))
            await emit(progress.error(str(exc) or type(exc).__name__))
        finally:
            await messages.put(None)

    async def body() -> AsyncIterator[bytes]:
        task = asyncio.ensure_future(run())
        try:
            while (message := await messages.get()) is not None:
                yield message
        finally:
            if not task.done():  # the client went away: stop pushing
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return StreamingResponse(body(), media_type="application/json")


def routes() -> list[Route]:
    return [
        Route("/images/{name:path}/push", push_image, methods=["POST"]),
    ]
