"""Human-readable durations and sizes as docker writes them, shared by the client and the daemon.

Standard library only: the CLI imports it (its start-up time is a feature).
"""

from __future__ import annotations

import math
import re


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


#: docker's ``units.RAMInBytes``: binary multiples, an optional "i" and "b".
_RAM_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?(.*)$")
_RAM_SUFFIXES = {
    f"{prefix}{middle}{end}": power
    for power, prefix in enumerate(("", "k", "m", "g", "t", "p"))
    for middle in ("", "i")
    for end in ("", "b")
    if prefix or not middle
}


def ram_in_bytes(text: str) -> int:
    """``512m``, ``1g``, ``1.5GiB``, ``1024`` in bytes, as docker reads ``--memory`` and the
    json-file log's ``max-size`` (go-units ``RAMInBytes``: binary multiples)."""
    match = _RAM_SIZE.match(text.strip())
    if not match:
        raise ValueError(f"invalid size: '{text}'")
    suffix = match.group(2)
    if suffix.lower() not in _RAM_SUFFIXES:
        raise ValueError(f"invalid suffix: '{suffix}'")
    return int(float(match.group(1)) * 1024 ** _RAM_SUFFIXES[suffix.lower()])


_GO_DURATION_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_GO_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")


def parse_go_duration(text: str) -> int:
    """Go's ``time.ParseDuration`` in nanoseconds: ``1h30m``, ``1.5s``, ``-2ms``, ``0``.

    Errors are Go's words (``time: invalid duration "abc"``), raised as ValueError."""
    quoted = '"' + text + '"'
    body = text[1:] if text[:1] in "+-" else text
    sign = -1 if text[:1] == "-" else 1
    if body == "0":
        return 0
    if not body:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    position = 0
    while position < len(body):
        match = _GO_DURATION_PART.match(body, position)
        assert match is not None  # the pattern matches the empty string
        number, unit = match.groups()
        if number in ("", "."):
            raise ValueError(f"time: invalid duration {quoted}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _GO_DURATION_UNITS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(number) * _GO_DURATION_UNITS[unit]
        position = match.end()
    if total > 2**63 - 1:
        raise ValueError(f"time: invalid duration {quoted}")
    return sign * round(total)
