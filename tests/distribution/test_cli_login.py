"""``dockyard login`` and ``logout`` end to end: a real daemon checks the credentials against
our registry, and the client keeps them in a docker-style ``config.json``."""

from __future__ import annotations

import base64
import json
import os
import pty
import select
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from dockyard.commands.credentials import LoginStore, StoredLogin, registry_auth_header
from dockyard.daemon.distribution.authconfig import credentials_of, decode_registry_auth
from tests.conftest import ROOT, plugin_env, run_dockyard
from tests.distribution.conftest import PASSWORD, TOKEN_PASSWORD, TOKEN_USER, USER


@pytest.fixture
def config_dir(tmp_path) -> Path:
    return tmp_path / "client-config"


def dockyard(daemon, config_dir: Path, *args: str, input: str | None = None):
    env = plugin_env([], DOCKYARD_HOST=daemon.host, DOCKYARD_CONFIG=str(config_dir))
    return run_dockyard(list(args), env=env, input=input)


def login_with_stdin(daemon, config_dir: Path, host: str, user: str, password: str):
    return dockyard(
        daemon, config_dir, "login", host, "-u", user, "--password-stdin", input=password
    )


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_login_keeps_the_credentials_docker_style_and_logout_forgets_them(
    daemon, our_basic_registry, config_dir
):
    host = our_basic_registry.host
    done = login_with_stdin(daemon, config_dir, host, USER, f"{PASSWORD}\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Login Succeeded\n"
    assert "WARNING! Your credentials are stored unencrypted" in done.stderr
    path = config_dir / "config.json"
    assert json.loads(path.read_text()) == {"auths": {host: {"auth": b64(f"{USER}:{PASSWORD}")}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o700
    assert [p.name for p in config_dir.iterdir()] == ["config.json"]  # no temporary left

    out = dockyard(daemon, config_dir, "logout", host)
    assert (out.returncode, out.stdout) == (0, f"Removing login credentials for {host}\n")
    assert json.loads(path.read_text()) == {"auths": {}}


def test_other_keys_of_an_existing_config_are_kept(daemon, our_basic_registry, config_dir):
    config_dir.mkdir(mode=0o755)
    other = {"auth": b64("someone:else")}
    before = {
        "auths": {"other.example:5000": other},
        "psFormat": "table {{.ID}}",
        "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
        "credHelpers": {},
    }
    (config_dir / "config.json").write_text(json.dumps(before))
    host = our_basic_registry.host
    url = f"http://{host}/"  # a URL is stored under its HOST:PORT, as docker does
    done = dockyard(daemon, config_dir, "login", url, "-u", USER, "-p", PASSWORD)
    assert done.returncode == 0, done.stderr
    assert "WARNING! Using --password via the CLI is insecure" in done.stderr
    after = json.loads((config_dir / "config.json").read_text())
    assert after == {
        **before,
        "auths": {**before["auths"], host: {"auth": b64(f"{USER}:{PASSWORD}")}},
    }
    assert stat.S_IMODE(config_dir.stat().st_mode) == 0o755  # the user's own directory: kept
    dockyard(daemon, config_dir, "logout", url)
    assert json.loads((config_dir / "config.json").read_text()) == before


def test_a_refused_login_keeps_nothing(daemon, our_basic_registry, config_dir):
    done = login_with_stdin(daemon, config_dir, our_basic_registry.host, USER, "wrong")
    assert done.returncode == 1
    assert done.stderr == (
        f"Error response from daemon: login attempt to {our_basic_registry.url}/v2/ "
        "failed with status: 401 Unauthorized\n"
    )
    assert not (config_dir / "config.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--password-stdin"], "the --password-stdin option requires --username to be set"),
        (["-u", "a", "-p", "b", "--password-stdin"], "conflicting options: cannot specify both"),
        (["-u", ""], "username is empty"),
        (["-u", "a", "-p", ""], "password is empty"),
        ([], "Error: Cannot perform an interactive login from a non TTY device"),
        (["-u", "a"], "Error: Cannot perform an interactive login from a non TTY device"),
    ],
)
def test_what_the_flags_do_not_allow(daemon, config_dir, args, message):
    done = dockyard(daemon, config_dir, "login", "127.0.0.1:1", *args, input="")
    assert done.returncode == 1
    assert message in done.stderr


def test_the_terminal_is_asked_for_what_is_missing(daemon, our_basic_registry, config_dir):
    env = plugin_env([], DOCKYARD_HOST=daemon.host, DOCKYARD_CONFIG=str(config_dir))
    pid, terminal = pty.fork()
    if pid == 0:  # the child: dockyard on the pseudo-terminal
        os.chdir(ROOT)
        os.execve(
            sys.executable,
            [sys.executable, "-m", "dockyard", "login", our_basic_registry.host],
            env,
        )
    screen = b""
    try:
        screen += _until(terminal, b"Username: ")
        os.write(terminal, f"{USER}\n".encode())
        screen += _until(terminal, b"Password: ")
        os.write(terminal, f"{PASSWORD}\n".encode())
        screen += _until(terminal, b"Login Succeeded")
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # it may wait for input for ever: the failure must show
        raise
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(terminal)
    assert os.waitstatus_to_exitcode(status) == 0, screen
    assert USER.encode() in screen  # the user name is echoed, the password is not
    assert PASSWORD.encode() not in screen
    stored = LoginStore(str(config_dir)).get(our_basic_registry.host)
    assert stored == StoredLogin(our_basic_registry.host, USER, PASSWORD)


def _until(fd: int, wanted: bytes, timeout: float = 20) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {wanted!r} on the terminal; it shows {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            raise AssertionError(f"the terminal closed before {wanted!r}; it showed {seen!r}")
        seen += chunk
    return seen


def test_a_second_login_uses_the_stored_credentials(daemon, our_basic_registry, config_dir):
    host = our_basic_registry.host
    login_with_stdin(daemon, config_dir, host, USER, PASSWORD)
    again = dockyard(daemon, config_dir, "login", host, input="")
    assert again.returncode == 0, again.stderr
    assert f"Authenticating with existing credentials... [Username: {USER}]" in again.stderr
    assert again.stdout == "Login Succeeded\n"


def test_a_token_login_keeps_the_identity_token_not_the_password(
    daemon, our_token_registry, token_server, config_dir
):
    host = our_token_registry.host
    done = login_with_stdin(daemon, config_dir, host, TOKEN_USER, TOKEN_PASSWORD)
    assert done.returncode == 0, done.stderr
    assert "unencrypted" not in done.stderr  # no password is kept
    entry = json.loads((config_dir / "config.json").read_text())["auths"][host]
    assert entry["auth"] == b64(f"{TOKEN_USER}:")
    assert token_server.refresh_tokens[entry["identitytoken"]] == TOKEN_USER
    token_server.requests.clear()
    again = dockyard(daemon, config_dir, "login", host, input="")
    assert again.returncode == 0, again.stderr
    assert [r.form.get("grant_type") for r in token_server.requests] == [["refresh_token"]]


def test_without_a_server_the_daemons_default_registry_is_used(
    start_daemon, our_basic_registry, config_dir
):
    host = our_basic_registry.host
    daemon = start_daemon(config=f'[daemon]\ndefault-registry = "{host}"\n')
    done = dockyard(daemon, config_dir, "login", "-u", USER, "--password-stdin", input=PASSWORD)
    assert done.returncode == 0, done.stderr
    assert list(json.loads((config_dir / "config.json").read_text())["auths"]) == [host]
    out = dockyard(daemon, config_dir, "logout")
    assert out.stdout == f"Removing login credentials for {host}\n"
    assert json.loads((config_dir / "config.json").read_text())["auths"] == {}


def test_a_credential_helper_that_is_not_installed_is_a_clear_error(
    daemon, our_basic_registry, config_dir
):
    config_dir.mkdir()
    (config_dir / "config.json").write_text('{"credsStore": "no-such-helper"}')
    done = login_with_stdin(daemon, config_dir, our_basic_registry.host, USER, PASSWORD)
    assert done.returncode == 1
    assert "docker-credential-no-such-helper is not installed" in done.stderr
    assert json.loads((config_dir / "config.json").read_text()) == {"credsStore": "no-such-helper"}
    out = dockyard(daemon, config_dir, "logout", our_basic_registry.host)
    assert "WARNING: could not erase credentials:" in out.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "cannot read"),
        ("[]", "not a JSON object"),
        ('{"auths": []}', '"auths" is not a JSON object'),
        ('{"auths": {"127.0.0.1:1": {"auth": "%%%"}}}', "the login for 127.0.0.1:1 is not valid"),
    ],
)
def test_a_config_that_cannot_be_read_is_a_clear_error(daemon, config_dir, text, message):
    config_dir.mkdir()
    (config_dir / "config.json").write_text(text)
    done = dockyard(daemon, config_dir, "login", "127.0.0.1:1", input="")
    assert done.returncode == 1
    assert message in done.stderr
    assert (config_dir / "config.json").read_text() == text


def test_a_symlinked_config_stays_a_symlink(tmp_path):
    real = tmp_path / "dotfiles" / "config.json"
    real.parent.mkdir()
    real.write_text('{"detachKeys": "ctrl-x"}')
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "config.json").symlink_to(real)
    store = LoginStore(str(directory))
    store.store(StoredLogin("127.0.0.1:5000", "u", "p"))
    assert (directory / "config.json").is_symlink()
    assert json.loads(real.read_text())["detachKeys"] == "ctrl-x"
    assert store.get("http://127.0.0.1:5000/v2/") == StoredLogin("127.0.0.1:5000", "u", "p")


@pytest.mark.parametrize(
    "login",
    [
        None,
        StoredLogin("127.0.0.1:5000", "user", "pass:with:colons ünïcode"),
        StoredLogin("127.0.0.1:5000", identity_token="refresh-token"),
    ],
)
def test_the_header_the_client_sends_is_the_one_the_daemon_reads(login):
    header = registry_auth_header(login)
    decoded = credentials_of(decode_registry_auth(header))
    if login is None:
        assert header == "e30="
        assert decoded.username == decoded.password == decoded.identity_token == ""
    else:
        assert (decoded.username, decoded.password, decoded.identity_token) == (
            login.username,
            login.password,
            login.identity_token,
        )
