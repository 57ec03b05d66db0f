"""Progress messages of the Engine API's JSON-message stream, as dockerd 20.10 writes them.

A message with progress carries ``progressDetail`` ``{current, total}`` and ``progress``, the
bar dockerd renders for clients that print it as it is: 50 cells (``=`` filled, ``>`` the
head), then the sizes in decimal units with four significant digits (``  98.3kB/7.072MB``).
Status-only messages about a layer carry an empty ``progressDetail``.
"""

from __future__ import annotations

import time
from typing import Any

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
BAR_CELLS = 50

#: At most one progress message per layer in this many seconds (dockerd's rate, about).
PROGRESS_INTERVAL = 0.1


def human_size(size: float) -> str:
    """``7.072MB``: decimal units, four significant digits, as docker's ``units.HumanSize``."""
    unit = 0
    while size >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.4g}{_UNITS[unit]}"


def progress_bar(current: int, total: int) -> str:
    """The ``progress`` text for ``current`` of ``total`` bytes."""
    if total <= 0:
        return f"{human_size(current):>8}" if current > 0 else ""
    filled = min(int(current / total * 100) // 2, BAR_CELLS)
    bar = f"[{'=' * filled}>{' ' * (BAR_CELLS - filled)}] "
    if current > total:  # as docker: a count past the total shows no total
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


def status(text: str, layer: str | None = None) -> dict[str, Any]:
    """A status line; about a layer (``id``), it has an empty ``progressDetail``."""
    if layer is None:
        return {"status": text}
    return {"status": text, "progressDetail": {}, "id": layer}


def progress(text: str, layer: str, current: int, total: int) -> dict[str, Any]:
    return {
        "status": text,
        "progressDetail": {"current": current, "total": total},
        "progress": progress_bar(current, total),
        "id": layer,
    }


def error(message: str) -> dict[str, Any]:
    """An error after the stream started: ``errorDetail`` for the CLI, ``error`` for
    docker-py."""
    return {"errorDetail": {"message": message}, "error": message}


class Throttle:
    """Whether a progress update is due: the first one, then one per interval."""

    def __init__(self, interval: float = PROGRESS_INTERVAL) -> None:
        self.interval = interval
        self._last = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        return False
