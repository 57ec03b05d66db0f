"""The daemon's TLS settings, read the way dockerd 20.10 reads its flags and daemon.json keys.

- ``tls`` or ``tlsverify`` (either value) turns TLS on for tcp:// hosts.
- Clients must then present a certificate ``tlscacert`` signed, unless ``tlsverify = false``:
  dockerd 20.10 verifies clients under ``--tls`` alone too (measured: tests/core/test_tls.py).
- A file left unset is ``ca.pem``, ``cert.pem`` or ``key.pem`` in the directory of the config
  file (``/etc/dockyard`` by default). dockerd looks in ``$DOCKER_CERT_PATH`` or the CLI's
  ``~/.docker``, a leftover from when the daemon and the CLI were one program; a system
  daemon's certificates belong beside its config.

Stricter than dockerd, where dockerd would accept a setting and ignore it: certificate keys
while TLS is off, ``tlscacert`` while clients are not verified, and a certificate without its
key are refused with a one-line error naming the keys (the flags have the same names).
"""

from __future__ import annotations

import os
import ssl

import attrs

from dockyard.core.config import DEFAULT_CONFIG_PATH, Config, DaemonConfig
from dockyard.core.errors import ConfigError
from dockyard.core.server import tls_context

CA_FILE, CERT_FILE, KEY_FILE = "ca.pem", "cert.pem", "key.pem"


@attrs.frozen
class DaemonTLS:
    """The files tcp:// hosts serve TLS with; ``ca`` is empty when clients are not verified."""

    cert: str
    key: str
    ca: str

    @property
    def verifies_clients(self) -> bool:
        return bool(self.ca)

    @property
    def summary(self) -> str:
        """For the start-up log line."""
        if self.verifies_clients:
            return f"clients need a certificate {self.ca} signed"
        return "encryption only"

    def context(self) -> ssl.SSLContext:
        return tls_context(self.cert, self.key, self.ca, ("tlscert", "tlskey", "tlscacert"))


def default_cert_dir(config: Config) -> str:
    """Where unset certificate files are looked for: beside the config file in use."""
    if os.path.isfile(config.source):
        return os.path.dirname(os.path.abspath(config.source))
    return os.path.dirname(DEFAULT_CONFIG_PATH)


def resolve_tls(settings: DaemonConfig, cert_dir: str) -> DaemonTLS | None:
    """The TLS the daemon serves with, or None for plain TCP; :class:`ConfigError` for a
    combination that would leave a setting unused."""
    enabled = settings.tls or settings.tlsverify is not None
    verify = settings.tlsverify is not False
    given = [name for name in ("tlscacert", "tlscert", "tlskey") if getattr(settings, name)]
    if not enabled:
        if given:
            raise ConfigError(
                f"{given[0]} is set but TLS is off: turn on tlsverify (clients must present a "
                "certificate tlscacert signed) or tls"
            )
        return None
    if not verify and settings.tlscacert:
        raise ConfigError(
            "tlscacert is the CA of client certificates, but tlsverify = false lets any client "
            "in: drop tlscacert, or turn tlsverify on"
        )
    if bool(settings.tlscert) != bool(settings.tlskey):
        raise ConfigError(
            "tlscert and tlskey go together: give both, or neither to use "
            f"{os.path.join(cert_dir, CERT_FILE)} and {os.path.join(cert_dir, KEY_FILE)}"
        )
    return DaemonTLS(
        cert=settings.tlscert or os.path.join(cert_dir, CERT_FILE),
        key=settings.tlskey or os.path.join(cert_dir, KEY_FILE),
        ca=(settings.tlscacert or os.path.join(cert_dir, CA_FILE)) if verify else "",
    )
