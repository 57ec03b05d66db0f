"""``cp``, ``diff``, ``commit`` and ``export``: a container's files, by docker's rules.

``cp`` decides where things land the way docker's CLI does (its ``PrepareArchiveCopy``):

* into an existing directory, the source keeps its name;
* onto an existing file, or to a path that does not exist yet, the source is renamed to the
  destination's name (a directory source becomes that new directory);
* ``SRC/.`` copies a directory's contents rather than the directory;
* a destination ending in ``/`` must be an existing directory;
* ``-`` is a tar on stdin (into a container) or stdout (out of one).

Copying in asks the daemon first (``HEAD``) what the destination is, as docker does.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import stat
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from dockyard.commands.common import (
    CommandSpec,
    UsageError,
    container_path,
    make_client,
)
from dockyard.commands.images import save_tar
from dockyard.commands.output import human_size_decimal

#: Go's os.FileMode directory bit, as the daemon's path stat header carries it.
GO_MODE_DIR = 1 << 31
GO_MODE_SYMLINK = 1 << 27
KINDS = {0: "C", 1: "A", 2: "D"}


@dataclass(frozen=True)
class PathInfo:
    """What a copy's source or destination is."""

    path: str
    exists: bool
    is_dir: bool


@dataclass(frozen=True)
class Placement:
    """Where an archive goes: the directory it is extracted in, and the renaming of its
    first name component (``source``) to ``target`` (both empty: no renaming)."""

    directory: str
    source: str = ""
    target: str = ""


def _asserts_directory(path: str) -> bool:
    return path.endswith(("/", "/.")) or path == "."


def _base(path: str) -> str:
    trimmed = path.rstrip("/")
    if path.endswith("/."):
        return "."
    return os.path.basename(trimmed) or "/"


def place(source: PathInfo, destination: PathInfo) -> Placement:
    """docker's decision of where the source's archive is extracted, and under what name."""
    source_base = _base(source.path)
    if destination.exists and destination.is_dir:
        return Placement(destination.path)
    if destination.exists and source.is_dir:
        raise UsageError("cannot copy a directory to a file")
    if not destination.exists and _asserts_directory(destination.path) and not source.is_dir:
        raise UsageError(f"destination directory {destination.path} does not exist")
    parent = os.path.dirname(destination.path.rstrip("/")) or "/"
    return Placement(parent, source_base, _base(destination.path.rstrip("/")))


def rebased(name: str, placement: Placement) -> str:
    """``name`` with its first component renamed as ``placement`` says."""
    if not placement.source:
        return name
    if placement.source == ".":
        rest = name[1:] if name.startswith(".") else "/" + name
        return placement.target + rest if rest not in ("", "/") else placement.target
    if name == placement.source or name.rstrip("/") == placement.source:
        return placement.target
    if name.startswith(placement.source + "/"):
        return placement.target + name[len(placement.source) :]
    return name


def split_container_path(argument: str) -> tuple[str, str] | None:
    """``CONTAINER:PATH`` split in two; ``None`` for a local path (docker's rule: a colon
    after a ``/`` or a leading ``.`` or ``/`` means a local file)."""
    if argument.startswith(("/", ".")):
        return None
    name, sep, path = argument.partition(":")
    if not sep or "/" in name:
        return None
    return name, path


def _path_stat(response: Any) -> dict[str, Any]:
    header = response.getheader("X-Docker-Container-Path-Stat") or ""
    try:
        result: dict[str, Any] = json.loads(base64.b64decode(header))
    except ValueError:
        return {}
    return result


# --------------------------------------------------------------------------------------------
# out of a container
# --------------------------------------------------------------------------------------------


def _extract(
    archive: tarfile.TarFile, directory: str, placement: Placement, keep_ids: bool
) -> None:
    """Extract ``archive`` under ``directory``: names renamed by ``placement``, nothing
    allowed outside ``directory`` (tarfile's ``tar`` filter's checks), modes kept."""

    def checked(member: tarfile.TarInfo, destination: str) -> tarfile.TarInfo:
        member.name = rebased(member.name, placement)
        if member.islnk():
            member.linkname = rebased(member.linkname, placement)
        tarfile.tar_filter(member, destination)  # raises for names or links that escape
        if not keep_ids:
            member.uid, member.gid, member.uname, member.gname = os.getuid(), os.getgid(), "", ""
        return member

    archive.extractall(directory, filter=checked, numeric_owner=True)


def copy_from_container(args: argparse.Namespace, name: str, path: str) -> int:
    client = make_client(args)
    response = client.request("GET", container_path(name, "/archive"), {"path": path})
    if args.destination == "-":
        client.copy_response(response, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return 0
    path_stat = _path_stat(response)
    source = PathInfo(path, True, bool(path_stat.get("mode", 0) & GO_MODE_DIR))
    local = args.destination
    local_is_dir = os.path.isdir(local)
    destination = PathInfo(local, os.path.exists(local), local_is_dir)
    placement = place(source, destination)
    if not os.path.isdir(placement.directory):
        raise UsageError(f"destination directory {placement.directory} does not exist")
    counter = _CountingReader(response)
    with tarfile.open(fileobj=counter, mode="r|") as archive:  # type: ignore[call-overload]
        _extract(archive, placement.directory, placement, args.archive)
    print(f"Successfully copied {human_size_decimal(counter.count)} to {local}", file=sys.stderr)
    return 0


class _CountingReader:
    def __init__(self, source: Any) -> None:
        self.source, self.count = source, 0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.source.read(size)
        self.count += len(data)
        return data


# --------------------------------------------------------------------------------------------
# into a container
# --------------------------------------------------------------------------------------------


def _local_source(path: str, follow_link: bool) -> PathInfo:
    try:
        info = os.stat(path) if follow_link else os.lstat(path)
    except FileNotFoundError:
        raise UsageError(f"no such file or directory: {path}") from None
    # With -L a symlink's target is sent under the link's own name, as docker does.
    return PathInfo(path, True, stat.S_ISDIR(info.st_mode))


def _write_source_tar(
    out: BinaryIO, source: PathInfo, placement: Placement, keep_ids: bool, follow_link: bool
) -> None:
    local = os.path.realpath(source.path) if follow_link else source.path.rstrip("/") or "/"
    first = "." if source.path.endswith("/.") else _base(source.path)

    def entry(member: tarfile.TarInfo) -> tarfile.TarInfo:
        member.name = rebased(member.name, placement)
        if not keep_ids:
            member.uid = member.gid = 0
            member.uname = member.gname = ""
        return member

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as archive:
        if first == ".":
            archive.add(local.removesuffix("/."), arcname=".", filter=entry)
        else:
            archive.add(local, arcname=first, filter=entry)


def copy_to_container(args: argparse.Namespace, name: str, path: str) -> int:
    client = make_client(args)
    query: dict[str, Any] = {"noOverwriteDirNonDir": "true"}
    if args.archive:
        query["copyUIDGID"] = "true"
    if args.source == "-":
        query["path"] = path
        client.request("PUT", container_path(name, "/archive"), query, data=sys.stdin.buffer)
        return 0
    source = _local_source(args.source, args.follow_link)
    from dockyard.client import APIError

    try:
        response = client.request("HEAD", container_path(name, "/archive"), {"path": path})
        path_stat = _path_stat(response)
        response.read()
        destination = PathInfo(path, True, bool(path_stat.get("mode", 0) & GO_MODE_DIR))
    except APIError as exc:
        if exc.status != 404:
            raise
        destination = PathInfo(path, False, False)
    placement = place(source, destination)
    query["path"] = placement.directory
    reader_fd, writer_fd = os.pipe()
    failure: list[BaseException] = []
    counter = _CountingWriter(os.fdopen(writer_fd, "wb"))

    def produce() -> None:
        try:
            _write_source_tar(counter, source, placement, args.archive, args.follow_link)  # type: ignore[arg-type]
        except BaseException as exc:
            failure.append(exc)
        finally:
            counter.close()

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    with os.fdopen(reader_fd, "rb") as reader:
        client.request("PUT", container_path(name, "/archive"), query, data=reader).read()
    thread.join()
    if failure:
        raise UsageError(f"reading {args.source}: {failure[0]}")
    print(
        f"Successfully copied {human_size_decimal(counter.count)} to {name}:{path}",
        file=sys.stderr,
    )
    return 0


class _CountingWriter:
    def __init__(self, target: BinaryIO) -> None:
        self.target, self.count = target, 0

    def write(self, data: bytes) -> int:
        self.target.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self.target.flush()

    def close(self) -> None:
        self.target.close()


def cmd_cp(args: argparse.Namespace) -> int:
    source = split_container_path(args.source) if args.source != "-" else None
    destination = split_container_path(args.destination) if args.destination != "-" else None
    if source and destination:
        raise UsageError("copying between containers is not supported")
    if source:
        return copy_from_container(args, *source)
    if destination:
        return copy_to_container(args, *destination)
    raise UsageError("must specify at least one container source")


def _cp_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="SRC", help="CONTAINER:SRC_PATH, a local path, or -")
    parser.add_argument("destination", metavar="DEST", help="CONTAINER:DEST_PATH, a path, or -")
    parser.add_argument(
        "-a", "--archive", action="store_true", help="archive mode (copy all uid/gid information)"
    )
    parser.add_argument(
        "-L", "--follow-link", action="store_true", help="always follow a symlink in SRC"
    )


# --------------------------------------------------------------------------------------------
# diff, commit, export
# --------------------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace) -> int:
    changes = make_client(args).get_json(container_path(args.container, "/changes")) or []
    for change in changes:
        print(f"{KINDS.get(change['Kind'], '?')} {change['Path']}")
    return 0


def _diff_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")


def _commit_query(args: argparse.Namespace) -> Iterator[tuple[str, Any]]:
    yield "container", args.container
    if args.reference:
        repo, sep, tag = args.reference.rpartition(":")
        if not sep or "/" in tag:
            repo, tag = args.reference, ""
        yield "repo", repo
        if tag:
            yield "tag", tag
    if args.author:
        yield "author", args.author
    if args.message:
        yield "comment", args.message
    if args.change:
        yield "changes", args.change
    if not args.pause:
        yield "pause", "0"


def cmd_commit(args: argparse.Namespace) -> int:
    result = make_client(args).call_json("POST", "/commit", dict(_commit_query(args)))
    print(result["Id"])
    return 0


def _commit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    parser.add_argument("-a", "--author", help='author (e.g. "Jane <jane@example.com>")')
    parser.add_argument("-m", "--message", help="commit message")
    parser.add_argument(
        "-c", "--change", action="append", help="a Dockerfile instruction to apply (repeatable)"
    )
    parser.add_argument(
        "-p",
        "--pause",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="pause the container while committing (default)",
    )


def cmd_export(args: argparse.Namespace) -> int:
    return save_tar(args, container_path(args.container, "/export"))


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("container", metavar="CONTAINER")
    parser.add_argument("-o", "--output", help="write to this file instead of stdout")


# (top-level command, `container` subcommand and its aliases, help, arguments, handler)
FILESYSTEM_COMMANDS: list[CommandSpec] = [
    (
        "cp",
        ("cp",),
        "copy files between a container and the local filesystem",
        _cp_arguments,
        cmd_cp,
    ),
    ("diff", ("diff",), "list the changes to a container's filesystem", _diff_arguments, cmd_diff),
    (
        "commit",
        ("commit",),
        "make an image from a container's changes",
        _commit_arguments,
        cmd_commit,
    ),
    (
        "export",
        ("export",),
        "write a container's filesystem as a tar",
        _export_arguments,
        cmd_export,
    ),
]
