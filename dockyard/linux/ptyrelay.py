"""Relaying a container's terminal: the container's own pty and the supervisor's, joined.

A container run with a terminal gets a pty of its own devpts instance (so its terminal is
``/dev/pts/0`` inside, as under runc and dockerd); the supervisor holds another pty, whose
slave end the launcher gets as the container's stdio. A relay process, forked by the launcher,
copies bytes between the two masters' worlds: it makes the supervisor's pty slave its
controlling terminal in raw mode, so a resize of the supervisor's pty reaches it as
``SIGWINCH`` and is copied on to the container's. Both runtimes use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import signal
import termios
import tty
from typing import NoReturn

_RELAY_CHUNK = 65536


def start_relay(outer: int, inner: int) -> int:
    """Fork the process copying between the supervisor's pty slave and the container's pty."""
    # Before the container runs: its first output must already fit the right width.
    copy_window_size(outer, inner)
    pid = os.fork()
    if pid == 0:
        try:
            _relay(outer, inner)
        finally:
            os._exit(0)
    os.close(inner)
    return pid


def copy_window_size(source: int, target: int) -> None:
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(source, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(target, termios.TIOCSWINSZ, size)


def _relay(outer: int, inner: int) -> NoReturn:
    """Copy both ways until the container's side hangs up (or the supervisor's does)."""
    # Only the two ends stay open: the supervisor's other fds (its master, the daemon's report
    # pipe) must not be held by us.
    outer_copy = fcntl.fcntl(outer, fcntl.F_DUPFD, 10)
    inner_copy = fcntl.fcntl(inner, fcntl.F_DUPFD, 10)
    os.dup2(outer_copy, 0)
    os.dup2(inner_copy, 1)
    os.closerange(2, os.sysconf("SC_OPEN_MAX"))
    signal.set_wakeup_fd(-1)
    for number in (signal.SIGCHLD, signal.SIGPIPE, signal.SIGTERM, signal.SIGINT):
        signal.signal(number, signal.SIG_DFL)
    os.setsid()
    try:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    except PermissionError:
        fcntl.ioctl(0, termios.TIOCSCTTY, 1)  # still another session's: take it (we are root)
    # All terminal processing (echo, line editing, ^C) is the container's pty's to do.
    tty.setraw(0, termios.TCSANOW)
    signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(0, 1))
    copy_window_size(0, 1)
    _pump({0: 1, 1: 0})
    os._exit(0)


def _pump(routes: dict[int, int]) -> None:
    """Copy each fd's input to its route's fd (non-blocking, buffered) until one side ends.

    The container's side (fd 1) ending is the normal end: what it wrote last is delivered
    before we return. The supervisor's side (fd 0) ending means nobody is listening.
    """
    for fd in routes:
        os.set_blocking(fd, False)
    pending = {fd: b"" for fd in routes}  # what waits to be written to fd
    selector = selectors.DefaultSelector()
    for fd in routes:
        selector.register(fd, selectors.EVENT_READ)
    container_done = False
    while not container_done or pending[0]:
        for key, events in selector.select():
            fd = key.fd
            if events & selectors.EVENT_WRITE and pending[fd]:
                try:
                    written = os.write(fd, pending[fd])
                except BlockingIOError:
                    written = 0
                except OSError:
                    if fd == 0:
                        return  # the supervisor's side is gone
                    written = len(pending[fd])  # the container's side is gone: drop its input
                pending[fd] = pending[fd][written:]
            if events & selectors.EVENT_READ:
                try:
                    data = os.read(fd, _RELAY_CHUNK)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""  # EIO: the last holder of the other end closed it
                if data:
                    pending[routes[fd]] += data
                elif fd == 0:
                    return
                else:
                    container_done = True
                    pending[1] = b""
        for fd in routes:
            wanted = 0 if (fd == 1 and container_done) else selectors.EVENT_READ
            if pending[fd]:
                wanted |= selectors.EVENT_WRITE
            registered = fd in selector.get_map()
            if wanted and registered:
                selector.modify(fd, wanted)
            elif wanted:
                selector.register(fd, wanted)
            elif registered:
                selector.unregister(fd)
