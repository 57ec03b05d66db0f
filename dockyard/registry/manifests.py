"""Manifests: media types, decoding into typed records, and what a manifest references.

A pushed manifest is decoded at the boundary into :class:`ImageManifest` or :class:`ImageIndex`
(attrs records) by :data:`OCI`, a :class:`~dockyard.core.decoding.Decoder`, which checks every
field's JSON type and names the first field that is wrong; nothing past this module looks into
the raw JSON. The rules follow the OCI image spec, and refuse at least what the CNCF registry
(distribution 2.8) refuses:

* ``Content-Type`` is required and names the manifest's type; a ``mediaType`` field, when the
  document has one, must say the same (Docker's types require it), and the document's shape
  must fit (an image manifest has no ``manifests``, an index no ``config`` or ``layers``);
* the body is UTF-8 JSON, an object, ``schemaVersion`` the integer 2;
* a descriptor has a media type, a digest the registry can verify and a size that is an integer
  from 0 to 2^63-1; ``urls`` is a list of strings, ``annotations`` a map of strings, and so on.

JSON ``null`` counts as absent, as in Go's decoding; unknown fields are allowed (the image spec
says consumers ignore them).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any, NewType

import attrs

from dockyard.core.decoding import (
    DecodeError,
    Decoder,
    WrongType,
    json_key,
    json_type,
    lower_camel_case,
    parse_json,
)
from dockyard.core.errors import InvalidParameter
from dockyard.core.mediatypes import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_SCHEMA1,
    FOREIGN_LAYERS,
    IMAGE_MANIFESTS,
    INDEXES,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from dockyard.registry.errors import RegistryError
from dockyard.registry.names import Digest, parse_digest

#: Docker's types predate the optional field: their documents must carry ``mediaType``.
_MEDIA_TYPE_FIELD_REQUIRED = frozenset({DOCKER_MANIFEST, DOCKER_LIST})

#: Largest descriptor size: sizes are int64 in the image spec (and in every Go client).
MAX_SIZE = 2**63 - 1

#: A media type (RFC 6838 section 4.2), as descriptors, ``artifactType`` and filters carry it.
MediaType = NewType("MediaType", str)
#: A descriptor's size in bytes: an integer from 0 to :data:`MAX_SIZE`.
Size = NewType("Size", int)

_RESTRICTED_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"{_RESTRICTED_NAME}/{_RESTRICTED_NAME}")
# RFC 9110's Content-Type: type/subtype, then parameters (token=token or quoted string).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_CONTENT_TYPE = re.compile(rf"[ \t]*({_TOKEN}/{_TOKEN})[ \t]*")
_PARAMETER = re.compile(rf';[ \t]*(?:({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*")[ \t]*)?')


@attrs.frozen
class Platform:
    """Where an index entry's image runs (all optional here: only their types are checked)."""

    architecture: str = ""
    os: str = ""
    os_version: str = json_key("os.version", default="")
    os_features: tuple[str, ...] = json_key("os.features", default=())
    variant: str = ""
    features: tuple[str, ...] = ()


@attrs.frozen
class Descriptor:
    """A content descriptor (image spec): what it points to, how big it is, and its extras."""

    media_type: MediaType
    digest: Digest
    size: Size
    urls: tuple[str, ...] = ()
    annotations: dict[str, str] = attrs.field(factory=dict)
    #: The content itself, base64-encoded (checked against ``digest`` and ``size``).
    data: str | None = None
    artifact_type: MediaType | None = None
    platform: Platform | None = None

    @property
    def foreign(self) -> bool:
        """A layer clients fetch from elsewhere: the registry need not hold it."""
        return self.media_type in FOREIGN_LAYERS or bool(self.urls)


@attrs.frozen(kw_only=True)
class _Document:
    """What image manifests and indexes have in common."""

    schema_version: int
    media_type: str | None = None
    artifact_type: MediaType | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class ImageManifest(_Document):
    """An OCI image manifest or a Docker schema 2 manifest."""

    config: Descriptor
    layers: tuple[Descriptor, ...] = ()


@attrs.frozen(kw_only=True)
class ImageIndex(_Document):
    """An OCI image index or a Docker manifest list."""

    manifests: tuple[Descriptor, ...]


@attrs.frozen
class ManifestInfo:
    """What the store and the collector need to know about one manifest."""

    media_type: str
    #: Blobs (config and layers) the manifest needs, in order, foreign layers excluded.
    blobs: tuple[Descriptor, ...] = ()
    #: Manifests an index lists.
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str = ""
    annotations: dict[str, str] = attrs.field(factory=dict)


def bare_media_type(content_type: str) -> str:
    """``Content-Type`` without parameters (the spec says a registry ignores them)."""
    return content_type.split(";", 1)[0].strip().lower()


def is_media_type(text: str) -> bool:
    """Whether ``text`` is a media type by RFC 6838's grammar (no parameters)."""
    return bool(_MEDIA_TYPE.fullmatch(text))


def _invalid(reason: str, **detail: Any) -> RegistryError:
    return RegistryError(
        "MANIFEST_INVALID", message=f"manifest invalid: {reason}", detail=detail or None
    )


# ------------------------------------------------------------------------------ decoding


def _size(value: Any, _: type) -> int:
    if type(value) is not int or not 0 <= value <= MAX_SIZE:  # a bool is no size
        what = "an integer out of range" if type(value) is int else json_type(value)
        raise WrongType(f"expected an integer from 0 to {MAX_SIZE}, got {what}")
    return value


def _media_type(value: Any, _: type) -> str:
    if not isinstance(value, str) or not is_media_type(value):
        raise WrongType(f"expected a media type such as {OCI_MANIFEST}")
    return value


def _digest(value: Any, _: type) -> Digest:
    if not isinstance(value, str):
        raise WrongType(f"expected a digest, got {json_type(value)}")
    try:
        return parse_digest(value)
    except RegistryError as exc:
        raise WrongType(f"is not a digest the registry accepts: {exc.message}") from None


#: OCI documents: Go's decoding rules, camelCase keys, and the image spec's scalar types.
OCI = Decoder(key_style=lower_camel_case)
OCI.register_structure_hook(Size, _size)
OCI.register_structure_hook(MediaType, _media_type)
OCI.register_structure_hook(Digest, _digest)


class _FieldError(Exception):
    """A check past decoding failed for the field at ``path``."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path} {problem}")
        self.path = path


def _check_embedded_data(descriptor: Descriptor, path: str) -> None:
    if descriptor.data is None:
        return
    try:
        content = base64.b64decode(descriptor.data, validate=True)
    except (binascii.Error, ValueError):
        raise _FieldError(f"{path}.data", "must be base64") from None
    if len(content) != descriptor.size or Digest.of(content, descriptor.digest.algorithm) != (
        descriptor.digest
    ):
        raise _FieldError(f"{path}.data", "must be the content the digest and size describe")


def _descriptors(decoded: ImageManifest | ImageIndex) -> Iterator[tuple[str, Descriptor]]:
    if isinstance(decoded, ImageManifest):
        yield "config", decoded.config
        yield from ((f"layers[{i}]", d) for i, d in enumerate(decoded.layers))
    else:
        yield from ((f"manifests[{i}]", d) for i, d in enumerate(decoded.manifests))
    if decoded.subject is not None:
        yield "subject", decoded.subject


def _load_document(body: bytes) -> dict[str, Any]:
    """The body as a JSON object: strict UTF-8 (no BOM, no UTF-16), no NaN or Infinity."""
    try:
        document = parse_json(body) if body.strip() else None
    except InvalidParameter as exc:
        raise _invalid(exc.message[:300]) from None
    if not isinstance(document, dict):
        raise _invalid("the document must be a JSON object")
    return document


def _decode_document(document: dict[str, Any], media_type: str) -> ManifestInfo:
    """Decode ``document`` as a manifest of ``media_type``; raises ``MANIFEST_INVALID``."""
    record: type[ImageManifest | ImageIndex] = (
        ImageManifest if media_type in IMAGE_MANIFESTS else ImageIndex
    )
    try:
        decoded = OCI.decode(document, record)
    except DecodeError as exc:
        raise _invalid(str(exc), field=exc.field) from None
    try:
        for path, descriptor in _descriptors(decoded):
            _check_embedded_data(descriptor, path)
    except _FieldError as exc:
        raise _invalid(str(exc), field=exc.path) from None
    if decoded.schema_version != 2:
        raise _invalid("schemaVersion must be 2", field="schemaVersion")
    if isinstance(decoded, ImageManifest):
        blobs = tuple(d for d in (decoded.config, *decoded.layers) if not d.foreign)
        return ManifestInfo(
            media_type,
            blobs=blobs,
            subject=decoded.subject,
            artifact_type=decoded.artifact_type or decoded.config.media_type,
            annotations=decoded.annotations,
        )
    return ManifestInfo(
        media_type,
        manifests=decoded.manifests,
        subject=decoded.subject,
        artifact_type=decoded.artifact_type or "",
        annotations=decoded.annotations,
    )


# ------------------------------------------------------------------------------ pushes


def pushed_media_type(content_type: str) -> str:
    """The manifest type a push's ``Content-Type`` names; ``MANIFEST_INVALID`` otherwise.

    Parameters are allowed and ignored, as the spec says, but must be well formed.
    """
    match = _CONTENT_TYPE.match(content_type)
    if match is None:
        raise _invalid(
            "Content-Type must name the manifest's media type",
            contentType=content_type[:200],
            supported=sorted(MANIFEST_TYPES),
        )
    media_type = match.group(1).lower()
    names = set()
    position = match.end()
    while position < len(content_type):
        parameter = _PARAMETER.match(content_type, position)
        if parameter is None or (parameter.group(1) or "").lower() in names:
            raise _invalid("malformed Content-Type parameters", contentType=content_type[:200])
        if parameter.group(1):
            names.add(parameter.group(1).lower())
        position = parameter.end()
    if media_type in DOCKER_SCHEMA1:
        raise _invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if media_type not in MANIFEST_TYPES:
        raise _invalid(
            "unsupported manifest media type in Content-Type",
            contentType=content_type[:200],
            supported=sorted(MANIFEST_TYPES),
        )
    return media_type


def parse_manifest(body: bytes, content_type: str) -> ManifestInfo:
    """Validate a pushed manifest and say what it references; raises ``MANIFEST_INVALID``."""
    media_type = pushed_media_type(content_type)
    document = _load_document(body)
    field_type = document.get("mediaType")
    if field_type is None and media_type in _MEDIA_TYPE_FIELD_REQUIRED:
        raise _invalid(
            f"mediaType is required in a manifest of type {media_type}", field="mediaType"
        )
    if field_type is not None and not isinstance(field_type, str):
        raise _invalid(
            f"mediaType: expected a string, got {json_type(field_type)}", field="mediaType"
        )
    if field_type is not None and field_type != media_type:
        raise _invalid(
            "mediaType does not match Content-Type",
            field="mediaType",
            mediaType=field_type[:200],
            contentType=media_type,
        )
    # The shape must fit the type, or a client reading by one could be fooled by the other.
    if media_type in IMAGE_MANIFESTS and document.get("manifests") is not None:
        raise _invalid(
            f"Content-Type says {media_type}, but the document is an index (it has manifests)",
            field="manifests",
        )
    if media_type in INDEXES and (
        document.get("config") is not None or document.get("layers") is not None
    ):
        raise _invalid(
            f"Content-Type says {media_type}, but the document is an image manifest "
            "(it has config or layers)",
            field="config" if document.get("config") is not None else "layers",
        )
    return _decode_document(document, media_type)


# ------------------------------------------------------------------------------ stored manifests


def read_stored_manifest(body: bytes, media_type: str | None = None) -> ManifestInfo | None:
    """What a stored manifest references (``media_type`` from its record, when known).

    A manifest an older, laxer version accepted may no longer decode: then every descriptor in
    it counts, as both a blob and a manifest, so that the collector keeps whatever it may need.
    ``None``: the bytes are no JSON object at all.
    """
    try:
        document = _load_document(body)
    except RegistryError:
        return None
    if media_type not in MANIFEST_TYPES:
        field_type = document.get("mediaType")
        if field_type in MANIFEST_TYPES:
            media_type = field_type
        else:
            media_type = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    assert media_type is not None
    try:
        return _decode_document(document, media_type)
    except RegistryError:
        found = tuple(_every_descriptor(document))
        return ManifestInfo(media_type, blobs=found, manifests=found)


def _every_descriptor(document: Any) -> Iterator[Descriptor]:
    """Every object in ``document`` with a valid ``digest``, however it sits in the tree."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
            text = value.get("digest")
            try:
                digest = parse_digest(text) if isinstance(text, str) else None
            except RegistryError:
                continue
            if digest is not None:
                yield Descriptor(MediaType(""), digest, Size(0))


def accepts(accept_header: str, media_type: str) -> bool:
    """Whether an ``Accept`` header admits ``media_type`` (no header admits anything)."""
    if not accept_header.strip():
        return True
    for item in accept_header.split(","):
        wanted = bare_media_type(item)
        if wanted in (media_type, "*/*", "application/*"):
            return True
    return False
