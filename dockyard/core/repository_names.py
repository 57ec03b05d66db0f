"""The grammar of repository names (distribution spec), for every part that must check one.

The registry refuses a request for a name outside it; an auth provider grants nothing for a
scope naming one (``..``, ``//``, upper case, ``%2f`` are all outside it), so both use this one
definition.
"""

from __future__ import annotations

import re

#: Path components of lower-case letters and digits, joined by ``.``, ``_``, ``__`` or dashes.
REPOSITORY_NAME = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)

#: Longest repository name accepted. Clients limit "host/name" to 255 characters; this leaves
#: room for a host and port.
MAX_NAME_LENGTH = 200


def is_repository_name(name: str) -> bool:
    """Whether ``name`` is a repository name the registry can hold."""
    return len(name) <= MAX_NAME_LENGTH and REPOSITORY_NAME.fullmatch(name) is not None
