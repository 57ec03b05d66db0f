"""Times as the Engine API writes them: RFC 3339 in UTC with nanoseconds.

``2026-12-05T06:23:04.123456789Z`` is what dockerd puts in ``Created``, ``StartedAt``, log
entries and image configs. Standard library only: the container supervisor writes log entries
with it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

#: Go's zero time, which dockerd shows for a time that has not happened (``FinishedAt``).
ZERO_TIME = "0001-01-01T00:00:00Z"


def rfc3339_nano(ns: int) -> str:
    """``ns`` nanoseconds since the epoch, in RFC 3339 with all nine fraction digits."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:09d}Z"


def now_rfc3339() -> str:
    return rfc3339_nano(time.time_ns())


def parse_rfc3339_nano(text: str) -> int:
    """Nanoseconds since the epoch of a UTC time written by :func:`rfc3339_nano`."""
    head, _, rest = text.partition(".")
    fraction = rest.rstrip("Z")[:9].ljust(9, "0") if rest else "0" * 9
    base = datetime.strptime(head.rstrip("Z"), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(base.timestamp()) * 1_000_000_000 + int(fraction)
