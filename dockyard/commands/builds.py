"""``build`` (and ``image build``): send a context to the daemon's classic builder and show
what it says, as the docker CLI does with ``DOCKER_BUILDKIT=0`` (engine-api-2.md §2).

The request (§2.2): ``POST /build`` with the context tar as a chunked body
(:mod:`~dockyard.commands.buildcontext` makes it as it is sent), only the parameters that
differ from the daemon's defaults in the query, as docker's ``t``, ``dockerfile``,
``buildargs``, ``target``, ``nocache``, ``q``, ``labels``, ``rm=0``, ``forcerm``,
``cachefrom``, ``networkmode``, ``extrahosts``, ``shmsize`` and ``version=1``, and
``X-Registry-Config``: every stored login (``e30=`` without any) for the images the
Dockerfile's ``FROM`` lines pull.

The answer (§2.3, §2.4): the JSON-message stream's text is printed as it comes; an
``errorDetail`` is printed on stderr and its ``code`` is the exit status (1 when it has none).
With ``-q`` only the image ID is printed (on a failure, what the daemon said, on stderr).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from typing import Any, TextIO

from dockyard.commands.common import UsageError, make_client, parse_labels

CONTEXT_PROGRESS = "Sending build context to Docker daemon"
#: The terminal's context counter is redrawn at most this often (seconds).
PROGRESS_INTERVAL = 0.1


def _flag_error(value: str, flag: str, reason: str) -> UsageError:
    return UsageError(f'invalid argument "{value}" for "{flag}" flag: {reason}')


def build_args(values: list[str] | None) -> dict[str, str | None]:
    """``--build-arg K=V`` as a map; ``K`` alone takes the value of ``$K`` when it is set,
    and is sent as ``null`` otherwise (the daemon then uses the Dockerfile's default)."""
    args: dict[str, str | None] = {}
    for value in values or ():
        key, sep, text = value.partition("=")
        if not key:
            raise _flag_error(value, "--build-arg", f"invalid environment variable: {value}")
        if sep:
            args[key] = text
        else:
            args[key] = os.environ.get(key)
    return args


def _tags(values: list[str] | None) -> list[str]:
    """``-t`` names are checked as docker checks them, and sent as given."""
    from dockyard.commands.distribution import parse_reference

    for value in values or ():
        try:
            parse_reference(value)
        except UsageError as exc:
            raise _flag_error(value, "-t, --tag", str(exc)) from None
    return list(values or ())


def _compact_json(value: Any) -> str:
    """JSON as Go writes it into a query value: no spaces."""
    return json.dumps(value, separators=(",", ":"))


def build_query(args: argparse.Namespace, dockerfile: str) -> dict[str, Any]:
    """The query string of ``POST /build``: only what differs from the daemon's defaults."""
    from dockyard.commands.networks import extra_host
    from dockyard.core.units import ram_in_bytes

    shm_size = None
    if args.shm_size is not None:
        try:
            shm_size = ram_in_bytes(args.shm_size)
        except ValueError as exc:
            raise _flag_error(args.shm_size, "--shm-size", str(exc)) from None
    arguments = build_args(args.build_arg)
    labels = parse_labels(args.label)
    return {
        "t": _tags(args.tag) or None,
        "dockerfile": dockerfile,
        "buildargs": _compact_json(arguments) if arguments else None,
        "target": args.target or None,
        "nocache": 1 if args.no_cache else None,
        "q": 1 if args.quiet else None,
        "labels": _compact_json(labels) if labels else None,
        "rm": None if args.rm else 0,
        "forcerm": 1 if args.force_rm else None,
        "cachefrom": _compact_json(args.cache_from) if args.cache_from else None,
        "networkmode": args.network or None,
        "extrahosts": [extra_host(value) for value in args.add_host or ()] or None,
        "shmsize": shm_size,
        "version": 1,  # the classic builder, as the docker CLI asks for it
    }


def registry_config() -> str:
    """``X-Registry-Config``: base64url of ``{server: AuthConfig}`` for every stored login,
    so the daemon can pull any ``FROM`` image; ``e30=`` when there is none."""
    import base64

    from dockyard.commands.credentials import CredentialsError, LoginStore

    try:
        logins = LoginStore().all_logins()
    except CredentialsError as exc:
        raise UsageError(str(exc)) from None
    configs = {login.server: login.auth_config() for login in logins}
    return base64.urlsafe_b64encode(json.dumps(configs).encode()).decode()


class ContextProgress:
    """The context counter the docker CLI prints while it uploads: redrawn in place on a
    terminal, and once, when the upload is over, anywhere else."""

    def __init__(self, body: Any, out: TextIO, terminal: bool) -> None:
        self.body, self.out, self.terminal = body, out, terminal
        self.sent = 0
        self._drawn_at = 0.0

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.body.read(size)
        self.sent += len(data)
        now = time.monotonic()
        if self.terminal and data and now - self._drawn_at >= PROGRESS_INTERVAL:
            self._drawn_at = now
            self.out.write(f"{self._line()}\r")
            self.out.flush()
        return data

    def _line(self) -> str:
        from dockyard.commands.jsonmessages import progress_text

        # A count with no total: its size right-aligned in 8 columns, as docker draws it.
        return f"{CONTEXT_PROGRESS} {progress_text({'current': self.sent}, 0)}"

    def finish(self) -> None:
        self.out.write(f"{self._line()}\r\r\n")
        self.out.flush()


def _prepare(args: argparse.Namespace) -> Any:
    from dockyard.commands.buildcontext import directory_context, stdin_context

    if args.path == "-":
        return stdin_context(sys.stdin.buffer, args.file)
    if "://" in args.path or args.path.startswith("git@"):
        raise UsageError(
            f"unable to prepare context: {args.path} is a remote context, which is not "
            "supported: give a local directory or - (a tar or Dockerfile on stdin)"
        )
    stdin = sys.stdin.buffer
    return directory_context(args.path, args.file, stdin)


def cmd_build(args: argparse.Namespace) -> int:
    from dockyard.client import StreamError
    from dockyard.commands.jsonmessages import display_json_messages, is_terminal

    prepared = _prepare(args)
    query = build_query(args, prepared.dockerfile)
    headers = {"X-Registry-Config": registry_config()}
    # -q keeps the counter and the stream, to show them only on a failure (as the docker CLI).
    progress_out: Any = io.StringIO() if args.quiet else sys.stdout
    stream_out: Any = io.StringIO() if args.quiet else sys.stdout
    terminal = not args.quiet and is_terminal(sys.stdout)
    upload = ContextProgress(prepared.body, progress_out, terminal)
    try:
        response = make_client(args).request(
            "POST", "/build", query, data=upload, headers=headers, streaming=True
        )
    finally:
        if upload.sent:  # the daemon read the context, even if it then refused the build
            upload.finish()
    try:
        display_json_messages(response, stream_out, terminal=terminal)
    except StreamError as exc:
        if args.quiet:
            sys.stderr.write(progress_out.getvalue() + stream_out.getvalue())
        print(str(exc), file=sys.stderr)
        return exc.code or 1
    if args.quiet:
        # With q=1 the daemon's one message is the image ID.
        sys.stdout.write(stream_out.getvalue())
    return 0


def _build_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH|-", help="the context: a directory, or - (stdin)")
    parser.add_argument(
        "-t", "--tag", action="append", help="name[:tag] for the image (repeatable)"
    )
    parser.add_argument("-f", "--file", help="the Dockerfile (default: PATH/Dockerfile)")
    parser.add_argument("--build-arg", action="append", help="KEY=VALUE for an ARG (repeatable)")
    parser.add_argument("--target", help="build only up to this stage")
    parser.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print only the image ID on success"
    )
    parser.add_argument("--label", action="append", help="KEY=VALUE for the image (repeatable)")
    parser.add_argument(
        "--rm",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="remove intermediate containers after a successful build (default true)",
    )
    parser.add_argument(
        "--force-rm", action="store_true", help="always remove intermediate containers"
    )
    parser.add_argument("--cache-from", action="append", help="images to consider as cache sources")
    parser.add_argument("--network", help="the network of RUN steps (default: the default)")
    parser.add_argument("--add-host", action="append", help="a host-to-IP mapping (host:ip)")
    parser.add_argument("--shm-size", help="size of /dev/shm for RUN steps (bytes, or 64m)")


#: (top-level command, ``image`` subcommand, help, arguments, handler)
BUILD_COMMANDS = [
    ("build", ("build",), "build an image from a Dockerfile", _build_arguments, cmd_build),
]
