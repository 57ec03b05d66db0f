"""``run``/``create`` flags for how the container's process is isolated, as docker spells them:
``--pid``, ``--ipc``, ``--uts``, ``--cgroupns``, ``--shm-size``, ``--sysctl``, ``--group-add``,
``--init``, ``--runtime``. The daemon checks the values; only their syntax is the client's."""

from __future__ import annotations

import argparse
from typing import Any

from dockyard.core.units import ram_in_bytes


class ProcessFlagError(Exception):
    """A flag whose value cannot be sent (docker's ``invalid argument`` message)."""


def process_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pid", help="PID namespace: host, or container:NAME")
    parser.add_argument("--ipc", help="IPC mode: none, private, shareable, host, container:NAME")
    parser.add_argument("--uts", help="UTS namespace: host, or container:NAME")
    parser.add_argument("--cgroupns", help="cgroup namespace: host or private")
    parser.add_argument("--shm-size", help="size of /dev/shm: 64m, 1g, … (default 64m)")
    parser.add_argument("--sysctl", action="append", help="namespaced sysctl: NAME=VALUE")
    parser.add_argument("--group-add", action="append", help="another group, by name or id")
    parser.add_argument(
        "--init", action="store_true", default=None, help="run an init (tini) as pid 1"
    )
    parser.add_argument("--runtime", help="the runtime to run the container with")


def process_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The ``HostConfig`` fields these flags set."""
    try:
        shm_size = ram_in_bytes(args.shm_size) if args.shm_size else 0
    except ValueError as exc:
        raise ProcessFlagError(
            f'invalid argument "{args.shm_size}" for "--shm-size" flag: {exc}'
        ) from None
    sysctls: dict[str, str] = {}
    for entry in args.sysctl or ():
        name, equals, value = entry.partition("=")
        if not equals or not name:
            raise ProcessFlagError(
                f'invalid argument "{entry}" for "--sysctl" flag: expected NAME=VALUE'
            )
        sysctls[name] = value
    return {
        "PidMode": args.pid or "",
        "IpcMode": args.ipc or "",
        "UTSMode": args.uts or "",
        "CgroupnsMode": args.cgroupns or "",
        "ShmSize": shm_size,
        "Sysctls": sysctls or None,
        "GroupAdd": args.group_add,
        "Init": args.init,
        "Runtime": args.runtime or "",
    }
