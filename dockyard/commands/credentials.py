"""The client's stored registry logins: docker's ``config.json``, and credential helpers.

``dockyard login`` writes here and ``logout`` erases; commands that talk to a registry through
the daemon (pull, push) read a login back and send it as ``X-Registry-Auth``
(:func:`registry_auth_header`). The format is docker's, so the two clients can share a file:

* ``config.json`` in :func:`~dockyard.commands.common.client_config_dir` holds
  ``{"auths": {"SERVER": {"auth": base64("user:password")}}}``, or ``base64("user:")`` and an
  ``identitytoken`` when the registry handed out a refresh token to keep instead of the
  password. It is written atomically (a temporary file renamed over it), mode 0600, in a
  directory made 0700, and every other key in it is kept as it was;
* ``"credsStore": "NAME"`` keeps the secrets in the program ``docker-credential-NAME``, and
  ``"credHelpers": {"SERVER": "NAME"}`` chooses one per server. ``config.json`` then only
  lists the server (``"auths": {"SERVER": {}}``). A helper speaks docker's protocol: the action
  (``store``, ``get``, ``erase``, ``list``) as its argument, the server (or for ``store`` the
  JSON ``{"ServerURL", "Username", "Secret"}``) on stdin, JSON or an error text on stdout; an
  identity token is stored under the user name ``<token>``.

Logins are keyed as docker keys them: ``HOST[:PORT]`` (a URL is cut down to that), and Docker
Hub's index server address, ``https://index.docker.io/v1/``, as it is.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dockyard.commands.common import client_config_dir, write_atomically

CONFIG_FILE = "config.json"
HUB_INDEX_SERVER = "https://index.docker.io/v1/"
HELPER_PREFIX = "docker-credential-"
#: The user name a helper stores an identity token under (docker's convention).
TOKEN_USERNAME = "<token>"
#: What docker's helpers print for a server they hold nothing for.
NOT_FOUND = "credentials not found in native keychain"


class CredentialsError(Exception):
    """The login store cannot be read or written; the message says which file or helper."""


@dataclass(frozen=True)
class StoredLogin:
    """One registry's login: a user and password, or an identity token to use instead."""

    server: str
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    def auth_config(self) -> dict[str, str]:
        """docker's AuthConfig for the daemon (``POST /auth``, ``X-Registry-Auth``)."""
        config = {"serveraddress": self.server}
        if self.identity_token:
            config["identitytoken"] = self.identity_token
        else:
            config.update(username=self.username, password=self.password)
        return config


def login_key(server: str) -> str:
    """The key a login to ``server`` is stored under: ``HOST[:PORT]``, or Docker Hub's index
    server address as it is."""
    if server in ("docker.io", "index.docker.io", HUB_INDEX_SERVER):
        return HUB_INDEX_SERVER
    if "://" in server:
        with contextlib.suppress(ValueError):
            parts = urlsplit(server)
            if parts.hostname:
                return parts.netloc.rpartition("@")[2]
    return server.split("/", 1)[0]


def registry_auth_header(login: StoredLogin | None) -> str:
    """``X-Registry-Auth``: base64url of the AuthConfig JSON; ``e30=`` (``{}``) without a
    login, as the docker CLI sends."""
    document = login.auth_config() if login is not None else {}
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode()


class LoginStore:
    """The logins of one client config directory (``DOCKYARD_CONFIG`` or ``~/.dockyard``)."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = directory or client_config_dir()
        self.path = os.path.join(self.directory, CONFIG_FILE)

    # ---------------------------------------------------------------- the file

    def read(self) -> dict[str, Any]:
        """``config.json`` as a whole (``{}`` when there is none)."""
        try:
            with open(self.path, encoding="utf-8") as file:
                document = json.load(file)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise CredentialsError(f"cannot read {self.path}: {exc}") from None
        if not isinstance(document, dict):
            raise CredentialsError(f"cannot read {self.path}: not a JSON object")
        return document

    def write(self, document: dict[str, Any]) -> None:
        """Replace ``config.json`` atomically, mode 0600 (through a symlink to its target)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        text = json.dumps(document, indent="\t") + "\n"
        # Through a symlink, to its target; mode 0600 before a byte of it is written.
        target = os.path.realpath(self.path)
        write_atomically(target, lambda out: out.write(text.encode()), mode=0o600)

    def _auths(self, document: dict[str, Any]) -> dict[str, Any]:
        auths = document.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise CredentialsError(f'{self.path}: "auths" is not a JSON object')
        return auths

    def helper_for(self, key: str, document: dict[str, Any]) -> str:
        """The credential helper's name for ``key`` (``""``: the file itself)."""
        helpers = document.get("credHelpers") or {}
        name = helpers.get(key) if isinstance(helpers, dict) else None
        name = name or document.get("credsStore") or ""
        if not isinstance(name, str):
            raise CredentialsError(f'{self.path}: "credsStore" and "credHelpers" name programs')
        return name

    # ---------------------------------------------------------------- logins

    def get(self, server: str) -> StoredLogin | None:
        key = login_key(server)
        document = self.read()
        helper = self.helper_for(key, document)
        if helper:
            return CredentialHelper(helper, self.path).get(key)
        entry = self._auths(document).get(key)
        if entry is None:  # docker's older files keyed logins by URL
            for stored, candidate in self._auths(document).items():
                if login_key(stored) == key:
                    entry = candidate
                    break
        if not isinstance(entry, dict):
            return None
        return self._decode_entry(key, entry)

    def _decode_entry(self, key: str, entry: dict[str, Any]) -> StoredLogin | None:
        username = entry.get("username") or ""
        password = entry.get("password") or ""
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(entry["auth"], validate=True).decode()
            except (binascii.Error, ValueError, TypeError):
                raise CredentialsError(f"{self.path}: the login for {key} is not valid") from None
            username, _, password = decoded.partition(":")
        token = entry.get("identitytoken") or ""
        if not (username and password) and not token:
            return None
        return StoredLogin(key, str(username), str(password), str(token))

    def all_logins(self) -> list[StoredLogin]:
        """Every login kept: the servers ``config.json`` lists and those with a helper of
        their own (a build sends them all, for whichever registry its ``FROM`` lines name)."""
        document = self.read()
        helpers = document.get("credHelpers")
        servers = set(self._auths(document)) | set(helpers if isinstance(helpers, dict) else ())
        found = (self.get(server) for server in sorted(servers))
        return [login for login in found if login is not None]

    def store(self, login: StoredLogin) -> bool:
        """Keep ``login``; ``True`` when its secret went into ``config.json`` in plain text."""
        key = login_key(login.server)
        document = self.read()
        auths = self._auths(document)
        helper = self.helper_for(key, document)
        if helper:
            CredentialHelper(helper, self.path).store(StoredLogin(key, *_secrets(login)))
            auths[key] = {}
        else:
            user, password, token = _secrets(login)
            entry = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
            if token:
                entry["identitytoken"] = token
            auths[key] = entry
        self.write(document)
        return not helper

    def erase(self, server: str) -> None:
        """Forget the login for ``server`` (nothing to forget is not an error)."""
        key = server if server.startswith(("http://", "https://")) else login_key(server)
        document = self.read()
        helper = self.helper_for(key, document)
        if helper:
            CredentialHelper(helper, self.path).erase(key)
        auths = self._auths(document)
        if key in auths:
            del auths[key]
            self.write(document)


def _secrets(login: StoredLogin) -> tuple[str, str, str]:
    """A login keeps its identity token instead of its password, as docker's does."""
    if login.identity_token:
        return login.username, "", login.identity_token
    return login.username, login.password, ""


class CredentialHelper:
    """``docker-credential-NAME``: a program that keeps secrets (pass, secretservice...)."""

    def __init__(self, name: str, config_path: str) -> None:
        self.program = HELPER_PREFIX + name
        self.config_path = config_path

    def _run(self, action: str, text: str) -> tuple[int, str]:
        executable = shutil.which(self.program)
        if executable is None:
            raise CredentialsError(
                f"{self.program} is not installed, and {self.config_path} names it: "
                "install it, or remove credsStore/credHelpers from that file"
            )
        try:
            done = subprocess.run(
                [executable, action], input=text, capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CredentialsError(f"{self.program} {action} failed: {exc}") from None
        return done.returncode, (done.stdout or done.stderr).strip()

    def get(self, key: str) -> StoredLogin | None:
        status, output = self._run("get", key)
        if status != 0:
            if output == NOT_FOUND:
                return None
            raise CredentialsError(f"{self.program} get failed: {output}")
        try:
            answer = json.loads(output)
            username, secret = str(answer.get("Username") or ""), str(answer.get("Secret") or "")
        except (ValueError, AttributeError):
            raise CredentialsError(f"{self.program} get answered: {output[:200]}") from None
        if not secret:  # some helpers answer an empty record rather than "not found"
            return None
        if username == TOKEN_USERNAME:
            return StoredLogin(key, identity_token=secret)
        return StoredLogin(key, username, secret)

    def store(self, login: StoredLogin) -> None:
        username, secret = login.username, login.password
        if login.identity_token:
            username, secret = TOKEN_USERNAME, login.identity_token
        record = json.dumps({"ServerURL": login.server, "Username": username, "Secret": secret})
        status, output = self._run("store", record)
        if status != 0:
            raise CredentialsError(f"{self.program} store failed: {output}")

    def erase(self, key: str) -> None:
        status, output = self._run("erase", key)
        if status != 0 and output != NOT_FOUND:
            raise CredentialsError(f"{self.program} erase failed: {output}")
