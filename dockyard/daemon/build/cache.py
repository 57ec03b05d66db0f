"""The classic builder's cache, derived from the images themselves.

A step is the same as an earlier one when it runs over the same image and would commit the
same container configuration: for ``RUN`` that includes the command and the build args in its
environment, for ``COPY`` and ``ADD`` the checksum of the files copied (in the ``#(nop)``
command). So the cache is a look among the children of the step's parent image for one
committed with an equal configuration, as dockerd's local image cache does. There is no index
to keep in step with the images: the cache survives restarts with them, and deleting an image
forgets what it cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dockyard.daemon.images.store import ImageRecord, ImageStore

#: Fields of a container config that depend on the container, not on the step.
_PER_CONTAINER = ("Hostname", "Domainname", "Image")


def _comparable(config: dict[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (config or {}).items() if k not in _PER_CONTAINER and v}


class BuildCache:
    """Finds the image an earlier build step made. Blocking: call from a worker thread."""

    def __init__(self, images: ImageStore, cache_from: Sequence[ImageRecord] = ()) -> None:
        self._images = images
        #: With ``--cache-from``, only those images and their ancestors are candidates, as
        #: in dockerd (an image built elsewhere and pulled lacks its build's parents: such a
        #: chain matches no step).
        self._allowed: set[str] | None = None
        if cache_from:
            self._allowed = set()
            for image in cache_from:
                self._allowed.update(self._lineage(image))

    def _lineage(self, image: ImageRecord) -> list[str]:
        found = []
        current: ImageRecord | None = image
        while current is not None and current.id not in found:
            found.append(current.id)
            current = self._images.get(current.parent) if current.parent else None
        return found

    def find(
        self, parent: ImageRecord | None, container_config: dict[str, Any]
    ) -> ImageRecord | None:
        """The newest image made over ``parent`` with this container config, if any."""
        wanted = _comparable(container_config)
        parent_id = parent.id if parent is not None else ""
        matches = []
        for child in self._images.children_of(parent_id):
            if self._allowed is not None and child.id not in self._allowed:
                continue
            committed = self._images.config(child).get("container_config")
            if _comparable(committed) == wanted:
                matches.append(child)
        return max(matches, key=lambda image: image.created_at, default=None)
