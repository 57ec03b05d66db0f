"""The dockyard client: output, errors, and a lean import path."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import plugin_env, run_dockyard

HEAVY = ("starlette", "uvicorn", "structlog", "pluggy", "attrs", "anyio")


def test_unreachable_daemon_is_one_line_and_exit_1(tmp_path):
    socket_path = tmp_path / "nobody.sock"
    for command in (["version"], ["info"], ["plugins"]):
        result = run_dockyard(["-H", f"unix://{socket_path}", *command])
        assert result.returncode == 1
        assert result.stderr == (
            f"cannot connect to the dockyard daemon at unix://{socket_path}: is it running?\n"
        )


def test_default_host_and_env_host(tmp_path, daemon):
    result = run_dockyard(["info"], env=plugin_env([], DOCKYARD_HOST=daemon.host))
    assert result.returncode == 0, result.stderr
    assert f" Data Root: {daemon.data_root}" in result.stdout
    # Without -H or DOCKYARD_HOST the client goes to the default socket.
    env = plugin_env([])
    result = subprocess.run(
        [sys.executable, "-c", "from dockyard.cli import DEFAULT_HOST; print(DEFAULT_HOST)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert result.stdout.strip() == "unix:///run/dockyard.sock"


def test_version_client_and_server(daemon):
    result = run_dockyard(["-H", daemon.host, "version"])
    assert result.returncode == 0, result.stderr
    assert "Client:\n Version:          0.1.0\n" in result.stdout
    assert "Server: dockyard 0.1.0" in result.stdout
    assert "API version:     1.41 (minimum version 1.12)" in result.stdout
    both = json.loads(run_dockyard(["-H", daemon.host, "version", "--format", "json"]).stdout)
    assert both["Server"]["ApiVersion"] == "1.41"
    client_only = run_dockyard(["-H", "unix:///nonexistent.sock", "version", "--client"])
    assert client_only.returncode == 0
    assert "Server" not in client_only.stdout


def test_info_and_plugins_through_the_daemon(plugin_sites, start_daemon):
    daemon = start_daemon(sites=[plugin_sites["dockyard-memory-backend"]])
    info = run_dockyard(["-H", daemon.host, "info"])
    assert info.returncode == 0, info.stderr
    plugins_section = info.stdout.split(" Plugins:\n", 1)[1].split("\n Kernel Version:", 1)[0]
    assert "  memory: registry backend (memory) selected=- ok" in plugins_section.splitlines()
    assert "  overlay: storage driver (overlay) selected=overlay ok" in plugins_section.splitlines()
    listing = run_dockyard(["-H", daemon.host, "plugins"])
    assert listing.returncode == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "KIND",
        "DRIVERS",
        "SELECTED",
        "DISTRIBUTION",
        "VERSION",
        "STATUS",
    ]
    assert any(row.split()[0] == "memory" and row.endswith("ok") for row in rows)
    data = json.loads(run_dockyard(["-H", daemon.host, "plugins", "--format", "json"]).stdout)
    assert {p["Name"] for p in data} >= {"memory"}


def test_api_error_is_reported_like_docker(daemon, tmp_path):
    # --config without --local is a usage error, not a traceback
    result = run_dockyard(["-H", daemon.host, "plugins", "--config", str(tmp_path / "x.toml")])
    assert result.returncode == 1
    assert (
        result.stderr
        == "dockyard plugins: --config goes with --local; the daemon uses its own config\n"
    )


def test_bad_host_is_a_usage_error():
    result = run_dockyard(["-H", "ftp://x", "info"])
    assert result.returncode == 1
    assert (
        result.stderr
        == "dockyard info: invalid host 'ftp://x': use unix:///PATH or tcp://ADDRESS:PORT\n"
    )


def _modules_after(args: list[str], env) -> set[str]:
    code = (
        "import sys, json\n"
        "from dockyard.cli import main\n"
        f"code = main({args!r})\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def test_client_commands_import_no_server_stack(daemon):
    env = plugin_env([])
    for args in (
        ["version", "--client"],
        ["-H", daemon.host, "version"],
        ["-H", daemon.host, "info"],
        ["-H", daemon.host, "plugins"],
        ["-H", daemon.host, "images"],
        ["-H", daemon.host, "image", "inspect", "nope"],
        ["-H", daemon.host, "ps", "-a"],
        ["-H", daemon.host, "volume", "ls"],
        ["-H", daemon.host, "logs", "nope"],
        ["-H", daemon.host, "login", "127.0.0.1:1", "-u", "u", "-p", "wrong"],
        ["-H", daemon.host, "pull", "127.0.0.1:1/x/y:1"],
        ["-H", daemon.host, "push", "127.0.0.1:1/x/y:1"],
    ):
        loaded = _modules_after(args, env)
        heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
        assert heavy == [], (args, heavy)
        assert not any(
            m.startswith("dockyard.core.")
            and m not in ("dockyard.core.hosts", "dockyard.core.units", "dockyard.core.platforms")
            for m in loaded
        )


def test_only_the_needed_sub_parsers_are_built_yet_every_command_parses():
    from dockyard.cli import build_parser, command_word

    assert command_word(["-H", "unix:///x.sock", "--tls", "run", "busybox"]) == "run"
    assert command_word(["--host", "ps", "images"]) == "images"  # "ps" is the host's value
    assert command_word(["--tlscacert", "ca.pem", "-h", "run"]) is None
    assert command_word([]) is None
    full = build_parser()
    subparsers = next(a for a in full._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in subparsers.choices:
        partial = build_parser(name)
        partial_choices = next(
            a for a in partial._actions if a.__class__.__name__ == "_SubParsersAction"
        ).choices
        assert name in partial_choices
        assert partial_choices[name].format_help() == subparsers.choices[name].format_help()
    version_only = next(
        a for a in build_parser("version")._actions if a.__class__.__name__ == "_SubParsersAction"
    )
    assert "run" not in version_only.choices  # the container module was not asked
