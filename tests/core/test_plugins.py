"""Plugin loading policy, end to end through entry points of pip-installed distributions."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from dockyard.core.config import Config, parse_config
from dockyard.core.drivers import DriverKind
from dockyard.core.errors import ConfigError, InvalidCredentials, PluginError
from dockyard.core.interfaces import Access, AuthRequest, Identity
from dockyard.core.plugins import PluginHost
from tests.conftest import plugin_env, run_dockyard


@pytest.fixture
def sites(plugin_sites, monkeypatch):
    """Put chosen example distributions on sys.path for an in-process PluginHost."""

    def use(*names):
        for name in names:
            monkeypatch.syspath_prepend(str(plugin_sites[name]))
        monkeypatch.delenv("DOCKYARD_DISABLE_PLUGIN_AUTOLOAD", raising=False)

    return use


def reports_by_name(host):
    return {report.name: report for report in host.report()}


def local_plugins(sites, *args, env_extra=None):
    result = run_dockyard(
        ["plugins", "--local", "--format", "json", *args],
        env=plugin_env(sites, **(env_extra or {})),
    )
    assert result.returncode == 0, result.stderr
    return {p["Name"]: p for p in json.loads(result.stdout)}


def test_third_party_backend_is_listed_with_its_distribution_and_selected_by_config(
    plugin_sites, tmp_path
):
    config = tmp_path / "config.toml"
    config.write_text('[registry]\nbackend = "memory"\n[registries.memory]\nmax-size = 4096\n')
    plugins = local_plugins([plugin_sites["dockyard-memory-backend"]], "--config", str(config))
    memory = plugins["memory"]
    assert memory["Distribution"] == "dockyard-memory-backend"
    assert memory["Version"] == "1.0.0"
    assert memory["Status"] == "ok"
    assert memory["Kinds"] == ["registry backend"]
    assert memory["Selected"] == ["memory"]
    assert memory["Builtin"] is False


def test_table_output_shows_name_kind_distribution_version_status_and_selection(
    plugin_sites, tmp_path
):
    config = tmp_path / "config.toml"
    config.write_text('[registry]\nbackend = "memory"\n')
    result = run_dockyard(
        ["plugins", "--local", "--config", str(config)],
        env=plugin_env(
            [plugin_sites["dockyard-memory-backend"], plugin_sites["dockyard-test-plugins"]]
        ),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "KIND",
        "DRIVERS",
        "SELECTED",
        "DISTRIBUTION",
        "VERSION",
        "STATUS",
    ]
    memory = next(line for line in lines if line.startswith("memory "))
    assert memory.split()[:2] == ["memory", "registry"]
    assert "dockyard-memory-backend" in memory and "1.0.0" in memory and memory.endswith("ok")
    broken = next(line for line in lines if line.startswith("broken "))
    assert (
        "error: ModuleNotFoundError: No module named 'frobnicate_library_that_does_not_exist'"
        in broken
    )


def test_built_backend_works_with_decoded_config(sites):
    sites("dockyard-memory-backend")
    config = parse_config(
        '[registry]\nbackend = "memory"\n[registries.memory]\nmax-size = 8\n', "c.toml"
    )
    host = PluginHost(config, "registry").load()
    assert host.selected(DriverKind.REGISTRY_BACKEND) == "memory"
    backend = host.build(
        DriverKind.REGISTRY_BACKEND, pytest.importorskip("pathlib").Path("/tmp/unused")
    )
    writer = backend.writer("/a/b")
    writer.write(b"12345678")
    writer.commit()
    assert b"".join(backend.read("/a/b")) == b"12345678"
    with pytest.raises(Exception, match="max-size 8 bytes"):
        backend.writer("/a/c").write(b"x")


def test_unknown_key_in_a_plugin_table_is_refused(sites):
    sites("dockyard-memory-backend")
    config = parse_config("[registries.memory]\nmax-sise = 8\n", "c.toml")
    with pytest.raises(
        ConfigError,
        match=r"c.toml: unknown key 'registries.memory.max-sise' \(did you mean 'max-size'\?\); allowed keys: max-size",
    ):
        PluginHost(config, "cli").load()


def test_table_for_an_unknown_driver_is_refused(sites):
    sites("dockyard-memory-backend")
    config = parse_config("[registries.memroy]\nmax-size = 8\n", "c.toml")
    with pytest.raises(
        ConfigError,
        match=r"unknown registry backend 'memroy' in \[registries.memroy\]; available: filesystem, memory, s3",
    ):
        PluginHost(config, "cli").load()


def test_import_failure_is_recorded_and_the_daemon_still_starts(plugin_sites, start_daemon):
    daemon = start_daemon(sites=[plugin_sites["dockyard-test-plugins"]])
    plugins = {p["Name"]: p for p in daemon.request("GET", "/dockyard/plugins").json()}
    assert plugins["broken"]["Status"] == "error"
    assert plugins["broken"]["Reason"] == (
        "ModuleNotFoundError: No module named 'frobnicate_library_that_does_not_exist'"
    )
    assert plugins["broken"]["Distribution"] == "dockyard-test-plugins"
    assert plugins["broken"]["Version"] == "2.5.0"
    assert plugins["recorder"]["Status"] == "ok"


def test_shutdown_goes_through_pluggy_plugin_by_plugin(sites, tmp_path, monkeypatch):
    # "bare" takes no argument (pluggy passes only what an implementation names); "unruly"
    # raises, and is called first (pluggy calls the last registered first): the others run.
    sites("dockyard-test-plugins")
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("DOCKYARD_TEST_RECORD", str(record))
    host = PluginHost(Config(), "cli").load()
    failures = host.call_each("dockyard_shutdown", service=SimpleNamespace(program="daemon"))
    assert [(name, str(exc)) for name, exc in failures] == [
        ("unruly", "the unruly plugin will not shut down (daemon)")
    ]
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    shutdowns = [call.get("plugin", "recorder") for call in calls
                 if call["hook"] == "dockyard_shutdown"]  # fmt: skip
    assert shutdowns == ["recorder", "bare"]


def test_misspelled_hook_is_an_error_not_silence(sites):
    sites("dockyard-test-plugins")
    report = reports_by_name(PluginHost(Config(), "cli").load())["misspelled"]
    assert report.status == "error"
    assert "unknown hook" in report.reason and "dockyard_storge_drivers" in report.reason


def test_unusable_driver_is_skipped_with_its_reason(sites):
    sites("dockyard-test-plugins")
    host = PluginHost(Config(), "daemon").load()
    lab = reports_by_name(host)["lab"]
    frob = next(d for d in lab.drivers if d.name == "frob")
    assert frob.status == "skip"
    assert frob.reason == "needs the frobnicator kernel module, which this machine lacks"
    # Auto-selection passes over it despite its high priority.
    assert host.selected(DriverKind.RUNTIME) != "frob"


def test_selecting_an_unusable_driver_fails_with_the_reason(sites):
    sites("dockyard-test-plugins")
    config = parse_config('[daemon]\nruntime = "frob"\n', "c.toml")
    with pytest.raises(
        ConfigError, match=r"runtime 'frob' .* cannot be used here: needs the frobnicator"
    ):
        PluginHost(config, "daemon").load()


def test_unknown_driver_name_lists_what_is_available(sites):
    sites("dockyard-memory-backend")
    config = parse_config('[registry]\nbackend = "memroy"\n', "c.toml")
    with pytest.raises(ConfigError) as caught:
        PluginHost(config, "registry").load()
    message = str(caught.value)
    assert "unknown registry backend 'memroy' (set by [registry] backend in c.toml)" in message
    assert "available: " in message and "memory" in message
    assert "may not be installed" in message


def test_selected_driver_of_a_plugin_that_failed_to_import_names_the_failure(sites):
    sites("dockyard-test-plugins")
    config = parse_config('[daemon]\nstorage-driver = "frobfs"\n', "c.toml")
    with pytest.raises(ConfigError, match="plugin 'broken' failed to load: ModuleNotFoundError"):
        PluginHost(config, "daemon").load()


def test_two_plugins_claiming_one_name_is_an_error_naming_both(sites):
    sites("dockyard-memory-backend", "dockyard-clash-plugin")
    with pytest.raises(PluginError) as caught:
        PluginHost(Config(), "cli").load()
    message = str(caught.value)
    assert "registry backend 'memory' is provided by two plugins" in message
    assert "dockyard-memory-backend" in message and "dockyard-clash-plugin" in message


def test_disabled_plugins_do_not_load(sites):
    sites("dockyard-memory-backend", "dockyard-clash-plugin")
    host = PluginHost(parse_config('disabled-plugins = ["clash"]', "c.toml"), "cli").load()
    reports = reports_by_name(host)
    assert reports["clash"].status == "disabled"
    assert reports["memory"].status == "ok"


def test_required_plugin_that_failed_stops_the_daemon(plugin_sites, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('required-plugins = ["broken"]\n')
    result = run_dockyard(
        [
            "daemon",
            "--config",
            str(config),
            "-H",
            f"unix://{tmp_path}/d.sock",
            "--data-root",
            str(tmp_path / "r"),
        ],
        env=plugin_env([plugin_sites["dockyard-test-plugins"]]),
    )
    assert result.returncode == 1
    assert "required plugin 'broken' is error: ModuleNotFoundError" in result.stderr
    assert "Traceback" not in result.stderr


def test_required_plugin_not_installed(sites):
    with pytest.raises(PluginError, match="required plugin 'nope' is not installed"):
        PluginHost(parse_config('required-plugins = ["nope"]', "c.toml"), "cli").load()


def test_strict_mode_refuses_any_failed_plugin(sites):
    sites("dockyard-test-plugins")
    with pytest.raises(
        PluginError, match="strict-plugins is on and plugins failed to load: broken: "
    ):
        PluginHost(parse_config("strict-plugins = true", "c.toml"), "cli").load()


def test_environment_switch_turns_autoloading_off(plugin_sites):
    site = [plugin_sites["dockyard-memory-backend"]]
    assert "memory" in local_plugins(site)
    assert "memory" not in local_plugins(site, env_extra={"DOCKYARD_DISABLE_PLUGIN_AUTOLOAD": "1"})


def test_auth_provider_from_a_plugin_decodes_a_table_option(sites):
    sites("dockyard-test-plugins")
    config = parse_config(
        '[registry]\nauth = "static"\n[auth.static]\nusers = { alice = "s3cret" }\n', "c.toml"
    )
    host = PluginHost(config, "cli").load()
    import base64
    from pathlib import Path

    auth = host.build(DriverKind.AUTH, Path("/tmp/unused"))
    good = base64.b64encode(b"alice:s3cret").decode()
    bad = base64.b64encode(b"alice:wrong").decode()
    who = auth.authenticate(AuthRequest("GET", "/v2/", {"authorization": f"Basic {good}"}))
    assert who == Identity("alice")
    with pytest.raises(InvalidCredentials) as refused:
        auth.authenticate(AuthRequest("GET", "/v2/", {"authorization": f"Basic {bad}"}))
    assert refused.value.subject == "alice"
    assert auth.authenticate(AuthRequest("GET", "/v2/", {})) is None
    push = Access("repository", "library/busybox", ("pull", "push"))
    assert auth.authorize(None, push) == ("pull",)
    assert auth.authorize(who, push) == ("pull", "push")


def test_plugin_option_of_the_wrong_type(sites):
    sites("dockyard-test-plugins")
    config = parse_config('[auth.static]\nusers = ["alice"]\n', "c.toml")
    with pytest.raises(ConfigError, match=r"key 'auth\.static\.users' must be a table, not a list"):
        PluginHost(config, "cli").load()


def test_auto_selected_driver_that_fails_to_build_falls_back(sites, tmp_path):
    sites("dockyard-test-plugins")
    host = PluginHost(Config(), "daemon").load()
    assert host.selected(DriverKind.STORAGE) == "picky"  # highest priority, check passes
    built = host.build(DriverKind.STORAGE, tmp_path)
    assert host.selected(DriverKind.STORAGE) != "picky"
    assert type(built).__name__ in ("OverlayDriver", "VfsDriver")
    picky = next(d for d in reports_by_name(host)["lab"].drivers if d.name == "picky")
    assert picky.status == "skip"
    assert "is on a filesystem this driver cannot use" in picky.reason


def test_named_driver_that_fails_to_build_is_a_config_error(sites, tmp_path):
    sites("dockyard-test-plugins")
    config = parse_config('[daemon]\nstorage-driver = "picky"\n', "c.toml")
    host = PluginHost(config, "daemon").load()
    with pytest.raises(
        ConfigError,
        match=r"storage driver 'picky' \(set by \[daemon\] storage-driver in c.toml\) cannot be used here: .* is on a filesystem",
    ):
        host.build(DriverKind.STORAGE, tmp_path)
