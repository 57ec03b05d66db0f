"""The Engine API's documents: decoded and encoded with Go's rules and docker's CamelCase keys.

One :class:`~dockyard.core.decoding.Decoder` for every request body the daemon accepts and
every Engine API record it stores (a container's ``Config`` and ``HostConfig``).
"""

from __future__ import annotations

from dockyard.core.decoding import Decoder, camel_case
from dockyard.daemon.containers.config import HealthConfig

ENGINE_API = Decoder(key_style=camel_case)


def _health_config_json(health: HealthConfig) -> dict[str, object]:
    """``Healthcheck`` as dockerd writes it: fields left at zero are omitted (Go's
    ``omitempty``), so ``{"Test": ["NONE"]}`` stays just that."""
    document = {
        "Test": health.test,
        "Interval": health.interval,
        "Timeout": health.timeout,
        "StartPeriod": health.start_period,
        "Retries": health.retries,
    }
    return {key: value for key, value in document.items() if value}


ENGINE_API.register_unstructure_hook(HealthConfig, _health_config_json)
