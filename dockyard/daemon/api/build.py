"""``POST /build``: the classic builder, as a JSON-message stream.

The context is received and the Dockerfile parsed before the first message, so that a missing
Dockerfile, a syntax error or a bad parameter is an HTTP error with dockerd's status and text
(dockerd answers with the status until it has flushed output). Once the stream started, a
failure is its last message, with ``errorDetail.code`` the exit code the CLI exits with.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dockyard.core.errors import DockyardError
from dockyard.daemon.api.middleware import api_older_than
from dockyard.daemon.api.streams import SpooledBody
from dockyard.daemon.api.system import service_of
from dockyard.daemon.build.builder import Builder, SourceDigests, StepFailed
from dockyard.daemon.build.context import BuildContext, build_directory, receive_context
from dockyard.daemon.build.dockerfile import parse
from dockyard.daemon.build.options import parse_build_query
from dockyard.daemon.distribution.authconfig import (
    AuthConfig,
    credentials_of,
    decode_registry_config,
)
from dockyard.distribution.credentials import Credentials
from dockyard.distribution.reference import parse_reference

_log = structlog.get_logger("dockyard.api.build")

_DONE = object()


async def build(request: Request) -> Response:
    service = service_of(request)
    assert service.images is not None and service.containers is not None
    options = parse_build_query(
        _query_at_version(request),
        {key: request.query_params.getlist(key) for key in ("t", "extrahosts")},
    )
    auths = decode_registry_config(request.headers.get("x-registry-config"))
    directory = await run_in_threadpool(build_directory, service.data_root)
    try:
        context = await _received(request, directory)
        dockerfile = parse(await run_in_threadpool(context.dockerfile, options.dockerfile))
    except BaseException:
        await run_in_threadpool(shutil.rmtree, directory, True)
        raise
    messages: asyncio.Queue[Any] = asyncio.Queue()
    puller = service.pulls

    async def pull_image(name: str) -> None:
        assert puller is not None
        reference = parse_reference(name)
        registry = puller.registry_of(reference)
        auth = auths.get(registry) or auths.get(f"https://{registry}") or AuthConfig()
        credentials: Credentials = credentials_of(auth)
        resolved = await puller.resolve(
            reference, credentials, None, request.headers.get("user-agent", "")
        )
        await puller.pull(resolved, messages.put_nowait)

    try:
        builder = Builder(
            service.images,
            service.containers,
            options,
            context,
            dockerfile,
            _messages_at_version(request, messages.put_nowait),
            pull_image if puller is not None else None,
            _source_digests(request),
        )
    except BaseException:
        await run_in_threadpool(shutil.rmtree, directory, True)
        raise
    return StreamingResponse(
        _stream(builder, messages, options.quiet, directory), media_type="application/json"
    )


#: Build parameters dockerd 20.10 ignores from clients older than the API version that added
#: them.
_PARAMETER_SINCE = {"pull": "1.16", "platform": "1.32", "outputs": "1.40"}


def _query_at_version(request: Request) -> dict[str, str]:
    return {
        key: value
        for key, value in request.query_params.items()
        if key not in _PARAMETER_SINCE or not api_older_than(request, _PARAMETER_SINCE[key])
    }


def _messages_at_version(request: Request, put: Callable[[Any], None]) -> Callable[[Any], None]:
    """The build's messages: before API 1.30, as dockerd, without the ``aux`` one naming the
    image built (old clients read the ID from the "Successfully built" line)."""
    if not api_older_than(request, "1.30"):
        return put

    def put_without_aux(message: Any) -> None:
        if not (isinstance(message, dict) and "aux" in message):
            put(message)

    return put_without_aux


async def _received(request: Request, directory: Path) -> BuildContext:
    """The build context, extracted in a worker thread while the body still arrives (into a
    file of the build's directory): the extraction hides behind the upload."""
    body = SpooledBody(tempfile.TemporaryFile(dir=directory))  # noqa: SIM115 - body closes it
    with body:
        receiving = asyncio.ensure_future(
            run_in_threadpool(receive_context, body, directory / "context")  # type: ignore[arg-type]
        )
        try:
            async for chunk in request.stream():
                body.append(chunk)
        except BaseException as exc:
            body.finish(exc)
            with contextlib.suppress(BaseException):
                await receiving
            raise
        body.finish()
        return await receiving


def _source_digests(request: Request) -> SourceDigests:
    """The daemon's one record of the checksums COPY --from took (made with the app)."""
    state = request.app.state
    if not hasattr(state, "build_source_digests"):
        state.build_source_digests = SourceDigests()
    digests: SourceDigests = state.build_source_digests
    return digests


def _error(message: str, code: int | None) -> dict[str, Any]:
    detail: dict[str, Any] = {"message": message}
    if code is not None:
        detail["code"] = code
    return {"errorDetail": detail, "error": message}


async def _stream(
    builder: Builder, messages: asyncio.Queue[Any], quiet: bool, directory: Path
) -> AsyncIterator[bytes]:
    outcome: list[Any] = []

    async def run() -> None:
        try:
            outcome.append(await builder.run())
        except StepFailed as exc:
            outcome.append(_error(exc.message, exc.code))
        except DockyardError as exc:
            outcome.append(_error(exc.message, None))
        except Exception as exc:  # the stream has started: its last message says why
            _log.exception("build failed")
            outcome.append(_error(str(exc) or type(exc).__name__, None))
        finally:
            messages.put_nowait(_DONE)

    def frame(message: dict[str, Any]) -> bytes:
        return json.dumps(message).encode() + b"\r\n"

    held: list[bytes] = []
    task = asyncio.ensure_future(run())
    try:
        while (message := await messages.get()) is not _DONE:
            if quiet:
                held.append(frame(message))
            else:
                yield frame(message)
        result = outcome[0] if outcome else _error("the build was interrupted", None)
        if isinstance(result, dict):
            # As dockerd: with -q, the output held back is shown when the build fails.
            for chunk in held:
                yield chunk
            yield frame(result)
        elif quiet:
            yield frame({"stream": f"{result.id}\n"})
    finally:
        # A client that goes away stops the build, as with dockerd.
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await run_in_threadpool(shutil.rmtree, directory, True)


def routes() -> list[Route]:
    return [Route("/build", build, methods=["POST"])]
