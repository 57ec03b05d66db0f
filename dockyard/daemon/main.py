"""``dockyard daemon``: assemble the engine from its plugins and serve the Engine API."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import structlog

from dockyard.core.config import Config
from dockyard.core.drivers import DriverKind
from dockyard.core.errors import ConfigError, InvalidParameter
from dockyard.core.events import Event, EventBus
from dockyard.core.logging import configure_logging
from dockyard.core.plugins import PROGRAM_KINDS, PluginHost
from dockyard.core.server import (
    Listener,
    ReadTimeouts,
    bind_all,
    check_tcp_exposure,
    data_root_lock,
    parse_hosts,
    serve,
)
from dockyard.daemon import modes, userns
from dockyard.daemon.api import create_app
from dockyard.daemon.api.hijack import EngineHttpProtocol
from dockyard.daemon.api.middleware import BearerTokenMiddleware
from dockyard.daemon.api.system import engine_id
from dockyard.daemon.build.context import remove_stale_builds
from dockyard.daemon.containers.etc_files import host_resolv_conf
from dockyard.daemon.containers.log_drivers import daemon_log_drivers
from dockyard.daemon.containers.manager import ContainerManager
from dockyard.daemon.containers.networking import ContainerNetworks
from dockyard.daemon.containers.spec import UserNamespace
from dockyard.daemon.distribution.blobsources import BlobSources
from dockyard.daemon.distribution.pull import Puller
from dockyard.daemon.distribution.service import RegistryService
from dockyard.daemon.engine import Engine
from dockyard.daemon.images.content import ContentStore
from dockyard.daemon.images.store import ImageStore
from dockyard.daemon.networks.dns import EmbeddedDNS, upstreams_from_resolv_conf
from dockyard.daemon.networks.manager import NetworkManager
from dockyard.daemon.tls import default_cert_dir, resolve_tls
from dockyard.daemon.volumes import VolumeStore
from dockyard.distribution.endpoints import EndpointPolicy, registry_host

_log = structlog.get_logger("dockyard.daemon")


def _read_token(path: str) -> str:
    if not path:
        return ""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token-file {path}: {exc.strerror}") from None
    if not token:
        raise ConfigError(f"token-file {path} is empty")
    return token


def _registry_service(
    default: str, insecure: list[str], certs_dir: str, timeout: float
) -> RegistryService:
    try:
        default_host = registry_host(default)
    except InvalidParameter:
        raise ConfigError(f"default-registry {default!r} is not HOST[:PORT]") from None
    if timeout <= 0:
        raise ConfigError(f"registry-timeout must be more than 0 seconds, not {timeout}")
    return RegistryService(EndpointPolicy(insecure, certs_dir), default_host, timeout)


def run_daemon(config: Config, plugins: PluginHost) -> None:
    """Run the daemon in the foreground until SIGTERM/SIGINT. Raises ConfigError on bad setup."""
    settings = config.daemon
    configure_logging(settings.log_level, settings.log_format, program="daemon")
    # dockerd's umask: files made without an explicit mode (a container's /etc/hosts, say)
    # are the same whatever the umask of whoever started us; private ones get their modes.
    os.umask(0o022)
    hosts = parse_hosts(settings.hosts)
    timeouts = ReadTimeouts.checked(settings.header_timeout, settings.body_timeout, "daemon")
    if settings.max_json_body < 0:
        raise ConfigError(
            f"max-json-body must be 0 (no limit) or more, not {settings.max_json_body}"
        )
    token = _read_token(settings.token_file)
    served_tls = resolve_tls(settings, default_cert_dir(config))
    verifies_clients = served_tls is not None and served_tls.verifies_clients
    for host in hosts:
        check_tcp_exposure(host, client_certificates=verifies_clients, token=bool(token))
    tls = served_tls.context() if served_tls else None
    remapping = userns.resolve(settings.userns_remap, settings.subuid_file, settings.subgid_file)
    registries = _registry_service(
        settings.default_registry,
        settings.insecure_registries,
        settings.registry_certs_dir,
        settings.registry_timeout,
    )

    try:
        mirrors = [registry_host(mirror) for mirror in settings.registry_mirrors]
    except InvalidParameter:
        raise ConfigError(
            f"registry-mirrors {settings.registry_mirrors!r}: each is a URL or HOST[:PORT]"
        ) from None
    data_root = Path(settings.data_root).absolute()
    with data_root_lock(data_root, "daemon"):
        search_group = modes.search_group(remapping.gid_mappings if remapping else ())
        modes.make_dir(data_root, modes.DATA_ROOT, search_group)
        service = Engine("daemon", config, plugins, data_root, registries=registries)
        service.blob_sources = BlobSources(data_root / "distribution")

        def notify_plugins(event: Event) -> None:
            try:
                plugins.hook.dockyard_event(event=event)
            except Exception:
                _log.exception("event hook failed", type=event.type, action=event.action)

        events = service.events = EventBus(notify_plugins)
        daemon_id = engine_id(data_root)
        service.drivers = plugins.build_program_drivers(data_root)

        content = ContentStore(data_root / "content")
        service.images = ImageStore(
            data_root / "image",
            content,
            service.drivers.get(DriverKind.STORAGE),
            on_event=lambda action, image_id, attributes: events.emit(
                Event("image", action, image_id, attributes)
            ),
        )
        cleaned = service.images.reconcile(keep=lambda key: key.startswith("container-"))
        if any(cleaned.values()):
            _log.warning("cleaned up after an interrupted operation", **cleaned)
        service.pulls = Puller(
            registries,
            service.images,
            data_root / "downloads",
            settings.max_concurrent_downloads,
            mirrors,
            # dockerd's: the reference as its ID, the repository as its name.
            on_pulled=lambda reference: events.emit(
                Event("image", "pull", reference.familiar(), {"name": reference.familiar_name})
            ),
        )
        remove_stale_builds(data_root)
        service.volumes = VolumeStore(
            data_root / "volumes",
            emit=lambda action, name, attributes: events.emit(
                Event("volume", action, name, attributes)
            ),
        )
        modes.make_dir(data_root / "containers", modes.CONTAINERS, search_group)
        modes.tighten_containers(data_root / "containers", search_group)
        log_drivers = daemon_log_drivers(
            plugins.build_every(DriverKind.LOG, data_root / "logging"),
            settings.log_driver,
            settings.log_opts,
            config.source,
        )
        containers = service.containers = ContainerManager(
            data_root / "containers",
            service.images,
            service.drivers.get(DriverKind.STORAGE),
            plugins.selected(DriverKind.STORAGE) or "",
            service.drivers.get(DriverKind.RUNTIME),
            plugins.selected(DriverKind.RUNTIME) or "",
            service.volumes,
            emit=lambda action, container_id, attributes: events.emit(
                Event("container", action, container_id, attributes)
            ),
            user_namespace=(
                UserNamespace(remapping.uid_mappings, remapping.gid_mappings) if remapping else None
            ),
            logging=log_drivers,
            runtimes=tuple(info.name for info in plugins.driver_infos(DriverKind.RUNTIME)),
            init=settings.init,
            init_path=settings.init_path,
        )
        network_drivers = plugins.build_every(DriverKind.NETWORK, data_root / "network")
        networks = NetworkManager(
            data_root / "networks",
            network_drivers,
            emit=lambda action, network_id, attributes: events.emit(
                Event("network", action, network_id, attributes)
            ),
            default_bridge=settings.bridge != "none",
        )
        containers.networking = ContainerNetworks(
            networks,
            data_root / "netns",
            lambda: containers.containers,
            emit=lambda action, network_id, attributes: events.emit(
                Event("network", action, network_id, attributes)
            ),
        )
        containers.dns = EmbeddedDNS(
            containers.networking,
            upstreams_from_resolv_conf(host_resolv_conf()),
        )
        service.volumes.in_use = containers.volume_users
        service.images.in_use = containers.image_users
        service.execs = containers.execs
        service.images.running_users = containers.running_image_users

        listeners = bind_all(hosts, tls)
        # Once the sockets are ours: a daemon that cannot serve leaves no bridge behind.
        networks.ensure_predefined()
        app = create_app(service)
        tcp_app = BearerTokenMiddleware(app, token) if token else app

        def app_for(listener: Listener) -> Any:
            return tcp_app if listener.host.scheme == "tcp" else app

        async def startup() -> None:
            plugins.hook.dockyard_startup(service=service)
            await containers.reconcile()
            events.emit(Event("daemon", "start", daemon_id))
            _log.info(
                "daemon ready",
                hosts=[str(h) for h in hosts],
                tls=served_tls.summary if served_tls else "off",
                data_root=str(data_root),
                storage_driver=plugins.selected(PROGRAM_KINDS["daemon"][0]),
                runtime=plugins.selected(PROGRAM_KINDS["daemon"][1]),
                userns_remap=(
                    f"{remapping.user}:{remapping.group} "
                    f"(root is {remapping.root_uid}:{remapping.root_gid})"
                    if remapping
                    else "off"
                ),
                config=config.source,
            )

        async def shutdown() -> None:
            events.emit(Event("daemon", "shutdown", daemon_id))
            await containers.shutdown()
            # Each plugin's shutdown runs even when another one's fails (and is logged).
            for plugin, exc in plugins.call_each("dockyard_shutdown", service=service):
                _log.error("shutdown hook failed", plugin=plugin, exc_info=exc)
            _log.info("daemon stopped")

        asyncio.run(
            serve(
                listeners,
                app_for,
                startup,
                shutdown,
                protocol=EngineHttpProtocol,
                timeouts=timeouts,
            )
        )
