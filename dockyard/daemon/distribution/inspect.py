"""``GET /distribution/{name}/json``: what a registry holds under a reference, without pulling
it: the manifest's descriptor and the platforms it serves (an index's entries, or a single
manifest's config), as dockerd answers it."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dockyard.core import mediatypes
from dockyard.core.errors import NotFound
from dockyard.daemon.distribution.credentials import Credentials
from dockyard.daemon.distribution.errors import (
    RegistryError,
    RegistryUnauthorized,
    describe_error_response,
)
from dockyard.daemon.distribution.service import RegistryService
from dockyard.daemon.reference import Reference

#: The manifests a client accepts, as dockerd asks for them.
MANIFEST_ACCEPT = ", ".join(
    [
        mediatypes.OCI_MANIFEST,
        mediatypes.DOCKER_MANIFEST,
        mediatypes.DOCKER_LIST,
        mediatypes.OCI_INDEX,
    ]
)
_PLATFORM_KEYS = ("architecture", "os", "os.version", "os.features", "variant")


def _platform(source: Any) -> dict[str, Any]:
    """An OCI platform: architecture and os always, the others when set."""
    if not isinstance(source, dict):
        return {"architecture": "", "os": ""}
    platform = {key: source[key] for key in _PLATFORM_KEYS if source.get(key)}
    platform.setdefault("architecture", "")
    platform.setdefault("os", "")
    return platform


async def inspect_distribution(
    registries: RegistryService,
    reference: Reference,
    credentials: Credentials,
    upstream_agent: str = "",
) -> dict[str, Any]:
    client = await registries.connect(reference.domain, credentials, upstream_agent)
    async with client:
        scopes = [f"repository:{reference.path}:pull"]
        target = reference.digest
        if target is None:
            # A tag is resolved with HEAD, then the manifest fetched by digest, as dockerd does.
            head = await client.request(
                "HEAD",
                f"/v2/{reference.path}/manifests/{reference.tag or 'latest'}",
                scopes=scopes,
                headers={"Accept": MANIFEST_ACCEPT},
            )
            # A HEAD's failure has no body to explain it: the GET by tag below says why.
            found = head.is_success and head.headers.get("docker-content-digest")
            target = found or reference.tag or "latest"
        response = await client.request(
            "GET",
            f"/v2/{reference.path}/manifests/{target}",
            scopes=scopes,
            headers={"Accept": MANIFEST_ACCEPT},
        )
        _check(response.status_code, response.headers.get_list("www-authenticate"), response)
        body = response.content
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.digest is not None and reference.digest != digest:
            raise RegistryError(f"manifest verification failed for digest {reference.digest}")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise RegistryError("the registry's manifest is not JSON") from None
        media_type = manifest.get("mediaType") or response.headers.get("content-type", "")
        media_type = media_type.split(";")[0].strip()
        if media_type in mediatypes.INDEXES:
            entries = manifest.get("manifests") or []
            platforms = [_platform(entry.get("platform")) for entry in entries]
        elif media_type in mediatypes.IMAGE_MANIFESTS:
            config_digest = (manifest.get("config") or {}).get("digest", "")
            blob = await client.request(
                "GET", f"/v2/{reference.path}/blobs/{config_digest}", scopes=scopes
            )
            if blob.status_code in (301, 302, 303, 307, 308):
                location = blob.headers.get("location", "")
                blob = await client.http.get(str(blob.request.url.join(location)))
            _check(blob.status_code, blob.headers.get_list("www-authenticate"), blob)
            platforms = [_platform(json.loads(blob.content))]
        else:
            raise RegistryError(f"unsupported manifest media type {media_type!r}")
    return {
        "Descriptor": {"mediaType": media_type, "digest": digest, "size": len(body)},
        "Platforms": platforms,
    }


def _check(status: int, challenges: list[str], response: Any) -> None:
    if 200 <= status < 300:
        return
    text, unauthorized = describe_error_response(status, challenges, response.content)
    if status == 404:
        raise NotFound(text)
    if status == 401 or unauthorized:
        raise RegistryUnauthorized(text)
    raise RegistryError(text)
