"""Running a CNI network configuration list, as the CNI specification has a runtime do it.

A *conflist* (``{"cniVersion", "name", "plugins": [...]}``) is run plugin by plugin: each
plugin is an executable found in the bin dirs by its ``type``, given the command and the
attachment in ``CNI_*`` environment variables and its configuration on stdin. The configuration
is the plugin's own entry with the list's ``name`` and ``cniVersion``, the ``runtimeConfig``
entries for the capabilities the plugin declares, and, after the first plugin of an ADD (and
for every plugin of a CHECK or DEL), ``prevResult``: the result so far (the ADD's final result
for CHECK and DEL). DEL runs the plugins in reverse order. Results and errors are JSON on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from dockyard.core.errors import Conflict, DockyardError, InvalidParameter, NotFound

#: Where conflists are looked up, by the file names libcni reads.
CONFLIST_SUFFIXES = (".conflist", ".conf", ".json")
#: How long one plugin may take: host-local waits on its lock, the bridge plugin for its link.
PLUGIN_TIMEOUT = 120.0
#: The capability the portmap plugin (and others that map host ports) declares.
PORT_MAPPINGS = "portMappings"

Result = dict[str, Any]


@attrs.frozen
class Attachment:
    """Who a chain runs for: the CNI_* variables other than the command."""

    container_id: str
    netns: str
    ifname: str


@attrs.frozen
class ConfList:
    """A parsed conflist. ``raw`` is the text's JSON, kept so DEL runs what ADD ran."""

    name: str
    version: str
    plugins: tuple[Mapping[str, Any], ...]
    disable_check: bool = False
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False)

    @classmethod
    def parse(cls, raw: Any, where: str) -> ConfList:
        if not isinstance(raw, dict):
            raise InvalidParameter(f"CNI config {where}: not a JSON object")
        if "plugins" not in raw and "type" in raw:
            # A single-plugin .conf: a list of one, as libcni reads it.
            plugin = {k: v for k, v in raw.items() if k not in ("cniVersion", "name")}
            raw = {"cniVersion": raw.get("cniVersion", ""), "name": raw.get("name"),
                   "plugins": [plugin]}  # fmt: skip
        name, version, plugins = raw.get("name"), raw.get("cniVersion"), raw.get("plugins")
        if not isinstance(name, str) or not name:
            raise InvalidParameter(f"CNI config {where}: no network name")
        if not isinstance(version, str) or not version:
            raise InvalidParameter(f"CNI config {where}: no cniVersion")
        if not isinstance(plugins, list) or not plugins:
            raise InvalidParameter(f"CNI config {where}: no plugins")
        for plugin in plugins:
            if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
                raise InvalidParameter(f"CNI config {where}: a plugin without a type")
        return cls(name, version, tuple(plugins), raw.get("disableCheck") is True, raw)

    def split(self, capability: str) -> tuple[ConfList, ConfList]:
        """The plugins without ``capability`` and those with it, as two lists."""
        has = tuple(p for p in self.plugins if _capable(p, capability))
        rest = tuple(p for p in self.plugins if not _capable(p, capability))
        return attrs.evolve(self, plugins=rest), attrs.evolve(self, plugins=has)

    def capable(self, capability: str) -> bool:
        return any(_capable(plugin, capability) for plugin in self.plugins)

    def to_json(self) -> dict[str, Any]:
        return {"cniVersion": self.version, "name": self.name, "plugins": list(self.plugins),
                "disableCheck": self.disable_check}  # fmt: skip

    @property
    def checkable(self) -> bool:
        """CHECK exists from spec 0.4.0 on, unless the list turns it off."""
        return not self.disable_check and _version(self.version) >= (0, 4, 0)


def _capable(plugin: Mapping[str, Any], capability: str) -> bool:
    capabilities = plugin.get("capabilities")
    return isinstance(capabilities, dict) and capabilities.get(capability) is True


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return (0,)


def find_conflist(conf_dir: Path, wanted: str) -> tuple[ConfList, Path]:
    """The conflist of ``conf_dir`` named ``wanted``: by file name (without its suffix) or by
    the ``name`` inside it, as podman and nerdctl look them up."""
    if "/" in wanted or wanted.startswith("."):
        raise InvalidParameter(f"invalid CNI network name {wanted!r}")
    looked = [conf_dir / f"{wanted}{suffix}" for suffix in CONFLIST_SUFFIXES]
    candidates = [path for path in looked if path.is_file()]
    if not candidates and conf_dir.is_dir():
        candidates = sorted(
            path
            for path in conf_dir.iterdir()
            if path.suffix in CONFLIST_SUFFIXES and path.is_file() and _named(path, wanted)
        )
    if not candidates:
        where = ", ".join(str(path) for path in looked)
        raise NotFound(
            f"no CNI network config {wanted!r}: looked for {where} and for a config named "
            f"{wanted!r} in {conf_dir}"
        )
    path = candidates[0]
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidParameter(f"CNI config {path}: {exc}") from None
    return ConfList.parse(raw, str(path)), path


def _named(path: Path, wanted: str) -> bool:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(raw, dict) and raw.get("name") == wanted


class PluginFailure(DockyardError):
    """A plugin's error answer (the spec's ``code`` and ``msg``), or no answer at all."""

    def __init__(self, plugin: str, command: str, code: int, message: str) -> None:
        super().__init__(f"CNI plugin {plugin} {command} failed: {message}")
        self.code = code


class Runner:
    """Runs plugins from the bin dirs. Stateless: every call says what to run for whom."""

    def __init__(self, bin_dirs: Sequence[str]) -> None:
        self.bin_dirs = tuple(bin_dirs)

    def find(self, plugin_type: str) -> Path:
        if "/" in plugin_type or plugin_type.startswith("."):
            raise InvalidParameter(f"invalid CNI plugin type {plugin_type!r}")
        for directory in self.bin_dirs:
            path = Path(directory) / plugin_type
            if path.is_file() and os.access(path, os.X_OK):
                return path
        raise InvalidParameter(
            f"CNI plugin {plugin_type!r} not found in {', '.join(self.bin_dirs)}"
        )

    def check_plugins(self, conflist: ConfList) -> None:
        for plugin in conflist.plugins:
            self.find(plugin["type"])

    def _config(
        self,
        conflist: ConfList,
        plugin: Mapping[str, Any],
        previous: Result | None,
        runtime: Mapping[str, Any],
    ) -> bytes:
        config = dict(plugin)
        config["cniVersion"] = conflist.version
        config["name"] = conflist.name
        capabilities = plugin.get("capabilities")
        wanted = {
            key: value
            for key, value in runtime.items()
            if isinstance(capabilities, dict) and capabilities.get(key) is True
        }
        if wanted:
            config["runtimeConfig"] = wanted
        if previous is not None:
            config["prevResult"] = previous
        return json.dumps(config).encode()

    def exec(
        self,
        command: str,
        conflist: ConfList,
        plugin: Mapping[str, Any],
        who: Attachment,
        previous: Result | None,
        runtime: Mapping[str, Any],
    ) -> Result | None:
        path = self.find(plugin["type"])
        environment = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": who.container_id,
            "CNI_NETNS": who.netns,
            "CNI_IFNAME": who.ifname,
            "CNI_PATH": ":".join(self.bin_dirs),
            # The plugins run iptables, ip6tables and the like: the host's usual places.
            "PATH": os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin",
        }
        try:
            done = subprocess.run(
                [str(path)],
                input=self._config(conflist, plugin, previous, runtime),
                env=environment,
                capture_output=True,
                timeout=PLUGIN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            late = f"no answer in {PLUGIN_TIMEOUT}s"
            raise PluginFailure(plugin["type"], command, 0, late) from None
        output = done.stdout.decode(errors="replace").strip()
        if done.returncode != 0:
            raise _failure(plugin["type"], command, output, done.stderr.decode(errors="replace"))
        if command != "ADD":
            return None
        try:
            result = json.loads(output)
        except ValueError:
            raise PluginFailure(
                plugin["type"], command, 0, f"not a JSON result: {output[:200]}"
            ) from None
        if not isinstance(result, dict):
            raise PluginFailure(plugin["type"], command, 0, "its result is not a JSON object")
        return result

    def add(
        self,
        conflist: ConfList,
        who: Attachment,
        runtime: Mapping[str, Any],
        seen: list[Result] | None = None,
        previous: Result | None = None,
    ) -> Result:
        """ADD through the whole list; on a failure, DEL what was added and raise. Each
        plugin's result is appended to ``seen``, failure or not (what the chain made).
        ``previous`` is the first plugin's ``prevResult``: a list run after another one."""
        result: Result | None = previous
        done: list[Mapping[str, Any]] = []
        try:
            for plugin in conflist.plugins:
                done.append(plugin)
                result = self.exec("ADD", conflist, plugin, who, result, runtime)
                if seen is not None and result is not None:
                    seen.append(result)
        except BaseException:
            # Nothing half-made: every plugin that ran (the failing one too, which may have
            # made part of its work) is asked to undo it, last first.
            partial = attrs.evolve(conflist, plugins=tuple(done))
            with contextlib.suppress(DockyardError):  # the ADD's error is the one to report
                self.delete(partial, who, result, runtime)
            raise
        if result is None:
            raise PluginFailure(conflist.name, "ADD", 0, "the list has no plugin")
        return result

    def check(
        self, conflist: ConfList, who: Attachment, result: Result, runtime: Mapping[str, Any]
    ) -> None:
        for plugin in conflist.plugins:
            self.exec("CHECK", conflist, plugin, who, result, runtime)

    def delete(
        self,
        conflist: ConfList,
        who: Attachment,
        result: Result | None,
        runtime: Mapping[str, Any],
    ) -> None:
        """DEL through the list in reverse order; every plugin is asked even when one fails,
        and the first failure is raised after."""
        failures: list[DockyardError] = []
        for plugin in reversed(conflist.plugins):
            try:
                self.exec("DEL", conflist, plugin, who, result, runtime)
            except DockyardError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]


def _failure(plugin: str, command: str, output: str, stderr: str) -> DockyardError:
    try:
        answer = json.loads(output)
        code = int(answer.get("code", 0))
        message = str(answer.get("msg", "")) + (
            f": {answer['details']}" if answer.get("details") else ""
        )
    except (ValueError, AttributeError, TypeError):
        code, message = 0, (output or stderr).strip()[:500] or "no message"
    lowered = message.lower()
    if "has been allocated" in lowered or "is not available" in lowered:
        # host-local's answer for a requested address another container holds.
        return Conflict(f"Address already in use: {message}")
    if code in (1, 2, 4, 5, 7):  # incompatible version, unsupported field, bad config/env/JSON
        return InvalidParameter(f"CNI plugin {plugin} {command}: {message}")
    if code == 3:  # the container is unknown
        return NotFound(f"CNI plugin {plugin} {command}: {message}")
    return PluginFailure(plugin, command, code, message)


def host_interfaces(result: Result) -> list[str]:
    """Names of the result's interfaces that are on the host (no ``sandbox``)."""
    return [
        entry["name"]
        for entry in _interfaces(result)
        if not entry.get("sandbox") and isinstance(entry.get("name"), str)
    ]


def _interfaces(result: Result) -> list[dict[str, Any]]:
    entries = result.get("interfaces")
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


@attrs.frozen
class Addressing:
    """What an ADD result says about the container's side."""

    ipv4: str = ""
    gateway: str = ""
    mac: str = ""
    host_interface: str = ""
    dns_servers: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()


def addressing(result: Result, ifname: str, is_bridge: Any) -> Addressing:
    """The container's IPv4 address (with prefix), gateway, MAC and DNS from ``result``, in
    the format of spec 0.3.0 and later (``ips`` pointing into ``interfaces``) or the older one
    (``ip4``). ``is_bridge(name)`` tells a bridge from a veth's host end among host links."""
    interfaces = _interfaces(result)
    ipv4 = gateway = mac = ""
    default_route_gateway: str | None = None
    routes: Iterable[Any] = result.get("routes") or ()
    if isinstance(result.get("ip4"), dict):  # spec 0.1.0 / 0.2.0
        ip4 = result["ip4"]
        ipv4, gateway = str(ip4.get("ip", "")), str(ip4.get("gateway", ""))
        routes = ip4.get("routes") or ()
    for entry in result.get("ips") or ():
        if not isinstance(entry, dict) or ipv4:
            continue
        address = str(entry.get("address", ""))
        if ":" in address or entry.get("version") == "6":
            continue
        index = entry.get("interface")
        owner = interfaces[index] if isinstance(index, int) and 0 <= index < len(interfaces) else {}
        if owner and not owner.get("sandbox"):
            continue  # an address on the host's side (a bridge's gateway address)
        ipv4, gateway, mac = address, str(entry.get("gateway", "")), str(owner.get("mac", ""))
    for route in routes:
        if isinstance(route, dict) and route.get("dst") == "0.0.0.0/0":
            default_route_gateway = str(route.get("gw") or gateway)
    if not mac:
        named = [e for e in interfaces if e.get("sandbox") and e.get("name") == ifname]
        mac = str(named[0].get("mac", "")) if named else ""
    dns: dict[str, Any] = result["dns"] if isinstance(result.get("dns"), dict) else {}
    host_ends = [name for name in host_interfaces(result) if not is_bridge(name)]
    return Addressing(
        ipv4=ipv4,
        gateway=default_route_gateway or "",
        mac=mac.lower(),
        host_interface=host_ends[0] if host_ends else "",
        dns_servers=tuple(str(s) for s in dns.get("nameservers") or ()),
        dns_search=tuple(str(s) for s in dns.get("search") or ()),
    )
