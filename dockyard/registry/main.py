"""``dockyard registry`` and ``dockyard registry gc``: assemble the registry from its plugins.

Several registry processes may serve one storage (a shared S3 bucket, a shared directory):
every piece of state lives in the backend, so the registry takes no lock on its data root.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import structlog

from dockyard.core.config import Config, RegistryConfig, load_config
from dockyard.core.drivers import DriverKind
from dockyard.core.errors import ConfigError
from dockyard.core.hosts import parse_host
from dockyard.core.interfaces import TokenIssuer, UserManager
from dockyard.core.logging import configure_logging
from dockyard.core.plugins import PluginHost
from dockyard.core.service import Service

_log = structlog.get_logger("dockyard.registry")


@attrs.frozen
class RegistryRuntime:
    """The built pieces of one registry process."""

    config: Config
    plugins: PluginHost
    service: Service
    store: Any  # RegistryStore; imported lazily with the app


def apply_overrides(config: Config, listen: str | None, root: str | None) -> Config:
    """Fold the command-line flags into the config (``--root`` selects the filesystem backend)."""
    registry: RegistryConfig = config.registry
    if listen is not None:
        registry = attrs.evolve(registry, listen=listen)
    tables = dict(config.driver_tables)
    if root is not None:
        registry = attrs.evolve(registry, backend="filesystem")
        if registry.data_root == RegistryConfig().data_root:
            # Keep `dockyard registry --root DIR` self-contained (and usable without root):
            # private state goes in a hidden directory the backend never lists.
            registry = attrs.evolve(registry, data_root=str(Path(root).absolute() / ".state"))
        key = (DriverKind.REGISTRY_BACKEND, "filesystem")
        tables[key] = {**tables.get(key, {}), "root": str(Path(root).absolute())}
    return attrs.evolve(config, registry=registry, driver_tables=tables)


def build_runtime(config: Config) -> RegistryRuntime:
    """Load plugins, build the selected backend and auth provider, and the store over them."""
    from dockyard.registry.store import Limits, RegistryStore

    plugins = PluginHost(config, "registry").load()
    data_root = Path(config.registry.data_root).absolute()
    service = Service("registry", config, plugins, data_root)
    service.drivers = plugins.build_program_drivers(data_root)
    backend = service.drivers.get(DriverKind.REGISTRY_BACKEND)
    if backend is None:
        raise ConfigError("no registry backend is installed; install or enable one")
    limits = Limits(
        max_blob_size=config.registry.max_blob_size,
        max_manifest_size=config.registry.max_manifest_size,
    )
    return RegistryRuntime(config, plugins, service, RegistryStore(backend, limits))


def _listener(settings: RegistryConfig) -> Any:
    """The socket the registry (or its token service alone) serves on."""
    from dockyard.core.server import Listener, bind, tls_context

    try:
        host = parse_host(
            settings.listen if "://" in settings.listen else f"tcp://{settings.listen}"
        )
    except ValueError as exc:
        raise ConfigError(f"[registry] listen: {exc}") from None
    if bool(settings.tlscert) != bool(settings.tlskey):
        raise ConfigError("[registry] tlscert and tlskey go together: give both or neither")
    tls = None
    if settings.tlscert:
        names = ("[registry] tlscert", "[registry] tlskey", "")
        tls = tls_context(settings.tlscert, settings.tlskey, "", names)
    sock = bind(host)
    # Accepted sockets inherit this on Linux. asyncio sets it only on sockets created with
    # proto=IPPROTO_TCP, which bind() does not use; without it every keep-alive response
    # waits ~40 ms for a delayed ACK (headers and body leave in two segments).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Listener(host, sock, tls)


def check_ready_to_serve(provider: object) -> None:
    """Refuse to serve with a provider that keeps users and has none: nobody could log in."""
    if isinstance(provider, UserManager) and not provider.users():
        raise ConfigError(
            "the auth provider has no users, so nobody could log in: add one with "
            "`dockyard registry user add NAME` (with the same --config), then start again"
        )


def run_registry_command(config_path: str | None, listen: str | None, root: str | None) -> None:
    """Serve the registry in the foreground until SIGTERM/SIGINT."""
    from dockyard.registry.app import create_registry_app
    from dockyard.registry.gatekeeper import NONBLOCKING
    from dockyard.registry.ratelimit import RateLimiter
    from dockyard.registry.tokens import token_routes

    config = apply_overrides(load_config(config_path), listen, root)
    configure_logging(config.registry.log_level, "json", program="registry")
    proxy = None
    if config.registry.proxy is not None:
        from dockyard.registry.proxy import PullThroughCache

        proxy = PullThroughCache(config.registry.proxy)  # a bad remote-url stops us here
    runtime = build_runtime(config)
    plugins, service = runtime.plugins, runtime.service
    auth = service.drivers.get(DriverKind.AUTH)
    check_ready_to_serve(auth)
    extra_routes = [
        r for routes in plugins.hook.dockyard_routes(program="registry") for r in routes or ()
    ]
    # One budget of failed logins per user and address, whether at /v2 or at /token.
    failures = RateLimiter.minutely(config.registry.auth_failures_per_minute)
    if auth is not None:
        extra_routes += token_routes(auth, config.registry, failures)
    app = create_registry_app(
        runtime.store,
        auth,
        extra_routes=extra_routes,
        failures=failures,
        auth_nonblocking=NONBLOCKING in plugins.selected_capabilities(DriverKind.AUTH),
        proxy=proxy,
    )
    _serve(config, plugins, service, app, "registry ready", proxy.remote.close if proxy else None)


def _serve(
    config: Config,
    plugins: PluginHost,
    service: Service,
    app: Any,
    ready: str,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve ``app`` until SIGTERM; ``on_stop`` runs after the last request (closing the
    proxy's connections to its remote)."""
    from dockyard.core.server import ReadTimeouts, RequestLogMiddleware, serve

    settings = config.registry
    timeouts = ReadTimeouts.checked(settings.header_timeout, settings.body_timeout, "registry")
    logged_app = RequestLogMiddleware(app)
    listener = _listener(settings)

    async def startup() -> None:
        plugins.hook.dockyard_startup(service=service)
        _log.info(
            ready,
            listen=str(listener.host),
            backend=plugins.selected(DriverKind.REGISTRY_BACKEND),
            auth=plugins.selected(DriverKind.AUTH),
            config=config.source,
            **({"proxy": config.registry.proxy.remote_url} if config.registry.proxy else {}),
        )

    async def shutdown() -> None:
        if on_stop is not None:
            await on_stop()
        # Each plugin's shutdown runs even when another one's fails (and is logged).
        for plugin, exc in plugins.call_each("dockyard_shutdown", service=service):
            _log.error("shutdown hook failed", plugin=plugin, exc_info=exc)
        _log.info("registry stopped")

    asyncio.run(
        serve(
            [listener],
            lambda _: logged_app,
            startup,
            shutdown,
            protocol=_protocol(),
            timeouts=timeouts,
        )
    )


# --------------------------------------------------------------------------------------------
# The auth provider alone: the token service on its own, users, the signing certificate
# --------------------------------------------------------------------------------------------


def build_auth(config: Config) -> tuple[PluginHost, Service, Any]:
    """Build the configured auth provider only (no storage backend), with the state dir the
    registry gives it."""
    plugins = PluginHost(config, "registry").load()
    if plugins.selected(DriverKind.AUTH) is None:
        raise ConfigError(f"no auth provider is configured: set [registry] auth in {config.source}")
    data_root = Path(config.registry.data_root).absolute()
    service = Service("registry", config, plugins, data_root)
    provider = plugins.build(DriverKind.AUTH, data_root / DriverKind.AUTH.value)
    service.drivers = {DriverKind.AUTH: provider}
    return plugins, service, provider


def run_token_server_command(config_path: str | None, listen: str | None, root: str | None) -> None:
    """Serve only ``/token`` (for a registry elsewhere that trusts our certificate)."""
    from starlette.applications import Starlette

    from dockyard.registry.tokens import token_routes

    config = apply_overrides(load_config(config_path), listen, root)
    configure_logging(config.registry.log_level, "json", program="token-server")
    plugins, service, provider = build_auth(config)
    routes = token_routes(provider, config.registry)
    if not routes:
        raise ConfigError(
            f"the auth provider {plugins.selected(DriverKind.AUTH)!r} issues no tokens"
        )
    check_ready_to_serve(provider)
    _serve(config, plugins, service, Starlette(routes=routes), "token server ready")


def _user_manager(config: Config) -> UserManager:
    # A command's own output is its answer; the provider's info lines are not wanted there.
    configure_logging("warning", "console", program="registry-user")
    plugins, _, provider = build_auth(config)
    if not isinstance(provider, UserManager):
        raise ConfigError(
            f"the auth provider {plugins.selected(DriverKind.AUTH)!r} does not manage users"
        )
    return provider


def add_user(config_path: str | None, root: str | None, name: str, password: str) -> str:
    config = apply_overrides(load_config(config_path), None, root)
    created = _user_manager(config).add_user(name, password)
    return f"added user {name}" if created else f"changed the password of {name}"


def remove_user(config_path: str | None, root: str | None, name: str) -> str:
    config = apply_overrides(load_config(config_path), None, root)
    _user_manager(config).remove_user(name)
    return f"removed user {name}"


def list_users(config_path: str | None, root: str | None) -> list[str]:
    config = apply_overrides(load_config(config_path), None, root)
    return _user_manager(config).users()


def token_certificates(config_path: str | None, root: str | None) -> str:
    """The PEM certificates a registry verifying our tokens must trust."""
    config = apply_overrides(load_config(config_path), None, root)
    plugins, _, provider = build_auth(config)
    if not isinstance(provider, TokenIssuer):
        raise ConfigError(
            f"the auth provider {plugins.selected(DriverKind.AUTH)!r} issues no tokens"
        )
    return provider.signing_certificates()


def _protocol() -> str:
    """httptools parses HTTP several times faster than h11; use it when installed."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def run_gc_command(config_path: str | None, root: str | None, dry_run: bool) -> int:
    """Run one garbage collection and print what it removed (or would remove)."""
    from dockyard.registry.gc import GarbageCollector, GcPolicy

    config = apply_overrides(load_config(config_path), None, root)
    configure_logging(config.registry.log_level, "json", program="registry-gc")
    runtime = build_runtime(config)
    settings = config.registry
    policy = GcPolicy(
        grace_period=settings.gc_grace_period,
        upload_expiry=settings.upload_expiry,
        delete_untagged=settings.gc_delete_untagged,
        dry_run=dry_run,
    )
    report = GarbageCollector(runtime.store, policy).run()
    verb = "would delete" if dry_run else "deleted"
    print(
        f"{verb} {len(report.blobs)} blob(s) ({report.bytes_freed} bytes), "
        f"{len(report.manifests)} manifest(s), {len(report.uploads)} expired upload(s), "
        f"{len(report.swept)} leftover(s); kept {report.kept_blobs} blob(s)",
        file=sys.stdout,
    )
    for line in report.lines():
        print(f"  {line}")
    return 0
