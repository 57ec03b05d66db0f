"""Where and how the daemon reaches a registry: HTTPS first, plain HTTP only when allowed.

As dockerd decides it (its ``registry`` package, 20.10):

* a registry is *insecure* when it is named in ``insecure-registries`` (``HOST[:PORT]``) or
  one of its addresses lies in a CIDR there; ``127.0.0.0/8`` always is;
* a secure registry is reached over HTTPS only, its certificate checked against the system's
  CAs plus the ``*.crt`` files of ``registry-certs-dir/HOST[:PORT]/``, and a client
  certificate presented where that directory holds a ``NAME.cert`` and ``NAME.key`` pair;
* an insecure registry over HTTPS without certificate checks first, then plain HTTP;
* Docker Hub's names (``docker.io``, ``index.docker.io``) are served by
  ``registry-1.docker.io``, and its index server address is ``https://index.docker.io/v1/``.

Resolving names and reading certificate files block: call :meth:`EndpointPolicy.endpoints`
from a worker thread.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import structlog

from dockyard.core.errors import ConfigError, InvalidParameter
from dockyard.distribution.errors import RegistryError
from dockyard.distribution.reference import is_domain

_log = structlog.get_logger("dockyard.distribution")

#: dockerd's index server, the key docker's clients store Docker Hub logins under.
INDEX_SERVER = "https://index.docker.io/v1/"
HUB_NAMES = frozenset({"docker.io", "index.docker.io"})
HUB_REGISTRY = "registry-1.docker.io"
#: Always insecure, as in dockerd ("a stop-gap for a private registry on localhost").
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen
class Endpoint:
    """One way to reach a registry: ``https`` or ``http`` to ``host`` (``HOST[:PORT]``).
    ``verify``: HTTPS with certificate checks (a registry that is not insecure)."""

    scheme: str
    host: str
    verify: bool

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def url(self, path: str) -> str:
        return self.base_url + path


def registry_host(server_address: str) -> str:
    """The registry a login's ``serveraddress`` names: ``HOST[:PORT]`` from that or from a URL
    (``https://host:5000/v1/``); anything else is a 400, as dockerd refuses it."""
    text = server_address.strip()
    if "://" not in text:
        text = "https://" + text
    try:
        parts = urlsplit(text)
        host = parts.netloc
    except ValueError as exc:
        raise InvalidParameter(f"unable to parse server address: {exc}") from None
    if parts.scheme not in ("http", "https") or not is_domain(host):
        raise InvalidParameter(
            f"unable to parse server address: {server_address!r} is not HOST[:PORT] or a URL"
        )
    return host.lower()


def index_server_address(default_registry: str) -> str:
    """What ``/info`` reports as ``IndexServerAddress``: dockerd's URL for Docker Hub, the
    ``HOST[:PORT]`` of any other default registry."""
    return INDEX_SERVER if default_registry in HUB_NAMES else default_registry


def _split_host(host: str) -> str:
    """The host name or address of ``HOST[:PORT]`` / ``[IPv6]:PORT``."""
    if host.startswith("["):
        return host[1 : host.index("]")]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


@functools.cache
def unverified_tls() -> ssl.SSLContext:
    """TLS that checks nothing, for insecure registries: the same every time, so built once.
    It loads no CAs (30 ms or more), since it never verifies."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class EndpointPolicy:
    """``insecure-registries`` and ``registry-certs-dir``, checked once at start-up."""

    def __init__(self, insecure_registries: Sequence[str] = (), certs_dir: str = "") -> None:
        self.certs_dir = Path(certs_dir) if certs_dir else None
        self.insecure_networks: list[Network] = [LOOPBACK]
        self.insecure_hosts: set[str] = set()
        for entry in insecure_registries:
            self._add_insecure(entry)

    def _add_insecure(self, entry: str) -> None:
        text = entry.strip()
        for scheme in ("http://", "https://"):
            if text.lower().startswith(scheme):
                _log.warning("insecure-registries takes no scheme: removed", registry=entry)
                text = text[len(scheme) :]
        if "://" in text:
            raise ConfigError(f"insecure-registries: {entry!r} should not contain '://'")
        if "/" in text:
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ConfigError(
                    f"insecure-registries: {entry!r} is neither HOST[:PORT] nor a CIDR"
                ) from None
            if network not in self.insecure_networks:
                self.insecure_networks.append(network)
        elif is_domain(text):
            self.insecure_hosts.add(text.lower())
        else:
            raise ConfigError(f"insecure-registries: {entry!r} is neither HOST[:PORT] nor a CIDR")

    def is_insecure(self, host: str) -> bool:
        """Named, or one of its addresses (resolved, as dockerd does) in an insecure CIDR."""
        if host in HUB_NAMES or host == HUB_REGISTRY:
            return False
        if host in self.insecure_hosts:
            return True
        name = _split_host(host)
        try:
            addresses = {ipaddress.ip_address(name)}
        except ValueError:
            try:
                infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
            except OSError:
                return False  # unresolvable: not known to be insecure (the dial will say why)
            addresses = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos}
        networks = self.insecure_networks
        return any(address in network for address in addresses for network in networks)

    def endpoints(self, host: str) -> list[Endpoint]:
        """The ways to reach ``host``, in the order to try them."""
        if host in HUB_NAMES:
            return [Endpoint("https", HUB_REGISTRY, verify=True)]
        if self.is_insecure(host):
            return [Endpoint("https", host, verify=False), Endpoint("http", host, verify=False)]
        return [Endpoint("https", host, verify=True)]

    def ssl_context(self, endpoint: Endpoint) -> ssl.SSLContext:
        """TLS for an ``https`` endpoint: the system's CAs and the host's certificate files, or
        no checks at all for an insecure registry."""
        if not endpoint.verify:
            return unverified_tls()
        context = ssl.create_default_context()
        directory = self.certs_dir / endpoint.host if self.certs_dir else None
        if directory is None or not directory.is_dir():
            return context
        names = sorted(os.listdir(directory))
        for name in names:
            path = directory / name
            try:
                if name.endswith(".crt"):
                    context.load_verify_locations(cafile=str(path))
                elif name.endswith(".cert"):
                    key = name.removesuffix(".cert") + ".key"
                    if key not in names:
                        raise RegistryError(
                            f"missing key {key} for client certificate {name} in {directory}. "
                            "Note that CA certificates should use the extension .crt"
                        )
                    context.load_cert_chain(str(path), str(directory / key))
                elif name.endswith(".key") and name.removesuffix(".key") + ".cert" not in names:
                    raise RegistryError(
                        f"missing client certificate {name.removesuffix('.key')}.cert "
                        f"for key {name} in {directory}"
                    )
            except (OSError, ssl.SSLError) as exc:
                raise RegistryError(f"cannot use {path}: {exc}") from None
        return context

    def registry_config(self) -> dict[str, object]:
        """``/info``'s ``RegistryConfig``."""
        index_configs = {
            host: {"Name": host, "Mirrors": [], "Secure": False, "Official": False}
            for host in sorted(self.insecure_hosts)
        }
        index_configs["docker.io"] = {
            "Name": "docker.io",
            "Mirrors": [],
            "Secure": True,
            "Official": True,
        }
        return {
            "AllowNondistributableArtifactsCIDRs": [],
            "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": [str(network) for network in self.insecure_networks],
            "IndexConfigs": index_configs,
            "Mirrors": [],
        }
