"""Stand-in daemons for client tests: a threaded HTTP server on a Unix socket, and a block
that runs one until it ends."""

from __future__ import annotations

import contextlib
import socketserver
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

Server = TypeVar("Server", bound=socketserver.BaseServer)


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A connection per thread; the handler sees a ``(host, port)`` client address, which
    ``BaseHTTPRequestHandler`` expects and a Unix socket does not give."""

    daemon_threads = True

    def get_request(self) -> tuple[Any, Any]:
        connection, _ = super().get_request()
        return connection, ("stub", 0)


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Server]:
    """``server`` answering in a thread until the block ends, then closed."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
