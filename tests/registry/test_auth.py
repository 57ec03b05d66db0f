"""The registry asks the configured auth provider about every request."""

from __future__ import annotations

import base64

import pytest

from dockyard.core.errors import InvalidCredentials
from dockyard.core.interfaces import Access, AuthProvider, AuthRequest, Identity
from dockyard.registry.app import create_registry_app
from dockyard.registry.ratelimit import RateLimiter


class StaticAuth:
    """A real (if tiny) provider: Basic credentials, per-user grants on repository prefixes, and
    "Bearer USER|SCOPE|SCOPE..." pseudo-tokens that carry grants the way a signed token's
    ``access`` claim does (the token plugin's own tests cover real signatures)."""

    USERS = {"alice": "wonderland", "bob": "builder"}
    # user -> (repository prefix, actions)
    GRANTS = {
        "alice": [("", ("pull", "push", "delete"))],
        "bob": [("bob/", ("pull", "push")), ("public/", ("pull",))],
        None: [("public/", ("pull",))],
    }

    def authenticate(self, request: AuthRequest) -> Identity | None:
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            user, *scopes = header[7:].split("|")
            if user and user not in self.USERS:
                raise InvalidCredentials("unknown token subject")
            return Identity(user, granted=tuple(Access.parse(s) for s in scopes))
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        if self.USERS.get(user) != password:
            raise InvalidCredentials("wrong password", subject=user)
        return Identity(user)

    def authorize(self, identity: Identity | None, access: Access) -> tuple[str, ...]:
        if access.type == "registry":
            return ("*",) if identity and identity.subject == "alice" else ()
        user = identity.subject if identity and identity.subject else None
        granted: set[str] = set()
        for prefix, actions in self.GRANTS.get(user, []):
            if access.name.startswith(prefix):
                granted.update(actions)
        return tuple(a for a in access.actions if a in granted)

    def challenge(self, request: AuthRequest, wanted, error: str = "") -> dict[str, str]:
        scope = " ".join(str(a) for a in wanted)
        extra = f',error="{error}"' if error else ""
        return {"WWW-Authenticate": f'Bearer realm="test",scope="{scope}"{extra}'}


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
    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="test",scope=""'
    assert reply.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert secured.request("GET", "/v2/", headers=basic("bob", "builder")).status_code == 200
    wrong = secured.request("GET", "/v2/", headers=basic("bob", "wrong"))
    assert wrong.status_code == 401
    assert "error=" not in wrong.headers["WWW-Authenticate"]
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


def bearer(user: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + "|".join((user, *scopes))}


def test_a_token_too_narrow_for_what_the_rules_allow_asks_for_a_wider_one(secured):
    secured.http.headers.update(basic("alice", "wonderland"))
    secured.push_image("bob/app", "v1")
    pull_only = bearer("bob", "repository:bob/app:pull")
    assert secured.request("GET", "/v2/bob/app/manifests/v1", headers=pull_only).status_code == 200
    del secured.http.headers["Authorization"]
    # bob may push to bob/app by the rules: this token is merely narrow, so the client is told
    # to fetch a wider one (docker's clients look for insufficient_scope)...
    push = secured.request("POST", "/v2/bob/app/blobs/uploads/", headers=pull_only)
    assert push.status_code == 401
    challenge = push.headers["WWW-Authenticate"]
    assert 'scope="repository:bob/app:pull,push"' in challenge
    assert 'error="insufficient_scope"' in challenge
    # ...while a token can never lend more than the rules allow: push to public/ is a 403.
    everything = bearer("bob", "repository:public/base:*")
    denied = secured.request("POST", "/v2/public/base/blobs/uploads/", headers=everything)
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["code"] == "DENIED"
    # A token for one repository says nothing of another, nor of the catalog.
    other = secured.request("GET", "/v2/bob/other/tags/list", headers=pull_only)
    assert other.status_code == 401
    assert secured.request("GET", "/v2/_catalog", headers=pull_only).status_code == 403
    # An anonymous token is anonymous: logging in may help, so it is a challenge, not a 403.
    anonymous = secured.request("POST", "/v2/bob/app/blobs/uploads/", headers=bearer(""))
    assert anonymous.status_code == 401
    forged = secured.request("GET", "/v2/bob/app/manifests/v1", headers=bearer("mallory"))
    assert forged.status_code == 401
    assert 'error="invalid_token"' in forged.headers["WWW-Authenticate"]


def test_a_mount_challenge_names_its_source(secured):
    layer = "sha256:" + "a" * 64
    reply = secured.request("POST", f"/v2/bob/app/blobs/uploads/?mount={layer}&from=public/base")
    assert reply.status_code == 401
    scope = 'scope="repository:bob/app:pull,push repository:public/base:pull"'
    assert scope in reply.headers["WWW-Authenticate"]
    # A token with push on the target and no pull on the source gets an upload, not the blob.
    secured.http.headers.update(basic("alice", "wonderland"))
    secret = secured.push_blob("alice/secret", b"secret layer")
    del secured.http.headers["Authorization"]
    token = bearer("bob", "repository:bob/app:pull,push", "repository:alice/secret:pull")
    path = f"/v2/bob/app/blobs/uploads/?mount={secret}&from=alice/secret"
    assert secured.request("POST", path, headers=token).status_code == 202
    assert secured.request("GET", f"/v2/bob/app/blobs/{secret}", headers=token).status_code == 404


@pytest.fixture
def strict(store, serve_registry, client_for):
    """The same provider behind a registry that allows three failures a minute."""
    from tests.registry.conftest import serve_in_thread

    def serve(failures: RateLimiter):
        return client_for(serve_in_thread(store, StaticAuth(), failures=failures).url)

    return serve


def test_failed_logins_are_rate_limited_per_address_and_per_user(strict):
    now = [0.0]
    limiter = RateLimiter(per_minute=3, burst=3, clock=lambda: now[0])
    client = strict(limiter)
    for _ in range(3):
        assert client.request("GET", "/v2/", headers=basic("bob", "nope")).status_code == 401
    limited = client.request("GET", "/v2/", headers=basic("bob", "builder"))
    # Even the right password is refused while locked: it must not tell a guesser it was right.
    assert limited.status_code == 429
    assert limited.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert int(limited.headers["Retry-After"]) >= 1
    assert client.request("GET", "/v2/").status_code == 429
    now[0] += 20  # one attempt's worth refilled
    assert client.request("GET", "/v2/", headers=basic("bob", "builder")).status_code == 200


def test_the_rate_limiter_is_bounded_and_forgets_the_oldest():
    now = [0.0]
    limiter = RateLimiter(per_minute=1, burst=1, max_keys=100, clock=lambda: now[0])
    assert limiter.take(["addr:first"])
    assert not limiter.take(["addr:first"])
    for n in range(1000):
        limiter.take([f"addr:10.0.{n // 256}.{n % 256}"])
    assert len(limiter) == 100
    # Evicted, "first" starts again with a full bucket (the per-user bucket still caps it).
    assert limiter.take(["addr:first"])
    # A refused take consumes nothing from the keys that still had room.
    assert limiter.take(["user:a"]) and not limiter.take(["user:a", "addr:b"])
    assert limiter.take(["addr:b"])


def test_logs_of_failed_logins_hold_no_secret(secured, capsys):
    secured.request("GET", "/v2/", headers=basic("bob", "hunter2-secret"))
    secured.request("GET", "/v2/", headers=bearer("mallory", "repository:x:pull"))
    logged = capsys.readouterr()
    text = logged.out + logged.err
    assert "authentication failed" in text
    assert "hunter2-secret" not in text
    assert "mallory|" not in text


def test_the_app_takes_a_shared_failure_limiter(store):
    limiter = RateLimiter.minutely(5)
    app = create_registry_app(store, StaticAuth(), failures=limiter)
    assert app.state.registry.gatekeeper.failures is limiter
