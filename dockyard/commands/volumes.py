"""Volume commands, under ``volume``: ``create``, ``ls``, ``inspect``, ``rm``, ``prune``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dockyard.commands.common import (
    CommandSpec,
    add_command_group,
    confirm,
    for_each_name,
    make_client,
    parse_filters,
    parse_labels,
    table_or_json,
    volume_path,
)
from dockyard.commands.inspection import cmd_inspect, inspect_arguments
from dockyard.commands.output import (
    DOCKER_MIN_WIDTH,
    go_json,
    json_line,
    print_prune_report,
    print_table,
)


def cmd_volume_create(args: argparse.Namespace) -> int:
    name = args.name or args.name_flag or ""
    body = {
        "Name": name,
        "Driver": args.driver,
        "DriverOpts": dict(o.partition("=")[::2] for o in args.opt or ()),
        "Labels": parse_labels(args.label),
    }
    volume = make_client(args).call_json("POST", "/volumes/create", body=body)
    print(volume.get("Name", name))
    return 0


def cmd_volume_ls(args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter)
    query = {"filters": json.dumps(filters) if filters else None}
    volumes = make_client(args).get_json("/volumes", query).get("Volumes") or []
    if args.quiet:
        for volume in volumes:
            print(volume.get("Name", ""))
    elif args.format == "json":
        for volume in volumes:
            labels = volume.get("Labels") or {}
            row = {
                "Driver": volume.get("Driver", ""),
                "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
                "Links": "N/A",
                "Mountpoint": volume.get("Mountpoint", ""),
                "Name": volume.get("Name", ""),
                "Scope": volume.get("Scope", "local"),
                "Size": "N/A",
            }
            print(json_line(row))
    else:
        rows = [[v.get("Driver", ""), v.get("Name", "")] for v in volumes]
        print_table(["DRIVER", "VOLUME NAME"], rows, DOCKER_MIN_WIDTH)
    return 0


#: ``docker volume inspect`` decodes each volume into its Go struct and encodes it again:
#: fields in the struct's order, the omitempty ones left out when empty.
VOLUME_FIELDS = (
    ("ClusterVolume", True),
    ("CreatedAt", True),
    ("Driver", False),
    ("Labels", False),
    ("Mountpoint", False),
    ("Name", False),
    ("Options", False),
    ("Scope", False),
    ("Status", True),
    ("UsageData", True),
)


def volume_document(raw: str) -> str:
    """A volume as ``docker volume inspect`` re-encodes it (compact; laid out later)."""
    volume = json.loads(raw)
    typed: dict[str, Any] = {}
    for field, omit_empty in VOLUME_FIELDS:
        value = volume.get(field)
        if omit_empty and not value:
            continue
        if isinstance(value, dict):  # Go writes map keys sorted
            value = dict(sorted(value.items()))
        typed[field] = value if value is not None or field in ("Labels", "Options") else ""
    return go_json(typed)


def cmd_volume_inspect(args: argparse.Namespace) -> int:
    args.type = "volume"
    return cmd_inspect(args, volume_document)


def cmd_volume_rm(args: argparse.Namespace) -> int:
    client = make_client(args)
    query = {"force": 1 if args.force else None}
    return for_each_name(
        args.names, lambda name: client.call_json("DELETE", volume_path(name), query)
    )


def cmd_volume_prune(args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter)
    if args.all:
        filters["all"] = {"true": True}
    warning = (
        "WARNING! This will remove all local volumes not used by at least one container."
        if args.all
        else "WARNING! This will remove anonymous local volumes not used by at least one container."
    )
    if not args.force and not confirm(warning):
        return 0
    report = make_client(args).call_json(
        "POST", "/volumes/prune", {"filters": json.dumps(filters) if filters else None}
    )
    deleted = report.get("VolumesDeleted") or []
    print_prune_report("Deleted Volumes:", deleted, report.get("SpaceReclaimed", 0))
    return 0


def _volume_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="VOLUME")
    parser.add_argument("--name", dest="name_flag", help="the volume's name")
    parser.add_argument("-d", "--driver", default="local", help="volume driver (local)")
    parser.add_argument("-o", "--opt", action="append", help="driver option KEY=VALUE")
    parser.add_argument("--label", action="append", help="KEY=VALUE metadata")


def _volume_ls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only names")
    parser.add_argument("-f", "--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("--format", type=table_or_json, help="'table' (default) or 'json'")


def _volume_rm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="even if in use")
    parser.add_argument("names", nargs="+", metavar="VOLUME")


def _volume_prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="named volumes too")
    parser.add_argument("--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")


VOLUME_COMMANDS: list[CommandSpec] = [
    (None, ("create",), "create a volume", _volume_create_arguments, cmd_volume_create),
    (None, ("ls", "list"), "list volumes", _volume_ls_arguments, cmd_volume_ls),
    (
        None,
        ("inspect",),
        "show volumes' details as JSON",
        lambda parser: inspect_arguments(parser, "volume"),
        cmd_volume_inspect,
    ),
    (None, ("rm", "remove"), "remove volumes", _volume_rm_arguments, cmd_volume_rm),
    (None, ("prune",), "remove unused volumes", _volume_prune_arguments, cmd_volume_prune),
]


def add_parsers(commands: Any, only: str | None = None) -> None:
    add_command_group(commands, "volume", "manage volumes", VOLUME_COMMANDS, only=only)
