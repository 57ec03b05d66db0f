"""The configuration file: TOML, decoded into attrs classes, checked strictly.

Layout::

    disabled-plugins = []          # top-level keys: which plugins load
    required-plugins = []
    strict-plugins = false

    [daemon]                       # DaemonConfig
    [registry]                     # RegistryConfig
    [storage.overlay]              # one table per driver: [<kind section>.<driver name>]
    [runtimes.namespaces]
    [registries.s3]
    [auth.<name>]                  # the options of an auth provider a plugin adds

Keys are hyphenated like the command-line flags. Anything unknown or of the wrong type is a
:class:`ConfigError` whose message is one line naming the key, the file and what is allowed.
Driver tables are kept raw here and decoded by :mod:`dockyard.core.plugins` once the drivers that
own them are known.
"""

from __future__ import annotations

import difflib
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from dockyard.core.drivers import DriverKind
from dockyard.core.errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/dockyard/config.toml"
DEFAULT_DATA_ROOT = "/var/lib/dockyard"
DEFAULT_DAEMON_HOST = "unix:///run/dockyard.sock"
LOG_LEVELS = ("debug", "info", "warning", "error")

T = TypeVar("T")


def option(default: Any, help: str, choices: tuple[str, ...] = ()) -> Any:
    """An attrs field for a config key: its default, a one-line help, optional allowed values."""
    if isinstance(default, list | dict):
        value = default
        return attrs.field(factory=lambda: type(value)(value), metadata={"help": help})
    return attrs.field(default=default, metadata={"help": help, "choices": choices})


def _header_timeout() -> Any:
    return option(
        60.0,
        "seconds a client may take to send a request's head (from its first byte, or from "
        "connecting); a slower client is disconnected",
    )


def _body_timeout() -> Any:
    return option(
        300.0,
        "seconds a client may pause while sending a request body; then 408 and disconnected "
        "(answers streamed to the client are not limited)",
    )


@attrs.frozen
class DaemonConfig:
    data_root: str = option(DEFAULT_DATA_ROOT, "where images, containers and state are kept")
    hosts: list[str] = option(
        [DEFAULT_DAEMON_HOST], "sockets to serve the Engine API on: unix:///PATH or tcp://ADDR:PORT"
    )
    storage_driver: str = option("", "storage driver by name; empty picks the best usable one")
    runtime: str = option("", "container runtime by name; empty picks the best usable one")
    log_level: str = option("info", "least severe log level written", LOG_LEVELS)
    log_format: str = option("json", "log line format", ("json", "console"))
    # dockerd's TLS flags and daemon.json keys, with dockerd 20.10's meaning (see daemon/tls.py).
    tls: bool = option(
        False, "tcp:// hosts speak TLS; clients must present a certificate unless tlsverify = false"
    )
    tlsverify: bool | None = option(
        None, "TLS, and tcp:// clients must present a certificate tlscacert signed; false: TLS only"
    )
    tlscacert: str = option("", "CA of client certificates; empty: ca.pem beside the config file")
    tlscert: str = option("", "server certificate (PEM); empty: cert.pem beside the config file")
    tlskey: str = option("", "its private key (PEM); empty: key.pem beside the config file")
    token_file: str = option("", "file holding a bearer token that tcp:// clients must send")
    userns_remap: str = option(
        "", "containers' root is an unprivileged host id: 'default' or USER[:GROUP]; empty: off"
    )
    subuid_file: str = option("/etc/subuid", "subordinate uid ranges for userns-remap")
    subgid_file: str = option("/etc/subgid", "subordinate gid ranges for userns-remap")
    # Registries the daemon talks to (login now; pull and push reuse the same settings).
    default_registry: str = option(
        "127.0.0.1:5000",
        "registry HOST[:PORT] of a login that names none (the local dockyard registry's "
        "default address; 'docker.io' for Docker Hub); /info reports it as IndexServerAddress",
    )
    insecure_registries: list[str] = option(
        [],
        "registries reached over plain HTTP when HTTPS fails, and over HTTPS without "
        "certificate checks: HOST[:PORT] or CIDR, as dockerd's; 127.0.0.0/8 always is",
    )
    registry_certs_dir: str = option(
        "/etc/dockyard/certs.d",
        "per-registry TLS files, as docker's certs.d: DIR/HOST[:PORT]/*.crt are CAs, "
        "*.cert with *.key client certificates",
    )
    registry_timeout: float = option(
        15.0, "seconds a registry may take to connect or to send the next bytes of an answer"
    )
    max_concurrent_downloads: int = option(3, "layers a pull downloads at the same time")
    registry_mirrors: list[str] = option(
        [],
        "registries (URL or HOST[:PORT]) a pull of a default-registry image tries first, in "
        "order, as dockerd's; a mirror that fails or lacks the image gives way to the next",
    )
    push_compression: str = option(
        "gzip",
        "how pushed layers are compressed: gzip (what docker sends) or zstd",
        ("gzip", "zstd"),
    )
    max_upload_attempts: int = option(
        5, "tries at each layer of a push, waiting 5 s more after each failure, as dockerd's"
    )
    max_concurrent_uploads: int = option(
        5, "layers a push compresses and uploads at the same time, as dockerd's"
    )
    bridge: str = option(
        "",
        "the default bridge network: empty makes it (with the bridge driver's options); none "
        "leaves it out, and containers then default to --network none (dockerd's -b none)",
        ("", "none"),
    )
    log_driver: str = option(
        "json-file", "log driver of containers that name none (json-file, local, none...)"
    )
    log_opts: dict[str, str] = option(
        {},
        "options of the log-driver, for containers using it; theirs override these, as "
        'dockerd\'s log-opts (e.g. { "max-size" = "10m", "max-file" = "3" })',
    )
    init: bool = option(
        False, "containers run an init (tini) as pid 1 unless they say --init=false, as dockerd's"
    )
    init_path: str = option(
        "",
        "the docker-init binary bound into containers run with --init; empty: Debian's "
        "/usr/bin/docker-init or tini-static (apt-get install tini)",
    )
    header_timeout: float = _header_timeout()
    body_timeout: float = _body_timeout()
    max_json_body: int = option(
        4 * 1024 * 1024,
        "largest JSON request body, in bytes (413 above; uploads of images, build contexts and "
        "archives are streams, not limited); 0: no limit",
    )


@attrs.frozen
class ProxyConfig:
    """``[registry] proxy = { ... }``: serve a remote registry's content as a pull-through cache."""

    remote_url: str = option("", "the remote registry: http://HOST[:PORT] or https://HOST[:PORT]")
    username: str = option("", "user name at the remote registry; empty: anonymous")
    password: str = attrs.field(
        default="", repr=False, metadata={"help": "password at the remote registry", "choices": ()}
    )
    tag_ttl: int = option(
        300, "seconds a tag's resolution is trusted before asking the remote again"
    )


@attrs.frozen
class RegistryConfig:
    listen: str = option("127.0.0.1:5000", "address the registry serves on")
    backend: str = option("filesystem", "registry storage backend by name")
    auth: str = option(
        "none", "auth provider by name: none (anyone may do anything), htpasswd, token"
    )
    auth_failures_per_minute: int = option(
        10, "failed logins allowed per user and per address, a minute's worth at once (then 429)"
    )
    token_requests_per_minute: int = option(
        600, "token requests allowed per user and per address, a minute's worth at once"
    )
    tlscert: str = option("", "PEM certificate; with tlskey, the registry speaks HTTPS")
    tlskey: str = option("", "PEM private key for tlscert")
    log_level: str = option("info", "least severe log level written", LOG_LEVELS)
    data_root: str = option(
        "/var/lib/dockyard/registry", "registry state; backends' private state dirs live here"
    )
    max_blob_size: int = option(0, "largest blob accepted, in bytes (413 above); 0: no limit")
    max_manifest_size: int = option(8 * 1024 * 1024, "largest manifest accepted, in bytes")
    upload_expiry: int = option(86400, "seconds an idle upload session lives before gc purges it")
    gc_grace_period: int = option(
        3600, "seconds a newly written blob or manifest is safe from gc, referenced or not"
    )
    gc_delete_untagged: bool = option(False, "gc also deletes manifests that no tag reaches")
    proxy: ProxyConfig | None = option(
        None, "a table: serve as a pull-through cache of a remote registry (pushes are refused)"
    )
    header_timeout: float = _header_timeout()
    body_timeout: float = _body_timeout()


@attrs.frozen
class Config:
    """The whole configuration of one process. ``driver_tables`` holds the raw driver tables."""

    disabled_plugins: list[str] = option([], "plugins not to load, by name")
    required_plugins: list[str] = option([], "plugins that must load, or the process won't start")
    strict_plugins: bool = option(False, "refuse to start when any plugin fails to load")
    daemon: DaemonConfig = attrs.field(factory=DaemonConfig)
    registry: RegistryConfig = attrs.field(factory=RegistryConfig)
    driver_tables: Mapping[tuple[DriverKind, str], Mapping[str, Any]] = attrs.field(factory=dict)
    source: str = "<embedded defaults>"


_SECTIONS = {"daemon": DaemonConfig, "registry": RegistryConfig}
_DRIVER_SECTIONS = {kind.value: kind for kind in DriverKind}


def load_config(path: str | None = None) -> Config:
    """Read the config file. ``path=None`` reads the default file if it exists, else defaults."""
    if path is None:
        if not os.path.exists(DEFAULT_CONFIG_PATH):
            return Config()
        path = DEFAULT_CONFIG_PATH
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    return parse_config(text, source=path)


def parse_config(text: str, source: str) -> Config:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    top: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    tables: dict[tuple[DriverKind, str], Mapping[str, Any]] = {}
    for key, value in document.items():
        if key in _SECTIONS:
            _expect_table(value, key, source)
            sections[key.replace("-", "_")] = decode(_SECTIONS[key], value, key, source)
        elif key in _DRIVER_SECTIONS:
            _expect_table(value, key, source)
            for driver, table in value.items():
                _expect_table(table, f"{key}.{driver}", source)
                tables[(_DRIVER_SECTIONS[key], driver)] = table
        else:
            top[key] = value
    allowed_sections = [f"[{name}]" for name in _SECTIONS]
    allowed_sections += [f"[{name}.<driver>]" for name in _DRIVER_SECTIONS]
    base = decode(Config, top, "", source, hidden=_NOT_KEYS, extra_allowed=allowed_sections)
    return attrs.evolve(base, **sections, driver_tables=tables, source=source)


# Fields of Config that are tables or bookkeeping, never top-level keys.
_NOT_KEYS = frozenset({"daemon", "registry", "driver_tables", "source"})


def _expect_table(value: Any, where: str, source: str) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{where}' must be a table ([{where}]), not {_kind(value)}")


def decode(
    cls: type[T],
    table: Mapping[str, Any],
    where: str,
    source: str,
    hidden: frozenset[str] = frozenset(),
    extra_allowed: list[str] | None = None,
) -> T:
    """Build attrs class ``cls`` from a TOML table, refusing unknown keys and wrong types.

    ``where`` is the dotted table name for messages (``"storage.overlay"``); ``hidden`` names
    fields that are not keys of this table.
    """
    fields = {f.name: f for f in attrs.fields(cls) if f.name not in hidden}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        qualified = f"{where}.{key}" if where else key
        # Keys are spelled like the flags: "data-root", never "data_root".
        if "_" in key or name not in fields:
            allowed = [n.replace("_", "-") for n in fields]
            allowed_text = ", ".join(allowed + (extra_allowed or [])) or "none"
            candidates = allowed + (extra_allowed or [])
            close = difflib.get_close_matches(key.replace("_", "-"), candidates, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{source}: unknown key '{qualified}'{hint}; allowed keys: {allowed_text}"
            )
        table_class = _table_class(hints[name])
        if table_class is not None:
            _expect_table(value, qualified, source)
            values[name] = decode(table_class, value, qualified, source)
        else:
            values[name] = _check_type(value, hints[name], fields[name], qualified, source)
    return cls(**values)


def _table_class(hint: Any) -> type | None:
    """The attrs class a key's value is decoded into (``ProxyConfig | None``), if any."""
    arms = (
        typing.get_args(hint)
        if typing.get_origin(hint) in (types.UnionType, typing.Union)
        else (hint,)
    )
    for arm in arms:
        if isinstance(arm, type) and attrs.has(arm):
            return arm
    return None


def _check_type(value: Any, hint: Any, field: Any, qualified: str, source: str) -> Any:
    expected = _describe(hint)
    if not _matches(value, hint):
        raise ConfigError(f"{source}: key '{qualified}' must be {expected}, not {_kind(value)}")
    choices = field.metadata.get("choices") if field.metadata else None
    if choices and value not in choices:
        raise ConfigError(
            f"{source}: key '{qualified}' must be one of {', '.join(choices)}; got {value!r}"
        )
    return value


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict:
        _, item = typing.get_args(hint)
        return isinstance(value, dict) and all(_matches(v, item) for v in value.values())
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        # None stands for a key left out (TOML has no null), never for a value to write.
        arms = [arm for arm in typing.get_args(hint) if arm is not type(None)]
        return " or ".join(_describe(arm) for arm in arms)
    if origin is list:
        item = typing.get_args(hint)[0]
        plural = {str: "strings", int: "integers", float: "numbers", bool: "booleans"}
        return f"a list of {plural.get(item, 'values')}"
    if origin is dict:
        return "a table"
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _kind(value: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}
    names |= {list: "a list", dict: "a table"}
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# Rendering (``dockyard config default``)
# --------------------------------------------------------------------------------------------


def render_table(instance: Any, header: str | None) -> str:
    """One TOML table with each key's help as a comment above it."""
    lines = [f"[{header}]"] if header else []
    hints = typing.get_type_hints(type(instance))
    for field in attrs.fields(type(instance)):
        value = getattr(instance, field.name)
        if field.name in _NOT_KEYS:
            continue
        help_text = field.metadata.get("help") if field.metadata else None
        choices = field.metadata.get("choices") if field.metadata else None
        if help_text:
            suffix = f" ({' | '.join(choices)})" if choices else ""
            lines.append(f"# {help_text}{suffix}")
        key = field.name.replace("_", "-")
        if value is None:
            # TOML has no null: a key whose default is "unset" is shown commented out, an
            # optional table with its own keys' defaults.
            table_class = _table_class(hints[field.name])
            example = f" {toml_value(table_class())}" if table_class is not None else ""
            lines.append(f"# {key} ={example}")
        else:
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f'"{k}" = {toml_value(v)}' for k, v in value.items()) + " }"
    if attrs.has(type(value)):
        keys = {f.name.replace("_", "-"): getattr(value, f.name) for f in attrs.fields(type(value))}
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in keys.items()) + " }"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")
