"""``login`` and ``logout``: the daemon checks a registry's credentials, the client keeps them.

As the docker CLI does it: ``login`` takes the user and password from its flags, from stdin
(``--password-stdin``) or by asking on a terminal; without either it first tries the login it
already holds. The daemon checks them (``POST /auth``) and they are kept only if it says
``Login Succeeded`` (:mod:`~dockyard.commands.credentials`). ``logout`` only forgets; the
daemon is not told. Without a SERVER both use the daemon's default registry (``/info``'s
``IndexServerAddress``, the ``default-registry`` of its config).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from dockyard.commands.common import UsageError, make_client

if TYPE_CHECKING:
    from dockyard.commands.credentials import LoginStore, StoredLogin

# The credential store (and dataclasses, pathlib, subprocess under it) loads only when a login
# command runs: every other command builds this module's parsers, and start-up time counts.


def default_server(client: Any) -> str:
    """The daemon's default registry."""
    from dockyard.commands.credentials import HUB_INDEX_SERVER

    return str(client.get_json("/info").get("IndexServerAddress") or HUB_INDEX_SERVER)


def _password_from_flags(args: argparse.Namespace) -> str:
    if args.password_stdin:
        if args.password is not None:
            raise UsageError(
                "conflicting options: cannot specify both --password and --password-stdin"
            )
        if args.username is None:
            raise UsageError("the --password-stdin option requires --username to be set")
    if args.username is not None and not args.username:
        raise UsageError("username is empty")
    if args.password is not None and not args.password:
        raise UsageError("password is empty")
    if args.password:
        print(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
            file=sys.stderr,
        )
    if args.password_stdin:
        return sys.stdin.read().removesuffix("\n").removesuffix("\r")
    return str(args.password or "")


def _read_hidden(prompt: str) -> str:
    """A line from the terminal on stdin with echo off (a password)."""
    import termios

    descriptor = sys.stdin.fileno()
    saved = termios.tcgetattr(descriptor)
    quiet = termios.tcgetattr(descriptor)
    quiet[3] &= ~termios.ECHO
    # Echo goes off before the prompt shows, and nothing typed is discarded: a password typed
    # or pasted as soon as the prompt appears must be neither echoed nor lost.
    termios.tcsetattr(descriptor, termios.TCSANOW, quiet)
    try:
        print(prompt, end="", flush=True)
        return sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    finally:
        termios.tcsetattr(descriptor, termios.TCSADRAIN, saved)
        print()


def ask_login(username: str, password: str, known_user: str) -> tuple[str, str]:
    """What the flags did not give, asked for on the terminal (docker's prompts)."""
    if not sys.stdin.isatty():
        raise UsageError("Error: Cannot perform an interactive login from a non TTY device")
    if not username:
        prompt = f"Username ({known_user}): " if known_user else "Username: "
        print(prompt, end="", flush=True)
        username = sys.stdin.readline().strip() or known_user
        if not username:
            raise UsageError("Error: Non-null Username Required")
    if not password:
        password = _read_hidden("Password: ")
        if not password:
            raise UsageError("Error: Password Required")
    return username, password


def cmd_login(args: argparse.Namespace) -> int:
    import dataclasses

    from dockyard.client import APIError
    from dockyard.commands.credentials import CredentialsError, LoginStore, StoredLogin, login_key

    password = _password_from_flags(args)
    username = (args.username or "").strip()
    client = make_client(args)
    key = login_key(args.server or default_server(client))
    store = LoginStore()
    answer: dict[str, Any] | None = None
    known = _stored(store, key)
    if known is not None and not username and not password:
        shown = f" [Username: {known.username}]" if known.username else ""
        print(f"Authenticating with existing credentials...{shown}", file=sys.stderr)
        try:
            answer = client.call_json("POST", "/auth", body=known.auth_config())
            login = known
        except APIError as exc:
            reason = "Stored credentials invalid or expired" if exc.status == 401 else None
            print(reason or f"Login did not succeed, error: {exc}", file=sys.stderr)
    if answer is None:
        if not username or not password:
            username, password = ask_login(username, password, known.username if known else "")
        login = StoredLogin(key, username, password)
        answer = client.call_json("POST", "/auth", body=login.auth_config()) or {}
    if answer.get("IdentityToken"):
        login = dataclasses.replace(login, password="", identity_token=answer["IdentityToken"])
    try:
        in_plain_text = store.store(login)
    except CredentialsError as exc:
        raise UsageError(f"Error saving credentials: {exc}") from None
    if in_plain_text and not login.identity_token:
        print(
            f"WARNING! Your credentials are stored unencrypted in '{store.path}'.\n"
            "Configure a credential helper (credsStore in that file) to remove this warning.\n",
            file=sys.stderr,
        )
    if answer.get("Status"):
        print(answer["Status"])
    return 0


def _stored(store: LoginStore, key: str) -> StoredLogin | None:
    from dockyard.commands.credentials import CredentialsError

    try:
        return store.get(key)
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None


def cmd_logout(args: argparse.Namespace) -> int:
    from dockyard.commands.credentials import (
        HUB_INDEX_SERVER,
        CredentialsError,
        LoginStore,
        login_key,
    )

    server = args.server or default_server(make_client(args))
    hostname = login_key(server)
    keys = [server]
    if hostname != HUB_INDEX_SERVER:  # docker's older files keyed logins by URL too
        keys += [hostname, f"http://{hostname}", f"https://{hostname}"]
    print(f"Removing login credentials for {hostname}")
    store = LoginStore()
    failures = {}
    for key in dict.fromkeys(keys):
        try:
            store.erase(key)
        except CredentialsError as exc:
            failures[key] = exc
    if len(failures) == len(dict.fromkeys(keys)):
        print("WARNING: could not erase credentials:", file=sys.stderr)
        for key, failure in failures.items():
            print(f"{key}: {failure}", file=sys.stderr)
    return 0


def add_parsers(commands: Any, only: str | None = None) -> None:
    login = commands.add_parser(
        "login", help="log in to a registry (default: the daemon's default registry)"
    )
    login.add_argument("server", nargs="?", metavar="SERVER", help="registry HOST[:PORT]")
    login.add_argument("-u", "--username", help="username")
    login.add_argument("-p", "--password", help="password (insecure: use --password-stdin)")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.set_defaults(func=cmd_login)

    logout = commands.add_parser("logout", help="forget the login to a registry")
    logout.add_argument("server", nargs="?", metavar="SERVER", help="registry HOST[:PORT]")
    logout.set_defaults(func=cmd_logout)
