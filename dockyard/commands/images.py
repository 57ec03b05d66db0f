"""Image commands: ``images``, ``tag``, ``rmi``, ``import``, ``save``, ``load``, ``history``,
``pull`` and ``push`` (:mod:`~dockyard.commands.distribution`), ``build``
(:mod:`~dockyard.commands.builds`), and the ``image`` group
(``image ls``, ``image inspect``, ``image prune``…)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from dockyard.commands.builds import BUILD_COMMANDS
from dockyard.commands.common import (
    CommandSpec,
    UsageError,
    add_command_group,
    confirm,
    image_path,
    make_client,
    parse_filters,
    print_errors,
    table_or_json,
    write_atomically,
)
from dockyard.commands.distribution import DISTRIBUTION_COMMANDS
from dockyard.commands.output import (
    created_since,
    ellipsis,
    go_json,
    go_time,
    human_size_decimal,
    print_prune_report,
    print_rows,
    rfc3339,
    truncate_id,
)

IMAGE_HEADERS = ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
HISTORY_HEADERS = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
#: docker cuts CREATED BY to this many characters unless --no-trunc.
CREATED_BY_WIDTH = 45
PRUNE_WARNINGS = {
    False: "WARNING! This will remove all dangling images.",
    True: "WARNING! This will remove all images without at least one container associated to them.",
}


def split_repo_tag(reference: str) -> tuple[str, str]:
    repo, sep, tag = reference.rpartition(":")
    if not sep or "/" in tag:  # a registry port, not a tag
        return reference, "<none>"
    return repo, tag


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
        repo, tag = split_repo_tag(reference)
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
    filters = parse_filters(args.filter)
    if args.reference:
        filters.setdefault("reference", {})[args.reference] = True
    query = {"all": 1 if args.all else None, "filters": json.dumps(filters) if filters else None}
    images = make_client(args).get_json("/images/json", query)
    rows = [row for image in images for row in _image_rows(image, not args.no_trunc)]
    columns = ["Repository", "Tag", "ID", "CreatedSince", "Size"]
    print_rows(rows, args.quiet, args.format, IMAGE_HEADERS, columns)
    return 0


def cmd_image_inspect(args: argparse.Namespace) -> int:
    from dockyard.client import APIError

    client = make_client(args)
    found, errors = [], []
    for name in args.names:
        try:
            found.append(client.get_json(image_path(name, "/json")))
        except APIError as exc:
            errors.append(str(exc))
    print(go_json(found, indent=4))
    return print_errors(errors)


def cmd_tag(args: argparse.Namespace) -> int:
    # The daemon splits repo[:tag] itself (import sends it that way too), so the reference
    # grammar and its error messages live in one place.
    make_client(args).call_json("POST", image_path(args.source, "/tag"), {"repo": args.target})
    return 0


def cmd_rmi(args: argparse.Namespace) -> int:
    from dockyard.client import APIError

    client = make_client(args)
    errors = []
    for name in args.names:
        query = {"force": 1 if args.force else None, "noprune": 1 if args.no_prune else None}
        try:
            deleted = client.call_json("DELETE", image_path(name), query) or []
        except APIError as exc:
            errors.append(str(exc))
            continue
        for item in deleted:
            if item.get("Deleted"):
                print(f"Deleted: {item['Deleted']}")
            elif item.get("Untagged"):
                print(f"Untagged: {item['Untagged']}")
    return print_errors(errors)


def _open_input(path: str) -> BinaryIO:
    try:
        return open(path, "rb")  # the caller closes it once streamed
    except OSError as exc:
        raise UsageError(f"open {path}: {exc.strerror}") from None


def cmd_import(args: argparse.Namespace) -> int:
    from dockyard.commands.jsonmessages import display_json_messages

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


def save_tar(args: argparse.Namespace, path: str, query: dict[str, Any] | None = None) -> int:
    """``GET path`` (a tar) into ``-o``'s file, atomically, or to stdout unless a terminal:
    what ``save`` and ``export`` do."""
    if args.output is None and sys.stdout.isatty():
        raise UsageError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    if args.output is not None:
        directory = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(directory):
            raise UsageError(f"invalid output path: directory {directory!r} does not exist")
    client = make_client(args)
    response = client.request("GET", path, query)
    if args.output is None:
        client.copy_response(response, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        write_atomically(args.output, lambda out: client.copy_response(response, out))
    return 0


def cmd_save(args: argparse.Namespace) -> int:
    return save_tar(args, "/images/get", {"names": args.names})


def cmd_load(args: argparse.Namespace) -> int:
    from dockyard.client import StreamError
    from dockyard.commands.jsonmessages import display_json_messages

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
            try:
                display_json_messages(response, sys.stdout)
            except StreamError as exc:
                # A bad archive is an error inside the stream: docker prints its text alone.
                print(str(exc), file=sys.stderr)
                return 1
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
    entries = make_client(args).get_json(image_path(args.name, "/history"))
    rows = list(_history_rows(entries, not args.no_trunc))
    columns = ["ID", "CreatedSince", "CreatedBy", "Size", "Comment"]
    print_rows(rows, args.quiet, args.format, HISTORY_HEADERS, columns)
    return 0


def cmd_image_prune(args: argparse.Namespace) -> int:
    filters = parse_filters(args.filter)
    filters["dangling"] = {"false" if args.all else "true": True}
    if not args.force and not confirm(PRUNE_WARNINGS[args.all]):
        return 0  # docker says nothing more, and a "no" is not a failure
    report = make_client(args).call_json("POST", "/images/prune", {"filters": json.dumps(filters)})
    deleted = [
        f"untagged: {item['Untagged']}"
        if item.get("Untagged")
        else f"deleted: {item.get('Deleted', '')}"
        for item in report.get("ImagesDeleted") or []
    ]
    print_prune_report("Deleted Images:", deleted, report.get("SpaceReclaimed", 0))
    return 0


def _images_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]", help="only these")
    parser.add_argument("-a", "--all", action="store_true", help="show all images")
    parser.add_argument("-f", "--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("--format", type=table_or_json, help="'table' (default) or 'json'")
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
    parser.add_argument("--format", type=table_or_json, help="'table' (default) or 'json'")
    parser.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only image IDs")


def _prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-a", "--all", action="store_true", help="all unused, not just dangling")
    parser.add_argument("--filter", action="append", help="KEY=VALUE (repeatable)")
    parser.add_argument("-f", "--force", action="store_true", help="do not ask for confirmation")


# (top-level command or None, `image` subcommand and its aliases, help, arguments, handler)
IMAGE_COMMANDS: list[CommandSpec] = [
    ("images", ("ls", "list"), "list images", _images_arguments, cmd_images),
    (None, ("inspect",), "show images' details as JSON", _inspect_arguments, cmd_image_inspect),
    ("tag", ("tag",), "give an image another name", _tag_arguments, cmd_tag),
    ("rmi", ("rm", "remove"), "untag and remove images", _rmi_arguments, cmd_rmi),
    ("import", ("import",), "create an image from a rootfs tar", _import_arguments, cmd_import),
    ("save", ("save",), "write images to a tar archive", _save_arguments, cmd_save),
    ("load", ("load",), "load images from a tar archive", _load_arguments, cmd_load),
    ("history", ("history",), "show an image's history", _history_arguments, cmd_history),
    (None, ("prune",), "remove unused images", _prune_arguments, cmd_image_prune),
    *DISTRIBUTION_COMMANDS,
    *BUILD_COMMANDS,
]


def add_parsers(commands: Any, only: str | None = None) -> None:
    """The image commands, top-level like ``docker images`` and under ``image`` like docker's."""
    add_command_group(commands, "image", "manage images", IMAGE_COMMANDS, only=only)
