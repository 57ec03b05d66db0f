"""The registry asks the configured auth provider about every request."""

from __future__ import annotations

import base64

import pytest

from dockyard.core.interfaces import Access, AuthProvider, AuthRequest, Identity


class StaticAuth:
    """A real (if tiny) provider: Basic credentials, per-user grants on repository prefixes."""

    USERS = {"alice": "wonderland", "bob": "builder"}
    # user -> (repository prefix, actions)
    GRANTS = {
        "alice": [("", ("pull", "push", "delete"))],
        "bob": [("bob/", ("pull", "push")), ("public/", ("pull",))],
        None: [("public/", ("pull",))],
    }

    def authenticate(self, request: AuthRequest) -> Identity | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return Identity(user) if self.USERS.get(user) == password else None

    def authorize(self, identity: Identity | None, access: Access) -> tuple[str, ...]:
        if access.type == "registry":
            return ("*",) if identity and identity.subject == "alice" else ()
        user = identity.subject if identity else None
        granted: set[str] = set()
        for prefix, actions in self.GRANTS.get(user, []):
            if access.name.startswith(prefix):
                granted.update(actions)
        return tuple(a for a in access.actions if a in granted)

    def challenge(self, request: AuthRequest, wanted) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="dockyard-test"'}

    def issue_token(self, identity, granted, service) -> str:
        raise NotImplementedError


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def secured(store, serve_registry, client_for):
    assert isinstance(StaticAuth(), AuthProvider)
    server = serve_registry(store, StaticAuth())
    return client_for(server.url)


def test_anonymous_requests_get_a_challenge(secured):
    reply = secured.request("GET", "/v2/")
    assert reply.status_code == 401
    assert reply.headers["WWW-Authenticate"] == 'Basic realm="dockyard-test"'
    assert reply.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert secured.request("GET", "/v2/", headers=basic("bob", "builder")).status_code == 200
    assert secured.request("GET", "/v2/", headers=basic("bob", "wrong")).status_code == 401
    push = secured.request("POST", "/v2/bob/app/blobs/uploads/")
    assert push.status_code == 401
    assert push.json()["errors"][0]["detail"] == [
        {"Type": "repository", "Name": "bob/app", "Action": "pull"},
        {"Type": "repository", "Name": "bob/app", "Action": "push"},
    ]


def test_grants_decide_and_denials_are_403(secured):
    secured.http.headers.update(basic("alice", "wonderland"))
    image = secured.push_image("public/base", "v1")
    secured.http.headers.update(basic("bob", "builder"))
    assert secured.request("GET", "/v2/public/base/manifests/v1").status_code == 200
    denied = secured.request("DELETE", "/v2/public/base/manifests/v1")
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["code"] == "DENIED"
    assert secured.request("POST", "/v2/public/base/blobs/uploads/").status_code == 403
    assert secured.request("GET", "/v2/_catalog").status_code == 403
    layer = secured.digest(image.layers[0])
    # bob may pull public/base, so mounting from it works...
    mounted = secured.request("POST", f"/v2/bob/app/blobs/uploads/?mount={layer}&from=public/base")
    assert mounted.status_code == 201
    # ...but not from a repository he cannot read: he gets an upload session instead.
    secured.http.headers.update(basic("alice", "wonderland"))
    secret = secured.push_blob("alice/secret", b"secret layer")
    secured.http.headers.update(basic("bob", "builder"))
    refused = secured.request(
        "POST", f"/v2/bob/app/blobs/uploads/?mount={secret}&from=alice/secret"
    )
    assert refused.status_code == 202
    anonymous_mount = secured.request("POST", f"/v2/bob/app/blobs/uploads/?mount={secret}")
    assert anonymous_mount.status_code == 202
    assert secured.request("GET", f"/v2/bob/app/blobs/{secret}").status_code == 404
    del secured.http.headers["Authorization"]
    assert secured.request("GET", "/v2/public/base/manifests/v1").status_code == 200
    assert secured.request("GET", "/v2/bob/app/blobs/" + layer).status_code == 401
