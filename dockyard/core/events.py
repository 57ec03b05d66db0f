"""Engine events: what ``docker events`` shows and what the ``dockyard_event`` hook observes."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs


@attrs.frozen
class Event:
    """One state change, in Docker's event vocabulary."""

    type: str  # "container", "image", "volume", "daemon"
    action: str  # "create", "start", "die", "tag", "delete", ...
    actor_id: str
    attributes: Mapping[str, str] = attrs.field(factory=dict)
    time_nano: int = attrs.field(factory=time.time_ns)

    def to_engine_api(self) -> dict[str, Any]:
        """The ``GET /events`` message form (with the pre-1.22 fields the CLI still reads)."""
        message: dict[str, Any] = {
            "Type": self.type,
            "Action": self.action,
            "Actor": {"ID": self.actor_id, "Attributes": dict(self.attributes)},
            "scope": "local",
            "time": self.time_nano // 1_000_000_000,
            "timeNano": self.time_nano,
        }
        if self.type in ("container", "image"):
            message["status"] = self.action
            message["id"] = self.actor_id
            if "image" in self.attributes:
                message["from"] = self.attributes["image"]
        return message


class EventBus:
    """Fans events out to the ``dockyard_event`` hook and to ``GET /events`` subscribers.

    ``emit`` may be called from any thread; subscribers are asyncio queues fed on their own loop.
    A short history is kept so ``docker events --since`` can replay recent events.
    """

    def __init__(self, hook: Callable[[Event], None], history: int = 1024) -> None:
        self._hook = hook
        self._lock = threading.Lock()
        self._history: collections.deque[Event] = collections.deque(maxlen=history)
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Event]]] = set()

    def emit(self, event: Event) -> None:
        with self._lock:
            self._history.append(event)
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        self._hook(event)

    def subscribe(self, since_nano: int | None = None) -> tuple[list[Event], asyncio.Queue[Event]]:
        """Register a subscriber on the running loop; returns the replayed history and its queue."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
            past = (
                []
                if since_nano is None
                else [e for e in self._history if e.time_nano >= since_nano]
            )
        return past, queue

    @property
    def subscriber_count(self) -> int:
        """How many listen now (``/info``'s ``NEventsListener``)."""
        with self._lock:
            return len(self._subscribers)

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        with self._lock:
            self._subscribers = {pair for pair in self._subscribers if pair[1] is not queue}
