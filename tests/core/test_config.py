"""The config file: strict decoding, one-line errors, defaults that round-trip."""

from __future__ import annotations

import tomllib

import attrs
import pytest

from dockyard.core.config import Config, DaemonConfig, load_config, parse_config
from dockyard.core.drivers import DriverKind
from dockyard.core.errors import ConfigError
from tests.conftest import plugin_env, run_dockyard


def test_empty_file_gives_the_defaults():
    assert parse_config("", "c.toml") == attrs.evolve(Config(), source="c.toml")


def test_sections_keys_and_driver_tables_are_decoded():
    config = parse_config(
        """
        disabled-plugins = ["lab"]
        strict-plugins = true
        [daemon]
        data-root = "/srv/dockyard"
        hosts = ["unix:///tmp/a.sock", "tcp://127.0.0.1:2375"]
        log-level = "debug"
        [registry]
        backend = "memory"
        [registries.memory]
        max-size = 1024
        """,
        "c.toml",
    )
    assert config.disabled_plugins == ["lab"]
    assert config.strict_plugins is True
    assert config.daemon.data_root == "/srv/dockyard"
    assert config.daemon.hosts == ["unix:///tmp/a.sock", "tcp://127.0.0.1:2375"]
    assert config.daemon.log_level == "debug"
    assert config.registry.backend == "memory"
    assert config.driver_tables == {(DriverKind.REGISTRY_BACKEND, "memory"): {"max-size": 1024}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[daemon]\nstorage-drivr = 'vfs'",
            "c.toml: unknown key 'daemon.storage-drivr' (did you mean 'storage-driver'?); "
            "allowed keys: data-root, hosts, storage-driver,",
        ),
        (
            "[daemon]\ndata_root = '/x'",
            "unknown key 'daemon.data_root' (did you mean 'data-root'?)",
        ),
        ("colour = 'blue'", "c.toml: unknown key 'colour'; allowed keys: disabled-plugins,"),
        ("[deamon]\nx = 1", "c.toml: unknown key 'deamon' (did you mean '[daemon]'?)"),
        (
            "[daemon]\nhosts = 'unix:///x'",
            "key 'daemon.hosts' must be a list of strings, not a string",
        ),
        (
            "[daemon]\nlog-level = 'loud'",
            "'daemon.log-level' must be one of debug, info, warning, error; got 'loud'",
        ),
        ("strict-plugins = 'yes'", "key 'strict-plugins' must be true or false, not a string"),
        ("daemon = 3", "c.toml: 'daemon' must be a table ([daemon]), not an integer"),
        (
            "[storage]\noverlay = 3",
            "'storage.overlay' must be a table ([storage.overlay]), not an integer",
        ),
        ("[daemon\n", "c.toml: invalid TOML:"),
    ],
)
def test_bad_config_is_one_clear_line(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "c.toml")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read config file .*nope.toml: No such file"):
        load_config(str(tmp_path / "nope.toml"))


def test_daemon_refuses_a_bad_config_file_without_traceback(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[daemon]\nlog-level = 'chatty'\n")
    socket_path = tmp_path / "d.sock"
    result = run_dockyard(
        [
            "daemon",
            "--config",
            str(config),
            "-H",
            f"unix://{socket_path}",
            "--data-root",
            str(tmp_path / "r"),
        ]
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"dockyard daemon: {config}: key 'daemon.log-level' must be one of debug, info, warning, "
        "error; got 'chatty'"
    ]
    assert "Traceback" not in result.stderr
    assert not socket_path.exists()
    assert not (tmp_path / "r").exists()


def test_bad_flag_value_names_the_flag_source(tmp_path):
    result = run_dockyard(
        [
            "daemon",
            "--log-level",
            "loud",
            "-H",
            f"unix://{tmp_path}/d.sock",
            "--data-root",
            str(tmp_path),
        ]
    )
    assert result.returncode == 1
    assert "or its command-line flag: key 'daemon.log-level' must be one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_daemon_option_has_a_flag():
    from dockyard.cli import build_parser
    from dockyard.commands.servers import DAEMON_FLAGS, DAEMON_SWITCHES

    flags = {f.name.replace("_", "-") for f in attrs.fields(DaemonConfig)} - {"hosts"}
    assert flags == set(DAEMON_FLAGS + DAEMON_SWITCHES)
    parsed = build_parser().parse_args(["daemon", "-H", "unix:///a", "-H", "tcp://1.2.3.4:5"])
    assert parsed.hosts == ["unix:///a", "tcp://1.2.3.4:5"]


def test_config_default_prints_a_config_that_parses_back_to_the_defaults(plugin_sites):
    result = run_dockyard(
        ["config", "default"], env=plugin_env([plugin_sites["dockyard-memory-backend"]])
    )
    assert result.returncode == 0, result.stderr
    tomllib.loads(result.stdout)  # valid TOML
    assert "[registries.memory]\n" in result.stdout
    assert "max-size = 0" in result.stdout
    config = parse_config(result.stdout, "default.toml")
    assert attrs.evolve(config, driver_tables={}) == attrs.evolve(Config(), source="default.toml")
    assert config.driver_tables[(DriverKind.REGISTRY_BACKEND, "memory")] == {"max-size": 0}
