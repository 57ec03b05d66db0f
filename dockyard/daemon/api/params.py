"""Query-parameter parsing the way moby does it (booleans, JSON filters, timestamps)."""

from __future__ import annotations

import json
from datetime import datetime

from dockyard.core.errors import InvalidParameter

_FALSE = {"", "0", "no", "false", "none"}


def parse_bool(value: str | None, default: bool = False) -> bool:
    """moby's ``BoolValue``: absent gives ``default``; "", 0, no, false, none are false."""
    if value is None:
        return default
    return value.strip().lower() not in _FALSE


def parse_filters(value: str | None) -> dict[str, list[str]]:
    """``filters`` as JSON, in the CLI's map form or docker-py's list form."""
    if not value:
        return {}
    try:
        raw = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(f"invalid filters: {exc}") from None
    if not isinstance(raw, dict):
        raise InvalidParameter("invalid filters: expected a JSON object")
    filters: dict[str, list[str]] = {}
    for key, wanted in raw.items():
        if isinstance(wanted, dict):
            filters[key] = [k for k, enabled in wanted.items() if enabled]
        elif isinstance(wanted, list) and all(isinstance(w, str) for w in wanted):
            filters[key] = list(wanted)
        elif isinstance(wanted, str):
            filters[key] = [wanted]
        else:
            raise InvalidParameter(f"invalid filter {key!r}: expected a map or a list of strings")
    return filters


def parse_timestamp(value: str | None) -> int | None:
    """A ``since``/``until`` value (unix seconds, fractional allowed, or RFC 3339) in ns."""
    if not value:
        return None
    try:
        seconds, _, fraction = value.partition(".")
        nanos = int(fraction.ljust(9, "0")[:9]) if fraction else 0
        return int(seconds) * 1_000_000_000 + nanos
    except ValueError:
        pass
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        raise InvalidParameter(f"invalid timestamp {value!r}") from None
