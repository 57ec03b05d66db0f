"""What the network tests that drive a daemon share: one daemon with networking per module
(holding the host-network lock; the module must leave the host's links, addresses and ruleset
as it found them), and fetching from a published port."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator

import pytest

from dockyard.testing.networks import host_left_as_found
from tests.conftest import daemon_in, serving, shut_down
from tests.containers.engine_api import Api


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    base = tmp_path_factory.mktemp("network-daemon")
    with host_left_as_found():
        daemon = serving(daemon_in(base, network=True))
        try:
            yield Api.with_busybox(daemon)
        finally:
            shut_down(daemon)


def fetch(url: str, timeout: float = 5) -> bytes:
    """``url``'s body, retried until ``timeout`` (a server just started may not listen yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as reply:
                return reply.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
