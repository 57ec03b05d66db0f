"""Images to pull, pushed into a registry over the distribution API, and a stub registry for
what no real registry does (wrong digests, HTML, dropped connections, redirects)."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
from collections.abc import Callable
from typing import Any

import attrs
import requests
import zstandard

from dockyard.testing.images import busybox_rootfs, layer_tar, sha256

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


@attrs.frozen
class BuiltImage:
    """An image as a registry holds it: the manifest, the config and the layer blobs."""

    manifest: bytes
    config: bytes
    blobs: tuple[bytes, ...]
    media_types: tuple[str, ...]

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def image_id(self) -> str:
        return sha256(self.config)

    def blob_map(self) -> dict[str, bytes]:
        return {sha256(b): b for b in (self.config, *self.blobs)}


def build_image(
    tars: list[bytes], compression: str = "gzip", architecture: str = "amd64", cmd: str = "true"
) -> BuiltImage:
    """A Docker v2 image (OCI media types for zstd) of the uncompressed layer ``tars``."""
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Cmd": ["/bin/sh", "-c", cmd], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [sha256(t) for t in tars]},
        }
    ).encode()
    if compression == "zstd":
        blobs = tuple(zstandard.ZstdCompressor().compress(t) for t in tars)
        layer_type = "application/vnd.oci.image.layer.v1.tar+zstd"
    else:
        blobs = tuple(gzip.compress(t, mtime=0) for t in tars)
        layer_type = DOCKER_LAYER
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": sha256(config)},
            "layers": [
                {"mediaType": layer_type, "size": len(b), "digest": sha256(b)} for b in blobs
            ],
        },
        indent=3,
    ).encode()
    return BuiltImage(manifest, config, blobs, (layer_type,) * len(blobs))


def busybox_image(extra: int = 0, cmd: str = "echo hello from dockyard") -> BuiltImage:
    """busybox, plus ``extra`` small layers above it."""
    tars = [busybox_rootfs()]
    tars += [layer_tar({f"layer{i}": f"layer {i}\n".encode()}) for i in range(extra)]
    return build_image(tars, cmd=cmd)


def index_of(images: dict[str, BuiltImage]) -> bytes:
    """An OCI index of ``images`` by architecture."""
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": DOCKER_MANIFEST,
                    "size": len(image.manifest),
                    "digest": image.digest,
                    "platform": {"os": "linux", "architecture": arch},
                }
                for arch, image in images.items()
            ],
        }
    ).encode()


def push(url: str, name: str, tag: str, image: BuiltImage, session: Any = None) -> None:
    """Push ``image`` as ``name:tag`` through ``session`` (a ``requests.Session`` or the
    test clients of ``tests/registry``, with their auth): POST, then PUT of the whole blob."""
    http = session or requests.Session()
    for digest, data in image.blob_map().items():
        reply = http.request("POST", f"{url}/v2/{name}/blobs/uploads/")
        assert reply.status_code == 202, (reply.status_code, reply.text)
        location = reply.headers["Location"]
        if "://" not in location:
            location = url + location
        separator = "&" if "?" in location else "?"
        reply = http.request("PUT", f"{location}{separator}digest={digest}", data=data)
        assert reply.status_code == 201, (reply.status_code, reply.text)
    put_manifest(url, name, tag, image.manifest, DOCKER_MANIFEST, http)


def put_manifest(
    url: str, name: str, tag: str, data: bytes, media_type: str, session: Any = None
) -> None:
    http = session or requests.Session()
    reply = http.request(
        "PUT",
        f"{url}/v2/{name}/manifests/{tag}",
        data=data,
        headers={"Content-Type": media_type},
    )
    assert reply.status_code == 201, (reply.status_code, reply.text)


# --------------------------------------------------------------------------------------------
# A stub registry: serves what it is given, misbehaving on request
# --------------------------------------------------------------------------------------------


@attrs.define
class Served:
    """One answer of the stub: a body and its content type; ``digest`` for the header."""

    body: bytes
    content_type: str = "application/octet-stream"
    digest: str | None = None


class StubRegistry:
    """``GET /v2/`` and the paths in :attr:`routes`. :attr:`hooks` may take over a path
    (to drop a connection, redirect...); :attr:`requests` records (method, path, headers)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Served] = {}
        self.hooks: dict[str, Callable[[http.server.BaseHTTPRequestHandler], bool]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                self.do_GET(head=True)

            def do_GET(self, head: bool = False) -> None:
                stub.requests.append((self.command, self.path, dict(self.headers.items())))
                hook = stub.hooks.get(self.path)
                if hook is not None and hook(self):
                    return
                if self.path == "/v2/":
                    return self.answer(200, b"{}", "application/json")
                served = stub.routes.get(self.path)
                if served is None:
                    body = json.dumps(
                        {"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
                    ).encode()
                    return self.answer(404, body, "application/json")
                body = served.body
                status = 200
                extra = {"Docker-Content-Digest": served.digest or sha256(body)}
                wanted = self.headers.get("Range", "")
                if wanted.startswith("bytes=") and wanted.endswith("-"):
                    start = int(wanted[6:-1])
                    extra["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
                    body, status = body[start:], 206
                self.answer(status, b"" if head else body, served.content_type, extra, len(body))

            def answer(
                self,
                status: int,
                body: bytes,
                content_type: str,
                extra: dict[str, str] | None = None,
                length: int | None = None,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                for key, value in (extra or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.host = f"{host}:{self.port}"
        self.url = f"http://{self.host}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve_image(self, name: str, tag: str, image: BuiltImage) -> None:
        manifest = Served(image.manifest, DOCKER_MANIFEST)
        self.routes[f"/v2/{name}/manifests/{tag}"] = manifest
        self.routes[f"/v2/{name}/manifests/{image.digest}"] = manifest
        for digest, data in image.blob_map().items():
            self.routes[f"/v2/{name}/blobs/{digest}"] = Served(data)

    def blob_path(self, name: str, data: bytes) -> str:
        return f"/v2/{name}/blobs/{sha256(data)}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def redirect_to(url: str) -> Callable[[http.server.BaseHTTPRequestHandler], bool]:
    """A :class:`StubRegistry` hook answering ``307`` to ``url``."""

    def redirect(handler: http.server.BaseHTTPRequestHandler) -> bool:
        handler.send_response(307)
        handler.send_header("Location", url)
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return True

    return redirect
