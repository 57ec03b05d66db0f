"""Where the registry keeps things in its backend: one place for every path.

::

    /v2/blobs/<alg>/<hex[:2]>/<hex>/data                     content, shared by all repositories
    /v2/repositories/<name>/_layers/<alg>/<hex>/link         blob <digest> belongs to <name>
    /v2/repositories/<name>/_manifests/revisions/<alg>/<hex>/link   manifest in <name> (JSON)
    /v2/repositories/<name>/_manifests/tags/<tag>/link       tag -> manifest (JSON)
    /v2/repositories/<name>/_referrers/<salg>/<shex>/<alg>/<hex>/link   referrer descriptor
    /v2/repositories/<name>/_uploads/<uuid>/info             upload session (JSON)
    /v2/repositories/<name>/_uploads/<uuid>/data             bytes received so far
    /v2/_trash/<run>/<path of a blob or revision link>       held by a running gc, see gc.py
    /v2/_gc.lock                                             the running gc (JSON), see gc.py

Manifests are stored as blobs (their bytes exactly as pushed) and linked as revisions. Names
cannot contain a component starting with ``_`` (the name grammar forbids it), so the ``_layers``,
``_manifests``, ``_referrers`` and ``_uploads`` directories never collide with a repository.
"""

from __future__ import annotations

from dockyard.registry.names import Digest

ROOT = "/v2"
BLOBS = f"{ROOT}/blobs"
REPOSITORIES = f"{ROOT}/repositories"
TRASH = f"{ROOT}/_trash"
#: Held by the running gc (see gc.py), so that a second one is refused.
GC_LOCK = f"{ROOT}/_gc.lock"


def blob_dir(digest: Digest) -> str:
    return f"{BLOBS}/{digest.algorithm}/{digest.hex[:2]}/{digest.hex}"


def blob_data(digest: Digest) -> str:
    return f"{blob_dir(digest)}/data"


def repository(name: str) -> str:
    return f"{REPOSITORIES}/{name}"


def layer_link(name: str, digest: Digest) -> str:
    return f"{repository(name)}/_layers/{digest.algorithm}/{digest.hex}/link"


def layers(name: str) -> str:
    return f"{repository(name)}/_layers"


def revisions(name: str) -> str:
    return f"{repository(name)}/_manifests/revisions"


def revision_link(name: str, digest: Digest) -> str:
    return f"{revisions(name)}/{digest.algorithm}/{digest.hex}/link"


def tags(name: str) -> str:
    return f"{repository(name)}/_manifests/tags"


def tag_link(name: str, tag: str) -> str:
    return f"{tags(name)}/{tag}/link"


def referrers(name: str, subject: Digest) -> str:
    return f"{repository(name)}/_referrers/{subject.algorithm}/{subject.hex}"


def referrer_link(name: str, subject: Digest, digest: Digest) -> str:
    return f"{referrers(name, subject)}/{digest.algorithm}/{digest.hex}/link"


def uploads(name: str) -> str:
    return f"{repository(name)}/_uploads"


def upload_dir(name: str, upload_id: str) -> str:
    return f"{uploads(name)}/{upload_id}"


def upload_info(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/info"


def upload_data(name: str, upload_id: str) -> str:
    return f"{upload_dir(name, upload_id)}/data"


def trash(run: str, path: str) -> str:
    return f"{TRASH}/{run}{path}"


def child_name(path: str) -> str:
    """The last component of a path."""
    return path.rstrip("/").rsplit("/", 1)[-1]
