"""The Engine API's documents: decoded and encoded with Go's rules and docker's CamelCase keys.

One :class:`~dockyard.core.decoding.Decoder` for every request body the daemon accepts and
every Engine API record it stores (a container's ``Config`` and ``HostConfig``).
"""

from __future__ import annotations

from dockyard.core.decoding import Decoder, camel_case

ENGINE_API = Decoder(key_style=camel_case)
