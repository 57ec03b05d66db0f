"""Finding, loading and selecting plugins: one :class:`PluginHost` per process.

Loading policy:

* Built-in plugins (:data:`BUILTIN_PLUGINS`) register under stable names;
  third-party ones come from the ``dockyard.plugins`` entry-point group, unless
  ``DOCKYARD_DISABLE_PLUGIN_AUTOLOAD`` is set to a non-empty value.
* A plugin that fails to import, to register or to describe its drivers is recorded with status
  ``error`` and its reason; the process still starts unless ``strict-plugins`` is on, the plugin is
  in ``required-plugins``, or the config selects a driver that only it could have provided.
* A driver whose ``check`` says it cannot work here has status ``skip``; auto-selection passes
  over it and selecting it by name fails with the reason.
* Two drivers of one kind with the same name is an error naming both distributions.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pluggy

import dockyard
from dockyard.core import hookspecs
from dockyard.core.config import Config, decode
from dockyard.core.drivers import MULTI_KINDS, DriverContext, DriverInfo, DriverKind
from dockyard.core.errors import ConfigError, DriverUnavailable, PluginError

ENTRY_POINT_GROUP = "dockyard.plugins"
AUTOLOAD_ENV = "DOCKYARD_DISABLE_PLUGIN_AUTOLOAD"

OK, SKIP, ERROR, DISABLED = "ok", "skip", "error", "disabled"

#: Stable plugin name -> module of the built-in plugin (``dockyard.plugins``). Module names,
#: not imports: the core depends on no plugin, and each is imported only when a host loads.
BUILTIN_PLUGINS: dict[str, str] = {
    "overlay": "dockyard.plugins.storage.overlay",
    "vfs": "dockyard.plugins.storage.vfs",
    "filesystem": "dockyard.plugins.registries.filesystem",
    "s3": "dockyard.plugins.registries.s3",
    "namespaces": "dockyard.plugins.runtimes.namespaces.plugin",
    "runc": "dockyard.plugins.runtimes.runc.plugin",
    "none": "dockyard.plugins.auth.none",
    "htpasswd": "dockyard.plugins.auth.htpasswd",
    "token": "dockyard.plugins.auth.token.plugin",
    # Plugin names are unique across kinds (auth has "none"): this one has drivers none and host.
    "network-simple": "dockyard.plugins.networks.simple",
    "bridge": "dockyard.plugins.networks.bridge.plugin",
    "cni": "dockyard.plugins.networks.cni.plugin",
    "log-json-file": "dockyard.plugins.logging.json_file.plugin",
    "log-local": "dockyard.plugins.logging.local.plugin",
    "log-none": "dockyard.plugins.logging.none.plugin",
}

REGISTER_HOOKS = {
    DriverKind.RUNTIME: "dockyard_runtimes",
    DriverKind.STORAGE: "dockyard_storage_drivers",
    DriverKind.REGISTRY_BACKEND: "dockyard_registry_backends",
    DriverKind.AUTH: "dockyard_auth_providers",
    DriverKind.NETWORK: "dockyard_network_drivers",
    DriverKind.LOG: "dockyard_log_drivers",
}

# Which program selects (and builds) which kinds, and the config key that names the driver.
PROGRAM_KINDS = {
    "daemon": (DriverKind.STORAGE, DriverKind.RUNTIME),
    "registry": (DriverKind.REGISTRY_BACKEND, DriverKind.AUTH),
}


@attrs.define
class _Plugin:
    """Bookkeeping for one plugin while it loads."""

    name: str
    distribution: str
    version: str
    builtin: bool
    status: str = OK
    reason: str = ""


@attrs.frozen
class DriverReport:
    name: str
    kind: DriverKind
    status: str
    reason: str
    selected: bool
    description: str
    capabilities: frozenset[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Kind": self.kind.label,
            "Status": self.status,
            "Reason": self.reason,
            "Selected": self.selected,
            "Description": self.description,
            "Capabilities": sorted(self.capabilities),
        }


@attrs.frozen
class PluginReport:
    """What ``dockyard plugins`` shows for one plugin."""

    name: str
    distribution: str
    version: str
    builtin: bool
    status: str
    reason: str
    drivers: tuple[DriverReport, ...]

    @property
    def kinds(self) -> list[str]:
        kinds = sorted({d.kind.label for d in self.drivers})
        return kinds or ["hooks"]

    def to_json(self) -> dict[str, Any]:
        return {
            "Name": self.name,
            "Kinds": self.kinds,
            "Distribution": self.distribution,
            "Version": self.version,
            "Builtin": self.builtin,
            "Status": self.status,
            "Reason": self.reason,
            "Selected": [d.name for d in self.drivers if d.selected],
            "Drivers": [d.to_json() for d in self.drivers],
        }


@attrs.define
class _Driver:
    info: DriverInfo
    plugin: _Plugin
    status: str = OK
    reason: str = ""
    config: Any = None


class PluginHost:
    """Loads the plugins of one process and selects and builds its drivers."""

    def __init__(self, config: Config, program: str) -> None:
        self.config = config
        self.program = program
        self.pm = pluggy.PluginManager("dockyard")
        self.pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, _Plugin] = {}
        self._drivers: dict[DriverKind, dict[str, _Driver]] = {kind: {} for kind in DriverKind}
        self._selected: dict[DriverKind, str | None] = {}

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def call_each(self, hook_name: str, **kwargs: Any) -> list[tuple[str, Exception]]:
        """Call hook ``hook_name`` through pluggy, one plugin at a time, in pluggy's order.

        One plugin's exception does not keep the others' implementations from running (a
        plain hook call stops at the first). Each call goes through pluggy, which gives every
        implementation the arguments it names: one may take fewer than the spec has. Returns
        the failures as ``(plugin name, exception)``, for the caller to log (this module stays
        free of the servers' logging: the command line loads it too).
        """
        plugins = self.pm.get_plugins()
        failures = []
        # get_hookimpls() lists them in registration order; pluggy calls the last first.
        for impl in reversed(getattr(self.hook, hook_name).get_hookimpls()):
            others = [plugin for plugin in plugins if plugin is not impl.plugin]
            caller = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
            try:
                caller(**kwargs)
            except Exception as exc:
                failures.append((impl.plugin_name, exc))
        return failures

    # ---------------------------------------------------------------- loading

    def load(self) -> PluginHost:
        """Register every plugin, collect drivers, check the config's driver tables and policy."""
        for name, module_name in BUILTIN_PLUGINS.items():
            plugin = _Plugin(name, "dockyard", dockyard.__version__, builtin=True)
            self._load(plugin, lambda module_name=module_name: importlib.import_module(module_name))
        if not os.environ.get(AUTOLOAD_ENV):
            for entry_point in sorted(
                importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name
            ):
                dist = entry_point.dist
                plugin = _Plugin(
                    entry_point.name,
                    dist.name if dist else "?",
                    dist.version if dist else "?",
                    builtin=False,
                )
                self._load(plugin, entry_point.load)
        self._enforce_policy()
        self._check_driver_tables()
        for kind in PROGRAM_KINDS.get(self.program, ()):
            self._selected[kind] = self._resolve(kind, strict=True)
        self.hook.dockyard_configure(config=self.config, program=self.program)
        return self

    def _load(self, plugin: _Plugin, importer: Any) -> None:
        if plugin.name in self._plugins:
            other = self._plugins[plugin.name]
            plugin.status = ERROR
            plugin.reason = f"plugin name {plugin.name!r} is already used by {other.distribution}"
            self._plugins[f"{plugin.name} ({plugin.distribution})"] = plugin
            return
        self._plugins[plugin.name] = plugin
        if plugin.name in self.config.disabled_plugins:
            plugin.status = DISABLED
            return
        try:
            module = importer()
        except Exception as exc:  # any import-time failure is the plugin's, not ours
            plugin.status, plugin.reason = ERROR, f"{type(exc).__name__}: {exc}"
            return
        try:
            self.pm.register(module, name=plugin.name)
        except Exception as exc:
            plugin.status, plugin.reason = ERROR, f"{type(exc).__name__}: {exc}"
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=plugin.name)
            plugin.status, plugin.reason = ERROR, f"unknown hook (misspelled?): {exc}"
            return
        for kind, hook_name in REGISTER_HOOKS.items():
            self._collect(plugin, kind, hook_name)

    def _collect(self, plugin: _Plugin, kind: DriverKind, hook_name: str) -> None:
        for impl in getattr(self.hook, hook_name).get_hookimpls():
            if impl.plugin_name != plugin.name:
                continue
            try:
                result = impl.function()
                infos = _as_driver_infos(result, kind, hook_name)
            except Exception as exc:
                plugin.status, plugin.reason = ERROR, f"{hook_name}: {type(exc).__name__}: {exc}"
                return
            for info in infos:
                self._add_driver(kind, _Driver(info, plugin))

    def _add_driver(self, kind: DriverKind, driver: _Driver) -> None:
        name = driver.info.name
        existing = self._drivers[kind].get(name)
        if existing is not None:
            raise PluginError(
                f"{kind.label} {name!r} is provided by two plugins: "
                f"{existing.plugin.name} from {existing.plugin.distribution} and "
                f"{driver.plugin.name} from {driver.plugin.distribution}; "
                "uninstall or disable one (disabled-plugins)"
            )
        if driver.info.check is not None:
            try:
                driver.info.check()
            except DriverUnavailable as exc:
                driver.status, driver.reason = SKIP, str(exc)
            except Exception as exc:
                driver.status, driver.reason = ERROR, f"{type(exc).__name__}: {exc}"
        self._drivers[kind][name] = driver

    def _enforce_policy(self) -> None:
        for name in self.config.required_plugins:
            plugin = self._plugins.get(name)
            if plugin is None:
                raise PluginError(f"required plugin {name!r} is not installed")
            if plugin.status != OK:
                reason = f": {plugin.reason}" if plugin.reason else ""
                raise PluginError(f"required plugin {name!r} is {plugin.status}{reason}")
        if self.config.strict_plugins:
            broken = [p for p in self._plugins.values() if p.status == ERROR]
            if broken:
                details = "; ".join(f"{p.name}: {p.reason}" for p in broken)
                raise PluginError(f"strict-plugins is on and plugins failed to load: {details}")

    def _failed_plugins_note(self) -> str:
        broken = [p for p in self._plugins.values() if p.status == ERROR]
        return "".join(f"; plugin {p.name!r} failed to load: {p.reason}" for p in broken)

    def _check_driver_tables(self) -> None:
        source = self.config.source
        for (kind, name), table in self.config.driver_tables.items():
            driver = self._drivers[kind].get(name)
            if driver is None:
                if any(p.status == ERROR for p in self._plugins.values()):
                    continue  # it may belong to the plugin that failed; that error is shown
                raise ConfigError(
                    f"{source}: unknown {kind.label} {name!r} in [{kind.value}.{name}]; "
                    f"available: {self._names(kind)}"
                )
            driver.config = decode(driver.info.config_class, table, f"{kind.value}.{name}", source)

    # ---------------------------------------------------------------- selection

    def _wanted(self, kind: DriverKind) -> tuple[str, str]:
        """The configured driver name for ``kind`` and the key that set it."""
        keys = {
            DriverKind.STORAGE: ("daemon", "storage-driver", self.config.daemon.storage_driver),
            DriverKind.RUNTIME: ("daemon", "runtime", self.config.daemon.runtime),
            DriverKind.REGISTRY_BACKEND: ("registry", "backend", self.config.registry.backend),
            DriverKind.AUTH: ("registry", "auth", self.config.registry.auth),
        }
        section, key, value = keys[kind]
        return value, f"[{section}] {key}"

    def _names(self, kind: DriverKind) -> str:
        return ", ".join(sorted(self._drivers[kind])) or "none installed"

    def _resolve(self, kind: DriverKind, strict: bool) -> str | None:
        wanted, key = self._wanted(kind)
        if not wanted:
            if kind is DriverKind.AUTH:
                # Who may use a registry is never left to whichever provider ranks highest.
                if strict:
                    raise ConfigError(
                        f"{key} is empty in {self.config.source}: name an auth provider "
                        f"('none' lets anyone in); available: {self._names(kind)}"
                    )
                return None
            usable = [d for d in self._drivers[kind].values() if d.status == OK]
            usable.sort(key=lambda d: (-d.info.priority, d.info.name))
            return usable[0].info.name if usable else None
        driver = self._drivers[kind].get(wanted)
        if not strict:
            return wanted if driver is not None and driver.status == OK else None
        if driver is None:
            raise ConfigError(
                f"unknown {kind.label} {wanted!r} (set by {key} in {self.config.source}); "
                f"available: {self._names(kind)} — the plugin that provides it may not be "
                f"installed{self._failed_plugins_note()}"
            )
        if driver.status != OK:
            raise ConfigError(
                f"{kind.label} {wanted!r} (set by {key} in {self.config.source}) cannot be used "
                f"here: {driver.reason}"
            )
        return wanted

    def selected(self, kind: DriverKind) -> str | None:
        """The selected driver name of ``kind`` (``None``: none installed or usable).

        Always ``None`` for the kinds that are used side by side (:data:`MULTI_KINDS`).
        """
        if kind in MULTI_KINDS:
            return None
        if kind not in self._selected:
            self._selected[kind] = self._resolve(kind, strict=False)
        return self._selected[kind]

    def build(self, kind: DriverKind, state_root: Path) -> Any | None:
        """Build the selected driver of ``kind`` with state in ``state_root/<name>``.

        ``None`` when there is none. A factory may still find it cannot work here (its state
        directory is on a filesystem it cannot use, say) and raise ``DriverUnavailable``: an
        automatically chosen driver is then marked ``skip`` and the next one is tried; one the
        config names is a ``ConfigError``.
        """
        while True:
            name = self.selected(kind)
            if name is None:
                return None
            driver = self._drivers[kind][name]
            config = driver.config if driver.config is not None else driver.info.config_class()
            state_dir = state_root / name
            state_dir.mkdir(parents=True, exist_ok=True)
            try:
                return driver.info.factory(config, DriverContext(state_dir=state_dir))
            except DriverUnavailable as exc:
                driver.status, driver.reason = SKIP, str(exc)
                wanted, key = self._wanted(kind)
                if wanted:
                    raise ConfigError(
                        f"{kind.label} {wanted!r} (set by {key} in {self.config.source}) cannot "
                        f"be used here: {exc}"
                    ) from None
                self._selected[kind] = self._resolve(kind, strict=False)

    def build_every(self, kind: DriverKind, state_root: Path) -> dict[str, Any]:
        """Build every usable driver of ``kind``, by name, each with state in ``state_root/<name>``.

        For the kinds used side by side (network drivers: each network names its own). A driver
        whose ``check`` failed is left out, as is one whose factory raises ``DriverUnavailable``
        (it is then marked ``skip`` with the reason, for ``dockyard plugins`` to show); its
        networks are reported unusable by the caller, not here.
        """
        built = {}
        for name, driver in sorted(self._drivers[kind].items()):
            if driver.status != OK:
                continue
            config = driver.config if driver.config is not None else driver.info.config_class()
            state_dir = state_root / name
            state_dir.mkdir(parents=True, exist_ok=True)
            try:
                built[name] = driver.info.factory(config, DriverContext(state_dir=state_dir))
            except DriverUnavailable as exc:
                driver.status, driver.reason = SKIP, str(exc)
        return built

    def build_program_drivers(self, data_root: Path) -> dict[DriverKind, Any]:
        """Build every driver kind this program selects, each under ``data_root/<kind>/``."""
        built = {}
        for kind in PROGRAM_KINDS.get(self.program, ()):
            driver = self.build(kind, data_root / kind.value)
            if driver is not None:
                built[kind] = driver
        return built

    def driver_infos(self, kind: DriverKind) -> list[DriverInfo]:
        return [d.info for d in self._drivers[kind].values()]

    def selected_capabilities(self, kind: DriverKind) -> frozenset[str]:
        """The capabilities the selected driver of ``kind`` declares (none when none is)."""
        name = self.selected(kind)
        return self._drivers[kind][name].info.capabilities if name else frozenset()

    def driver_config(self, kind: DriverKind, name: str) -> Any:
        """The decoded config of driver ``name`` (its defaults when the file has no table)."""
        driver = self._drivers[kind][name]
        return driver.config if driver.config is not None else driver.info.config_class()

    # ---------------------------------------------------------------- reporting

    def report(self) -> list[PluginReport]:
        selected = {kind: self.selected(kind) for kind in DriverKind}
        reports = []
        for plugin in self._plugins.values():
            drivers = tuple(
                DriverReport(
                    name=d.info.name,
                    kind=kind,
                    status=d.status,
                    reason=d.reason,
                    # A kind used side by side has every usable driver in use.
                    selected=(
                        d.status == OK if kind in MULTI_KINDS else selected[kind] == d.info.name
                    ),
                    description=d.info.description,
                    capabilities=d.info.capabilities,
                )
                for kind in DriverKind
                for d in self._drivers[kind].values()
                if d.plugin is plugin
            )
            status, reason = plugin.status, plugin.reason
            if status == OK and drivers and all(d.status == SKIP for d in drivers):
                status, reason = SKIP, "; ".join(f"{d.name}: {d.reason}" for d in drivers)
            reports.append(
                PluginReport(
                    name=plugin.name,
                    distribution=plugin.distribution,
                    version=plugin.version,
                    builtin=plugin.builtin,
                    status=status,
                    reason=reason,
                    drivers=drivers,
                )
            )
        return reports


def _as_driver_infos(result: Any, kind: DriverKind, hook_name: str) -> Sequence[DriverInfo]:
    if result is None:
        return ()
    items: Iterable[Any] = [result] if isinstance(result, DriverInfo) else result
    infos = list(items)
    for info in infos:
        if not isinstance(info, DriverInfo):
            raise TypeError(f"returned {type(info).__name__}, not DriverInfo")
        if info.kind is not kind:
            raise TypeError(f"returned {info.kind.label} {info.name!r}, expected a {kind.label}")
    return infos
