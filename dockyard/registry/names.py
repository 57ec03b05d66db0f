"""The grammar of repository names, tags and digests (distribution spec, OCI image spec)."""

from __future__ import annotations

import hashlib
import re

import attrs

from dockyard.core.repository_names import MAX_NAME_LENGTH, is_repository_name
from dockyard.registry.errors import RegistryError

_TAG = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")
# The image spec's grammar: algorithm components joined by separators, then an encoded part.
_DIGEST = re.compile(r"([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)")

#: Digest algorithms the registry verifies, with the length of their hex encoding.
ALGORITHMS = {"sha256": 64, "sha512": 128}


def check_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise ``NAME_INVALID``."""
    if not is_repository_name(name):
        raise RegistryError(
            "NAME_INVALID",
            detail={
                "name": name[:300],
                "reason": "must match the spec's name grammar "
                f"and be at most {MAX_NAME_LENGTH} characters",
            },
        )
    return name


def is_tag(reference: str) -> bool:
    return bool(_TAG.fullmatch(reference))


def check_tag(tag: str) -> str:
    """Return ``tag`` if valid, else raise ``MANIFEST_INVALID`` (the spec has no TAG_INVALID)."""
    if not is_tag(tag):
        raise RegistryError(
            "MANIFEST_INVALID",
            message="invalid tag",
            detail={"tag": tag[:300], "reason": "must match [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}"},
        )
    return tag


def is_reference(reference: str) -> bool:
    """A tag, or a digest of an algorithm the registry verifies."""
    if ":" not in reference:
        return is_tag(reference)
    try:
        parse_digest(reference)
    except RegistryError:
        return False
    return True


@attrs.frozen
class Digest:
    """A verified-syntax content digest such as ``sha256:9f86d0...``."""

    algorithm: str
    hex: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())


def parse_digest(text: str, code: str = "DIGEST_INVALID") -> Digest:
    """Parse ``text`` as a digest of a supported algorithm; anything else is a 400 ``code``."""
    match = _DIGEST.fullmatch(text)
    if not match:
        raise RegistryError(code, message="invalid digest", detail={"digest": text[:300]})
    algorithm, encoded = match.groups()
    expected = ALGORITHMS.get(algorithm)
    if expected is None:
        raise RegistryError(
            code,
            message=f"unsupported digest algorithm {algorithm!r}",
            detail={"digest": text[:300], "supported": sorted(ALGORITHMS)},
            status=400,
        )
    if len(encoded) != expected or not re.fullmatch(r"[a-f0-9]+", encoded):
        raise RegistryError(
            code,
            message=f"invalid {algorithm} digest: expected {expected} lowercase hex characters",
            detail={"digest": text[:300]},
            status=400,
        )
    return Digest(algorithm, encoded)
