"""Image references the way Docker reads them: ``busybox`` = ``docker.io/library/busybox:latest``.

Grammar (distribution's reference package): ``[domain/]path[:tag][@digest]``. The first path
component is a domain when it contains a ``.`` or a ``:`` or is ``localhost``; without one the
domain is ``docker.io``, and a one-component Docker Hub path gets ``library/`` in front.
"""

from __future__ import annotations

import re

import attrs

from dockyard.core.errors import InvalidParameter

DEFAULT_DOMAIN = "docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
HEX_ID = re.compile(r"[a-f0-9]{64}")


@attrs.frozen
class Reference:
    """A normalised reference. ``tag`` and ``digest`` may both be absent (a bare repository)."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name: ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short form docker shows: ``busybox``, ``me/app``, ``127.0.0.1:5000/app``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        return self.path.removeprefix(OFFICIAL_PREFIX)

    def __str__(self) -> str:
        return self._render(self.name)

    def familiar(self) -> str:
        """``busybox:latest`` rather than ``docker.io/library/busybox:latest``."""
        return self._render(self.familiar_name)

    def _render(self, name: str) -> str:
        text = name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    def with_tag(self, tag: str) -> Reference:
        return attrs.evolve(self, tag=tag, digest=None)

    def repository(self) -> Reference:
        return attrs.evolve(self, tag=None, digest=None)


def is_domain(text: str) -> bool:
    """Whether ``text`` is a registry host as references name it: ``HOST[:PORT]``, the host
    a DNS name or an IPv4 address, or ``[IPv6]`` with an optional port."""
    return _DOMAIN.fullmatch(text) is not None


def parse_reference(text: str, default_tag: str | None = DEFAULT_TAG) -> Reference:
    """Parse and normalise ``text``; a reference without tag or digest gets ``default_tag``."""
    invalid = InvalidParameter(f"invalid reference format: {text!r}")
    if not text or len(text) > 512:
        raise invalid
    remainder, _, digest = text.partition("@")
    if digest and not _DIGEST.fullmatch(digest):
        raise invalid
    tag = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise invalid
    parts = remainder.split("/")
    first = parts[0]
    if len(parts) > 1 and ("." in first or ":" in first or first == "localhost"):
        domain, path_parts = first, parts[1:]
        if not _DOMAIN.fullmatch(domain):
            raise invalid
    else:
        domain, path_parts = DEFAULT_DOMAIN, parts
    if domain == "index.docker.io":
        domain = DEFAULT_DOMAIN
    for component in path_parts:
        if not _COMPONENT.fullmatch(component):
            if component.lower() != component and _COMPONENT.fullmatch(component.lower()):
                raise InvalidParameter(
                    f"invalid reference format: repository name ({remainder}) must be lowercase"
                )
            raise invalid
    path = "/".join(path_parts)
    if domain == DEFAULT_DOMAIN and len(path_parts) == 1:
        path = OFFICIAL_PREFIX + path
    if len(f"{domain}/{path}") > 255:
        raise InvalidParameter("invalid reference format: repository name is too long")
    if tag is None and not digest:
        tag = default_tag
    return Reference(domain, path, tag, digest or None)


def parse_repository_and_tag(repo: str, tag: str | None) -> Reference:
    """The Engine API's ``repo`` + ``tag`` pair; ``repo`` may carry the tag, ``tag`` a digest."""
    if tag and tag.startswith("sha256:"):
        return parse_reference(f"{repo}@{tag}", default_tag=None)
    reference = parse_reference(repo)
    if tag:
        if not _TAG.fullmatch(tag):
            raise InvalidParameter(f"invalid tag format: {tag!r}")
        reference = reference.with_tag(tag)
    return reference
