"""Bind mounts' propagation, decided as dockerd 20.10 decides it.

A bind (``-v /host:/ctr[:MODE]``, ``--mount type=bind``) is private to the container
(``rprivate``) unless it asks for ``shared``/``rshared`` (mounts made on either side appear on
the other) or ``slave``/``rslave`` (the host's appear in the container). A bind of the daemon's
own data root, or of a path above it, gets ``rslave`` when it asks for nothing, so that it
never pins the mounts the daemon makes and unmounts there; asking for anything but ``rslave``
or ``rshared`` there is refused. At start, a shared bind needs a shared source mount on the
host, and a slave one a shared or slave one (dockerd's start errors, with its words).

Named volumes take no propagation: theirs is the empty word, as dockerd shows it.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

from dockyard.core.errors import DockyardError, InvalidParameter
from dockyard.core.interfaces import BindMount
from dockyard.linux.mounts import PROPAGATION_FLAGS, keeps_host_peers, mount_holding

#: What a bind gets when it asks for nothing (dockerd's ``DefaultPropagationMode``).
DEFAULT_PROPAGATION = "rprivate"
#: What a bind of the data root (or above it) gets when it asks for nothing.
DATA_ROOT_PROPAGATION = "rslave"
_ALLOWED_AT_DATA_ROOT = ("rslave", "rshared")


def check_propagation(word: str, what: str) -> str:
    if word not in PROPAGATION_FLAGS:
        raise InvalidParameter(f"{what}: invalid propagation mode: {word}")
    return word


def _is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def touches_data_root(source: str, data_root: str) -> bool:
    """Whether ``source`` is the data root, inside it, or above it (component by component,
    where dockerd compares strings: ``/var/lib/docker2`` is not in ``/var/lib/docker`` here)."""
    if not data_root:
        return False
    source = os.path.normpath(source)
    return _is_within(source, data_root) or _is_within(data_root, source)


def bind_propagation(source: str, asked: str, data_root: str) -> str:
    """The propagation a bind of host path ``source`` gets, ``asked`` being the one its
    request named (empty: none)."""
    if not touches_data_root(source, data_root):
        return asked or DEFAULT_PROPAGATION
    if not asked:
        return DATA_ROOT_PROPAGATION
    if asked in _ALLOWED_AT_DATA_ROOT:
        return asked
    raise InvalidParameter(
        'invalid mount config: must use either propagation mode "rslave" or "rshared" when '
        f'mount source is within the daemon root, daemon root: "{data_root}", bind mount '
        f'source: "{source}", propagation: "{asked}"'
    )


def check_source_mounts(binds: Sequence[BindMount], asked: Collection[str], data_root: str) -> None:
    """At start: each shared bind's source must lie on a shared mount of the host, each slave
    one's on a shared or slave mount (a 500 with dockerd's words otherwise, as dockerd's start).

    ``asked`` holds the destinations whose propagation the request named. Not checked: a
    source inside the data root (dockerd's root is a shared mount of its own, so dockerd never
    refuses one; ours is not, and the bind keeps what propagation it can), and a data-root
    bind's implicit ``rslave`` over a private mount, which dockerd lets fall back to private.
    """
    for bind in binds:
        if not keeps_host_peers(bind.propagation):
            continue
        source = os.path.realpath(bind.source)
        if data_root and _is_within(source, data_root):
            continue
        point, fields = mount_holding(source)
        shared = any(field.startswith("shared:") for field in fields)
        slave = any(field.startswith("master:") for field in fields)
        if bind.propagation in ("shared", "rshared"):
            if not shared:
                raise DockyardError(
                    f"path {bind.source} is mounted on {point} but it is not a shared mount"
                )
            continue
        if shared or slave:
            continue
        if touches_data_root(source, data_root) and bind.destination not in asked:
            continue
        raise DockyardError(
            f"path {bind.source} is mounted on {point} but it is not a shared or slave mount"
        )
