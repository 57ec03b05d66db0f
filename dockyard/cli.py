"""The ``dockyard`` command: a client of the daemon (plus the commands that start servers).

Client commands talk to the daemon over the Engine API and never run containers themselves.
The import path of a client command is kept to the standard library; ``daemon`` and the
``--local``/``config`` commands import the core only when they run.

This module is the table of contents: the global options, :func:`build_parser` and
:func:`main`. The commands live in :mod:`dockyard.commands`, a module per family:

- :mod:`~dockyard.commands.system`: ``version``, ``info``, ``plugins``
- :mod:`~dockyard.commands.images`: ``images``, ``tag``, ``rmi``, ``import``, ``save``,
  ``pull``, ``push`` (:mod:`~dockyard.commands.distribution`;
  :mod:`~dockyard.commands.jsonmessages` draws their progress),
  ``load``, ``history``, ``build`` (:mod:`~dockyard.commands.builds`; the context tar:
  :mod:`~dockyard.commands.buildcontext`) and the ``image`` group
- :mod:`~dockyard.commands.containers`: ``run``, ``create``, ``start``, ``ps``, ``logs``,
  ``exec``, ``attach``, ``port``… and the ``container`` group
  (:mod:`~dockyard.commands.filesystem`: ``cp``, ``diff``, ``commit``, ``export``)
  (:mod:`~dockyard.commands.streams`: the terminal wired to an attached container)
- :mod:`~dockyard.commands.inspection`: ``inspect``
- :mod:`~dockyard.commands.volumes`: the ``volume`` group
- :mod:`~dockyard.commands.networks`: the ``network`` group and ``run``'s networking flags
  (:mod:`~dockyard.commands.ports`: ``-p``/``--expose``, ``port`` and ``ps``' PORTS)
- :mod:`~dockyard.commands.logins`: ``login``, ``logout``
  (:mod:`~dockyard.commands.credentials`: the stored logins)
- :mod:`~dockyard.commands.servers`: ``daemon``, ``registry``, ``config default``
- :mod:`~dockyard.commands.output` and :mod:`~dockyard.commands.common`: what they share
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable, Collection, Sequence

import dockyard
from dockyard.commands import (
    containers,
    images,
    inspection,
    logins,
    networks,
    servers,
    system,
    volumes,
)
from dockyard.commands.common import DEFAULT_HOST, HOST_ENV, UsageError, print_usage
from dockyard.commands.containers import log_timestamp, nano_cpus
from dockyard.commands.images import write_atomically
from dockyard.commands.inspection import go_indent
from dockyard.commands.output import human_size_decimal
from dockyard.commands.servers import DAEMON_FLAGS
from dockyard.commands.streams import AttachSession, parse_detach_keys
from dockyard.core.units import human_duration, ram_in_bytes

# What other code (the tests, ``python -m dockyard``, the console script) imports from here.
__all__ = [
    "DAEMON_FLAGS",
    "DEFAULT_HOST",
    "AttachSession",
    "build_parser",
    "docker_boolean_flags",
    "go_indent",
    "human_duration",
    "human_size_decimal",
    "log_timestamp",
    "main",
    "nano_cpus",
    "parse_detach_keys",
    "ram_in_bytes",
    "write_atomically",
]


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


#: The command modules, in the order of ``dockyard --help``.
COMMAND_MODULES = (system, images, containers, inspection, volumes, networks, logins, servers)

#: Global options that take a value (the command word is not among their values).
_GLOBAL_OPTIONS_WITH_VALUES = ("-H", "--host", "--tlscacert", "--tlscert", "--tlskey")


def command_word(argv: Sequence[str]) -> str | None:
    """The command ``argv`` asks for: its first word that is not a global option or its value.

    ``None`` when there is none, or when help is asked for before it.
    """
    words = iter(argv)
    for word in words:
        if word in _GLOBAL_OPTIONS_WITH_VALUES:
            next(words, None)
        elif word in ("-h", "--help"):
            return None
        elif not word.startswith("-"):
            return word
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``command``, only as much of it as that command needs.

    Building all ~70 sub-parsers costs about 25 ms, a quarter of a quick command's run time:
    modules are asked for the parsers ``command`` needs, in order until one has defined it. An
    unknown command gets them all, so argparse lists every choice.
    """
    if command is not None:
        parser, defined = _parser(command)
        if command in defined:
            return parser
    return _parser(None)[0]


def _parser(only: str | None) -> tuple[argparse.ArgumentParser, Collection[str]]:
    """The parser with the commands ``only`` needs (all for ``None``), and the names defined."""
    parser = argparse.ArgumentParser(
        prog="dockyard",
        description="A container engine: a client for the dockyard daemon, and its servers.",
    )
    parser.add_argument(
        "-H", "--host", help=f"daemon socket to connect to (env {HOST_ENV}; default {DEFAULT_HOST})"
    )
    parser.add_argument("--tls", action="store_true", help="use TLS; implied by --tlsverify")
    parser.add_argument(
        "--tlsverify",
        action=argparse.BooleanOptionalAction,
        help="use TLS and verify the daemon (env DOCKYARD_TLS_VERIFY)",
    )
    where = "$DOCKYARD_CERT_PATH or the config directory"
    parser.add_argument("--tlscacert", help=f"trust only this CA (default: ca.pem in {where})")
    parser.add_argument("--tlscert", help=f"client certificate (default: cert.pem in {where})")
    parser.add_argument("--tlskey", help=f"its private key (default: key.pem in {where})")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # system: version, info, plugins; images: image …, images, tag, rmi, import, save, load,
    # history; containers: container …, run, create, start, stop, ps, logs, exec…; inspection:
    # inspect; volumes: volume …; networks: network …; logins: login, logout; servers: config
    # default, daemon, registry.
    for module in COMMAND_MODULES:
        module.add_parsers(commands, only)
        if only is not None and only in commands.choices:
            break
    return parser, commands.choices


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(command_word(words))
    args = parser.parse_args(docker_boolean_flags(parser, words))
    if args.version:
        print(f"dockyard version {dockyard.__version__}")
        return 0
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        return print_usage(parser)
    prog = f"dockyard {args.command}"
    # ^C ends a command (status 130) even when we were started with SIGINT ignored, as the
    # background job of a script is: docker's CLI takes the signal back the same way.
    signal.signal(signal.SIGINT, signal.default_int_handler)
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
