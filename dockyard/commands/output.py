"""Output as the docker CLI writes it: tables, sizes, times and JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from dockyard.core.units import human_duration

#: docker's tables use text/tabwriter with a minimum cell width of 10 (padding included).
DOCKER_MIN_WIDTH = 10


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
    from datetime import datetime  # here, not at start-up: only tables with times need it

    return datetime.fromtimestamp(unix_seconds).astimezone().strftime("%Y-%m-%d %H:%M:%S %z %Z")


def rfc3339(unix_seconds: float) -> str:
    """Go's ``time.RFC3339`` in local time: ``2026-11-29T07:05:25Z``."""
    from datetime import datetime

    moment = datetime.fromtimestamp(unix_seconds).astimezone()
    offset = moment.strftime("%z")
    zone = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + zone


def go_time_text(rfc3339_text: str) -> str:
    """An RFC 3339 time from the daemon (``2026-11-29T07:05:25.5Z``) as Go's
    ``time.Time.String()`` prints it after parsing: in the zone it was written in,
    the fraction without trailing zeros (``2026-11-29 07:05:25.5 +0000 UTC``)."""
    match = re.fullmatch(
        r"(\d{4}-\d\d-\d\d)[Tt](\d\d:\d\d:\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)", rfc3339_text
    )
    if match is None:
        return rfc3339_text  # not a time docker could parse either: shown as it came
    day, clock, fraction, zone = match.groups()
    fraction = (fraction or "")[:10].rstrip("0").rstrip(".")
    if zone in ("Z", "z"):
        offset = "+0000 UTC"
    else:
        compact = zone.replace(":", "")
        offset = f"{compact} {compact}"
    return f"{day} {clock}{fraction} {offset}"


def go_json(value: Any, indent: int | None = None) -> str:
    """JSON as Go's encoding/json writes it, so scripts see docker's exact bytes: compact (or
    indented), UTF-8, and ``<``, ``>``, ``&``, U+2028 and U+2029 escaped."""
    separators = (",", ":") if indent is None else (",", ": ")
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def json_line(row: dict[str, str]) -> str:
    """One ``--format json`` line; keys sorted, as Go marshals docker's row contexts."""
    return go_json(dict(sorted(row.items())))


def print_rows(
    rows: Sequence[dict[str, Any]],
    quiet: bool,
    output_format: str | None,
    headers: Sequence[str],
    columns: Sequence[str],
) -> None:
    """A listing as ``images``, ``history`` and ``ps`` print it: the IDs alone (``-q``), a JSON
    object a line (``--format json``), or docker's table of ``columns`` under ``headers``."""
    if quiet:
        for row in rows:
            print(row["ID"])
    elif output_format == "json":
        for row in rows:
            print(json_line(row))
    else:
        print_table(headers, [[row[c] for c in columns] for row in rows], DOCKER_MIN_WIDTH)


def print_prune_report(heading: str, deleted: Sequence[str], space_reclaimed: int | None) -> None:
    """What the ``prune`` commands print: what went, under ``heading`` (nothing if nothing
    went), then the space (not for networks, which take none: ``None``); docker uses go-units
    HumanSize here: four significant digits."""
    if deleted:
        print(heading)
        for line in deleted:
            print(line)
        print()
    if space_reclaimed is not None:
        print(f"Total reclaimed space: {human_size_decimal(space_reclaimed, 4)}")
