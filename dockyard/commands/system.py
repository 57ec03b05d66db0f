"""The client and the daemon as a whole: ``version``, ``info`` and ``plugins``."""

from __future__ import annotations

import argparse
import json
import platform
from typing import Any

import dockyard
from dockyard.commands.common import UsageError, make_client
from dockyard.commands.output import human_size, print_table
from dockyard.core.platforms import go_arch


def cmd_version(args: argparse.Namespace) -> int:
    client_info = {
        "Version": dockyard.__version__,
        "ApiVersion": "1.41",
        "PythonVersion": platform.python_version(),
        "Os": "linux",
        "Arch": go_arch(),
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
    security = info.get("SecurityOptions") or []
    if security:
        print(" Security Options:")  # as docker: "name=userns" is shown as "userns"
        for option in security:
            print(f"  {option.removeprefix('name=')}")
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


def add_parsers(commands: Any, only: str | None = None) -> None:
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
