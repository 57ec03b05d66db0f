"""Real clients log in to ``dockyard registry``: skopeo with ``--creds`` and a real Docker
daemon with ``docker login``, once per auth mode (``registry_config_for_auth``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from dockyard.testing.images import busybox_rootfs, image_archive, layer_tar
from dockyard.testing.peers import docker_cli, docker_env

from .conftest import htpasswd_file

pytestmark = pytest.mark.interop


@attrs.frozen
class AuthedRegistryConfig:
    """A registry config that requires a login, and a user who may push and pull."""

    mode: str
    text: str
    user: str
    password: str


#: The auth modes real clients are tested against.
AUTH_MODES = ["htpasswd", "token"]


@pytest.fixture(params=AUTH_MODES)
def registry_config_for_auth(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AuthedRegistryConfig:
    """Config text for ``dockyard registry`` in one auth mode, with its user."""
    user, password = "pusher", "interop-Secret-7"
    base = (
        f'[registry]\nauth = "{request.param}"\ndata-root = "{tmp_path}/state"\n'
        f'[registries.filesystem]\nroot = "{tmp_path}/data"\n'
    )
    if request.param == "htpasswd":
        users = htpasswd_file(tmp_path / "users.htpasswd", {user: password})
        text = base + f'[auth.htpasswd]\npath = "{users}"\nrealm = "dockyard interop"\n'
    elif request.param == "token":
        # Rules as for htpasswd: whoever logs in may do everything (no rules file).
        text = base + "[auth.token]\nhash-cost = 4\n"
        add_token_user(tmp_path / "token-registry.toml", text, user, password)
    else:
        raise AssertionError(f"no registry config for auth mode {request.param}")
    return AuthedRegistryConfig(request.param, text, user, password)


def add_token_user(config: Path, text: str, user: str, password: str) -> None:
    """``dockyard registry user add``: token mode does not start without a user."""
    config.write_text(text)
    added = subprocess.run(
        [sys.executable, "-m", "dockyard", "registry", "user", "add", user,
         "--config", str(config), "--password-stdin"],
        input=password, capture_output=True, text=True, timeout=60,
        env={**os.environ, "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr


def small_image(reference: str) -> bytes:
    layers = [
        busybox_rootfs(compress=True),
        layer_tar({"etc/motd": b"logged in to push this\n"}, compress=True),
    ]
    return image_archive(layers, [reference], layout="docker")


def skopeo(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """skopeo with an empty auth file of its own: credentials come from the flags alone."""
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is not installed (apt-get install skopeo)")
    auth_file = tmp_path / "skopeo-auth.json"
    if not auth_file.exists():
        auth_file.write_text("{}")
    return subprocess.run(
        ["skopeo", *args], capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "REGISTRY_AUTH_FILE": str(auth_file), "HOME": str(tmp_path)},
    )  # fmt: skip


def test_skopeo_with_creds(tmp_path, registry_process, registry_config_for_auth):
    config = registry_config_for_auth
    server = registry_process(config.text)
    creds = f"{config.user}:{config.password}"
    archive = tmp_path / "image.tar"
    archive.write_bytes(small_image("private:v1"))
    target = f"docker://{server.host}/interop/private:v1"
    source = f"docker-archive:{archive}"

    anonymous = skopeo(tmp_path, "copy", "--dest-tls-verify=false", source, target)
    assert anonymous.returncode != 0
    assert "unauthorized" in anonymous.stderr.lower()
    wrong = skopeo(tmp_path, "copy", "--dest-tls-verify=false",
                   "--dest-creds", f"{config.user}:not-the-password", source, target)  # fmt: skip
    assert wrong.returncode != 0
    assert "unauthorized" in wrong.stderr.lower()

    pushed = skopeo(tmp_path, "copy", "--dest-tls-verify=false", "--dest-creds", creds,
                    source, target)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    inspect = skopeo(tmp_path, "inspect", "--tls-verify=false", "--creds", creds, target)
    assert inspect.returncode == 0, inspect.stderr
    assert len(json.loads(inspect.stdout)["Layers"]) == 2
    assert skopeo(tmp_path, "inspect", "--tls-verify=false", target).returncode != 0

    out = tmp_path / "out"
    pulled = skopeo(tmp_path, "copy", "--src-tls-verify=false", "--src-creds", creds,
                    target, f"dir:{out}")  # fmt: skip
    assert pulled.returncode == 0, pulled.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert len(manifest["layers"]) == 2
    assert server.server_errors() == []


def docker_cli_storing_logins_in_a_file(host: str, workdir: Path) -> Callable[..., Any]:
    """The real docker CLI against ``host``, with a private config directory whose
    ``config.json`` stores logins. Its PATH holds nothing but the CLI: where ``pass`` and
    ``docker-credential-pass`` are installed the CLI picks them as its default store, and an
    uninitialised ``pass`` makes every login fail."""
    bindir = workdir / "cli-bin"
    bindir.mkdir()
    (bindir / "docker").symlink_to(docker_cli())
    env = {**docker_env(host, workdir / "docker-config"), "PATH": str(bindir)}

    def docker(*args: str, input: str | None = None, check: bool = True) -> Any:
        result = subprocess.run(
            [str(bindir / "docker"), *args],
            env=env, input=input, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
        return result

    return docker


def test_docker_login_push_and_pull(
    tmp_path, registry_process, real_dockerd, registry_config_for_auth
):
    config = registry_config_for_auth
    server = registry_process(config.text)
    docker = docker_cli_storing_logins_in_a_file(real_dockerd.host, tmp_path)
    stored_logins = tmp_path / "docker-config" / "config.json"
    reference = f"{server.host}/interop/private:v1"
    archive = tmp_path / "image.tar"
    archive.write_bytes(small_image(reference))
    docker("load", "-i", str(archive))
    original = json.loads(docker("image", "inspect", reference).stdout)[0]
    try:
        refused = docker("push", reference, check=False)
        assert refused.returncode != 0
        assert "no basic auth credentials" in refused.stderr or "unauthorized" in refused.stderr

        wrong = docker("login", server.host, "-u", config.user, "--password-stdin",
                       input="not-the-password", check=False)  # fmt: skip
        assert wrong.returncode != 0
        assert "unauthorized" in wrong.stderr.lower()
        login = docker("login", server.host, "-u", config.user, "--password-stdin",
                       input=config.password)  # fmt: skip
        assert "Login Succeeded" in login.stdout
        assert server.host in json.loads(stored_logins.read_text())["auths"]

        pushed = docker("push", reference)
        assert "digest: sha256:" in pushed.stdout
        docker("rmi", reference)
        pulled = docker("pull", reference)
        assert "Downloaded newer image" in pulled.stdout or "Pull complete" in pulled.stdout
        again = json.loads(docker("image", "inspect", reference).stdout)[0]
        assert again["Id"] == original["Id"]

        docker("logout", server.host)
        assert server.host not in json.loads(stored_logins.read_text())["auths"]
        docker("rmi", reference)
        anonymous = docker("pull", reference, check=False)
        assert anonymous.returncode != 0
        assert "unauthorized" in anonymous.stderr or "no basic auth" in anonymous.stderr
    finally:
        docker("rmi", reference, check=False)
    assert server.server_errors() == []
