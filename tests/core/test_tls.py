"""The remote daemon over TLS, as docker does it (issue 9).

dockerd's flags and daemon.json keys on our daemon, docker's client flags, environment and
default files on our CLI. Certificates are made here with openssl; the daemons are real, on
loopback ports. The interop tests drive the real docker CLIs and docker-py against our daemon,
and run dockerd 20.10 beside it where its behaviour is the reference.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import docker
import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_env, real_dockerd
from tests.conftest import Daemon, free_port, plugin_env, run_dockyard

# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------


class Pair(NamedTuple):
    cert: str
    key: str


class PKI(NamedTuple):
    directory: Path
    ca: Pair
    server: Pair  # for 127.0.0.1 and localhost, signed by ca
    client: Pair  # signed by ca
    stranger: Pair  # a client certificate from another CA
    impostor: Pair  # a server certificate for 127.0.0.1 from another CA
    elsewhere: Pair  # signed by ca, for another name


CLIENT_USE = "extendedKeyUsage=clientAuth\n"
SERVER_NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
# P-256 keys: as good as RSA here, and made in a millisecond.
NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


def openssl(*args: object) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(directory: Path, name: str) -> Pair:
    cert, key = directory / f"{name}.pem", directory / f"{name}-key.pem"
    openssl("req", "-x509", *NEW_KEY, "-keyout", key, "-out", cert, "-days", "2",
            "-subj", f"/CN=dockyard test {name}")  # fmt: skip
    return Pair(str(cert), str(key))


def make_signed(directory: Path, name: str, ca: Pair, extensions: str) -> Pair:
    cert, key, csr = (directory / f"{name}{suffix}" for suffix in (".pem", "-key.pem", ".csr"))
    ext = directory / f"{name}.cnf"
    ext.write_text(extensions)
    openssl("req", *NEW_KEY, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
            "-out", cert, "-days", "2", "-extfile", ext)  # fmt: skip
    return Pair(str(cert), str(key))


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = make_ca(directory, "ca"), make_ca(directory, "other-ca")
    return PKI(
        directory,
        ca,
        server=make_signed(directory, "server", ca, SERVER_NAMES),
        client=make_signed(directory, "client", ca, CLIENT_USE),
        stranger=make_signed(directory, "stranger", other, CLIENT_USE),
        impostor=make_signed(directory, "impostor", other, SERVER_NAMES),
        elsewhere=make_signed(directory, "elsewhere", ca, "subjectAltName=DNS:elsewhere.example\n"),
    )


def cert_dir(directory: Path, ca: str, pair: Pair | None) -> Path:
    """``directory`` with ``ca.pem`` and, for ``pair``, ``cert.pem`` and ``key.pem``: the
    layout of docker's ``~/.docker``, DOCKER_CERT_PATH and our default files."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca, directory / "ca.pem")
    if pair is not None:
        shutil.copy(pair.cert, directory / "cert.pem")
        shutil.copy(pair.key, directory / "key.pem")
    return directory


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def server_flags(pki: PKI, server: Pair | None = None) -> list[str]:
    server = server or pki.server
    return ["--tlscacert", pki.ca.cert, "--tlscert", server.cert, "--tlskey", server.key]


def client_flags(pki: PKI, client: Pair | None) -> list[str]:
    flags = ["--tlsverify", "--tlscacert", pki.ca.cert]
    return flags + (["--tlscert", client.cert, "--tlskey", client.key] if client else [])


def ping(port: int, pki: PKI, client: Pair | None) -> bytes:
    """``GET /_ping`` over TLS with this client certificate (or none): the daemon's answer.

    A daemon that refuses the certificate (or its lack) sends a TLS alert, raised here as an
    ``ssl.SSLError`` whose reason names it; with TLS 1.3 it comes with the first read.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(pki.ca.cert)
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        answer = b""
        while block := tls.recv(4096):
            answer += block
        return answer.split(b"\r\n\r\n", 1)[1]


def refusal(port: int, pki: PKI, client: Pair | None) -> str:
    """The TLS alert the daemon refuses this client certificate (or none) with."""
    with pytest.raises(ssl.SSLError) as refused:
        ping(port, pki, client)
    assert "ALERT" in refused.value.reason, refused.value
    return refused.value.reason


def client_env(config_dir: Path, **extra: str) -> dict[str, str]:
    """Our CLI's environment with its config directory (where default TLS files live) here."""
    config_dir.mkdir(parents=True, exist_ok=True)
    return plugin_env([], DOCKYARD_CONFIG=str(config_dir), **extra)


def dockyard_at(port: int, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_dockyard(["-H", f"tcp://127.0.0.1:{port}", *args], env=env)


def with_busybox(daemon: Daemon) -> Daemon:
    archive = image_archive([busybox_rootfs()], ["busybox:latest"])
    reply = daemon.request("POST", "/v1.41/images/load", body=archive)
    assert reply.status == 200, reply.body
    return daemon


def loopback_address() -> str:
    """A loopback address of our own (any 127/8 address is ours to bind), so that docker's
    default ports can be listened on and connected to without meeting another test's."""
    return f"127.{random.randint(1, 254)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


def start_refused(tmp_path: Path, *args: str) -> str:
    """``dockyard daemon ARGS`` must refuse to start: its one-line error."""
    result = run_dockyard(
        ["daemon", "--data-root", str(tmp_path / "root"), "-H", f"unix://{tmp_path}/d.sock",
         "-H", f"tcp://127.0.0.1:{free_port()}", *args]
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "root" / "daemon.lock").exists()  # refused before anything started
    return result.stderr.strip()


# --------------------------------------------------------------------------------------------
# The daemon: --tlsverify, --tls, their config keys and default files
# --------------------------------------------------------------------------------------------


def test_tlsverify_admits_only_clients_with_a_certificate_its_ca_signed(
    start_daemon, pki, tmp_path
):
    daemon = with_busybox(start_daemon("--tlsverify", *server_flags(pki), tcp=True))
    port = daemon.tcp_port
    assert ping(port, pki, pki.client) == b"OK"
    # Refused at the handshake, with the alert that says why.
    assert refusal(port, pki, None) == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    assert refusal(port, pki, pki.stranger) == "TLSV1_ALERT_UNKNOWN_CA"

    env = client_env(tmp_path / "client-config")
    version = dockyard_at(port, *client_flags(pki, pki.client), "version", env=env)
    assert version.returncode == 0, version.stderr
    assert "API version:     1.41 (minimum version 1.12)" in version.stdout
    # A container over TLS: the attach is an upgraded connection inside the TLS session.
    run = dockyard_at(
        port, *client_flags(pki, pki.client), "run", "--rm", "busybox", "echo", "over tls", env=env
    )
    assert (run.returncode, run.stdout) == (0, "over tls\n"), run.stderr
    no_cert = dockyard_at(port, *client_flags(pki, None), "version", env=env)
    assert no_cert.returncode == 1
    assert no_cert.stderr.strip().splitlines()[-1] == (
        f"the daemon at tcp://127.0.0.1:{port} requires a client certificate: "
        "give --tlscert and --tlskey"
    )
    stranger = dockyard_at(port, *client_flags(pki, pki.stranger), "version", env=env)
    assert stranger.returncode == 1
    assert stranger.stderr.strip().splitlines()[-1] == (
        f"the daemon at tcp://127.0.0.1:{port} refused the client certificate "
        f"{pki.stranger.cert}: unknown ca"
    )


def test_config_keys_and_the_files_beside_the_config_file(start_daemon, pki, tmp_path):
    # Keys naming the files...
    named = tmp_path / "named.toml"
    named.write_text(
        f'[daemon]\ntlsverify = true\ntlscacert = "{pki.ca.cert}"\n'
        f'tlscert = "{pki.server.cert}"\ntlskey = "{pki.server.key}"\n'
    )
    daemon = start_daemon("--config", str(named), tcp=True)
    assert ping(daemon.tcp_port, pki, pki.client) == b"OK"
    assert "CERTIFICATE_REQUIRED" in refusal(daemon.tcp_port, pki, None)
    # ...or ca.pem, cert.pem and key.pem beside the config file.
    beside = cert_dir(tmp_path / "etc", pki.ca.cert, pki.server) / "config.toml"
    beside.write_text("[daemon]\ntlsverify = true\n")
    daemon = start_daemon("--config", str(beside), tcp=True)
    assert ping(daemon.tcp_port, pki, pki.client) == b"OK"
    assert "CERTIFICATE_REQUIRED" in refusal(daemon.tcp_port, pki, None)


@pytest.mark.parametrize(
    ("flags", "verifies_clients"),
    [
        (["--tls"], True),  # as dockerd 20.10: --tls alone verifies clients too
        (["--tls", "--tlsverify=false"], False),
        (["--tlsverify=false"], False),  # naming tlsverify at all turns TLS on, as dockerd
        (["--tlsverify"], True),
    ],
)
def test_tls_and_tlsverify_as_dockerd_reads_them(
    start_daemon, pki, tmp_path, flags, verifies_clients
):
    config = cert_dir(tmp_path / "etc", pki.ca.cert, pki.server) / "config.toml"
    config.write_text("")
    daemon = start_daemon("--config", str(config), *flags, tcp=True)
    assert ping(daemon.tcp_port, pki, pki.client) == b"OK"
    if verifies_clients:
        assert "CERTIFICATE_REQUIRED" in refusal(daemon.tcp_port, pki, None)
    else:
        assert ping(daemon.tcp_port, pki, None) == b"OK"
    ready = next(line for line in daemon.log_lines() if line["event"] == "daemon ready")
    summary = f"clients need a certificate {config.parent}/ca.pem signed"
    assert ready["tls"] == (summary if verifies_clients else "encryption only")


def test_flags_override_config_keys(start_daemon, pki, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[daemon]\ntls = true\ntlsverify = false\ntlscert = "{pki.server.cert}"\n'
                      f'tlskey = "{pki.server.key}"\n')  # fmt: skip
    daemon = start_daemon("--config", str(config), tcp=True)
    assert ping(daemon.tcp_port, pki, None) == b"OK"
    daemon = start_daemon("--config", str(config), "--tlsverify", "--tlscacert", pki.ca.cert,
                          tcp=True)  # fmt: skip
    assert "CERTIFICATE_REQUIRED" in refusal(daemon.tcp_port, pki, None)


@pytest.mark.parametrize(
    ("problem", "message"),
    [
        ("tlsverify-without-files", "cannot read tlscert {etc}/cert.pem: No such file or directory"),
        ("tlsverify-without-ca", "cannot read tlscacert {etc}/ca.pem: No such file or directory"),
        ("cert-without-key", "tlscert and tlskey go together: give both, or neither to use "
                             "{etc}/cert.pem and {etc}/key.pem"),
        ("missing-cert", "cannot read tlscert {pki}/nothing.pem: No such file or directory"),
        ("unreadable-key", "cannot read tlskey {pki}: Is a directory"),
        ("ca-not-pem", "tlscacert {pki}/server.cnf holds no PEM certificate"),
        ("key-of-another", "tlskey {pki}/client-key.pem is not the private key of tlscert "
                           "{pki}/server.pem"),
        ("encrypted-key", "tlskey {etc}/locked.pem is encrypted: give the key without a "
                          "passphrase"),
        ("files-without-tls", "tlscert is set but TLS is off: turn on tlsverify (clients must "
                              "present a certificate tlscacert signed) or tls"),
        ("ca-without-verify", "tlscacert is the CA of client certificates, but tlsverify = false "
                              "lets any client in: drop tlscacert, or turn tlsverify on"),
    ],
)  # fmt: skip
def test_tls_setups_that_cannot_work_are_refused_naming_the_key(pki, tmp_path, problem, message):
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.toml"
    config.write_text("")
    if problem == "tlsverify-without-ca":
        cert_dir(etc, pki.ca.cert, pki.server).joinpath("ca.pem").unlink()
    if problem == "encrypted-key":
        openssl("pkey", "-in", pki.server.key, "-aes256", "-passout", "pass:secret",
                "-out", etc / "locked.pem")  # fmt: skip
    p = pki.directory
    args = {
        "tlsverify-without-files": ["--tlsverify"],
        "tlsverify-without-ca": ["--tlsverify"],
        "cert-without-key": ["--tlsverify", "--tlscert", pki.server.cert],
        "missing-cert": ["--tlsverify", *server_flags(pki, Pair(f"{p}/nothing.pem", pki.server.key))],
        "unreadable-key": ["--tlsverify", *server_flags(pki, Pair(pki.server.cert, str(p)))],
        "ca-not-pem": ["--tlsverify", "--tlscacert", f"{p}/server.cnf",
                       *server_flags(pki)[2:]],
        "key-of-another": ["--tlsverify", *server_flags(pki, Pair(pki.server.cert,
                                                                  pki.client.key))],
        "encrypted-key": ["--tlsverify", *server_flags(pki, Pair(pki.server.cert,
                                                                 str(etc / "locked.pem")))],
        "files-without-tls": server_flags(pki)[2:],
        "ca-without-verify": ["--tlsverify=false", *server_flags(pki)],
    }[problem]  # fmt: skip
    error = start_refused(tmp_path, "--config", str(config), *args)
    assert error == "dockyard daemon: " + message.format(etc=etc, pki=p)


def test_the_former_tls_keys_are_refused_with_the_new_names(pki, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[daemon]\ntls-cert = "{pki.server.cert}"\n')
    error = start_refused(tmp_path, "--config", str(config))
    assert "unknown key 'daemon.tls-cert' (did you mean 'tlscert'?)" in error
    config.write_text(f'[daemon]\ntls-ca = "{pki.ca.cert}"\n')
    assert "(did you mean 'tlscacert'?)" in start_refused(tmp_path, "--config", str(config))


def test_exposed_tcp_needs_clients_authenticated(start_daemon, pki, tmp_path):
    """Off loopback, TLS that only encrypts is refused; tlsverify, or a token, is not."""
    refused = start_refused(
        tmp_path, "-H", f"tcp://0.0.0.0:{free_port()}", "--tls", "--tlsverify=false",
        *server_flags(pki)[2:],
    )  # fmt: skip
    assert "without client authentication: anyone who can reach it could run containers as " in (
        refused
    )
    assert "turn on tlsverify so that clients must present a certificate tlscacert signed" in (
        refused
    )
    port = free_port()
    start_daemon("-H", f"tcp://0.0.0.0:{port}", "--tlsverify", *server_flags(pki))
    assert ping(port, pki, pki.client) == b"OK"
    assert "CERTIFICATE_REQUIRED" in refusal(port, pki, None)
    # Encrypted, and the token authenticates.
    token_file = tmp_path / "token"
    token_file.write_text("sekrit-token\n")
    port = free_port()
    start_daemon("-H", f"tcp://0.0.0.0:{port}", "--tls", "--tlsverify=false",
                 *server_flags(pki)[2:], "--token-file", str(token_file))  # fmt: skip
    assert b"bearer token" in ping(port, pki, None)  # the 401's message


def test_plain_http_to_a_tls_port(start_daemon, pki, tmp_path):
    daemon = start_daemon("--tlsverify", *server_flags(pki), tcp=True)
    result = dockyard_at(daemon.tcp_port, "version", env=client_env(tmp_path / "c"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].endswith("if it serves TLS, add --tlsverify")


# --------------------------------------------------------------------------------------------
# The client: flags, DOCKYARD_TLS_VERIFY, DOCKYARD_CERT_PATH, the config directory
# --------------------------------------------------------------------------------------------


def test_client_verifies_the_daemon_against_its_ca(start_daemon, pki, tmp_path):
    env = client_env(tmp_path / "client-config")
    for server, why in (
        (pki.impostor, "unable to get local issuer certificate"),
        (pki.elsewhere, "IP address mismatch, certificate is not valid "
                        "for '127.0.0.1'."),
    ):  # fmt: skip
        daemon = start_daemon("--tls", "--tlsverify=false", *server_flags(pki, server)[2:],
                              tcp=True)  # fmt: skip
        verified = dockyard_at(daemon.tcp_port, *client_flags(pki, None), "version", env=env)
        assert verified.returncode == 1
        assert verified.stderr.strip().splitlines()[-1] == (
            f"the daemon at tcp://127.0.0.1:{daemon.tcp_port} failed TLS verification against "
            f"CA file {pki.ca.cert}: {why}"
        )
        # --tls encrypts without verifying, as docker's.
        encrypted = dockyard_at(daemon.tcp_port, "--tls", "version", env=env)
        assert encrypted.returncode == 0, encrypted.stderr
        assert "Server: dockyard" in encrypted.stdout


def test_environment_and_default_files(start_daemon, pki, tmp_path):
    daemon = start_daemon("--tlsverify", *server_flags(pki), tcp=True)
    host = f"tcp://127.0.0.1:{daemon.tcp_port}"
    config_dir = cert_dir(tmp_path / "config", pki.ca.cert, pki.client)
    # DOCKYARD_TLS_VERIFY with the files in DOCKYARD_CONFIG: no flags at all.
    env = client_env(config_dir, DOCKYARD_HOST=host, DOCKYARD_TLS_VERIFY="1")
    assert run_dockyard(["version"], env=env).returncode == 0
    # --tlsverify with DOCKYARD_CERT_PATH instead.
    elsewhere = cert_dir(tmp_path / "certs", pki.ca.cert, pki.client)
    env = client_env(tmp_path / "empty", DOCKYARD_HOST=host, DOCKYARD_CERT_PATH=str(elsewhere))
    assert run_dockyard(["--tlsverify", "ps"], env=env).returncode == 0
    # Without cert.pem and key.pem no certificate is sent, and the daemon wants one.
    bare = cert_dir(tmp_path / "bare", pki.ca.cert, None)
    env = client_env(bare, DOCKYARD_HOST=host, DOCKYARD_TLS_VERIFY="1")
    assert "requires a client certificate" in run_dockyard(["version"], env=env).stderr
    # --tlsverify=false under DOCKYARD_TLS_VERIFY: TLS without verification (docker's rule).
    impostor = start_daemon("--tls", "--tlsverify=false", *server_flags(pki, pki.impostor)[2:],
                            tcp=True)  # fmt: skip
    env = client_env(config_dir, DOCKYARD_HOST=f"tcp://127.0.0.1:{impostor.tcp_port}",
                     DOCKYARD_TLS_VERIFY="1")  # fmt: skip
    assert "failed TLS verification" in run_dockyard(["version"], env=env).stderr
    assert run_dockyard(["--tlsverify=false", "version"], env=env).returncode == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tlsverify"], "cannot read {config}/ca.pem (default --tlscacert): No such file or "
                          "directory"),
        (["--tlsverify", "--tlscacert", "{pki}/ca.pem", "--tlscert", "{pki}/nothing.pem",
          "--tlskey", "{pki}/client-key.pem"],
         "cannot read --tlscert {pki}/nothing.pem: No such file or directory"),
        (["--tlsverify", "--tlscacert", "{pki}"], "cannot read --tlscacert {pki}: Is a directory"),
        (["--tlsverify", "--tlscacert", "{pki}/ca.pem", "--tlscert", "{pki}/client.pem"],
         "--tlscert and --tlskey go together: give both or neither"),
        (["--tlscacert", "{pki}/ca.pem"], "--tlscacert needs TLS: add --tlsverify (or --tls)"),
        (["--tls", "--tlscacert", "{pki}/ca.pem"],
         "--tlscacert verifies the daemon, which --tls does not: use --tlsverify"),
    ],
)  # fmt: skip
def test_client_tls_mistakes_are_one_line_errors(pki, tmp_path, args, message):
    config = tmp_path / "config"
    values = {"config": config, "pki": pki.directory}
    words = [word.format(**values) for word in args]
    result = run_dockyard(["-H", "tcp://127.0.0.1:9", *words, "version"], env=client_env(config))
    assert result.returncode == 1
    assert result.stderr == f"dockyard version: {message.format(**values)}\n"


def test_client_files_that_ssl_cannot_use(pki, tmp_path):
    env = client_env(tmp_path / "config")
    flags = ["--tlsverify", "--tlscacert", pki.ca.cert, "--tlscert", pki.client.cert]
    result = run_dockyard(["-H", "tcp://127.0.0.1:9", *flags, "--tlskey", pki.server.key,
                           "version"], env=env)  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"client key {pki.server.key} is not the private key of client certificate "
        f"{pki.client.cert}"
    )


def test_tls_commands_load_ssl_but_no_server_stack(start_daemon, pki, tmp_path):
    daemon = start_daemon("--tlsverify", *server_flags(pki), tcp=True)
    args = ["-H", f"tcp://127.0.0.1:{daemon.tcp_port}", *client_flags(pki, pki.client), "ps"]
    code = (
        "import sys, json\n"
        "from dockyard.cli import main\n"
        f"assert main({args!r}) == 0\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=client_env(tmp_path / "c")
    )
    loaded = set(json.loads(result.stderr.strip().splitlines()[-1]))
    assert "ssl" in loaded
    assert not {m.split(".")[0] for m in loaded} & {"starlette", "uvicorn", "structlog", "attrs"}


def test_without_a_host_tls_goes_to_localhost_2376_as_docker(pki, tmp_path):
    env = client_env(cert_dir(tmp_path / "config", pki.ca.cert, pki.client))
    result = run_dockyard(["--tlsverify", "version"], env=env)
    assert result.returncode == 1
    assert "tcp://localhost:2376" in result.stderr


# --------------------------------------------------------------------------------------------
# Real clients, and dockerd 20.10 beside us
# --------------------------------------------------------------------------------------------


def docker_clis() -> list[str]:
    """The docker CLI on PATH (28) and Debian docker.io's (20.10), where installed."""
    found = [shutil.which("docker"), "/usr/bin/docker"]
    return sorted({path for path in found if path and Path(path).exists()})


def run_docker(
    cli: str, host: str, *args: str, config: Path, **env: str
) -> subprocess.CompletedProcess:
    """The docker CLI ``cli`` at ``host`` (none: its default), its config directory ``config``."""
    environment = docker_env(host, config) | env
    if not host:
        del environment["DOCKER_HOST"]
    return subprocess.run([cli, *args], capture_output=True, text=True, env=environment, timeout=60)


def dockerd_env(cert_path: Path) -> dict[str, str]:
    """dockerd's environment: ours without DOCKER_* but its default certificate directory."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    return environment | {"DOCKER_CONFIG": str(cert_path)}


@pytest.mark.interop
@pytest.mark.parametrize("cli", docker_clis())
def test_docker_cli_over_mutual_tls(cli, start_daemon, pki, tmp_path):
    daemon = with_busybox(start_daemon("--tlsverify", *server_flags(pki), tcp=True))
    host = f"tcp://127.0.0.1:{daemon.tcp_port}"
    config = tmp_path / "docker-config"  # empty: no ~/.docker files get in the way
    config.mkdir()
    flags = client_flags(pki, pki.client)
    version = run_docker(cli, host, *flags, "version", "--format", "{{.Server.APIVersion}}",
                     config=config)  # fmt: skip
    assert (version.returncode, version.stdout) == (0, "1.41\n"), version.stderr
    listing = run_docker(cli, host, *flags, "ps", "-a", config=config)
    assert listing.returncode == 0, listing.stderr
    run = run_docker(cli, host, *flags, "run", "--rm", "busybox", "echo", "hi", config=config)
    assert (run.returncode, run.stdout) == (0, "hi\n"), run.stderr
    # DOCKER_TLS_VERIFY and DOCKER_CERT_PATH.
    certs = cert_dir(tmp_path / "certs", pki.ca.cert, pki.client)
    by_env = run_docker(cli, host, "version", "--format", "{{.Server.Version}}", config=config,
                    DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certs))  # fmt: skip
    assert (by_env.returncode, by_env.stdout) == (0, "0.1.0\n"), by_env.stderr
    # Without a client certificate the CLI is told why (our daemon sends the TLS alert).
    refused = run_docker(cli, host, *client_flags(pki, None), "version", config=config)
    assert refused.returncode == 1
    assert "remote error: tls: certificate required" in refused.stderr


@pytest.mark.interop
def test_docker_py_over_mutual_tls(start_daemon, pki, tmp_path, monkeypatch):
    # requests lets these replace the CA docker-py gives it (psf/requests#3829).
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    daemon = with_busybox(start_daemon("--tlsverify", *server_flags(pki), tcp=True))
    tls = docker.tls.TLSConfig(client_cert=pki.client, ca_cert=pki.ca.cert, verify=True)
    client = docker.DockerClient(base_url=f"https://127.0.0.1:{daemon.tcp_port}", tls=tls)
    try:
        assert client.version()["ApiVersion"] == "1.41"
        assert client.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"
    finally:
        client.close()
    certs = cert_dir(tmp_path / "certs", pki.ca.cert, pki.client)
    environment = {"DOCKER_HOST": f"tcp://127.0.0.1:{daemon.tcp_port}",
                   "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(certs)}  # fmt: skip
    client = docker.from_env(environment=environment)
    try:
        assert client.ping() is True
    finally:
        client.close()
    # The API version is asked for when the client is made: that is where it is refused.
    stranger = docker.tls.TLSConfig(client_cert=pki.stranger, ca_cert=pki.ca.cert, verify=True)
    with pytest.raises(docker.errors.DockerException, match="UNKNOWN_CA"):
        docker.DockerClient(base_url=f"https://127.0.0.1:{daemon.tcp_port}", tls=stranger)


@pytest.mark.interop
@pytest.mark.parametrize(
    ("flags", "verifies_clients"), [(["--tls"], True), (["--tls", "--tlsverify=false"], False)]
)
def test_tls_side_by_side_with_dockerd(
    start_daemon, pki, tmp_path, tmp_path_factory, flags, verifies_clients
):
    """dockerd 20.10 and we, given the same TLS flags and the files in our default places.

    Under ``--tls`` alone both verify clients; ``-H tcp://ADDRESS`` with no port is 2375 for
    both, TLS or not (2376 is only the client's default host under TLS).
    """
    files = cert_dir(tmp_path / "certs", pki.ca.cert, pki.server)
    (files / "config.toml").write_text("")
    ours, theirs = loopback_address(), loopback_address()
    port = free_port()
    daemon = start_daemon("--config", str(files / "config.toml"), *flags, "-H",
                          f"tcp://127.0.0.1:{port}", "-H", f"tcp://{ours}")  # fmt: skip
    assert daemon.process.poll() is None
    their_port = free_port()
    with real_dockerd(
        tmp_path_factory.mktemp("dockerd"),  # a short path: containerd's sockets live under it
        extra_args=[*flags, "-H", f"tcp://127.0.0.1:{their_port}", "-H", f"tcp://{theirs}"],
        env=dockerd_env(files),
    ):
        for listening in (port, their_port):
            assert ping(listening, pki, pki.client) == b"OK"
            if verifies_clients:
                refusal(listening, pki, None)
            else:
                assert ping(listening, pki, None) == b"OK"
        for address in (ours, theirs):
            socket.create_connection((address, 2375), timeout=5).close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, 2376), timeout=5)


@pytest.mark.interop
def test_tlsverify_without_certificate_files_fails_as_dockerd_does(tmp_path, tmp_path_factory):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.toml").write_text("")
    flags = ["--tlsverify", "-H", f"tcp://127.0.0.1:{free_port()}"]
    with (
        pytest.raises(RuntimeError, match="Could not load X509 key pair"),
        real_dockerd(tmp_path_factory.mktemp("dockerd"), extra_args=flags, env=dockerd_env(empty)),
    ):
        pass
    error = start_refused(tmp_path, "--config", str(empty / "config.toml"), "--tlsverify")
    assert (
        error == f"dockyard daemon: cannot read tlscert {empty}/cert.pem: No such file or directory"
    )


@pytest.mark.interop
@pytest.mark.parametrize("cli", docker_clis())
def test_default_ports_as_the_docker_cli_picks_them(cli, pki, tmp_path):
    """Where nothing listens, each client names where it tried: the same place."""
    config = cert_dir(tmp_path / "config", pki.ca.cert, pki.client)
    address = loopback_address()
    for host_args, tried in (
        (["-H", f"tcp://{address}"], f"tcp://{address}:2375"),
        ([], "tcp://localhost:2376"),
    ):
        theirs = run_docker(cli, "", "--tlsverify", *host_args, "version", config=config,
                        DOCKER_CERT_PATH=str(config))  # fmt: skip
        assert theirs.returncode == 1 and tried in theirs.stderr, theirs.stderr
        ours = run_dockyard(["--tlsverify", *host_args, "version"], env=client_env(config))
        assert ours.returncode == 1 and tried in ours.stderr, ours.stderr
