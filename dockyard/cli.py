"""The ``dockyard`` command: a client of the daemon (plus the commands that start servers).

Client commands talk to the daemon over the Engine API and never run containers themselves.
The import path of a client command is kept to the standard library; ``daemon`` and the
``--local``/``config`` commands import the core only when they run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import quote

import dockyard
from dockyard.core.hosts import parse_host
from dockyard.core.units import human_duration

DEFAULT_HOST = "unix:///run/dockyard.sock"
HOST_ENV = "DOCKYARD_HOST"
TOKEN_ENV = "DOCKYARD_TOKEN"


class UsageError(Exception):
    """A one-line error for the user; exit status 1."""


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]], min_width: int = 0) -> None:
    """Columns as Go's text/tabwriter lays out docker's tables: every cell but the last padded
    with three spaces to its column's width; ``min_width=10`` is docker's minimum cell width."""
    widths = [max(len(h) + 3, min_width) for h in headers]
    for row in rows:
        widths = [max(w, len(cell) + 3) for w, cell in zip(widths, row, strict=True)]
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("".join(cells) + row[-1])


def human_size(size: float) -> str:
    """Binary units, as ``docker info`` shows memory."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}"
        size /= 1024
    raise AssertionError("unreachable")


DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")


def human_size_decimal(size: float, precision: int = 3) -> str:
    """Decimal units, as docker shows image sizes: go-units ``HumanSizeWithPrecision``.

    ``precision`` is in significant digits: 3 for image and history tables, 4 for prune's
    "Total reclaimed space" (go-units ``HumanSize``). Python's ``%g`` formats like Go's.
    """
    unit = 0
    while size >= 1000 and unit < len(DECIMAL_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.{precision}g}{DECIMAL_UNITS[unit]}"


def created_since(unix_seconds: float) -> str:
    """The CREATED column: "2 hours ago"."""
    return human_duration(time.time() - unix_seconds) + " ago"


def truncate_id(image_id: str) -> str:
    """docker's ``stringid.TruncateID``: no algorithm prefix, 12 hex digits."""
    return image_id.partition(":")[2][:12] if ":" in image_id else image_id[:12]


def ellipsis(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` characters, the last one "…", as docker's tables do."""
    return text if len(text) <= width else text[: width - 1] + "…"


def go_time(unix_seconds: float) -> str:
    """Go's ``time.Time.String()`` in local time: ``2026-11-29 07:05:25 +0000 UTC``."""
    return datetime.fromtimestamp(unix_seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S %z %Z")


def rfc3339(unix_seconds: float) -> str:
    """Go's ``time.RFC3339`` in local time: ``2026-11-29T07:05:25Z``."""
    moment = datetime.fromtimestamp(unix_seconds).astimezone()
    offset = moment.strftime("%z")
    zone = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + zone


def go_json(value: Any, indent: int | None = None) -> str:
    """JSON as Go's encoding/json writes it, so scripts see docker's exact bytes: compact (or
    indented), UTF-8, and ``<``, ``>``, ``&``, U+2028 and U+2029 escaped."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


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
# Image commands
# --------------------------------------------------------------------------------------------

IMAGE_HEADERS = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
HISTORY_HEADERS = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
#: docker's tables use text/tabwriter with a minimum cell width of 10 (padding included).
DOCKER_MIN_WIDTH = 10
#: docker cuts CREATED BY to this many characters unless --no-trunc.
CREATED_BY_WIDTH = 45
PRUNE_WARNINGS = {
    False: "WARNING! This will remove all dangling images.",
    True: "WARNING! This will remove all images without at least one container associated to them.",
}


def _table_or_json(value: str) -> str:
    """The ``--format`` values we support; docker's Go templates are refused by name."""
    if value not in ("table", "json"):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not supported: use 'table' or 'json' (Go templates are not supported)"
        )
    return value


def _filters(pairs: Sequence[str] | None) -> dict[str, dict[str, bool]]:
    """``--filter key=value`` flags in the map form the docker CLI sends."""
    filters: dict[str, dict[str, bool]] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"bad format of filter {pair!r} (expected name=value)")
        filters.setdefault(key.strip().lower(), {})[value] = True
    return filters


def _image_path(name: str, suffix: str = "") -> str:
    # References keep their "/" and ":" (the route takes a path); anything else is escaped.
    return f"/images/{quote(name, safe='/:@')}{suffix}"


def _split_repo_tag(reference: str) -> tuple[str, str]:
    repo, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:  # a registry port, not a tag
        return reference, "<none>"
    return repo, tag


def _json_line(row: dict[str, str]) -> str:
    """One ``--format json`` line; keys sorted, as Go marshals docker's row contexts."""
    return go_json(dict(sorted(row.items())))


def _image_rows(image: dict[str, Any], truncate: bool) -> list[dict[str, str]]:
    """The rows docker shows for one ``/images/json`` item: one per repository:tag."""
    image_id = image.get("Id", "")
    created = image.get("Created", 0)
    size = image.get("Size", 0)
    shared = image.get("SharedSize", -1)
    containers = image.get("Containers", -1)
    common = {
        "Containers": "N/A" if containers == -1 else str(containers),
        "CreatedAt": go_time(created),
        "CreatedSince": created_since(created),
        "ID": truncate_id(image_id) if truncate else image_id,
        # docker shows Size to 3 significant digits and the others to 4 (go-units HumanSize).
        "SharedSize": "N/A" if shared == -1 else human_size_decimal(shared, 4),
        "Size": human_size_decimal(size),
        "UniqueSize": "N/A" if shared == -1 or size == -1 else human_size_decimal(size - shared, 4),
        "VirtualSize": human_size_decimal(size, 4),
    }
    tags = [t for t in image.get("RepoTags") or () if t != "<none>:<none>"]
    digests = [d for d in image.get("RepoDigests") or () if d != "<none>@<none>"]
    if not tags and not digests:
        return [{**common, "Repository": "<none>", "Tag": "<none>", "Digest": "<none>"}]
    # Rows of one repository stay together, as docker groups them (its order of repositories
    # is Go's random map order; ours is the daemon's, so scripts see a stable one).
    tags_by_repository: dict[str, list[str]] = {}
    for reference in tags:
        repo, tag = _split_repo_tag(reference)
        tags_by_repository.setdefault(repo, []).append(tag)
    rows = [
        {**common, "Repository": repo, "Tag": tag, "Digest": "<none>"}
        for repo, repo_tags in tags_by_repository.items()
        for tag in repo_tags
    ]
    for reference in digests:  # a repository known only by digest still gets its row
        repo = reference.partition("@")[0]
        if repo not in tags_by_repository:
            tags_by_repository[repo] = []
            rows.append({**common, "Repository": repo, "Tag": "<none>", "Digest": ""})
    return rows


def cmd_images(args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    if args.reference:
        filters.setdefault("reference", {})[args.reference] = True
    query = {"all": 1 if args.all else None, "filters": json.dumps(filters) if filters else None}
    images = make_client(args).get_json("/images/json", query)
    rows = [row for image in images for row in _image_rows(image, not args.no_trunc)]
    if args.quiet:
        for row in rows:
            print(row["ID"])
    elif args.format == "json":
        for row in rows:
            print(_json_line(row))
    else:
        columns = ["Repository", "Tag", "ID", "CreatedSince", "Size"]
        print_table(IMAGE_HEADERS, [[row[c] for c in columns] for row in rows], DOCKER_MIN_WIDTH)
    return 0


def _print_errors(errors: Sequence[str]) -> int:
    """Per-name failures, after the successes, as docker reports them; the exit status."""
    for message in errors:
        print(f"Error response from daemon: {message}", file=sys.stderr)
    return 1 if errors else 0


def cmd_image_inspect(args: argparse.Namespace) -> int:
    from dockyard.client import APIError

    client = make_client(args)
    found, errors = [], []
    for name in args.names:
        try:
            found.append(client.get_json(_image_path(name, "/json")))
        except APIError as exc:
            errors.append(str(exc))
    print(go_json(found, indent=4))
    return _print_errors(errors)


def cmd_tag(args: argparse.Namespace) -> int:
    # The daemon splits repo[:tag] itself (import sends it that way too), so the reference
    # grammar and its error messages live in one place.
    make_client(args).call_json("POST", _image_path(args.source, "/tag"), {"repo": args.target})
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from dockyard.client import APIError

    client = make_client(args)
    errors = []
    for name in args.names:
        query = {"force": 1 if args.force else None, "noprune": 1 if args.no_prune else None}
        try:
            deleted = client.call_json("DELETE", _image_path(name), query) or []
        except APIError as exc:
            errors.append(str(exc))
            continue
        for item in deleted:
            if item.get("Deleted"):
                print(f"Deleted: {item['Deleted']}")
            elif item.get("Untagged"):
                print(f"Untagged: {item['Untagged']}")
    return _print_errors(errors)


def _open_input(path: str) -> BinaryIO:
    try:
        return open(path, "rb")  # the caller closes it once streamed
    except OSError as exc:
        raise UsageError(f"open {path}: {exc.strerror}") from None


def cmd_import(args: argparse.Namespace) -> int:
    from dockyard.client import display_json_messages

    query: dict[str, Any] = {
        "fromSrc": "-",
        "repo": args.reference,
        "changes": args.change or None,
        "message": args.message,
    }
    client = make_client(args)
    if args.file.startswith(("http://", "https://")):
        # docker has the daemon fetch a URL itself; the daemon says whether it can.
        query["fromSrc"] = args.file
        display_json_messages(client.request("POST", "/images/create", query), sys.stdout)
        return 0
    source = sys.stdin.buffer if args.file == "-" else _open_input(args.file)
    with source:
        response = client.request(
            "POST", "/images/create", query, data=source, content_type="text/plain"
        )
        display_json_messages(response, sys.stdout)
    return 0


def write_atomically(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Write through a temporary file beside ``path``: a failure leaves no partial file."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".dockyard_temp_")
    try:
        with os.fdopen(descriptor, "wb") as out:
            write(out)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 is not what the user asked for
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def cmd_save(args: argparse.Namespace) -> int:
    if args.output is None and sys.stdout.isatty():
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if args.output is not None:
        directory = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(directory):
            raise UsageError(f"invalid output path: directory {directory!r} does not exist")
    client = make_client(args)
    response = client.request("GET", "/images/get", {"names": args.names})
    if args.output is None:
        client.copy_response(response, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        write_atomically(args.output, lambda out: client.copy_response(response, out))
    return 0


def cmd_load(args: argparse.Namespace) -> int:
    from dockyard.client import display_json_messages

    if args.input is None and sys.stdin.isatty():
        raise UsageError("requested load from stdin, but stdin is empty")
    client = make_client(args)
    # Like docker: progress is only for a terminal, so quiet unless stdout is one.
    quiet = args.quiet or not sys.stdout.isatty()
    source = sys.stdin.buffer if args.input is None else _open_input(args.input)
    with source:
        response = client.request(
            "POST", "/images/load", {"quiet": 1 if quiet else None}, data=source
        )
        if response.getheader("Content-Type", "") == "application/json":
            display_json_messages(response, sys.stdout)
        else:  # docker copies a body that is not a JSON-message stream as it is
            sys.stdout.flush()
            client.copy_response(response, sys.stdout.buffer)
    return 0


def _history_rows(entries: list[dict[str, Any]], truncate: bool) -> Iterator[dict[str, str]]:
    for entry in entries:
        image_id = entry.get("Id", "")
        created_by = entry.get("CreatedBy", "").replace("\t", " ")
        created = entry.get("Created", 0)
        yield {
            "ID": truncate_id(image_id) if truncate and image_id != "<missing>" else image_id,
            "CreatedAt": rfc3339(created),
            "CreatedSince": created_since(created),
            "CreatedBy": ellipsis(created_by, CREATED_BY_WIDTH) if truncate else created_by,
            "Size": human_size_decimal(entry.get("Size", 0)),
            "Comment": entry.get("Comment", ""),
        }


def cmd_history(args: argparse.Namespace) -> int:
    entries = make_client(args).get_json(_image_path(args.name, "/history"))
    rows = list(_history_rows(entries, not args.no_trunc))
    if args.quiet:
        for row in rows:
            print(row["ID"])
    elif args.format == "json":
        for row in rows:
            print(_json_line(row))
    else:
        columns = ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
        print_table(HISTORY_HEADERS, [[row[c] for c in columns] for row in rows], DOCKER_MIN_WIDTH)
    return 0


def _confirm(question: str) -> bool:
    """docker's prompt: anything but "y" or "Y" (end of input too) is a no."""
    print(f"{question}\nAre you sure you want to continue? [y/N] ", end="", flush=True)
    return sys.stdin.readline().strip() in ("y", "Y")


def cmd_image_prune(args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    filters["dangling"] = {"false" if args.all else "true": True}
    if not args.force and not _confirm(PRUNE_WARNINGS[args.all]):
        return 0  # docker says nothing more, and a "no" is not a failure
    report = make_client(args).call_json("POST", "/images/prune", {"filters": json.dumps(filters)})
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for item in deleted:
            if item.get("Untagged"):
                print(f"untagged: {item['Untagged']}")
            else:
                print(f"deleted: {item.get('Deleted', '')}")
        print()
    # docker uses go-units HumanSize here: four significant digits, not three.
    print(f"Total reclaimed space: {human_size_decimal(report.get('SpaceReclaimed', 0), 4)}")
    return 0


def _images_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]", help="only these")
    parser.add_argument("-a", "--all", action="store_true", help="show all images")
    parser.add_argument("-f", "--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("--format", type=_table_or_json, help="'table' (default) or 'json'")
    parser.add_argument("--no-trunc", action="store_true", help="show full image IDs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only image IDs")


def _inspect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="IMAGE")


def _tag_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    parser.add_argument("target", metavar="TARGET_IMAGE[:TAG]")


def _rmi_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="IMAGE")
    parser.add_argument("-f", "--force", action="store_true", help="remove even if tagged twice")
    parser.add_argument("--no-prune", action="store_true", help="keep untagged parents")


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="file|URL|-", help="a root filesystem tar; - is stdin")
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    parser.add_argument(
        "-c", "--change", action="append", help="a Dockerfile instruction (repeatable)"
    )
    parser.add_argument("-m", "--message", help="commit message for the imported image")


def _save_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="+", metavar="IMAGE")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")


def _load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", help="read from this tar file instead of stdin")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress progress output")


def _history_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", metavar="IMAGE")
    parser.add_argument("--format", type=_table_or_json, help="'table' (default) or 'json'")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only image IDs")


def _prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="all unused, not just dangling")
    parser.add_argument("--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")


# (top-level command or None, `image` subcommand and its aliases, help, arguments, handler)
IMAGE_COMMANDS: list[
    tuple[
        str | None,
        tuple[str, ...],
        str,
        Callable[[argparse.ArgumentParser], None],
        Callable[[argparse.Namespace], int],
    ]
] = [
    ("images", ("ls", "list"), "list images", _images_arguments, cmd_images),
    (None, ("inspect",), "show images' details as JSON", _inspect_arguments, cmd_image_inspect),
    ("tag", ("tag",), "give an image another name", _tag_arguments, cmd_tag),
    ("rmi", ("rm", "remove"), "untag and remove images", _rmi_arguments, cmd_rmi),
    ("import", ("import",), "create an image from a rootfs tar", _import_arguments, cmd_import),
    ("save", ("save",), "write images to a tar archive", _save_arguments, cmd_save),
    ("load", ("load",), "load images from a tar archive", _load_arguments, cmd_load),
    ("history", ("history",), "show an image's history", _history_arguments, cmd_history),
    (None, ("prune",), "remove unused images", _prune_arguments, cmd_image_prune),
]


def add_image_commands(commands: Any) -> None:
    """The image commands, top-level like ``docker images`` and under ``image`` like docker's."""
    image = commands.add_parser("image", help="manage images")
    image_commands = image.add_subparsers(dest="image_command", metavar="COMMAND")
    image.set_defaults(func=lambda args: _usage(image))
    for top_level, (name, *aliases), help_text, add_arguments, handler in IMAGE_COMMANDS:
        parsers = [image_commands.add_parser(name, aliases=aliases, help=help_text)]
        if top_level is not None:
            parsers.append(commands.add_parser(top_level, help=help_text))
        for parser in parsers:
            add_arguments(parser)
            parser.set_defaults(func=handler)


# --------------------------------------------------------------------------------------------
# Container commands
# --------------------------------------------------------------------------------------------

#: docker's exit statuses for ``run`` (docker/cli ``run.go`` ``toStatusError``).
EXIT_DAEMON_ERROR, EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND = 125, 126, 127
PS_HEADERS = ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
#: docker cuts COMMAND to this many characters (before quoting it) unless --no-trunc.
COMMAND_WIDTH = 20
#: ... and each name in ``--format json``'s Mounts to this many.
MOUNT_NAME_WIDTH = 15
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
#: Signals ``run``/``attach`` forward to the container (docker forwards all it can catch;
#: SIGCHLD and SIGPIPE are the CLI's own business).
PROXIED_SIGNALS = (
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGTERM",
    "SIGUSR1",
    "SIGUSR2",
    "SIGALRM",
    "SIGWINCH",
)
#: docker's ``units.RAMInBytes``: binary multiples, an optional "i" and "b".
_RAM_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?(.*)$")
_RAM_SUFFIXES = {
    f"{prefix}{middle}{end}": power
    for power, prefix in enumerate(("", "k", "m", "g", "t", "p"))
    for middle in ("", "i")
    for end in ("", "b")
    if prefix or not middle
}


class RunError(Exception):
    """A ``run``/``create``/``start`` failure with docker's exit status (125 and up)."""

    def __init__(self, message: str, status: int = EXIT_DAEMON_ERROR) -> None:
        super().__init__(message)
        self.status = status


def ram_in_bytes(text: str) -> int:
    """``512m``, ``1g``, ``1.5GiB``, ``1024`` in bytes, as docker converts ``--memory``."""
    match = _RAM_SIZE.match(text.strip())
    if not match:
        raise ValueError(f"invalid size: '{text}'")
    suffix = match.group(2)
    if suffix.lower() not in _RAM_SUFFIXES:
        raise ValueError(f"invalid suffix: '{suffix}'")
    return int(float(match.group(1)) * 1024 ** _RAM_SUFFIXES[suffix.lower()])


def nano_cpus(text: str) -> int:
    """``--cpus 1.5`` as ``HostConfig.NanoCpus``."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"failed to parse {text} as a rational number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid value {text} for --cpus")
    return round(value * 1e9)


def parse_detach_keys(text: str) -> bytes:
    """docker's ``term.ToBytes``: ``ctrl-p,ctrl-q`` → ``b"\\x10\\x11"``; single characters
    stand for themselves; ``ctrl-@``, ``ctrl-[``… as in ASCII."""
    keys = bytearray()
    for key in text.split(","):
        key = key.strip()
        if len(key) == 1:
            keys.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            char = key[5].lower()
            if "a" <= char <= "z":
                keys.append(ord(char) - ord("a") + 1)
            elif char in "@[\\]^_":
                keys.append(ord(char) - ord("@"))
            else:
                raise UsageError(f"invalid detach keys: unknown character {key!r}")
        else:
            raise UsageError(f"invalid detach keys: unknown character {key!r}")
    if not keys:
        raise UsageError("invalid detach keys: empty")
    return bytes(keys)


def parse_restart(text: str) -> dict[str, Any]:
    name, _, count = text.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise ValueError(f"invalid restart policy {text!r}")
    if count and name != "on-failure":
        raise ValueError(f"maximum retry count cannot be used with restart policy '{name}'")
    try:
        retries = int(count) if count else 0
    except ValueError:
        raise ValueError(f"maximum retry count must be an integer: {count!r}") from None
    return {"Name": name, "MaximumRetryCount": retries}


def _env_entries(values: Sequence[str] | None) -> list[str]:
    """``-e KEY=VALUE``, or ``-e KEY`` to pass this environment's value (left out if unset)."""
    entries = []
    for value in values or ():
        if "=" in value:
            entries.append(value)
        elif value in os.environ:
            entries.append(f"{value}={os.environ[value]}")
        elif value:
            entries.append(value)
    return entries


def _labels(values: Sequence[str] | None) -> dict[str, str]:
    labels = {}
    for value in values or ():
        key, _, text = value.partition("=")
        labels[key] = text
    return labels


def terminal_size() -> tuple[int, int]:
    """(rows, columns) of our terminal, (0, 0) without one."""
    for stream in (sys.stdout, sys.stdin):
        try:
            size = os.get_terminal_size(stream.fileno())
        except (OSError, ValueError, AttributeError):
            continue
        return size.lines, size.columns
    return 0, 0


def container_create_body(args: argparse.Namespace) -> dict[str, Any]:
    """``POST /containers/create``'s body from ``run``/``create`` flags, as docker fills it."""
    try:
        memory = ram_in_bytes(args.memory) if args.memory else 0
    except ValueError as exc:
        raise RunError(f'invalid argument "{args.memory}" for "-m, --memory" flag: {exc}') from None
    try:
        cpus = nano_cpus(args.cpus) if args.cpus else 0
    except ValueError as exc:
        raise RunError(f'invalid argument "{args.cpus}" for "--cpus" flag: {exc}') from None
    try:
        restart = parse_restart(args.restart or "no")
    except ValueError as exc:
        raise RunError(f'invalid argument "{args.restart}" for "--restart" flag: {exc}') from None
    if args.rm and restart["Name"] != "no":
        raise RunError("conflicting options: cannot specify both --restart and --rm")
    detached = getattr(args, "detach", False)
    attach_stdin = args.interactive and not detached
    binds: list[str] = []
    anonymous: dict[str, dict[str, Any]] = {}
    for spec in args.volume or ():
        if ":" in spec:
            binds.append(spec)
        else:  # a bare container path is an anonymous volume
            anonymous[spec] = {}
    entrypoint = None if args.entrypoint is None else [args.entrypoint]
    host_config: dict[str, Any] = {
        "Binds": binds or None,
        "AutoRemove": args.rm,
        "RestartPolicy": restart,
        "Memory": memory,
        "NanoCpus": cpus,
        "PidsLimit": args.pids_limit,
        "NetworkMode": args.network or "default",
        "Privileged": args.privileged,
        "CapAdd": args.cap_add,
        "CapDrop": args.cap_drop,
        "ReadonlyRootfs": args.read_only,
        "LogConfig": {"Type": "", "Config": {}},
        "ConsoleSize": list(terminal_size()) if args.tty else [0, 0],
    }
    return {
        "Hostname": args.hostname or "",
        "User": args.user or "",
        "AttachStdin": attach_stdin,
        "AttachStdout": not detached,
        "AttachStderr": not detached,
        "Tty": args.tty,
        "OpenStdin": args.interactive,
        "StdinOnce": attach_stdin,
        "Env": _env_entries(args.env),
        "Cmd": args.command or None,
        "Image": args.image,
        "Volumes": anonymous or None,
        "WorkingDir": args.workdir or "",
        "Entrypoint": entrypoint,
        "Labels": _labels(args.label),
        "HostConfig": host_config,
        "NetworkingConfig": {"EndpointsConfig": {}},
    }


def _container_path(name: str, suffix: str = "") -> str:
    return f"/containers/{quote(name, safe='')}{suffix}"


def _pull_missing(client: Any, image: str) -> None:
    """docker's answer to "No such image" on create: pull it, showing progress on stderr."""
    from dockyard.client import display_json_messages

    print(f"Unable to find image '{image}' locally", file=sys.stderr)
    repo, tag = _split_repo_tag(image.partition("@")[0])
    query = {"fromImage": repo, "tag": image.partition("@")[2] or tag.replace("<none>", "latest")}
    display_json_messages(client.request("POST", "/images/create", query), sys.stderr)


def create_container(client: Any, args: argparse.Namespace, body: dict[str, Any]) -> str:
    """Create (pulling a missing image first, as docker does); warnings go to stderr."""
    from dockyard.client import APIError

    query = {"name": args.name}
    try:
        created = client.call_json("POST", "/containers/create", query, body)
    except APIError as exc:
        if exc.status != 404 or "No such image" not in str(exc):
            raise
        _pull_missing(client, args.image)
        created = client.call_json("POST", "/containers/create", query, body)
    for warning in created.get("Warnings") or ():
        print(f"WARNING: {warning}", file=sys.stderr)
    container_id: str = created["Id"]
    return container_id


def start_error_status(message: str) -> int:
    """``run``'s exit status for a failed start: 126 cannot execute, 127 not found."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return EXIT_NOT_FOUND
    if "permission denied" in lowered:
        return EXIT_CANNOT_EXECUTE
    return EXIT_DAEMON_ERROR


def start_container(client: Any, container_id: str) -> None:
    """``POST /start``; a failure is a :class:`RunError` with docker's status for it."""
    from dockyard.client import APIError

    try:
        client.call_json("POST", _container_path(container_id, "/start"))
    except APIError as exc:
        message = f"Error response from daemon: {exc}"
        raise RunError(message, start_error_status(str(exc))) from None


class RawTerminal:
    """Put a terminal in raw mode (keys go to the container as typed, ctrl-c included) and
    restore it on the way out, whatever the way out is.

    A signal that would kill us outright (SIGTERM or SIGHUP while signals are not proxied)
    becomes a ``SystemExit`` here, so the terminal is restored before we go.
    """

    FATAL_SIGNALS = ("SIGTERM", "SIGHUP")

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> RawTerminal:
        if self.fd is not None:
            import signal
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            for name in self.FATAL_SIGNALS:
                number = getattr(signal, name)
                if signal.getsignal(number) is signal.SIG_DFL:
                    self._previous[number] = signal.signal(number, self._exit)
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    @staticmethod
    def _exit(number: int, frame: Any) -> None:
        raise SystemExit(128 + number)

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None and self.fd is not None:
            import signal
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            for number, handler in self._previous.items():
                signal.signal(number, handler)


class SignalProxy:
    """Signals this process gets, forwarded to the container as ``kill?signal=NAME`` (docker's
    ``--sig-proxy``); SIGWINCH also resizes a TTY. Requests go out from a worker thread: the
    handlers only queue, so they never block or re-enter the main thread's I/O."""

    def __init__(
        self, proxy: bool, on_signal: Callable[[str], None], on_winch: Callable[[], None] | None
    ) -> None:
        import queue

        self.proxy = proxy
        self._on_signal = on_signal
        self._on_winch = on_winch
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalProxy:
        import signal
        import threading

        names = list(PROXIED_SIGNALS) if self.proxy else []
        if self._on_winch is not None and "SIGWINCH" not in names:
            names.append("SIGWINCH")
        if not names:
            return self
        threading.Thread(target=self._work, daemon=True).start()
        for name in names:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        import signal

        self._queue.put(signal.Signals(number).name)

    def _work(self) -> None:
        while (name := self._queue.get()) is not None:
            try:
                if name == "SIGWINCH" and self._on_winch is not None:
                    self._on_winch()
                if self.proxy:
                    self._on_signal(name.removeprefix("SIG"))
            except Exception:  # a container that is gone: nothing left to forward to
                pass

    def __exit__(self, *exc: object) -> None:
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._queue.put(None)


class AttachSession:
    """One hijacked stream (attach or exec start) wired to this process's stdio.

    Output is copied in the calling thread: stdcopy frames to stdout/stderr, or raw bytes for
    a TTY. Stdin is copied by a thread and half-closed at its end; without stdin the write side
    is half-closed at once (the daemon then knows no input is coming). With a TTY the detach
    keys (ctrl-p ctrl-q by default) close the stream and leave the container running.
    """

    def __init__(
        self, stream: Any, tty: bool, stdin_fd: int | None, detach_keys: bytes | None
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.stdin_fd = stdin_fd
        self.detach_keys = detach_keys if tty else None
        self.detached = False

    def start_input(self) -> None:
        import threading

        if self.stdin_fd is None:
            self.stream.close_write()
            return
        threading.Thread(target=self._copy_input, daemon=True).start()

    def _copy_input(self) -> None:
        assert self.stdin_fd is not None
        keys = self.detach_keys or b""
        held = b""  # a detach sequence begun but not finished
        try:
            while True:
                try:
                    data = os.read(self.stdin_fd, 65536)
                except InterruptedError:
                    continue
                if not data:
                    break
                if keys:
                    data, held = self._scan_detach(held + data, keys)
                    if self.detached:
                        self.stream.close()
                        return
                if data:
                    self.stream.send(data)
            if held:
                self.stream.send(held)
        except OSError:
            pass  # the stream is gone (the container exited): nothing to deliver to
        self.stream.close_write()

    def _scan_detach(self, data: bytes, keys: bytes) -> tuple[bytes, bytes]:
        """Split ``data`` into what to send now and a held partial detach sequence."""
        out = bytearray()
        index = 0
        while index < len(data):
            if data[index] == keys[0]:
                candidate = data[index : index + len(keys)]
                if candidate == keys:
                    self.detached = True
                    return bytes(out), b""
                if keys.startswith(candidate):  # could still become the sequence
                    return bytes(out), candidate
            out.append(data[index])
            index += 1
        return bytes(out), b""

    def copy_output(self) -> None:
        from dockyard.client import copy_raw, demultiplex

        stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
        sys.stdout.flush()
        if self.tty:
            copy_raw(self.stream.read1, stdout)
        else:
            demultiplex(self.stream.read, stdout, stderr)

    def close(self) -> None:
        self.stream.close()


def resize_tty(client: Any, path: str, retry: bool = True) -> None:
    """``POST .../resize`` with our terminal's size; docker retries a failed first one (the
    process may not have its pty yet) with 10, 20, … ms pauses, then gives up with a note."""
    from dockyard.client import APIError, DaemonUnreachable

    rows, columns = terminal_size()
    if not rows or not columns:
        return
    for attempt in range(10 if retry else 1):
        try:
            client.call_json("POST", path, {"h": rows, "w": columns})
            return
        except (APIError, DaemonUnreachable):
            time.sleep(0.01 * (attempt + 1))
    if retry:
        print("failed to resize tty, using default size", file=sys.stderr)


def _stdin_fd() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def _attached_run(
    client: Any,
    container_id: str,
    config: dict[str, Any],
    wait_condition: str,
    detach_keys: bytes,
    sig_proxy: bool,
    start: bool = True,
) -> int:
    """Attach, wait (headers first), start, stream; docker's order (engine-api.md §5.1).

    Returns the container's exit status (0 after a detach).
    """
    tty = bool(config.get("Tty"))
    attach_stdin = bool(config.get("AttachStdin"))
    stdin_fd = _stdin_fd() if attach_stdin else None
    query = {
        "stream": 1,
        "stdin": 1 if attach_stdin else None,
        "stdout": 1 if config.get("AttachStdout", True) else None,
        "stderr": 1 if config.get("AttachStderr", True) else None,
    }
    stream = client.hijack(_container_path(container_id, "/attach"), query)
    raw_fd = stdin_fd if tty and stdin_fd is not None and os.isatty(stdin_fd) else None
    # The daemon answers wait's headers at once; its body comes when the container is done.
    waiter = client.request(
        "POST",
        _container_path(container_id, "/wait"),
        {"condition": wait_condition},
        streaming=True,
    )
    session = AttachSession(stream, tty, stdin_fd, detach_keys)
    resize_path = _container_path(container_id, "/resize")
    proxy = SignalProxy(
        sig_proxy,
        lambda name: client.call_json(
            "POST", _container_path(container_id, "/kill"), {"signal": name}
        ),
        (lambda: resize_tty(client, resize_path, retry=False)) if tty else None,
    )
    with RawTerminal(raw_fd), proxy:
        session.start_input()
        if start:
            try:
                start_container(client, container_id)
            except RunError:
                session.close()
                if wait_condition == "removed":
                    # With AutoRemove the daemon removes it: docker waits for that to finish.
                    with contextlib.suppress(Exception):
                        waiter.read()
                raise
        if tty:
            resize_tty(client, resize_path)
        try:
            session.copy_output()
        finally:
            session.close()
    if session.detached:
        waiter.close()
        return 0
    return _wait_status(waiter)


def _wait_status(response: Any) -> int:
    import http.client

    try:
        raw = response.read()
    except (http.client.HTTPException, OSError) as exc:
        raise RunError(f"Error waiting for container: {exc or type(exc).__name__}") from None
    try:
        result = json.loads(raw)
    except ValueError:
        raise RunError(raw.decode(errors="replace").strip() or "wait: no answer") from None
    error = result.get("Error")
    if error:  # docker treats any Error object as a failure of the wait
        message = error.get("Message", "") if isinstance(error, dict) else str(error)
        raise RunError(f"Error waiting for container: {message}")
    status: int = result.get("StatusCode", 0)
    return status


def _client_failure(exc: Exception) -> str:
    """The one-line text for a failure talking to the daemon, as docker words it."""
    from dockyard.client import APIError

    return f"Error response from daemon: {exc}" if isinstance(exc, APIError) else str(exc)


def cmd_run(args: argparse.Namespace) -> int:
    """``docker run``: its own errors and the daemon's exit 125; the container's status else."""
    from dockyard.client import APIError, DaemonUnreachable, StdCopyError

    if args.tty and args.interactive and not args.detach and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)  # docker: before anything
        return 1
    try:
        detach_keys = parse_detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
        body = container_create_body(args)
        client = make_client(args)
        container_id = create_container(client, args, body)
        if args.detach:
            print(container_id, flush=True)  # docker prints it before starting, come what may
            start_container(client, container_id)
            return 0
        condition = "removed" if args.rm else "next-exit"
        return _attached_run(client, container_id, body, condition, detach_keys, args.sig_proxy)
    except (RunError, UsageError, APIError, DaemonUnreachable, StdCopyError) as exc:
        print(f"dockyard: {_client_failure(exc)}\n", file=sys.stderr)
        print("Run 'dockyard run --help' for more information", file=sys.stderr)
        return exc.status if isinstance(exc, RunError) else EXIT_DAEMON_ERROR


def cmd_create(args: argparse.Namespace) -> int:
    from dockyard.client import APIError, DaemonUnreachable

    try:
        body = container_create_body(args)
        client = make_client(args)
        print(create_container(client, args, body))
        return 0
    except (RunError, APIError, DaemonUnreachable) as exc:
        print(f"dockyard: {_client_failure(exc)}", file=sys.stderr)
        return EXIT_DAEMON_ERROR


def _each(names: Sequence[str], action: Callable[[str], object], echo: bool = True) -> int:
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
    return _print_errors(errors)


def cmd_start(args: argparse.Namespace) -> int:
    from dockyard.client import APIError, StdCopyError

    client = make_client(args)
    if not (args.attach or args.interactive):
        return _each(
            args.containers,
            lambda name: client.call_json("POST", _container_path(name, "/start")),
        )
    if len(args.containers) > 1:
        raise UsageError("you cannot start and attach multiple containers at once")
    try:
        detach_keys = parse_detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
        container = client.get_json(_container_path(args.containers[0], "/json"))
        config = dict(container.get("Config") or {})
        config["AttachStdin"] = args.interactive and bool(config.get("OpenStdin"))
        config["AttachStdout"] = config["AttachStderr"] = True
        # "next-exit": the status of the run this start begins, not of an earlier one;
        # "removed" for an AutoRemove container, which is gone once it has exited.
        auto_remove = (container.get("HostConfig") or {}).get("AutoRemove")
        condition = "removed" if auto_remove else "next-exit"
        return _attached_run(client, container["Id"], config, condition, detach_keys, True)
    except (RunError, APIError, StdCopyError) as exc:
        print(_client_failure(exc), file=sys.stderr)
        return exc.status if isinstance(exc, RunError) else 1


def _post_to_each(
    args: argparse.Namespace, action: str, query: dict[str, Any] | None = None
) -> int:
    """``POST /containers/<name>/<action>`` for every named container, reporting like docker."""
    client = make_client(args)
    return _each(
        args.containers,
        lambda name: client.call_json("POST", _container_path(name, f"/{action}"), query),
    )


def cmd_stop(args: argparse.Namespace) -> int:
    # 304 (already stopped) is a success, as for docker.
    return _post_to_each(args, "stop", {"t": args.time, "signal": args.signal})


def cmd_restart(args: argparse.Namespace) -> int:
    return _post_to_each(args, "restart", {"t": args.time, "signal": args.signal})


def cmd_kill(args: argparse.Namespace) -> int:
    return _post_to_each(args, "kill", {"signal": args.signal})


def cmd_pause(args: argparse.Namespace) -> int:
    return _post_to_each(args, "pause")


def cmd_unpause(args: argparse.Namespace) -> int:
    return _post_to_each(args, "unpause")


def cmd_rm(args: argparse.Namespace) -> int:
    client = make_client(args)
    query = {"force": 1 if args.force else None, "v": 1 if args.volumes else None}
    return _each(
        args.containers,
        lambda name: client.call_json("DELETE", _container_path(name), query),
    )


def cmd_wait(args: argparse.Namespace) -> int:
    client = make_client(args)

    def wait(name: str) -> None:
        response = client.request(
            "POST", _container_path(name, "/wait"), {"condition": "not-running"}, streaming=True
        )
        result = json.loads(response.read())
        print(result.get("StatusCode", 0), flush=True)

    return _each(args.containers, wait, echo=False)


def cmd_rename(args: argparse.Namespace) -> int:
    make_client(args).call_json("POST", _container_path(args.old, "/rename"), {"name": args.new})
    return 0


def _go_value(value: Any) -> str:
    """A value as Go's text/template prints it (enough for scripts' ``-f`` lookups)."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_value(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


_TEMPLATE_ACTION = re.compile(r"{{\s*(json\s+)?\.([\w.]*)\s*}}")


def render_template(template: str, document: Any) -> str:
    """The subset of docker's Go templates scripts use most: ``{{.A.B}}`` and
    ``{{json .A}}``. Anything else in braces is refused rather than printed wrong."""

    def lookup(match: re.Match[str]) -> str:
        value = document
        for key in filter(None, match.group(2).split(".")):
            if not isinstance(value, dict) or key not in value:
                if match.group(1):
                    return "null"
                return "<no value>"
            value = value[key]
        return go_json(value) if match.group(1) else _go_value(value)

    rendered = _TEMPLATE_ACTION.sub(lookup, template)
    if "{{" in rendered:
        raise UsageError(f"template not supported: {template!r} (only {{{{.Field}}}} and json)")
    return rendered


def go_indent(raw: str, indent: str = "    ") -> str:
    """Go's ``json.Indent``: the daemon's JSON laid out, its text (escapes included) kept.

    ``docker inspect`` prints the daemon's raw documents this way, so a string the daemon
    wrote as ``<`` stays ``<`` and one it wrote as ``\u003c`` stays that too. Empty objects
    and arrays stay ``{}`` and ``[]``.
    """
    out: list[str] = []
    depth = 0
    in_string = escaped = need_indent = False
    for char in raw:
        if in_string:
            out.append(char)
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char in " \t\r\n":
            continue
        if need_indent and char not in "]}":
            need_indent = False
            depth += 1
            out.append("\n" + indent * depth)
        if char in "{[":
            need_indent = True  # decided by the next character: "{}" stays as it is
            out.append(char)
        elif char == ",":
            out.append(",\n" + indent * depth)
        elif char == ":":
            out.append(": ")
        elif char in "]}":
            if need_indent:
                need_indent = False
            else:
                depth -= 1
                out.append("\n" + indent * depth)
            out.append(char)
        else:
            in_string = char == '"'
            out.append(char)
    return "".join(out)


def _print_documents(raw_documents: list[str], template: str | None) -> None:
    if template and template != "json":
        for raw in raw_documents:
            print(render_template(template, json.loads(raw)))
    elif not raw_documents:
        print("[]")
    else:
        print(go_indent("[" + ",".join(raw_documents) + "]"))


def cmd_inspect(args: argparse.Namespace, retype: Callable[[str], str] | None = None) -> int:
    """``inspect`` tries each kind in docker's order (container, image, volume) for a name;
    ``container inspect``/``volume inspect`` look at one kind. Documents are printed as the
    daemon wrote them (docker's generic and container inspect do), or through ``retype``."""
    from dockyard.client import APIError

    client = make_client(args)
    kinds = [args.type] if args.type else ["container", "image", "volume"]
    paths = {
        "container": lambda name: _container_path(name, "/json"),
        "image": lambda name: _image_path(name, "/json"),
        "volume": lambda name: f"/volumes/{quote(name, safe='')}",
    }
    found, errors = [], []
    for name in args.names:
        for kind in kinds:
            try:
                raw = client.request("GET", paths[kind](name)).read().decode().strip()
                found.append(retype(raw) if retype else raw)
                break
            except APIError as exc:
                if exc.status != 404:
                    errors.append(str(exc))
                    break
                last = str(exc)
        else:
            errors.append(last if len(kinds) == 1 else f"No such object: {name}")
    _print_documents(found, args.format)
    if len(kinds) > 1:  # docker's generic inspect words its misses without the daemon prefix
        for message in errors:
            print(f"Error: {message}", file=sys.stderr)
        return 1 if errors else 0
    return _print_errors(errors)


def _container_names(container: dict[str, Any]) -> str:
    # Names with a second "/" are links (/other/alias): docker shows only the own names.
    names = [n[1:] for n in container.get("Names") or () if "/" not in n[1:]]
    return ",".join(names)


def _ports(container: dict[str, Any]) -> str:
    shown = []
    for port in container.get("Ports") or ():
        private, kind = port.get("PrivatePort"), port.get("Type", "tcp")
        if port.get("PublicPort"):
            shown.append(f"{port.get('IP', '0.0.0.0')}:{port['PublicPort']}->{private}/{kind}")
        else:
            shown.append(f"{private}/{kind}")
    return ", ".join(shown)


def _mount_name(mount: dict[str, Any], truncate: bool) -> str:
    name = mount.get("Name") or mount.get("Source", "")
    return ellipsis(name, MOUNT_NAME_WIDTH) if truncate else name


def _ps_row(container: dict[str, Any], truncate: bool) -> dict[str, Any]:
    """One ``ps`` row, keyed like docker's container formatter (``--format json`` keys)."""
    command = container.get("Command", "")
    image = container.get("Image", "") or "<no image>"
    if truncate:
        command = ellipsis(command, COMMAND_WIDTH)
        if image.startswith("sha256:"):
            image = truncate_id(image)
    created = container.get("Created", 0)
    labels = container.get("Labels") or {}
    mounts = container.get("Mounts") or []
    networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
    container_id = container.get("Id", "")
    return {
        "Command": json.dumps(command, ensure_ascii=False),
        "CreatedAt": go_time(created),
        "ID": container_id[:12] if truncate else container_id,
        "Image": image,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "LocalVolumes": str(sum(1 for m in mounts if m.get("Driver") == "local")),
        "Mounts": ",".join(_mount_name(m, truncate) for m in mounts),
        "Names": _container_names(container),
        "Networks": ",".join(sorted(networks)),
        "Platform": None,  # docker 28 has the field; /containers/json has no platform to show
        "Ports": _ports(container),
        "RunningFor": created_since(created),
        "Size": "0B",
        "State": container.get("State", ""),
        "Status": container.get("Status", ""),
    }


def cmd_ps(args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    limit = 1 if args.latest else args.last
    query = {
        "all": 1 if args.all else None,
        "limit": limit if limit and limit > 0 else None,
        "filters": json.dumps(filters) if filters else None,
    }
    containers = make_client(args).get_json("/containers/json", query)
    rows = [_ps_row(c, not args.no_trunc) for c in containers]
    if args.quiet:
        for row in rows:
            print(row["ID"])
    elif args.format == "json":
        for row in rows:
            print(_json_line(row))
    else:
        columns = ["ID", "Image", "Command", "RunningFor", "Status", "Ports", "Names"]
        print_table(PS_HEADERS, [[row[c] for c in columns] for row in rows], DOCKER_MIN_WIDTH)
    return 0


_DURATION = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def log_timestamp(text: str, now: float | None = None) -> str:
    """``--since``/``--until`` as docker sends them (unix seconds, nanoseconds as a fraction):
    from a Go duration (``10m``, ``1h30m``: that long ago), unix seconds, or an RFC 3339 date."""
    now = time.time() if now is None else now
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return text
    if _DURATION.fullmatch(text) or re.fullmatch(f"(?:{_DURATION.pattern})+", text):
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION.findall(text))
        moment = now - seconds
    else:
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"invalid value for time: {text!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.astimezone()
        moment = parsed.timestamp()
    whole = math.floor(moment)
    return f"{whole}.{round((moment - whole) * 1e9):09d}"


def cmd_logs(args: argparse.Namespace) -> int:
    from dockyard.client import copy_raw, demultiplex

    client = make_client(args)
    # The container's TTY flag decides the stream's format (framed or raw), as for docker.
    container = client.get_json(_container_path(args.container, "/json"))
    query = {
        "stdout": 1,
        "stderr": 1,
        "follow": 1 if args.follow else None,
        "tail": args.tail,
        "timestamps": 1 if args.timestamps else None,
        "since": log_timestamp(args.since) if args.since else None,
        "until": log_timestamp(args.until) if args.until else None,
    }
    response = client.request(
        "GET", _container_path(container["Id"], "/logs"), query, streaming=args.follow
    )
    if (container.get("Config") or {}).get("Tty"):
        copy_raw(response.read1, sys.stdout.buffer)
    else:
        demultiplex(response.read, sys.stdout.buffer, sys.stderr.buffer)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from dockyard.client import APIError, StdCopyError

    client = make_client(args)
    detach_keys = parse_detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
    client.get_json(_container_path(args.container, "/json"))  # "No such container" first
    if args.tty and args.interactive and not sys.stdin.isatty():
        print("the input device is not a TTY", file=sys.stderr)
        return 1
    config = {
        "User": args.user or "",
        "Privileged": args.privileged,
        "Tty": args.tty,
        "AttachStdin": args.interactive and not args.detach,
        "AttachStderr": not args.detach,
        "AttachStdout": not args.detach,
        "Detach": args.detach,
        "DetachKeys": "",
        "Env": _env_entries(args.env) or None,
        "WorkingDir": args.workdir or "",
        "Cmd": [args.command_name, *args.arguments],
    }
    created = client.call_json("POST", _container_path(args.container, "/exec"), body=config)
    exec_id = created.get("Id") if created else ""
    if not exec_id:
        raise UsageError("exec ID empty")
    start = {"Detach": args.detach, "Tty": args.tty}
    if args.detach:
        client.call_json("POST", f"/exec/{exec_id}/start", body=start)
        return 0
    stream = client.hijack(f"/exec/{exec_id}/start", body=start)
    stdin_fd = _stdin_fd() if args.interactive else None
    raw_fd = stdin_fd if args.tty and stdin_fd is not None and os.isatty(stdin_fd) else None
    session = AttachSession(stream, args.tty, stdin_fd, detach_keys)
    resize_path = f"/exec/{exec_id}/resize"
    # Signals are not forwarded for exec (docker neither): only the TTY follows the window.
    proxy = SignalProxy(
        False,
        lambda name: None,
        (lambda: resize_tty(client, resize_path, False)) if args.tty else None,
    )
    try:
        with RawTerminal(raw_fd), proxy:
            session.start_input()
            if args.tty:
                import threading

                # As docker: sent alongside start, retried until the process has its pty.
                threading.Thread(target=resize_tty, args=(client, resize_path), daemon=True).start()
            try:
                session.copy_output()
            finally:
                session.close()
    except (StdCopyError, APIError) as exc:
        print(_client_failure(exc), file=sys.stderr)
        return 1
    if session.detached:
        return 0
    status: int = client.get_json(f"/exec/{exec_id}/json").get("ExitCode") or 0
    return status


def cmd_attach(args: argparse.Namespace) -> int:
    from dockyard.client import APIError, StdCopyError

    client = make_client(args)
    detach_keys = parse_detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
    container = client.get_json(_container_path(args.container, "/json"))
    state = container.get("State") or {}
    if not state.get("Running"):
        raise UsageError("You cannot attach to a stopped container, start it first")
    if state.get("Paused"):
        raise UsageError("You cannot attach to a paused container, unpause it first")
    config = dict(container.get("Config") or {})
    config["AttachStdin"] = bool(config.get("OpenStdin")) and not args.no_stdin
    config["AttachStdout"] = config["AttachStderr"] = True
    if config["Tty"] and config["AttachStdin"] and not sys.stdin.isatty():
        raise UsageError("the input device is not a TTY")
    try:
        return _attached_run(
            client, container["Id"], config, "not-running", detach_keys, args.sig_proxy, False
        )
    except (RunError, APIError, StdCopyError) as exc:
        print(_client_failure(exc), file=sys.stderr)
        return exc.status if isinstance(exc, RunError) else 1


def cmd_top(args: argparse.Namespace) -> int:
    query = {"ps_args": " ".join(args.ps_args) if args.ps_args else None}
    top = make_client(args).get_json(_container_path(args.container, "/top"), query)
    # docker top's tabwriter has a minimum cell width of 20.
    print_table(top.get("Titles") or [], top.get("Processes") or [], 20)
    return 0


STATS_HEADERS = [
    "CONTAINER ID",
    "NAME",
    "CPU %",
    "MEM USAGE / LIMIT",
    "MEM %",
    "NET I/O",
    "BLOCK I/O",
    "PIDS",
]


def _stats_row(stats: dict[str, Any]) -> list[str]:
    """One ``docker stats`` row, with its CPU and memory arithmetic."""
    cpu, previous = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        previous.get("cpu_usage") or {}
    ).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - previous.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or 1
    cpu_percent = cpu_delta / system_delta * online * 100 if system_delta > 0 else 0.0
    memory = stats.get("memory_stats") or {}
    usage, limit = memory.get("usage", 0) or 0, memory.get("limit", 0) or 0
    memory_percent = usage / limit * 100 if limit else 0.0
    networks = stats.get("networks") or {}
    received = sum(n.get("rx_bytes", 0) for n in networks.values())
    sent = sum(n.get("tx_bytes", 0) for n in networks.values())
    block_read = block_write = 0
    for entry in (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or ():
        if entry.get("op", "").lower() == "read":
            block_read += entry.get("value", 0)
        elif entry.get("op", "").lower() == "write":
            block_write += entry.get("value", 0)
    pids = (stats.get("pids_stats") or {}).get("current", 0)
    return [
        stats.get("id", "")[:12],
        stats.get("name", "").removeprefix("/"),
        f"{cpu_percent:.2f}%",
        f"{human_size(usage)} / {human_size(limit)}",
        f"{memory_percent:.2f}%",
        f"{human_size_decimal(received)} / {human_size_decimal(sent)}",
        f"{human_size_decimal(block_read)} / {human_size_decimal(block_write)}",
        str(pids),
    ]


def cmd_stats(args: argparse.Namespace) -> int:
    client = make_client(args)
    names = args.containers
    if not names:
        running = client.get_json("/containers/json", {"all": 1 if args.all else None})
        names = [c["Id"] for c in running]
    while True:
        rows = [
            _stats_row(client.get_json(_container_path(n, "/stats"), {"stream": 0})) for n in names
        ]
        if not args.no_stream and sys.stdout.isatty():
            print("\033[2J\033[H", end="")  # redraw in place, as docker does on a terminal
        print_table(STATS_HEADERS, rows, DOCKER_MIN_WIDTH)
        if args.no_stream:
            return 0
        sys.stdout.flush()
        time.sleep(1)


def cmd_container_prune(args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    if not args.force and not _confirm("WARNING! This will remove all stopped containers."):
        return 0
    report = make_client(args).call_json(
        "POST", "/containers/prune", {"filters": json.dumps(filters) if filters else None}
    )
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:")
        for container_id in deleted:
            print(container_id)
        print()
    print(f"Total reclaimed space: {human_size_decimal(report.get('SpaceReclaimed', 0), 4)}")
    return 0


# --------------------------------------------------------------------------------------------
# Volume commands
# --------------------------------------------------------------------------------------------


def _volume_path(name: str) -> str:
    return f"/volumes/{quote(name, safe='')}"


def cmd_volume_create(args: argparse.Namespace) -> int:
    name = args.name or args.name_flag or ""
    body = {
        "Name": name,
        "Driver": args.driver,
        "DriverOpts": dict(o.partition("=")[::2] for o in args.opt or ()),
        "Labels": _labels(args.label),
    }
    volume = make_client(args).call_json("POST", "/volumes/create", body=body)
    print(volume.get("Name", name))
    return 0


def cmd_volume_ls(args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
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
            print(_json_line(row))
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
    return _each(args.names, lambda name: client.call_json("DELETE", _volume_path(name), query))


def cmd_volume_prune(args: argparse.Namespace) -> int:
    filters = _filters(args.filter)
    if args.all:
        filters["all"] = {"true": True}
    warning = (
        "WARNING! This will remove all local volumes not used by at least one container."
        if args.all
        else "WARNING! This will remove anonymous local volumes not used by at least one container."
    )
    if not args.force and not _confirm(warning):
        return 0
    report = make_client(args).call_json(
        "POST", "/volumes/prune", {"filters": json.dumps(filters) if filters else None}
    )
    deleted = report.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:")
        for name in deleted:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size_decimal(report.get('SpaceReclaimed', 0), 4)}")
    return 0


# --------------------------------------------------------------------------------------------
# Container and volume command-line arguments
# --------------------------------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser, run: bool = True) -> None:
    """``run``/``create`` flags. ``-h`` is ``--hostname`` as in docker, so help is ``--help``;
    options end at the image: what follows is the container's command, flags included."""
    parser.add_argument("--help", action="help", help="show this help message and exit")
    if run:
        parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
        parser.add_argument(
            "--sig-proxy",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="forward signals to the container (--sig-proxy=false to not)",
        )
    parser.add_argument("--detach-keys", help="keys that detach from a TTY (ctrl-p,ctrl-q)")
    parser.add_argument("--rm", action="store_true", help="remove the container when it exits")
    parser.add_argument("--name", help="the container's name")
    parser.add_argument("-e", "--env", action="append", help="KEY=VALUE, or KEY to pass ours")
    parser.add_argument("-w", "--workdir", help="working directory inside the container")
    parser.add_argument("-u", "--user", help="USER[:GROUP], names or ids")
    parser.add_argument("-v", "--volume", action="append", help="/host:/ctr[:ro] or NAME:/ctr")
    parser.add_argument("--entrypoint", help="override the image's entrypoint")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    parser.add_argument("-i", "--interactive", action="store_true", help="keep stdin open")
    parser.add_argument("--restart", help="no, on-failure[:N], always, unless-stopped")
    parser.add_argument("-m", "--memory", help="memory limit: 512m, 1g, …")
    parser.add_argument("--cpus", help="number of CPUs (1.5)")
    parser.add_argument("--pids-limit", type=int, help="maximum number of processes")
    parser.add_argument("--network", "--net", help="none or host")
    parser.add_argument("--privileged", action="store_true", help="all capabilities and devices")
    parser.add_argument("--cap-add", action="append", help="add a Linux capability")
    parser.add_argument("--cap-drop", action="append", help="drop a Linux capability")
    parser.add_argument("--read-only", action="store_true", help="read-only root filesystem")
    parser.add_argument("-l", "--label", action="append", help="KEY=VALUE metadata")
    parser.add_argument("-h", "--hostname", help="the container's host name")
    parser.add_argument("image", metavar="IMAGE")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND [ARG...]")


def _create_arguments(parser: argparse.ArgumentParser) -> None:
    _run_arguments(parser, run=False)


def _containers_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("containers", nargs="+", metavar="CONTAINER")


def _start_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--attach", action="store_true", help="attach stdout/stderr")
    parser.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    parser.add_argument("--detach-keys", help="keys that detach from a TTY (ctrl-p,ctrl-q)")
    _containers_argument(parser)


def _stop_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-t", "--time", "--timeout", type=int, help="seconds before SIGKILL")
    parser.add_argument("-s", "--signal", help="signal to stop with")
    _containers_argument(parser)


def _kill_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-s", "--signal", help="signal name or number (default KILL)")
    _containers_argument(parser)


def _rm_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--force", action="store_true", help="remove a running one too")
    parser.add_argument("-v", "--volumes", action="store_true", help="and its anonymous volumes")
    _containers_argument(parser)


def _logs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--follow", action="store_true", help="keep following the output")
    parser.add_argument("-n", "--tail", default="all", help="lines from the end (default all)")
    parser.add_argument("--since", help="since a time: 2026-11-29T07:00:00Z, 10m, unix seconds")
    parser.add_argument("--until", help="until a time, same forms as --since")
    parser.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    parser.add_argument("container", metavar="CONTAINER")


def _ps_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    parser.add_argument("-q", "--quiet", action="store_true", help="only IDs")
    parser.add_argument("-f", "--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("--format", type=_table_or_json, help="'table' (default) or 'json'")
    parser.add_argument("-n", "--last", type=int, default=-1, help="the n last created")
    parser.add_argument("-l", "--latest", action="store_true", help="the last created")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")


def _inspect_any_arguments(parser: argparse.ArgumentParser, kind: str | None = None) -> None:
    parser.add_argument("-f", "--format", help="'json' or a {{.Field}} template")
    if kind is None:
        parser.add_argument("--type", choices=["container", "image", "volume"])
    else:
        parser.set_defaults(type=kind)
    parser.add_argument("names", nargs="+", metavar="NAME")


def _exec_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--interactive", action="store_true", help="attach stdin")
    parser.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    parser.add_argument("-d", "--detach", action="store_true", help="run in the background")
    parser.add_argument("-e", "--env", action="append", help="KEY=VALUE")
    parser.add_argument("-u", "--user", help="USER[:GROUP]")
    parser.add_argument("-w", "--workdir", help="working directory")
    parser.add_argument("--privileged", action="store_true", help="all capabilities")
    parser.add_argument("--detach-keys", help="keys that detach from a TTY (ctrl-p,ctrl-q)")
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("command_name", metavar="COMMAND")
    parser.add_argument("arguments", nargs=argparse.REMAINDER, metavar="ARG")


def _attach_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-stdin", action="store_true", help="do not attach stdin")
    parser.add_argument(
        "--sig-proxy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="forward signals to the container",
    )
    parser.add_argument("--detach-keys", help="keys that detach from a TTY (ctrl-p,ctrl-q)")
    parser.add_argument("container", metavar="CONTAINER")


def _top_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("ps_args", nargs=argparse.REMAINDER, metavar="PS_OPTIONS")


def _rename_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="CONTAINER")
    parser.add_argument("new", metavar="NEW_NAME")


def _stats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="stopped ones too")
    parser.add_argument("--no-stream", action="store_true", help="one sample, then exit")
    parser.add_argument("containers", nargs="*", metavar="CONTAINER")


def _container_prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")


CommandSpec = tuple[
    str | None,
    tuple[str, ...],
    str,
    Callable[[argparse.ArgumentParser], None],
    Callable[[argparse.Namespace], int],
]
# (top-level command or None, `container` subcommand and its aliases, help, arguments, handler)
CONTAINER_COMMANDS: list[CommandSpec] = [
    ("run", ("run",), "run a command in a new container", _run_arguments, cmd_run),
    ("create", ("create",), "create a container", _create_arguments, cmd_create),
    ("start", ("start",), "start containers", _start_arguments, cmd_start),
    ("stop", ("stop",), "stop containers", _stop_arguments, cmd_stop),
    ("restart", ("restart",), "restart containers", _stop_arguments, cmd_restart),
    ("kill", ("kill",), "send containers a signal", _kill_arguments, cmd_kill),
    ("pause", ("pause",), "freeze containers' processes", _containers_argument, cmd_pause),
    ("unpause", ("unpause",), "thaw containers' processes", _containers_argument, cmd_unpause),
    ("rm", ("rm", "remove"), "remove containers", _rm_arguments, cmd_rm),
    ("wait", ("wait",), "wait for containers to stop", _containers_argument, cmd_wait),
    ("logs", ("logs",), "show a container's output", _logs_arguments, cmd_logs),
    ("ps", ("ls", "ps", "list"), "list containers", _ps_arguments, cmd_ps),
    (
        None,
        ("inspect",),
        "show containers' details as JSON",
        lambda parser: _inspect_any_arguments(parser, "container"),
        cmd_inspect,
    ),
    ("exec", ("exec",), "run a command in a running container", _exec_arguments, cmd_exec),
    ("top", ("top",), "list a container's processes", _top_arguments, cmd_top),
    ("rename", ("rename",), "rename a container", _rename_arguments, cmd_rename),
    ("attach", ("attach",), "attach to a running container", _attach_arguments, cmd_attach),
    ("stats", ("stats",), "containers' resource usage", _stats_arguments, cmd_stats),
    (
        None,
        ("prune",),
        "remove stopped containers",
        _container_prune_arguments,
        cmd_container_prune,
    ),
]


def _volume_create_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="VOLUME")
    parser.add_argument("--name", dest="name_flag", help="the volume's name")
    parser.add_argument("-d", "--driver", default="local", help="volume driver (local)")
    parser.add_argument("-o", "--opt", action="append", help="driver option KEY=VALUE")
    parser.add_argument("--label", action="append", help="KEY=VALUE metadata")


def _volume_ls_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="only names")
    parser.add_argument("-f", "--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("--format", type=_table_or_json, help="'table' (default) or 'json'")


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
        lambda parser: _inspect_any_arguments(parser, "volume"),
        cmd_volume_inspect,
    ),
    (None, ("rm", "remove"), "remove volumes", _volume_rm_arguments, cmd_volume_rm),
    (None, ("prune",), "remove unused volumes", _volume_prune_arguments, cmd_volume_prune),
]

#: Commands whose options end at the first positional (``run IMAGE ls -l``): ``-h`` there
#: is a docker flag, not help.
_NO_HELP_FLAG = {"run", "create"}


def add_container_commands(commands: Any) -> None:
    """Container commands top-level and under ``container``; volumes under ``volume``;
    the generic ``inspect``."""
    container = commands.add_parser("container", help="manage containers")
    container_commands = container.add_subparsers(dest="container_command", metavar="COMMAND")
    container.set_defaults(func=lambda args: _usage(container))
    for top_level, (name, *aliases), help_text, add_arguments, handler in CONTAINER_COMMANDS:
        add_help = name not in _NO_HELP_FLAG
        parsers = [
            container_commands.add_parser(name, aliases=aliases, help=help_text, add_help=add_help)
        ]
        if top_level is not None:
            parsers.append(commands.add_parser(top_level, help=help_text, add_help=add_help))
        for parser in parsers:
            add_arguments(parser)
            parser.set_defaults(func=handler)
    inspect = commands.add_parser("inspect", help="show details of containers, images, volumes")
    _inspect_any_arguments(inspect)
    inspect.set_defaults(func=cmd_inspect)
    volume = commands.add_parser("volume", help="manage volumes")
    volume_commands = volume.add_subparsers(dest="volume_command", metavar="COMMAND")
    volume.set_defaults(func=lambda args: _usage(volume))
    for _, (name, *aliases), help_text, add_arguments, handler in VOLUME_COMMANDS:
        parser = volume_commands.add_parser(name, aliases=aliases, help=help_text)
        add_arguments(parser)
        parser.set_defaults(func=handler)


def docker_boolean_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """docker's boolean flags also take ``--flag=true|false`` (``--sig-proxy=false``,
    ``--rm=true``); argparse's don't, so those are rewritten to ``--flag``/``--no-flag``/
    nothing. Only options are touched: the rewrite stops at the first positional argument
    after the command (the image, whose command's own flags are not ours)."""
    words = list(argv)
    active = parser
    index = 0
    while index < len(words):
        word = words[index]
        subparsers = [a for a in active._actions if isinstance(a, argparse._SubParsersAction)]
        if not word.startswith("-") or word == "-":
            if subparsers and word in subparsers[0].choices:
                active = subparsers[0].choices[word]
                index += 1
                continue
            break  # the first positional: the rest is not ours to rewrite
        if word == "--":
            break
        flag, sep, value = word.partition("=")
        action = active._option_string_actions.get(flag)
        if action is None:
            index += 1
            continue
        boolean = isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0
        if boolean and sep:
            truth = value.strip().lower() not in ("", "0", "false", "f", "no")
            if isinstance(action, argparse.BooleanOptionalAction):
                words[index] = flag if truth else "--no-" + flag[2:]
            elif truth:
                words[index] = flag
            else:
                del words[index]
                continue
        elif not boolean and not sep and not flag.startswith("--") and len(flag) == 2:
            index += 1  # "-e FOO": its value is the next word
        elif not boolean and not sep and flag.startswith("--"):
            index += 1
        index += 1
    return words


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

    add_image_commands(commands)
    add_container_commands(commands)

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
    args = parser.parse_args(docker_boolean_flags(parser, sys.argv[1:] if argv is None else argv))
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
