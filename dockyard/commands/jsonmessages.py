"""The JSON-message stream (pull, push, import, load…) drawn as the docker CLI draws it.

One renderer for every command that reads such a stream (engine-api.md §1.7), following
the rules of docker's ``jsonmessage`` display:

* On a terminal, a message with an ``id`` and progress (a ``progressDetail``, even ``{}``,
  or a ``progress`` text) owns a line, one per id in order of first appearance; later
  messages for that id move the cursor up to its line, clear it, redraw it and move back
  down. The bar is drawn here from ``progressDetail`` (``current``/``total``), as docker
  does, not copied from the daemon's ``progress`` text; it is left out on terminals 110
  columns wide or less.
* Anywhere else, progress messages are not printed; the rest are plain lines.
* A message without progress ends the block of redrawn lines (a second tag of ``pull -a``
  starts its own).
* ``aux`` messages are not printed: they go to the caller's callback.
* ``errorDetail`` (or the older ``error`` alone) ends the display with
  :class:`~dockyard.client.StreamError`, its message for the user.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TextIO

from dockyard.commands.output import human_size_decimal

#: Below this many columns docker leaves the bar out and shows only the sizes.
BAR_MIN_COLUMNS = 111
#: The time left is shown from this width on (docker's rule, with a start time).
TIME_LEFT_MIN_COLUMNS = 51
#: Where no terminal says otherwise, docker assumes a wide one.
DEFAULT_COLUMNS = 200
BAR_CELLS = 50

ERASE_LINE = "\x1b[2K"


def cursor_up(lines: int) -> str:
    return f"\x1b[{lines}A" if lines else ""


def cursor_down(lines: int) -> str:
    return f"\x1b[{lines}B" if lines else ""


def go_duration(seconds: int) -> str:
    """Whole seconds as Go's ``time.Duration`` prints them: ``0s``, ``1m5s``, ``2h0m3s``."""
    hours, rest = divmod(max(seconds, 0), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def progress_text(detail: dict[str, Any], columns: int, now: float | None = None) -> str:
    """``progressDetail`` drawn as docker's ``JSONProgress.String``: a bar of 50 cells when
    the terminal is wide, then ``current/total`` in decimal units (only ``current`` when it
    has run past ``total``, as a push's count does), then the time left when a start is
    known. Empty when there is nothing to count yet."""
    current = int(detail.get("current") or 0)
    total = int(detail.get("total") or 0)
    units = str(detail.get("units") or "")
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size_decimal(current, 4):>8}" if not units else f"{current} {units}"
    filled = min(int(current / total * 100) // 2, BAR_CELLS)
    bar = ""
    if columns >= BAR_MIN_COLUMNS:
        bar = f"[{'=' * filled}>{' ' * (BAR_CELLS - filled)}] "
    if detail.get("hidecounts"):
        numbers = ""
    elif not units:
        shown = f"{human_size_decimal(current, 4):>8}"
        numbers = shown if current > total else f"{shown}/{human_size_decimal(total, 4)}"
    else:
        numbers = f"{current} {units}" if current > total else f"{current}/{total} {units}"
    time_left = ""
    start = int(detail.get("start") or 0)
    if current > 0 and start > 0 and filled < BAR_CELLS and columns >= TIME_LEFT_MIN_COLUMNS:
        elapsed = (time.time() if now is None else now) - start
        time_left = " " + go_duration(int(elapsed / current * (total - current)))
    return bar + numbers + time_left


def _timestamp(message: dict[str, Any]) -> str:
    """docker's RFC 3339 with nanoseconds, local time, before a message that carries one."""
    nanos = message.get("timeNano") or 0
    seconds = message.get("time") or 0
    if not (nanos or seconds):
        return ""
    import datetime  # only for the rare stream with times

    whole, fraction = divmod(int(nanos), 10**9) if nanos else (int(seconds), 0)
    moment = datetime.datetime.fromtimestamp(whole).astimezone()
    offset = moment.strftime("%z")
    zone = "Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}{zone} "


class JSONMessageRenderer:
    """Draws messages on ``out`` one at a time (:meth:`show`), keeping the line of each id."""

    def __init__(
        self,
        out: TextIO,
        terminal: bool | None = None,
        columns: int | None = None,
        on_aux: Callable[[Any], None] | None = None,
    ) -> None:
        self.out = out
        self.terminal = is_terminal(out) if terminal is None else terminal
        self.columns = columns
        self.on_aux = on_aux
        self.lines: dict[str, int] = {}  # id -> its line in the block being redrawn

    def _columns(self) -> int:
        """Asked per message, as docker asks: a resized terminal gets the bar back or not."""
        if self.columns is not None:
            return self.columns
        try:
            return os.get_terminal_size(self.out.fileno()).columns
        except (OSError, ValueError, AttributeError):
            return DEFAULT_COLUMNS

    def show(self, message: dict[str, Any]) -> None:
        from dockyard.client import StreamError

        detail = message.get("errorDetail")
        if detail or message.get("error"):
            text = (detail or {}).get("message") or message.get("error") or "unknown error"
            code = (detail or {}).get("code")
            raise StreamError(200, str(text), code if isinstance(code, int) else 0)
        if message.get("aux") is not None:
            if self.on_aux is not None:
                self.on_aux(message["aux"])
            return
        has_progress = isinstance(message.get("progressDetail"), dict)
        ident = str(message.get("id") or "")
        moved = 0
        if ident and (has_progress or message.get("progress")):
            if ident not in self.lines:
                self.lines[ident] = len(self.lines)
                if self.terminal:
                    self.out.write("\n")
            moved = len(self.lines) - self.lines[ident]
            if self.terminal:
                self.out.write(cursor_up(moved))
        else:
            self.lines = {}
        self.out.write(self._text(message, has_progress, ident))
        if ident and self.terminal:
            self.out.write(cursor_down(moved))
        self.out.flush()

    def _text(self, message: dict[str, Any], has_progress: bool, ident: str) -> str:
        status = str(message.get("status") or "")
        stream = str(message.get("stream") or "")
        drawn = progress_text(message["progressDetail"], self._columns()) if has_progress else ""
        end = ""
        text = ""
        if self.terminal and not stream and has_progress:
            text = ERASE_LINE + "\r"
            end = "\r"
        elif drawn:
            return ""  # no bars off a terminal
        text += _timestamp(message)
        if ident:
            text += f"{ident}: "
        if message.get("from"):
            text += f"(from {message['from']}) "
        if has_progress and self.terminal:
            return text + f"{status} {drawn}{end}"
        if message.get("progress"):
            return text + f"{status} {message['progress']}{end}"
        if stream:
            return text + stream + end
        return text + f"{status}{end}\n"


def is_terminal(out: TextIO) -> bool:
    """Whether ``out`` is a terminal (a closed or file-less stream is not)."""
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def display_json_messages(
    response: Any,
    out: TextIO,
    terminal: bool | None = None,
    on_aux: Callable[[Any], None] | None = None,
) -> list[dict[str, Any]]:
    """Read a JSON-message stream to its end, drawing it on ``out`` (a terminal or not: as
    ``out`` is, unless ``terminal`` says); returns the messages. An error in the stream raises
    :class:`~dockyard.client.StreamError` once what came before it is drawn."""
    from dockyard.client import iter_json_messages

    renderer = JSONMessageRenderer(out, terminal, on_aux=on_aux)
    messages = []
    for message in iter_json_messages(response):
        messages.append(message)
        renderer.show(message)
    return messages


class Discard:
    """Where ``-q`` sends a stream: nowhere (errors in it still count)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
