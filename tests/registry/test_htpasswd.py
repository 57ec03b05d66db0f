"""The ``htpasswd`` auth provider: files made by Apache's ``htpasswd -B``, through a real
``dockyard registry`` process over HTTP, and the file's edge cases on the provider itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.core.errors import ConfigError, InvalidCredentials
from dockyard.core.interfaces import Identity
from dockyard.plugins.auth.htpasswd import HtpasswdSyntaxError, parse_htpasswd
from dockyard.testing.auth import basic_auth, request_with

from .conftest import build_auth_provider, htpasswd, htpasswd_file

ALICE = ("alice", "wonderland-42")
REALM = "dockyard-test"


def htpasswd_config(root: Path, path: Path) -> str:
    return (
        f'[registry]\nauth = "htpasswd"\ndata-root = "{root}/state"\n'
        f'[registries.filesystem]\nroot = "{root}/data"\n'
        f'[auth.htpasswd]\npath = "{path}"\nrealm = "{REALM}"\n'
    )


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    return htpasswd_file(tmp_path / "users.htpasswd", dict([ALICE]))


@pytest.fixture
def secured(tmp_path, users_file, registry_process, client_for):
    server = registry_process(htpasswd_config(tmp_path, users_file))
    client = client_for(server.url)
    client.server = server
    return client


def status_as(client, user: str, password: str, path: str = "/v2/") -> int:
    client.http.auth = (user, password)
    try:
        return client.request("GET", path).status_code
    finally:
        client.http.auth = None


# ------------------------------------------------------------------------------ over HTTP


def test_anonymous_requests_get_the_basic_challenge(secured):
    for method, path in [
        ("GET", "/v2/"),
        ("GET", "/v2/_catalog"),
        ("HEAD", "/v2/team/app/manifests/v1"),
        ("POST", "/v2/team/app/blobs/uploads/"),
        ("DELETE", "/v2/team/app/manifests/v1"),
    ]:
        reply = secured.request(method, path)
        assert reply.status_code == 401, (method, path)
        assert reply.headers["WWW-Authenticate"] == f'Basic realm="{REALM}"'
        if method != "HEAD":
            assert reply.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_the_right_password_pushes_pulls_and_deletes(secured):
    secured.http.auth = ALICE
    assert secured.request("GET", "/v2/").status_code == 200
    image = secured.push_image("team/app", "v1")
    pulled = secured.request("GET", "/v2/team/app/manifests/v1")
    assert pulled.status_code == 200 and pulled.content == image.manifest
    layer = secured.digest(image.layers[0])
    assert secured.request("GET", f"/v2/team/app/blobs/{layer}").content == image.layers[0]
    assert secured.request("GET", "/v2/_catalog").json() == {"repositories": ["team/app"]}
    # Mounting into another repository: any logged-in user may read every repository.
    mounted = secured.request("POST", f"/v2/team/copy/blobs/uploads/?mount={layer}&from=team/app")
    assert mounted.status_code == 201
    assert secured.request("DELETE", f"/v2/team/app/manifests/{image.digest}").status_code == 202
    secured.http.auth = None
    assert secured.request("GET", f"/v2/team/copy/blobs/{layer}").status_code == 401
    assert secured.server.server_errors() == []


def test_a_wrong_password_or_an_unknown_user_is_401_and_never_logged(secured):
    wrong = ("alice", "not-her-password-7")
    unknown = ("carroll", ALICE[1])
    for user, password in (wrong, unknown):
        secured.http.auth = (user, password)
        for path in ("/v2/", "/v2/team/app/tags/list"):
            reply = secured.request("GET", path)
            assert reply.status_code == 401, (user, path)
            assert reply.headers["WWW-Authenticate"] == f'Basic realm="{REALM}"'
            assert reply.json()["errors"][0]["code"] == "UNAUTHORIZED"
    secured.http.auth = None
    assert status_as(secured, *ALICE) == 200
    secured.server.stop()
    log = secured.server.log.read_text()
    for secret in (wrong[1], ALICE[1]):
        assert secret not in log
    assert secured.server.server_errors() == []


def test_edits_with_htpasswd_apply_without_a_restart(secured, users_file):
    assert status_as(secured, "bob", "bu1lder-99") == 401
    htpasswd(users_file, "bob", "bu1lder-99")
    assert status_as(secured, "bob", "bu1lder-99") == 200
    # A new password for alice: the old one stops working at once.
    htpasswd(users_file, "alice", "looking-glass-3")
    assert status_as(secured, *ALICE) == 401
    assert status_as(secured, "alice", "looking-glass-3") == 200
    subprocess.run(["htpasswd", "-D", str(users_file), "bob"], check=True, capture_output=True)
    assert status_as(secured, "bob", "bu1lder-99") == 401
    # Without the file nobody gets in; with it back, its users do.
    saved = users_file.read_bytes()
    users_file.unlink()
    assert status_as(secured, "alice", "looking-glass-3") == 401
    users_file.write_bytes(saved)
    assert status_as(secured, "alice", "looking-glass-3") == 200
    # The one error logged is the missing file's, once.
    errors = secured.server.server_errors()
    assert [entry["event"] for entry in errors] == ["htpasswd file is missing: nobody can log in"]


def test_entries_other_than_bcrypt_are_skipped_with_a_warning(
    tmp_path, users_file, registry_process, client_for
):
    htpasswd(users_file, "carol", "md5-password", "-m")  # htpasswd's default: $apr1$
    htpasswd(users_file, "dave", "sha-password", "-s")
    htpasswd(users_file, "erin", "plain-password", "-p")
    server = registry_process(htpasswd_config(tmp_path, users_file))
    client = client_for(server.url)
    assert status_as(client, "carol", "md5-password") == 401
    assert status_as(client, "dave", "sha-password") == 401
    assert status_as(client, "erin", "plain-password") == 401
    assert status_as(client, *ALICE) == 200
    log = server.log.read_text()
    assert "line 2: user 'carol' cannot log in: its hash is MD5 (apr1), not bcrypt" in log
    assert "line 3: user 'dave' cannot log in: its hash is SHA-1, not bcrypt" in log
    assert "line 4: user 'erin' cannot log in: its hash is crypt or plain text" in log
    assert "md5-password" not in log and "$apr1$" not in log


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "does not exist; make it with: htpasswd -cB {path} USER"),
        ("no-colon", "line 2: no ':' between user and hash"),
        ("unset", "[auth.htpasswd] path is not set"),
        ("bad-realm", "[auth.htpasswd] realm: 'say \"hi\"\\n' holds a control"),
    ],
)
def test_a_file_that_cannot_serve_stops_the_start(tmp_path, users_file, setup, message):
    config = htpasswd_config(tmp_path, users_file)
    if setup == "missing":
        users_file.unlink()
    elif setup == "no-colon":
        with users_file.open("a") as file:
            file.write("just-a-name\n")
    elif setup == "unset":
        config = config.replace(f'path = "{users_file}"\n', "")
    else:
        config = config.replace(f'realm = "{REALM}"', 'realm = "say \\"hi\\"\\n"')
    config_file = tmp_path / "c.toml"
    config_file.write_text(config)
    result = subprocess.run(
        [sys.executable, "-m", "dockyard", "registry", "--config", str(config_file)],
        capture_output=True, text=True, timeout=30,
        env={**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert message.format(path=users_file) in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------ the provider


def login(provider, user: str, password: str) -> Identity | None:
    return provider.authenticate(request_with(basic_auth(user, password)))


def test_passwords_past_72_bytes_count_as_htpasswd_hashed_them(tmp_path):
    # bcrypt reads 72 bytes; htpasswd -B hashed the first 72 of this password.
    long_password = "x" * 72 + "-the-rest"
    path = htpasswd_file(tmp_path / "users", {"long": long_password})
    provider = build_auth_provider("htpasswd", {"path": str(path)}, tmp_path / "state")
    assert login(provider, "long", long_password) == Identity("long")
    assert login(provider, "long", "x" * 72) == Identity("long")
    with pytest.raises(InvalidCredentials):
        login(provider, "long", "x" * 71)


def test_bcrypt_costs_and_prefixes_from_other_tools(tmp_path):
    import bcrypt

    path = htpasswd_file(tmp_path / "users", {"cost7": "seven-pass"})
    htpasswd(path, "cost7", "seven-pass", "-B", "-C", "7")
    with path.open("a") as file:  # $2b$, as Python's and Go's bcrypt write it
        file.write(f"gopher:{bcrypt.hashpw(b'go-pass-1', bcrypt.gensalt(4)).decode()}\n")
    provider = build_auth_provider("htpasswd", {"path": str(path)}, tmp_path / "state")
    assert login(provider, "cost7", "seven-pass") == Identity("cost7")
    assert login(provider, "gopher", "go-pass-1") == Identity("gopher")


def test_a_file_that_stops_parsing_keeps_the_last_good_version(tmp_path):
    path = htpasswd_file(tmp_path / "users", dict([ALICE]))
    provider = build_auth_provider("htpasswd", {"path": str(path)}, tmp_path / "state")
    good = path.read_bytes()
    path.write_bytes(good + b"half-written-line")
    assert login(provider, *ALICE) == Identity("alice")
    path.write_bytes(good + b"bob:" + good.split(b":", 1)[1])  # bob gets alice's hash
    assert login(provider, "bob", ALICE[1]) == Identity("bob")


def test_parsing_rules():
    hashed = b"$2y$05$" + b"a" * 53
    text = b"\n".join(
        [
            b"# a comment",
            b"",
            b"  alice:" + hashed + b"  ",
            b"alice:" + hashed.replace(b"a", b"b"),  # the first line for a user counts
            b"broken:$2y$05$short",
            b"\xff\xfe:" + hashed,
        ]
    )
    hashes, warnings = parse_htpasswd(text, "f")
    assert hashes == {"alice": hashed}
    assert warnings == [
        "f line 4: user 'alice' is already on line 3, which counts; this line is skipped",
        "f line 5: user 'broken' cannot log in: its bcrypt hash is malformed",
        "f line 6: the user name is not UTF-8; skipped",
    ]
    with pytest.raises(HtpasswdSyntaxError, match="f line 1: empty user name"):
        parse_htpasswd(b":" + hashed, "f")


def test_a_directory_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        build_auth_provider("htpasswd", {"path": str(tmp_path)}, tmp_path / "state")
