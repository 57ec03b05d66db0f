"""Manifest media types, parsing and validation, and what a manifest references."""

from __future__ import annotations

import json
from typing import Any

import attrs

from dockyard.registry.errors import RegistryError
from dockyard.registry.names import Digest, parse_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = IMAGE_MANIFESTS | INDEXES

# Layers a client fetches from elsewhere ("urls"); registries accept manifests without them.
_FOREIGN_LAYERS = frozenset(
    {
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)


@attrs.frozen
class Descriptor:
    """A descriptor as found in a manifest: what it points to and how big it is."""

    media_type: str
    digest: Digest
    size: int
    foreign: bool = False


@attrs.frozen
class ManifestInfo:
    """What the core needs to know about one manifest it accepted."""

    media_type: str
    #: Blobs (config and layers) the manifest needs, in order, foreign layers excluded.
    blobs: tuple[Descriptor, ...] = ()
    #: Manifests an index lists.
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str = ""
    annotations: dict[str, str] = attrs.field(factory=dict)

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES


def bare_media_type(content_type: str) -> str:
    """``Content-Type`` without parameters (the spec says a registry ignores them)."""
    return content_type.split(";", 1)[0].strip().lower()


def _invalid(reason: str, **detail: Any) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", message=f"manifest invalid: {reason}", detail=detail)


def _descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType must be a non-empty string")
    digest_text = value.get("digest")
    if not isinstance(digest_text, str):
        raise _invalid(f"{where}.digest must be a string")
    try:
        digest = parse_digest(digest_text)
    except RegistryError as exc:
        raise _invalid(f"{where}.digest: {exc.message}", digest=digest_text[:300]) from None
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size must be a non-negative integer")
    foreign = media_type in _FOREIGN_LAYERS or bool(value.get("urls"))
    return Descriptor(media_type, digest, size, foreign)


def _annotations(document: dict[str, Any]) -> dict[str, str]:
    annotations = document.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()
    ):
        raise _invalid("annotations must map strings to strings")
    return annotations


def parse_manifest(body: bytes, content_type: str) -> ManifestInfo:
    """Validate a pushed manifest and say what it references; raises ``MANIFEST_INVALID``.

    The media type comes from ``Content-Type`` or, when that is missing or generic, from the
    document's ``mediaType`` field or its shape (an OCI manifest may omit ``mediaType``).
    """
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise _invalid(f"not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _invalid("the document must be a JSON object")
    header_type = bare_media_type(content_type)
    field_type = document.get("mediaType")
    if field_type is not None and not isinstance(field_type, str):
        raise _invalid("mediaType must be a string")
    if header_type in DOCKER_SCHEMA1 or field_type in DOCKER_SCHEMA1:
        raise RegistryError(
            "MANIFEST_INVALID",
            message="Docker schema 1 manifests are not supported; push schema 2 or OCI",
        )
    if header_type in MANIFEST_TYPES:
        media_type = header_type
        if field_type and field_type != media_type:
            raise _invalid(
                "mediaType does not match Content-Type",
                mediaType=field_type,
                contentType=header_type,
            )
    elif field_type in MANIFEST_TYPES:
        media_type = field_type
    elif "manifests" in document:
        media_type = OCI_INDEX
    elif "config" in document:
        media_type = OCI_MANIFEST
    else:
        raise _invalid(
            "unknown manifest type",
            contentType=header_type,
            supported=sorted(MANIFEST_TYPES),
        )
    if document.get("schemaVersion") != 2:
        raise _invalid("schemaVersion must be 2")
    artifact_type = document.get("artifactType") or ""
    if not isinstance(artifact_type, str):
        raise _invalid("artifactType must be a string")
    subject = _descriptor(document["subject"], "subject") if "subject" in document else None
    annotations = _annotations(document)
    if media_type in IMAGE_MANIFESTS:
        config = _descriptor(document.get("config"), "config")
        layers_value = document.get("layers", [] if media_type == OCI_MANIFEST else None)
        if not isinstance(layers_value, list):
            raise _invalid("layers must be a list")
        layers = [_descriptor(v, f"layers[{i}]") for i, v in enumerate(layers_value)]
        blobs = tuple(d for d in [config, *layers] if not d.foreign)
        return ManifestInfo(
            media_type,
            blobs=blobs,
            subject=subject,
            artifact_type=artifact_type or config.media_type,
            annotations=annotations,
        )
    children_value = document.get("manifests")
    if not isinstance(children_value, list):
        raise _invalid("manifests must be a list")
    children = tuple(_descriptor(v, f"manifests[{i}]") for i, v in enumerate(children_value))
    return ManifestInfo(
        media_type,
        manifests=children,
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
    )


def accepts(accept_header: str, media_type: str) -> bool:
    """Whether an ``Accept`` header admits ``media_type`` (no header admits anything)."""
    if not accept_header.strip():
        return True
    for item in accept_header.split(","):
        wanted = bare_media_type(item)
        if wanted in (media_type, "*/*", "application/*"):
            return True
    return False
