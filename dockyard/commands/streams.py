"""This process's terminal wired to a container's hijacked stream (``run``, ``start -a``,
``attach``, ``exec``): raw mode, forwarded signals, TTY resizing and detach keys."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import Any

from dockyard.commands.common import UsageError

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"
#: Signals ``run``/``attach`` forward to the container (docker forwards all it can catch;
#: SIGCHLD and SIGPIPE are the CLI's own business).
PROXIED_SIGNALS = (
    "SIGHUP",
    "SIGINT",
    "SIGQUIT",
    "SIGTERM",
    "SIGUSR1",
    "SIGUSR2",
    "SIGALRM",
    "SIGWINCH",
)


def parse_detach_keys(text: str) -> bytes:
    """docker's ``term.ToBytes``: ``ctrl-p,ctrl-q`` → ``b"\\x10\\x11"``; single characters
    stand for themselves; ``ctrl-@``, ``ctrl-[``… as in ASCII."""
    keys = bytearray()
    for key in text.split(","):
        key = key.strip()
        if len(key) == 1:
            keys.append(ord(key))
        elif key.lower().startswith("ctrl-") and len(key) == 6:
            char = key[5].lower()
            if "a" <= char <= "z":
                keys.append(ord(char) - ord("a") + 1)
            elif char in "@[\\]^_":
                keys.append(ord(char) - ord("@"))
            else:
                raise UsageError(f"invalid detach keys: unknown character {key!r}")
        else:
            raise UsageError(f"invalid detach keys: unknown character {key!r}")
    if not keys:
        raise UsageError("invalid detach keys: empty")
    return bytes(keys)


def terminal_size() -> tuple[int, int]:
    """(rows, columns) of our terminal, (0, 0) without one."""
    for stream in (sys.stdout, sys.stdin):
        try:
            size = os.get_terminal_size(stream.fileno())
        except (OSError, ValueError, AttributeError):
            continue
        return size.lines, size.columns
    return 0, 0


def stdin_fileno() -> int | None:
    try:
        return sys.stdin.fileno()
    except (AttributeError, ValueError, OSError):
        return None


class RawTerminal:
    """Put a terminal in raw mode (keys go to the container as typed, ctrl-c included) and
    restore it on the way out, whatever the way out is.

    A signal that would kill us outright (SIGTERM or SIGHUP while signals are not proxied)
    becomes a ``SystemExit`` here, so the terminal is restored before we go.
    """

    FATAL_SIGNALS = ("SIGTERM", "SIGHUP")

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self._saved: list[Any] | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> RawTerminal:
        if self.fd is not None:
            import signal
            import termios
            import tty

            self._saved = termios.tcgetattr(self.fd)
            for name in self.FATAL_SIGNALS:
                number = getattr(signal, name)
                if signal.getsignal(number) is signal.SIG_DFL:
                    self._previous[number] = signal.signal(number, self._exit)
            tty.setraw(self.fd, termios.TCSANOW)
        return self

    @staticmethod
    def _exit(number: int, frame: Any) -> None:
        raise SystemExit(128 + number)

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None and self.fd is not None:
            import signal
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            for number, handler in self._previous.items():
                signal.signal(number, handler)


class SignalProxy:
    """Signals this process gets, forwarded to the container as ``kill?signal=NAME`` (docker's
    ``--sig-proxy``); SIGWINCH also resizes a TTY. Requests go out from a worker thread: the
    handlers only queue, so they never block or re-enter the main thread's I/O."""

    def __init__(
        self, proxy: bool, on_signal: Callable[[str], None], on_winch: Callable[[], None] | None
    ) -> None:
        import queue

        self.proxy = proxy
        self._on_signal = on_signal
        self._on_winch = on_winch
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalProxy:
        import signal
        import threading

        names = list(PROXIED_SIGNALS) if self.proxy else []
        if self._on_winch is not None and "SIGWINCH" not in names:
            names.append("SIGWINCH")
        if not names:
            return self
        threading.Thread(target=self._work, daemon=True).start()
        for name in names:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        import signal

        self._queue.put(signal.Signals(number).name)

    def _work(self) -> None:
        while (name := self._queue.get()) is not None:
            try:
                if name == "SIGWINCH" and self._on_winch is not None:
                    self._on_winch()
                if self.proxy:
                    self._on_signal(name.removeprefix("SIG"))
            except Exception:  # a container that is gone: nothing left to forward to
                pass

    def __exit__(self, *exc: object) -> None:
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._queue.put(None)


class AttachSession:
    """One hijacked stream (attach or exec start) wired to this process's stdio.

    Output is copied in the calling thread: stdcopy frames to stdout/stderr, or raw bytes for
    a TTY. Stdin is copied by a thread and half-closed at its end; without stdin the write side
    is half-closed at once (the daemon then knows no input is coming). With a TTY the detach
    keys (ctrl-p ctrl-q by default) close the stream and leave the container running.
    """

    def __init__(
        self, stream: Any, tty: bool, stdin_fd: int | None, detach_keys: bytes | None
    ) -> None:
        self.stream = stream
        self.tty = tty
        self.stdin_fd = stdin_fd
        self.detach_keys = detach_keys if tty else None
        self.detached = False

    def start_input(self) -> None:
        import threading

        if self.stdin_fd is None:
            self.stream.close_write()
            return
        threading.Thread(target=self._copy_input, daemon=True).start()

    def _copy_input(self) -> None:
        assert self.stdin_fd is not None
        keys = self.detach_keys or b""
        held = b""  # a detach sequence begun but not finished
        try:
            while True:
                try:
                    data = os.read(self.stdin_fd, 65536)
                except InterruptedError:
                    continue
                if not data:
                    break
                if keys:
                    data, held = self._scan_detach(held + data, keys)
                    if self.detached:
                        self.stream.close()
                        return
                if data:
                    self.stream.send(data)
            if held:
                self.stream.send(held)
        except OSError:
            pass  # the stream is gone (the container exited): nothing to deliver to
        self.stream.close_write()

    def _scan_detach(self, data: bytes, keys: bytes) -> tuple[bytes, bytes]:
        """Split ``data`` into what to send now and a held partial detach sequence."""
        out = bytearray()
        index = 0
        while index < len(data):
            if data[index] == keys[0]:
                candidate = data[index : index + len(keys)]
                if candidate == keys:
                    self.detached = True
                    return bytes(out), b""
                if keys.startswith(candidate):  # could still become the sequence
                    return bytes(out), candidate
            out.append(data[index])
            index += 1
        return bytes(out), b""

    def copy_output(self) -> None:
        from dockyard.client import copy_raw, demultiplex

        stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
        sys.stdout.flush()
        if self.tty:
            copy_raw(self.stream.read1, stdout)
        else:
            demultiplex(self.stream.read, stdout, stderr)

    def close(self) -> None:
        self.stream.close()


def resize_tty(client: Any, path: str, retry: bool = True) -> None:
    """``POST .../resize`` with our terminal's size; docker retries a failed first one (the
    process may not have its pty yet) with 10, 20, … ms pauses, then gives up with a note."""
    from dockyard.client import APIError, DaemonUnreachable

    rows, columns = terminal_size()
    if not rows or not columns:
        return
    for attempt in range(10 if retry else 1):
        try:
            client.call_json("POST", path, {"h": rows, "w": columns})
            return
        except (APIError, DaemonUnreachable):
            time.sleep(0.01 * (attempt + 1))
    if retry:
        print("failed to resize tty, using default size", file=sys.stderr)
