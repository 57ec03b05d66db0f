"""``inspect``: the generic command (containers, images, volumes, networks in docker's order),
the one ``container``, ``volume`` and ``network inspect`` share, and the layout of what it
prints."""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from dockyard.commands.common import (
    UsageError,
    container_path,
    image_path,
    make_client,
    network_path,
    print_errors,
    volume_path,
)
from dockyard.commands.output import go_json

#: What the generic ``inspect`` looks for a name as, in docker's order.
INSPECT_KINDS = ("container", "image", "volume", "network")


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
    """``inspect`` tries each kind in docker's order (container, image, volume, network) for a
    name; ``container``, ``volume`` and ``network inspect`` look at one kind. Documents are
    printed as the daemon wrote them (docker's generic, container and network inspect do), or
    through ``retype``."""
    from dockyard.client import APIError

    client = make_client(args)
    kinds = [args.type] if args.type else list(INSPECT_KINDS)
    paths = {
        "container": lambda name: container_path(name, "/json"),
        "image": lambda name: image_path(name, "/json"),
        "volume": volume_path,
        "network": network_path,
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
    return print_errors(errors)


def inspect_arguments(parser: argparse.ArgumentParser, kind: str | None = None) -> None:
    parser.add_argument("-f", "--format", help="'json' or a {{.Field}} template")
    if kind is None:
        parser.add_argument("--type", choices=INSPECT_KINDS)
    else:
        parser.set_defaults(type=kind)
    parser.add_argument("names", nargs="+", metavar="NAME")


def add_parsers(commands: Any, only: str | None = None) -> None:
    inspect = commands.add_parser(
        "inspect", help="show details of containers, images, volumes, networks"
    )
    inspect_arguments(inspect)
    inspect.set_defaults(func=cmd_inspect)
