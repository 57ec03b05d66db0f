"""Progress of a pull or push as the Engine API's JSON-message stream carries it.

dockerd renders each message's ``progress`` text itself (jsonmessage's ``JSONProgress``, at
its default width of 200 columns): a 50-cell bar, then the sizes in decimal units with four
significant digits, right-aligned in eight columns. When the count passes the total (a push
counts tar bytes against the layer's content size) only the count is shown.
"""

from __future__ import annotations

from typing import Any

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_CELLS = 50


def human_size(size: float) -> str:
    """go-units ``HumanSize``: decimal units, four significant digits (``33.28kB``, ``3MB``)."""
    unit = 0
    while size >= 1000 and unit < len(_UNITS) - 1:
        size /= 1000
        unit += 1
    return f"{size:.4g}{_UNITS[unit]}"


def progress_text(current: int, total: int) -> str:
    """The ``progress`` field: ``[=====>        ]  33.28kB/3MB``."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    filled = min(int(current / total * 100) // 2, _CELLS)
    bar = "[" + "=" * filled + ">" + " " * (_CELLS - filled) + "] "
    if current > total:
        return bar + f"{human_size(current):>8}"
    return bar + f"{human_size(current):>8}/{human_size(total)}"


def status(text: str, layer: str = "", detail: bool = True) -> dict[str, Any]:
    """A status message; per-layer ones carry ``id`` and an empty ``progressDetail``."""
    message: dict[str, Any] = {"status": text}
    if detail:
        message["progressDetail"] = {}
    if layer:
        message["id"] = layer
    return message


def progress(text: str, layer: str, current: int, total: int) -> dict[str, Any]:
    """A message with a count: the CLI draws it as a bar on a TTY."""
    return {
        "status": text,
        "progressDetail": {"current": current, "total": total},
        "progress": progress_text(current, total),
        "id": layer,
    }


def error(message: str) -> dict[str, Any]:
    """A failure after the stream began: ``errorDetail`` for the CLI, ``error`` for
    docker-py, as dockerd sends both."""
    return {"errorDetail": {"message": message}, "error": message}
