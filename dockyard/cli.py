"""The ``dockyard`` command: a client of the daemon (plus the commands that start servers).

Client commands talk to the daemon over the Engine API and never run containers themselves.
The import path of a client command is kept to the standard library; ``daemon`` and the
``--local``/``config`` commands import the core only when they run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, BinaryIO
from urllib.parse import quote

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


def human_duration(seconds: float) -> str:
    """go-units ``HumanDuration``: "Less than a second", "About a minute", "3 weeks"."""
    if int(seconds) < 1:
        return "Less than a second"
    if int(seconds) == 1:
        return "1 second"
    if seconds < 60:
        return f"{int(seconds)} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = math.floor(seconds / 3600 + 0.5)  # Go's math.Round: halves away from zero
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


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
