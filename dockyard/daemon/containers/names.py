"""Container names, each held by one container at most, taken atomically.

A create checks its name, then spends a while in a worker thread (the root filesystem, the
volumes) before the container exists: two creates with one name must not both pass the check.
So a name is reserved here, under a lock, before any slow work, and given back if the create
fails; renames and random names go through the same reservations (as dockerd's name index).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable

import structlog

from dockyard.core.errors import Conflict
from dockyard.daemon.containers.options import random_name

_log = structlog.get_logger("dockyard.containers")

#: Random names tried before one gets a random suffix.
RANDOM_NAME_ATTEMPTS = 100


class NameRegistry:
    """Which container holds which name. Thread-safe: creates run in worker threads."""

    def __init__(self, generate: Callable[[], str] = random_name) -> None:
        self._holders: dict[str, str] = {}  # name -> container id
        self._lock = threading.Lock()
        self._generate = generate

    def reserve(self, name: str, container_id: str) -> str:
        """Give ``name`` to ``container_id``, or raise docker's 409 if another holds it."""
        with self._lock:
            holder = self._holders.setdefault(name, container_id)
        if holder != container_id:
            raise Conflict(
                f'Conflict. The container name "/{name}" is already in use by container '
                f'"{holder}". You have to remove (or rename) that container to be able to '
                "reuse that name."
            )
        return name

    def reserve_random(self, container_id: str) -> str:
        """Give ``container_id`` a generated name no one holds; returns it."""
        with self._lock:
            for _ in range(RANDOM_NAME_ATTEMPTS):
                name = self._generate()
                if name not in self._holders:
                    break
            else:
                name = f"{self._generate()}_{secrets.token_hex(3)}"
            self._holders[name] = container_id
            return name

    def adopt(self, name: str, container_id: str) -> str:
        """Register a stored container's name; a duplicate (left by a version that let racing
        creates through) gets a random name rather than failing the daemon's start."""
        try:
            return self.reserve(name, container_id)
        except Conflict:
            renamed = self.reserve_random(container_id)
            _log.warning(
                "a stored container's name is taken; it gets another",
                container=container_id,
                name=name,
                new_name=renamed,
            )
            return renamed

    def release(self, name: str, container_id: str) -> None:
        """Free ``name`` if ``container_id`` holds it (a no-op otherwise)."""
        with self._lock:
            if self._holders.get(name) == container_id:
                del self._holders[name]
