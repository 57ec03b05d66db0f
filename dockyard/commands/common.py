"""What the command modules share: the daemon connection, the one-line user error, the Engine
API paths, and the flag, prompt and per-name helpers several commands use."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Collection, Sequence
from typing import Any, BinaryIO
from urllib.parse import quote

from dockyard.core.hosts import parse_host

DEFAULT_HOST = "unix:///run/dockyard.sock"
#: With TLS and no host given, as docker's CLI (2376 is the TLS port by convention).
DEFAULT_TLS_HOST = "tcp://localhost:2376"
HOST_ENV = "DOCKYARD_HOST"
TOKEN_ENV = "DOCKYARD_TOKEN"
CONFIG_ENV = "DOCKYARD_CONFIG"
#: docker's DOCKER_TLS_VERIFY (any non-empty value turns it on) and DOCKER_CERT_PATH.
TLS_VERIFY_ENV = "DOCKYARD_TLS_VERIFY"
CERT_PATH_ENV = "DOCKYARD_CERT_PATH"


class UsageError(Exception):
    """A one-line error for the user; exit status 1."""


def client_config_dir() -> str:
    """The client's own directory, as docker's ``~/.docker``: stored logins (``config.json``)
    and the default TLS files (``ca.pem``, ``cert.pem``, ``key.pem``) live here."""
    return os.environ.get(CONFIG_ENV) or os.path.join(os.path.expanduser("~"), ".dockyard")


def make_client(args: argparse.Namespace) -> Any:
    from dockyard.client import EngineClient

    tls = tls_options(args)
    default = DEFAULT_HOST if tls is None else DEFAULT_TLS_HOST
    try:
        host = parse_host(args.host or os.environ.get(HOST_ENV) or default)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return EngineClient(host, tls=tls, token=os.environ.get(TOKEN_ENV, ""))


def tls_options(args: argparse.Namespace) -> Any:
    """TLS for a tcp:// daemon from the global flags, as docker's CLI sets it up (None: off).

    ``--tlsverify`` (or DOCKYARD_TLS_VERIFY) verifies the daemon against ``--tlscacert``;
    ``--tls`` encrypts without verifying; ``--tlsverify=false`` is ``--tls``. Unset files are
    ``ca.pem``, ``cert.pem`` and ``key.pem`` in DOCKYARD_CERT_PATH or the config directory: the
    CA must be there to verify, the client certificate is sent where both of its files are.
    """
    from_env = bool(os.environ.get(TLS_VERIFY_ENV))
    verify = from_env if args.tlsverify is None else args.tlsverify
    given = [flag for flag in ("tlscacert", "tlscert", "tlskey") if getattr(args, flag)]
    if not (args.tls or args.tlsverify is not None or from_env):
        if given:
            raise UsageError(f"--{given[0]} needs TLS: add --tlsverify (or --tls)")
        return None
    if args.tlscacert and not verify:
        raise UsageError("--tlscacert verifies the daemon, which --tls does not: use --tlsverify")
    if bool(args.tlscert) != bool(args.tlskey):
        raise UsageError("--tlscert and --tlskey go together: give both or neither")
    from dockyard.client import TLSOptions
    from dockyard.core.pemfiles import read_pem

    cert_dir = os.environ.get(CERT_PATH_ENV) or client_config_dir()
    ca = (args.tlscacert or os.path.join(cert_dir, "ca.pem")) if verify else ""
    cert = args.tlscert or os.path.join(cert_dir, "cert.pem")
    key = args.tlskey or os.path.join(cert_dir, "key.pem")
    if not args.tlscert and not (os.path.exists(cert) or os.path.exists(key)):
        cert = key = ""  # no client certificate: fine unless the daemon asks for one
    try:
        for flag, path in (("tlscacert", ca), ("tlscert", cert), ("tlskey", key)):
            if path:
                named = f"--{flag} {path}" if getattr(args, flag) else f"{path} (default --{flag})"
                read_pem(path, named)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return TLSOptions(ca, cert, key, verify=verify)


def image_path(name: str, suffix: str = "") -> str:
    # References keep their "/" and ":" (the route takes a path); anything else is escaped.
    return f"/images/{quote(name, safe='/:@')}{suffix}"


def container_path(name: str, suffix: str = "") -> str:
    return f"/containers/{quote(name, safe='')}{suffix}"


def volume_path(name: str) -> str:
    return f"/volumes/{quote(name, safe='')}"


def network_path(name: str, suffix: str = "") -> str:
    return f"/networks/{quote(name, safe='')}{suffix}"


def table_or_json(value: str) -> str:
    """The ``--format`` values we support; docker's Go templates are refused by name."""
    if value not in ("table", "json"):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not supported: use 'table' or 'json' (Go templates are not supported)"
        )
    return value


def parse_filters(pairs: Sequence[str] | None) -> dict[str, dict[str, bool]]:
    """``--filter key=value`` flags in the map form the docker CLI sends."""
    filters: dict[str, dict[str, bool]] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"bad format of filter {pair!r} (expected name=value)")
        filters.setdefault(key.strip().lower(), {})[value] = True
    return filters


def parse_labels(values: Sequence[str] | None) -> dict[str, str]:
    labels = {}
    for value in values or ():
        key, _, text = value.partition("=")
        labels[key] = text
    return labels


def print_errors(errors: Sequence[str]) -> int:
    """Per-name failures, after the successes, as docker reports them; the exit status."""
    for message in errors:
        print(f"Error response from daemon: {message}", file=sys.stderr)
    return 1 if errors else 0


def for_each_name(names: Sequence[str], action: Callable[[str], object], echo: bool = True) -> int:
    """Run ``action`` per name, printing the name on success (docker's stop/kill/rm/…) and
    the daemon's errors after; exit 1 if any failed."""
    from dockyard.client import APIError

    errors = []
    for name in names:
        try:
            action(name)
        except APIError as exc:
            errors.append(str(exc))
            continue
        if echo:
            print(name, flush=True)
    return print_errors(errors)


def confirm(question: str) -> bool:
    """docker's prompt: anything but "y" or "Y" (end of input too) is a no."""
    print(f"{question}\nAre you sure you want to continue? [y/N] ", end="", flush=True)
    return sys.stdin.readline().strip() in ("y", "Y")


#: (top-level command or None, group subcommand and its aliases, help, arguments, handler)
CommandSpec = tuple[
    str | None,
    tuple[str, ...],
    str,
    Callable[[argparse.ArgumentParser], None],
    Callable[[argparse.Namespace], int],
]


def add_command_group(
    commands: Any,
    group: str,
    help_text: str,
    specs: Sequence[CommandSpec],
    no_help_flag: Collection[str] = (),
    only: str | None = None,
) -> None:
    """``group``'s commands under ``dockyard GROUP`` (docker's ``image ls``, ``container run``)
    and, where a spec names one, top-level too (``images``, ``run``). Commands in
    ``no_help_flag`` take ``-h`` as one of their own flags, not as help.

    With ``only`` (the command word), just what that command needs: the one top-level command
    of that name, or the whole group for the group's own name, or nothing.
    """
    if only is not None and only != group:
        for top_level, (name, *_aliases), command_help, add_arguments, handler in specs:
            if top_level == only:
                parser = commands.add_parser(
                    top_level, help=command_help, add_help=name not in no_help_flag
                )
                add_arguments(parser)
                parser.set_defaults(func=handler)
        return
    parent = commands.add_parser(group, help=help_text)
    subcommands = parent.add_subparsers(dest=f"{group}_command", metavar="COMMAND")
    parent.set_defaults(func=lambda args: print_usage(parent))
    for top_level, (name, *aliases), command_help, add_arguments, handler in specs:
        add_help = name not in no_help_flag
        parsers = [
            subcommands.add_parser(name, aliases=aliases, help=command_help, add_help=add_help)
        ]
        if top_level is not None:
            parsers.append(commands.add_parser(top_level, help=command_help, add_help=add_help))
        for parser in parsers:
            add_arguments(parser)
            parser.set_defaults(func=handler)


def print_usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def write_atomically(
    path: str, write: Callable[[BinaryIO], object], mode: int | None = None
) -> None:
    """Write through a temporary file beside ``path``: a failure leaves no partial file.

    The file gets ``mode``, or without one the mode a new file gets under the umask.
    """
    directory = os.path.dirname(os.path.abspath(path))
    import tempfile  # only when a command writes a file: it costs every command ~6 ms

    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".dockyard_temp_")
    try:
        with os.fdopen(descriptor, "wb") as out:
            if mode is None:
                umask = os.umask(0)
                os.umask(umask)
                mode = 0o666 & ~umask  # mkstemp's 0600 is not what the user asked for
            os.fchmod(out.fileno(), mode)
            write(out)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
