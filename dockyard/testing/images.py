"""Images built by hand for tests and benchmarks: layer tars, Docker and OCI archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
import time
from pathlib import Path

from dockyard.testing.storage import LayerTar

BUSYBOX = shutil.which("busybox") or "/bin/busybox"


#: Directories whose mode is not the usual 0755.
SPECIAL_DIRECTORY_MODES = {"tmp": 0o1777}


def layer_tar(files: dict[str, bytes | str | None], compress: bool = False) -> bytes:
    """A layer tar: ``bytes`` are files, ``"->target"`` strings symlinks, ``None`` directories.

    A name ``.wh.X`` is a whiteout, as in image layers.
    """
    layer = LayerTar()
    for name, content in files.items():
        if content is None:
            layer.dir(name, mode=SPECIAL_DIRECTORY_MODES.get(name, 0o755))
        elif isinstance(content, str):
            layer.symlink(name, content.removeprefix("->"))
        else:
            layer.file(name, content, mode=0o755)
    data = layer.build()
    return gzip.compress(data, mtime=0) if compress else data


#: The applets linked in test images (a static busybox provides them all).
BUSYBOX_APPLETS = (
    "sh", "echo", "cat", "ls", "true", "false", "sleep", "id", "hostname", "tr", "wc", "grep",
    "seq", "touch", "kill", "pwd", "ps", "mount", "env", "head", "tail", "stty", "tty", "yes",
    "dd", "mkdir", "rm", "test", "[", "printf", "date", "uname", "whoami", "cut", "sed", "awk",
    "ip", "ping", "wget", "nslookup", "httpd", "nc",
)  # fmt: skip


def busybox_rootfs(
    extra: dict[str, bytes | str | None] | None = None, compress: bool = False
) -> bytes:
    files: dict[str, bytes | str | None] = {"bin": None, "bin/busybox": Path(BUSYBOX).read_bytes()}
    for applet in BUSYBOX_APPLETS:
        files[f"bin/{applet}"] = "->busybox"
    files["etc"] = None
    files["etc/passwd"] = b"root:x:0:0:root:/root:/bin/sh\n"
    files["tmp"] = None  # sticky and world-writable, as in every image
    files.update(extra or {})
    return layer_tar(files, compress)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_archive(
    layers: list[bytes],
    tags: list[str],
    layout: str = "docker",
    config_extra: dict | None = None,
) -> bytes:
    """An image archive built by hand. ``layout``: ``docker`` (manifest.json and
    ``<id>/layer.tar``, as Docker before 25), ``oci`` (plain OCI layout) or ``both``."""
    diff_ids = [
        sha256(gzip.decompress(layer) if layer[:2] == b"\x1f\x8b" else layer) for layer in layers
    ]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05Z",
        "config": {"Cmd": ["/bin/sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2024-01-02T03:04:05Z", "created_by": f"layer {i}"}
            for i in range(len(layers))
        ],
        **(config_extra or {}),
    }
    config_bytes = json.dumps(config).encode()
    files: dict[str, bytes] = {}
    if layout in ("docker",):
        layer_paths = []
        for index, layer in enumerate(layers):
            path = f"{hashlib.sha256(str(index).encode() + layer).hexdigest()}/layer.tar"
            files[path] = layer
            layer_paths.append(path)
        config_path = sha256(config_bytes).removeprefix("sha256:") + ".json"
        files[config_path] = config_bytes
        files["manifest.json"] = json.dumps(
            [{"Config": config_path, "RepoTags": tags, "Layers": layer_paths}]
        ).encode()
    else:
        blobs = {sha256(config_bytes): config_bytes}
        descriptors = []
        for layer in layers:
            blobs[sha256(layer)] = layer
            media = "application/vnd.oci.image.layer.v1.tar" + (
                "+gzip" if layer[:2] == b"\x1f\x8b" else ""
            )
            descriptors.append({"mediaType": media, "digest": sha256(layer), "size": len(layer)})
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(config_bytes),
                    "size": len(config_bytes),
                },
                "layers": descriptors,
            }
        ).encode()
        blobs[sha256(manifest)] = manifest
        for digest, data in blobs.items():
            files[f"blobs/sha256/{digest.removeprefix('sha256:')}"] = data
        files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
        files["index.json"] = json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": sha256(manifest),
                        "size": len(manifest),
                        "annotations": {
                            "io.containerd.image.name": f"docker.io/library/{tag}"
                            if "/" not in tag
                            else tag
                        },
                    }
                    for tag in tags
                ]
                or [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": sha256(manifest),
                        "size": len(manifest),
                    }
                ],
            }
        ).encode()
        if layout == "both":
            files["manifest.json"] = json.dumps(
                [
                    {
                        "Config": f"blobs/sha256/{sha256(config_bytes).removeprefix('sha256:')}",
                        "RepoTags": tags,
                        "Layers": [
                            f"blobs/sha256/{sha256(layer).removeprefix('sha256:')}"
                            for layer in layers
                        ],
                    }
                ]
            ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()
