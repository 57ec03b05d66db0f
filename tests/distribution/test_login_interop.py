"""Login beside and with real peers: a real dockerd 20.10 answering the same ``POST /auth`` as
our daemon against the CNCF registry (htpasswd and token auth), the docker CLI and docker-py
against our daemon, a registry over TLS checked through ``registry-certs-dir``, and a real
credential helper (Debian's ``docker-credential-pass``) keeping ``dockyard login``'s secrets."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import http_request, plugin_env, run_dockyard
from tests.distribution.conftest import (
    PASSWORD,
    TOKEN_PASSWORD,
    TOKEN_USER,
    USER,
    dead_port,
)
from tests.distribution.test_cli_login import b64
from tests.distribution.test_login import login
from tests.registry.conftest import htpasswd_file, registry_process, start_cncf_registry
from tests.registry.test_interop_auth import (
    docker_cli_storing_logins_in_a_file,
    registry_config_for_auth,
)

pytestmark = pytest.mark.interop
__all__ = ["registry_config_for_auth", "registry_process"]  # fixtures of tests/registry


def auth_reply(socket_path: str, body: dict) -> tuple[int, dict]:
    reply = http_request(
        socket_path,
        "POST",
        "/v1.41/auth",
        {"Content-Type": "application/json"},
        json.dumps(body).encode(),
    )
    return reply.status, reply.json()


def same_answer(daemon, real_dockerd, body: dict) -> dict:
    """Both daemons' answers to ``body``: the same status and message, the same kind of
    identity token (present or not); ours is returned."""
    ours = auth_reply(daemon.socket_path, body)
    theirs = auth_reply(real_dockerd.host.removeprefix("unix://"), body)
    assert ours[0] == theirs[0], (body, ours, theirs)
    if ours[0] == 200:
        assert ours[1]["Status"] == theirs[1]["Status"] == "Login Succeeded"
        assert bool(ours[1]["IdentityToken"]) == bool(theirs[1]["IdentityToken"]), (ours, theirs)
    else:
        assert ours[1] == theirs[1], (body, ours, theirs)
    return ours[1]


def test_basic_logins_answer_as_dockerd_answers(daemon, real_dockerd, basic_registry):
    host = basic_registry.host
    same_answer(
        daemon, real_dockerd, {"username": USER, "password": PASSWORD, "serveraddress": host}
    )
    wrong = same_answer(
        daemon, real_dockerd, {"username": USER, "password": "wrong", "serveraddress": host}
    )
    assert "failed with status: 401 Unauthorized" in wrong["message"]
    none = same_answer(daemon, real_dockerd, {"serveraddress": host})
    assert none["message"].endswith("no basic auth credentials")
    for address in (f"127.0.0.1:{dead_port()}", f"http://127.0.0.1:{dead_port()}/v1/"):
        gone = same_answer(
            daemon, real_dockerd, {"username": "u", "password": "p", "serveraddress": address}
        )
        assert "connect: connection refused" in gone["message"]
    same_answer(  # a key neither knows is ignored by both
        daemon,
        real_dockerd,
        {"username": USER, "password": PASSWORD, "serveraddress": host, "bogus": 1},
    )


def test_token_logins_answer_as_dockerd_answers(daemon, real_dockerd, token_registry, token_server):
    host = token_registry.host
    good = {"username": TOKEN_USER, "password": TOKEN_PASSWORD, "serveraddress": host}
    ours = same_answer(daemon, real_dockerd, good)
    wrong = same_answer(daemon, real_dockerd, {**good, "password": "nope"})
    assert wrong["message"] == f'Get "{token_registry.url}/v2/": unauthorized: invalid credentials'
    same_answer(daemon, real_dockerd, {"serveraddress": host})  # an anonymous token will do
    bad_refresh = same_answer(
        daemon, real_dockerd, {"identitytoken": "garbage", "serveraddress": host}
    )
    assert bad_refresh["message"].endswith("unauthorized: invalid credentials")
    # Each daemon's identity token logs it in again through the OAuth2 refresh grant.
    again = auth_reply(
        daemon.socket_path, {"identitytoken": ours["IdentityToken"], "serveraddress": host}
    )
    assert again == (200, {"IdentityToken": ours["IdentityToken"], "Status": "Login Succeeded"})
    grants = [r.form.get("grant_type") for r in token_server.requests if r.method == "POST"]
    assert grants == [["refresh_token"], ["refresh_token"], ["refresh_token"]], (
        token_server.requests
    )


# --------------------------------------------------------------------------------------------
# Real clients of our daemon
# --------------------------------------------------------------------------------------------


def test_the_docker_cli_logs_in_through_our_daemon(
    daemon, basic_registry, token_registry, tmp_path
):
    docker = docker_cli_storing_logins_in_a_file(daemon.host, tmp_path)
    stored = tmp_path / "docker-config" / "config.json"
    host = basic_registry.host
    done = docker("login", host, "-u", USER, "--password-stdin", input=PASSWORD)
    assert "Login Succeeded" in done.stdout
    assert json.loads(stored.read_text())["auths"][host] == {"auth": b64(f"{USER}:{PASSWORD}")}

    wrong = docker("login", host, "-u", USER, "--password-stdin", input="wrong", check=False)
    assert wrong.returncode == 1
    assert (
        f"Error response from daemon: login attempt to {basic_registry.url}/v2/ failed with "
        "status: 401 Unauthorized"
    ) in wrong.stderr

    token_host = token_registry.host
    docker("login", token_host, "-u", TOKEN_USER, "--password-stdin", input=TOKEN_PASSWORD)
    entry = json.loads(stored.read_text())["auths"][token_host]
    assert entry["identitytoken"]  # the CLI keeps our IdentityToken instead of the password
    docker("logout", token_host)
    assert token_host not in json.loads(stored.read_text())["auths"]


def test_dockyard_and_docker_read_each_others_logins(daemon, basic_registry, tmp_path):
    docker = docker_cli_storing_logins_in_a_file(daemon.host, tmp_path)
    config = tmp_path / "docker-config"
    env = plugin_env([], DOCKYARD_HOST=daemon.host, DOCKYARD_CONFIG=str(config))
    host = basic_registry.host
    done = run_dockyard(["login", host, "-u", USER, "--password-stdin"], env=env, input=PASSWORD)
    assert done.returncode == 0, done.stderr
    # The docker CLI finds the login dockyard kept and authenticates with it.
    again = docker("login", host)
    assert f"Authenticating with existing credentials... [Username: {USER}]" in again.stderr


def test_docker_py_logs_in_through_our_daemon(daemon, basic_registry, tmp_path):
    client = docker.DockerClient(base_url=daemon.host)
    try:
        answer = client.login(
            username=USER,
            password=PASSWORD,
            registry=basic_registry.host,
            dockercfg_path=str(tmp_path / "none.json"),
        )
        assert answer == {"IdentityToken": "", "Status": "Login Succeeded"}
        with pytest.raises(docker.errors.APIError) as refused:
            client.login(
                username=USER,
                password="wrong",
                registry=basic_registry.host,
                reauth=True,
                dockercfg_path=str(tmp_path / "none.json"),
            )
        assert refused.value.status_code == 500
        assert "401 Unauthorized" in str(refused.value)
    finally:
        client.close()


# --------------------------------------------------------------------------------------------
# A secure registry: HTTPS only, checked with the CA and client certificate of certs.d
# --------------------------------------------------------------------------------------------


def _certificate(subject: str, key, issuer_key, issuer_name=None, ca: bool = False, **extensions):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    for extension in extensions.values():
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(path: Path, certificate=None, key=None) -> Path:
    if certificate is not None:
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return path


@pytest.fixture
def tls_registry(tmp_path) -> Iterator[tuple[str, Path]]:
    """The CNCF registry over TLS on ``[::1]`` (not loopback to dockerd's rules: secure),
    asking for a client certificate and Basic credentials; and the files a client needs."""
    files = tmp_path / "pki"
    files.mkdir()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("dockyard test CA", ca_key, ca_key, ca=True)

    def issue(subject: str, extension: x509.ExtensionType):
        key = ec.generate_private_key(ec.SECP256R1())
        return _certificate(subject, key, ca_key, ca.subject, extension=extension), key

    server, server_key = issue(
        "::1", x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("::1"))])
    )
    client, client_key = issue(
        "dockyard daemon", x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    )
    _pem(files / "ca.crt", ca)
    _pem(files / "server.crt", server)
    _pem(files / "server.key", key=server_key)
    _pem(files / "client.cert", client)
    _pem(files / "client.key", key=client_key)
    htpasswd = htpasswd_file(tmp_path / "htpasswd", {USER: PASSWORD})
    extra = (
        f"  tls:\n    certificate: {files}/server.crt\n    key: {files}/server.key\n"
        f"    clientcas:\n      - {files}/ca.crt\n"
        f"auth:\n  htpasswd:\n    realm: tls-realm\n    path: {htpasswd}\n"
    )
    registry = start_cncf_registry(tmp_path / "tls-registry", extra, address="::1")
    yield f"[::1]:{registry.port}", files
    registry.stop()


def test_a_secure_registry_is_checked_with_the_certificates_of_its_certs_d(
    start_daemon, tls_registry, tmp_path
):
    host, files = tls_registry
    certs = tmp_path / "certs.d"
    daemon = start_daemon(config=f'[daemon]\nregistry-certs-dir = "{certs}"\n')
    body = {"username": USER, "password": PASSWORD, "serveraddress": host}

    unknown_ca = login(daemon, body)  # HTTPS only, and its CA is nobody we trust
    assert unknown_ca.status == 500
    assert unknown_ca.json()["message"] == (
        f'Get "https://{host}/v2/": x509: certificate signed by unknown authority'
    )

    (certs / host).mkdir(parents=True)
    shutil.copy(files / "ca.crt", certs / host / "ca.crt")
    no_client_certificate = login(daemon, body)
    assert no_client_certificate.status == 500, no_client_certificate.body
    assert no_client_certificate.json()["message"].startswith(
        f'Get "https://{host}/v2/": remote error: tls: '
    )

    shutil.copy(files / "client.cert", certs / host / "client.cert")
    lone_certificate = login(daemon, body)
    assert (
        "missing key client.key for client certificate client.cert"
        in lone_certificate.json()["message"]
    )
    shutil.copy(files / "client.key", certs / host / "client.key")
    reply = login(daemon, body)
    assert reply.status == 200, reply.body
    assert login(daemon, {**body, "password": "wrong"}).json()["message"] == (
        f"login attempt to https://{host}/v2/ failed with status: 401 Unauthorized"
    )


# --------------------------------------------------------------------------------------------
# A real credential helper
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pass_store(tmp_path) -> Iterator[dict[str, str]]:
    """``pass`` with a fresh GnuPG key (made with --batch), for docker-credential-pass; its
    gpg-agent is stopped afterwards."""
    # scripts/setup unpacks them into the virtualenv, off the machine's PATH (see there why).
    path = f"{Path(sys.prefix) / 'credential-helpers' / 'usr' / 'bin'}:{os.environ['PATH']}"
    for program in ("docker-credential-pass", "pass", "gpg"):
        if shutil.which(program, path=path) is None:
            pytest.fail(f"{program} is missing: run scripts/setup")
    env = {
        "PATH": path,
        "GNUPGHOME": str(tmp_path / "gnupg"),
        "PASSWORD_STORE_DIR": str(tmp_path / "password-store"),
    }
    os.mkdir(env["GNUPGHOME"], 0o700)
    full = {**os.environ, **env}
    spec = (
        "%no-protection\nKey-Type: EDDSA\nKey-Curve: ed25519\nSubkey-Type: ECDH\n"
        "Subkey-Curve: cv25519\nName-Real: dockyard test\nName-Email: test@dockyard.invalid\n"
        "Expire-Date: 0\n%commit\n"
    )
    try:
        subprocess.run(
            ["gpg", "--batch", "--gen-key"],
            input=spec,
            text=True,
            env=full,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            ["pass", "init", "test@dockyard.invalid"], env=full, check=True, capture_output=True
        )
        yield env
    finally:
        subprocess.run(["gpgconf", "--kill", "all"], env=full, check=False, capture_output=True)


def helper(env: dict[str, str], action: str, text: str) -> str:
    done = subprocess.run(
        ["docker-credential-pass", action],
        input=text,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )
    return done.stdout.strip()


@pytest.mark.parametrize("setting", ["credsStore", "credHelpers"])
def test_a_credential_helper_keeps_the_secret(
    daemon, basic_registry, pass_store, tmp_path, setting
):
    config = tmp_path / "helper-config"
    config.mkdir()
    host = basic_registry.host
    chosen = {"credsStore": "pass"} if setting == "credsStore" else {"credHelpers": {host: "pass"}}
    (config / "config.json").write_text(json.dumps(chosen))
    env = plugin_env([], DOCKYARD_HOST=daemon.host, DOCKYARD_CONFIG=str(config), **pass_store)

    done = run_dockyard(["login", host, "-u", USER, "--password-stdin"], env=env, input=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert "unencrypted" not in done.stderr
    assert json.loads((config / "config.json").read_text()) == {**chosen, "auths": {host: {}}}
    assert json.loads(helper(pass_store, "get", host)) == {
        "ServerURL": host,
        "Username": USER,
        "Secret": PASSWORD,
    }
    assert PASSWORD not in (config / "config.json").read_text()

    again = run_dockyard(["login", host], env=env, input="")
    assert again.returncode == 0, again.stderr
    assert f"[Username: {USER}]" in again.stderr

    out = run_dockyard(["logout", host], env=env)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert json.loads(helper(pass_store, "list", "")) == {}
    assert json.loads((config / "config.json").read_text()) == {**chosen, "auths": {}}


def test_logins_to_our_registry_answer_as_dockerd_answers(
    daemon, real_dockerd, registry_process, registry_config_for_auth
):
    """``dockyard registry`` with its htpasswd and token plugins, asked by both daemons."""
    config = registry_config_for_auth
    server = registry_process(config.text)
    body = {"username": config.user, "password": config.password, "serveraddress": server.host}
    ours = same_answer(daemon, real_dockerd, body)
    assert bool(ours["IdentityToken"]) == (config.mode == "token")
    same_answer(daemon, real_dockerd, {**body, "password": "not-the-password"})
    same_answer(daemon, real_dockerd, {"serveraddress": server.host})
    assert server.server_errors() == []
