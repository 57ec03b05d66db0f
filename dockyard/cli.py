"""The ``dockyard`` command: a client of the daemon (plus the commands that start servers).

Client commands talk to the daemon over the Engine API and never run containers themselves.
The import path of a client command is kept to the standard library; ``daemon`` and the
``--local``/``config`` commands import the core only when they run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import Any

import dockyard
from dockyard.core.hosts import parse_host

DEFAULT_HOST = "unix:///run/dockyard.sock"
HOST_ENV = "DOCKYARD_HOST"
TOKEN_ENV = "DOCKYARD_TOKEN"


class UsageError(Exception):
    """A one-line error for the user; exit status 1."""


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        print("   ".join(cells).rstrip())


def human_size(size: float) -> str:
    """Binary units, as ``docker info`` shows memory."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _go_arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


# --------------------------------------------------------------------------------------------
# Client commands
# --------------------------------------------------------------------------------------------


def make_client(args: argparse.Namespace) -> Any:
    from dockyard.client import EngineClient, TLSOptions

    try:
        host = parse_host(args.host or os.environ.get(HOST_ENV) or DEFAULT_HOST)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    tls = None
    if args.tls or args.tlscacert or args.tlscert:
        tls = TLSOptions(args.tlscacert or "", args.tlscert or "", args.tlskey or "")
    return EngineClient(host, tls=tls, token=os.environ.get(TOKEN_ENV, ""))


def cmd_version(args: argparse.Namespace) -> int:
    client_info = {
        "Version": dockyard.__version__,
        "ApiVersion": "1.41",
        "PythonVersion": platform.python_version(),
        "Os": "linux",
        "Arch": _go_arch(),
    }
    server = None if args.client else make_client(args).get_json("/version")
    if args.format == "json":
        print(json.dumps({"Client": client_info, "Server": server}, indent=2))
        return 0
    print("Client:")
    print(f" Version:          {client_info['Version']}")
    print(f" API version:      {client_info['ApiVersion']}")
    print(f" Python version:   {client_info['PythonVersion']}")
    print(f" OS/Arch:          {client_info['Os']}/{client_info['Arch']}")
    if server is not None:
        print()
        print(f"Server: {server.get('Platform', {}).get('Name', 'dockyard')}")
        print(" Engine:")
        print(f"  Version:         {server.get('Version', '')}")
        print(
            f"  API version:     {server.get('ApiVersion', '')} "
            f"(minimum version {server.get('MinAPIVersion', '')})"
        )
        print(f"  Runtime:         {server.get('GoVersion', '')}")
        print(f"  OS/Arch:         {server.get('Os', '')}/{server.get('Arch', '')}")
        print(f"  Kernel version:  {server.get('KernelVersion', '')}")
    return 0


def _plugin_rows(reports: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for report in reports:
        status = report["Status"]
        if report["Reason"]:
            status = f"{status}: {report['Reason']}"
        rows.append(
            [
                report["Name"],
                ", ".join(report["Kinds"]),
                ", ".join(d["Name"] for d in report["Drivers"]) or "-",
                ", ".join(report["Selected"]) or "-",
                report["Distribution"],
                report["Version"],
                status,
            ]
        )
    return rows


def print_plugins(reports: list[dict[str, Any]], indent: str = "") -> None:
    headers = ["NAME", "KIND", "DRIVERS", "SELECTED", "DISTRIBUTION", "VERSION", "STATUS"]
    if not reports:
        print(f"{indent}(no plugins installed)")
        return
    if indent:
        widths_rows = _plugin_rows(reports)
        for row in widths_rows:
            print(f"{indent}{row[0]}: {row[1]} ({row[2]}) selected={row[3]} {row[6]}")
        return
    print_table(headers, _plugin_rows(reports))


def cmd_info(args: argparse.Namespace) -> int:
    info = make_client(args).get_json("/info")
    if args.format == "json":
        print(json.dumps(info, indent=2))
        return 0
    print("Server:")
    print(f" Containers: {info.get('Containers', 0)}")
    print(f"  Running: {info.get('ContainersRunning', 0)}")
    print(f"  Paused: {info.get('ContainersPaused', 0)}")
    print(f"  Stopped: {info.get('ContainersStopped', 0)}")
    print(f" Images: {info.get('Images', 0)}")
    print(f" Server Version: {info.get('ServerVersion', '')}")
    print(f" Storage Driver: {info.get('Driver') or '(none installed)'}")
    print(f" Logging Driver: {info.get('LoggingDriver', '')}")
    print(f" Cgroup Driver: {info.get('CgroupDriver', '')}")
    print(f" Cgroup Version: {info.get('CgroupVersion', '')}")
    runtimes = " ".join(sorted(info.get("Runtimes") or {})) or "(none installed)"
    print(f" Runtimes: {runtimes}")
    print(f" Default Runtime: {info.get('DefaultRuntime') or '(none)'}")
    dockyard_info = info.get("Dockyard") or {}
    print(" Plugins:")
    print_plugins(dockyard_info.get("Plugins", []), indent="  ")
    print(f" Kernel Version: {info.get('KernelVersion', '')}")
    print(f" Operating System: {info.get('OperatingSystem', '')}")
    print(f" OSType: {info.get('OSType', '')}")
    print(f" Architecture: {info.get('Architecture', '')}")
    print(f" CPUs: {info.get('NCPU', 0)}")
    print(f" Total Memory: {human_size(info.get('MemTotal', 0))}")
    print(f" Name: {info.get('Name', '')}")
    print(f" ID: {info.get('ID', '')}")
    print(f" Data Root: {info.get('DockerRootDir', '')}")
    print(f" Config File: {dockyard_info.get('ConfigFile', '')}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    if args.local:
        from dockyard.core.config import load_config
        from dockyard.core.plugins import PluginHost

        host = PluginHost(load_config(args.config), "cli").load()
        reports = [report.to_json() for report in host.report()]
    else:
        if args.config:
            raise UsageError("--config goes with --local; the daemon uses its own config")
        reports = make_client(args).get_json("/dockyard/plugins")
    if args.format == "json":
        print(json.dumps(reports, indent=2))
    else:
        print_plugins(reports)
    return 0


# --------------------------------------------------------------------------------------------
# Commands that do not talk to a daemon
# --------------------------------------------------------------------------------------------


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


# Each DaemonConfig key has a flag of the same name (a test checks that none is missing).
DAEMON_FLAGS = (
    "data-root",
    "storage-driver",
    "runtime",
    "log-level",
    "log-format",
    "tls-cert",
    "tls-key",
    "tls-ca",
    "token-file",
)


def cmd_daemon(args: argparse.Namespace) -> int:
    import attrs

    from dockyard.core.config import DaemonConfig, decode, load_config
    from dockyard.core.daemon import run_daemon
    from dockyard.core.plugins import PluginHost

    config = load_config(args.config)
    table = {
        field.name.replace("_", "-"): getattr(config.daemon, field.name)
        for field in attrs.fields(DaemonConfig)
    }
    overrides = {flag: getattr(args, flag.replace("-", "_")) for flag in DAEMON_FLAGS}
    table.update({key: value for key, value in overrides.items() if value is not None})
    if args.hosts:
        table["hosts"] = args.hosts
    daemon = decode(DaemonConfig, table, "daemon", f"{config.source} or its command-line flag")
    config = attrs.evolve(config, daemon=daemon)
    run_daemon(config, PluginHost(config, "daemon").load())
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    from dockyard.core.registry.command import run_registry_command

    run_registry_command(args.config, listen=args.listen, root=args.root)
    return 0


def cmd_registry_gc(args: argparse.Namespace) -> int:
    from dockyard.core.registry.command import run_gc_command

    return run_gc_command(args.config, root=args.root, dry_run=args.dry_run)


# --------------------------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockyard",
        description="A container engine: a client for the dockyard daemon, and its servers.",
    )
    parser.add_argument(
        "-H", "--host", help=f"daemon socket to connect to (env {HOST_ENV}; default {DEFAULT_HOST})"
    )
    parser.add_argument("--tls", action="store_true", help="use TLS for tcp:// hosts")
    parser.add_argument("--tlscacert", help="trust certificates signed by this CA (implies --tls)")
    parser.add_argument("--tlscert", help="client certificate (implies --tls)")
    parser.add_argument("--tlskey", help="client certificate's key")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    version = commands.add_parser("version", help="show client and daemon versions")
    version.add_argument("--client", action="store_true", help="the client's version only")
    version.add_argument("-f", "--format", choices=["json"], help="output format")
    version.set_defaults(func=cmd_version)

    info = commands.add_parser("info", help="show what the daemon is made of")
    info.add_argument("-f", "--format", choices=["json"], help="output format")
    info.set_defaults(func=cmd_info)

    plugins = commands.add_parser("plugins", help="list plugins, their drivers and status")
    plugins.add_argument("--local", action="store_true", help="load plugins here, not via daemon")
    plugins.add_argument("--config", help="with --local: the config file to select drivers by")
    plugins.add_argument("-f", "--format", choices=["json"], help="output format")
    plugins.set_defaults(func=cmd_plugins)

    config = commands.add_parser("config", help="configuration helpers")
    config_commands = config.add_subparsers(dest="config_command", metavar="COMMAND")
    default = config_commands.add_parser("default", help="print the full default config")
    default.set_defaults(func=cmd_config_default)
    config.set_defaults(func=lambda args: _usage(config))

    daemon = commands.add_parser("daemon", help="run the daemon in the foreground")
    daemon.add_argument("--config", help="config file (default /etc/dockyard/config.toml)")
    daemon.add_argument(
        "-H", "--host", dest="hosts", action="append", help="unix:///PATH or tcp://ADDR:PORT"
    )
    for flag in DAEMON_FLAGS:
        daemon.add_argument(f"--{flag}", help=f"overrides [daemon] {flag}")
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
    return parser


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(f"dockyard version {dockyard.__version__}")
        return 0
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        return _usage(parser)
    prog = f"dockyard {args.command}"
    try:
        return func(args)
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        # Known failures carry their own one-line message; anything else is a bug, shown whole.
        from dockyard.client import APIError, DaemonUnreachable

        if isinstance(exc, DaemonUnreachable):
            print(exc, file=sys.stderr)
            return 1
        if isinstance(exc, APIError):
            print(f"Error response from daemon: {exc}", file=sys.stderr)
            return 1
        if "dockyard.core.errors" in sys.modules:
            from dockyard.core.errors import DockyardError

            if isinstance(exc, DockyardError):
                print(f"{prog}: {exc}", file=sys.stderr)
                return 1
        raise
