"""Commands that do not talk to a daemon: ``daemon`` and ``registry`` (with ``registry gc``)
run servers in the foreground, ``config default`` prints the default configuration. Each
imports the core inside its function, so the client commands never load it."""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from dockyard.commands.common import UsageError, print_usage


def cmd_config_default(args: argparse.Namespace) -> int:
    from dockyard.core.config import Config, render_table
    from dockyard.core.drivers import DriverKind
    from dockyard.core.plugins import PluginHost

    config = Config()
    print("# dockyard configuration; keys are hyphenated like the command-line flags.")
    print(render_table(config, None))
    print(render_table(config.daemon, "daemon"))
    print(render_table(config.registry, "registry"), end="")
    host = PluginHost(config, "cli").load()
    for kind in DriverKind:
        for info in sorted(host.driver_infos(kind), key=lambda i: i.name):
            print()
            print(f"# {kind.label} {info.name}: {info.description}".rstrip(": "))
            print(
                render_table(host.driver_config(kind, info.name), f"{kind.value}.{info.name}"),
                end="",
            )
    return 0


# Each DaemonConfig key has a flag of the same name (a test checks that none is missing):
# these take a value, the switches below (dockerd's) none; ``--tlsverify=false`` works too.
DAEMON_SWITCHES = ("tls", "tlsverify", "init")
DAEMON_FLAGS = (
    "data-root",
    "storage-driver",
    "runtime",
    "log-level",
    "log-format",
    "tlscacert",
    "tlscert",
    "tlskey",
    "token-file",
    "userns-remap",
    "subuid-file",
    "subgid-file",
    "default-registry",
    "insecure-registries",
    "registry-certs-dir",
    "registry-timeout",
    "max-concurrent-downloads",
    "registry-mirrors",
    "push-compression",
    "max-upload-attempts",
    "max-concurrent-uploads",
    "bridge",
    "log-driver",
    "log-opts",
    "init-path",
    "header-timeout",
    "body-timeout",
    "max-json-body",
)
#: List keys: the flag is given once per value; the second name is dockerd's.
LIST_FLAGS = {
    "insecure-registries": "--insecure-registry",
    "registry-mirrors": "--registry-mirror",
    "log-opts": "--log-opt",  # KEY=VALUE each, into the table
}


def cmd_daemon(args: argparse.Namespace) -> int:
    import attrs

    from dockyard.core.config import DaemonConfig, decode, load_config
    from dockyard.core.plugins import PluginHost
    from dockyard.daemon.main import run_daemon

    config = load_config(args.config)
    table = {
        field.name.replace("_", "-"): getattr(config.daemon, field.name)
        for field in attrs.fields(DaemonConfig)
    }
    flags = DAEMON_FLAGS + DAEMON_SWITCHES
    overrides = {flag: getattr(args, flag.replace("-", "_")) for flag in flags}
    # A flag's value is text: a number key's becomes a number (text that is none stays, for
    # decode to refuse by name).
    numbers = {
        field.name.replace("_", "-"): field.type
        for field in attrs.fields(DaemonConfig)
        if field.type in (int, float, "int", "float")
    }
    for flag, kind in numbers.items():
        value = overrides.get(flag)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                overrides[flag] = int(value) if kind in (int, "int") else float(value)
    table.update({key: value for key, value in overrides.items() if value is not None})
    if args.hosts:
        table["hosts"] = args.hosts
    if args.log_opts is not None:
        table["log-opts"] = dict(entry.partition("=")[::2] for entry in args.log_opts)
    daemon = decode(DaemonConfig, table, "daemon", f"{config.source} or its command-line flag")
    config = attrs.evolve(config, daemon=daemon)
    run_daemon(config, PluginHost(config, "daemon").load())
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from dockyard.registry.main import run_registry_command

    run_registry_command(args.config, listen=args.listen, root=args.root)
    return 0


def cmd_registry_gc(args: argparse.Namespace) -> int:
    from dockyard.registry.main import run_gc_command

    return run_gc_command(args.config, root=args.root, dry_run=args.dry_run)


def cmd_registry_token_server(args: argparse.Namespace) -> int:
    from dockyard.registry.main import run_token_server_command

    run_token_server_command(args.config, listen=args.listen, root=args.root)
    return 0


def cmd_registry_token_cert(args: argparse.Namespace) -> int:
    from dockyard.registry.main import token_certificates

    print(token_certificates(args.config, args.root), end="")
    return 0


def read_new_password(from_stdin: bool) -> str:
    """The password for ``user add``: the first line of stdin, or typed twice at a prompt."""
    import getpass

    if from_stdin:
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = getpass.getpass("Password: ")
        if password and getpass.getpass("Password again: ") != password:
            raise UsageError("the passwords do not match")
    if not password:
        raise UsageError("the password must not be empty")
    return password


def cmd_registry_user_add(args: argparse.Namespace) -> int:
    from dockyard.registry.main import add_user

    password = read_new_password(args.password_stdin)
    print(add_user(args.config, args.root, args.name, password))
    return 0


def cmd_registry_user_rm(args: argparse.Namespace) -> int:
    from dockyard.registry.main import remove_user

    print(remove_user(args.config, args.root, args.name))
    return 0


def cmd_registry_user_ls(args: argparse.Namespace) -> int:
    from dockyard.registry.main import list_users

    for name in list_users(args.config, args.root):
        print(name)
    return 0


def _add_registry_auth_parsers(registry_commands: Any) -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        # SUPPRESS: unset here, a value given before the subcommand stays.
        parser.add_argument("--config", default=argparse.SUPPRESS, help="config file")
        parser.add_argument(
            "--root", default=argparse.SUPPRESS, help="filesystem backend directory"
        )

    token_server = registry_commands.add_parser(
        "token-server", help="serve only the token endpoint (/token) of the auth provider"
    )
    common(token_server)
    token_server.add_argument("--listen", default=argparse.SUPPRESS, help="HOST:PORT")
    token_server.set_defaults(func=cmd_registry_token_server)
    token_cert = registry_commands.add_parser(
        "token-cert",
        help="print the certificate of the token signing key (a rootcertbundle for registries)",
    )
    common(token_cert)
    token_cert.set_defaults(func=cmd_registry_token_cert)
    user = registry_commands.add_parser("user", help="manage the auth provider's users")
    user_commands = user.add_subparsers(dest="user_command", metavar="COMMAND")
    user.set_defaults(func=lambda args: print_usage(user))
    add = user_commands.add_parser("add", help="add a user, or set a new password")
    common(add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--password-stdin", action="store_true", help="read the password on stdin")
    add.set_defaults(func=cmd_registry_user_add)
    remove = user_commands.add_parser("rm", help="remove a user (and its refresh tokens)")
    common(remove)
    remove.add_argument("name", metavar="NAME")
    remove.set_defaults(func=cmd_registry_user_rm)
    listing = user_commands.add_parser("ls", help="list the users")
    common(listing)
    listing.set_defaults(func=cmd_registry_user_ls)


def add_parsers(commands: Any, only: str | None = None) -> None:
    config = commands.add_parser("config", help="configuration helpers")
    config_commands = config.add_subparsers(dest="config_command", metavar="COMMAND")
    default = config_commands.add_parser("default", help="print the full default config")
    default.set_defaults(func=cmd_config_default)
    config.set_defaults(func=lambda args: print_usage(config))

    daemon = commands.add_parser("daemon", help="run the daemon in the foreground")
    daemon.add_argument("--config", help="config file (default /etc/dockyard/config.toml)")
    daemon.add_argument(
        "-H", "--host", dest="hosts", action="append", help="unix:///PATH or tcp://ADDR:PORT"
    )
    for flag in DAEMON_FLAGS:
        if flag in LIST_FLAGS:
            daemon.add_argument(
                f"--{flag}", LIST_FLAGS[flag], action="append", help=f"overrides [daemon] {flag}"
            )
        else:
            daemon.add_argument(f"--{flag}", help=f"overrides [daemon] {flag}")
    for flag in DAEMON_SWITCHES:
        daemon.add_argument(
            f"--{flag}", action=argparse.BooleanOptionalAction, help=f"overrides [daemon] {flag}"
        )
    daemon.set_defaults(func=cmd_daemon)

    registry = commands.add_parser("registry", help="run the OCI registry in the foreground")
    registry.add_argument("--config", help="config file (default /etc/dockyard/config.toml)")
    registry.add_argument("--listen", help="HOST:PORT to serve on (overrides [registry] listen)")
    registry.add_argument("--root", help="serve from the filesystem backend at this directory")
    registry.set_defaults(func=cmd_registry, dry_run=False)
    registry_commands = registry.add_subparsers(dest="registry_command", metavar="COMMAND")
    gc = registry_commands.add_parser("gc", help="delete unreferenced blobs and manifests")
    # SUPPRESS keeps `dockyard registry --root X gc` working: unset here, the parent's value stays.
    gc.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    gc.add_argument("--root", default=argparse.SUPPRESS, help="filesystem backend directory")
    gc.add_argument("--dry-run", action="store_true", help="report what would go; delete nothing")
    gc.set_defaults(func=cmd_registry_gc)
    _add_registry_auth_parsers(registry_commands)
