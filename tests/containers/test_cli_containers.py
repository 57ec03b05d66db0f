"""Our client's container and volume commands against a real daemon and runtime.

Every test runs ``python -m dockyard`` as a subprocess against one shared daemon (see
conftest.py); the interactive ones drive it through a pseudo-terminal. The last tests run the
real docker CLI against the same daemon and compare what both clients print.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import pytest

from dockyard.cli import (
    AttachSession,
    build_parser,
    docker_boolean_flags,
    go_indent,
    log_timestamp,
    nano_cpus,
    parse_detach_keys,
    ram_in_bytes,
)
from dockyard.client import StdCopyError, demultiplex
from dockyard.testing.images import busybox_rootfs
from tests.conftest import docker_cli, eventually, plugin_env, run_dockyard
from tests.containers.conftest import IMAGE, DockyardCLI

FULL_ID = re.compile(r"^[0-9a-f]{64}$")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def inspect(cli: DockyardCLI, name: str) -> dict:
    return json.loads(ok(cli("container", "inspect", name)))[0]


@pytest.fixture
def container_names(cli):
    """Names handed out to a test; whatever of them is left is removed afterwards."""
    names: list[str] = []

    def make(prefix: str = "c") -> str:
        names.append(unique(prefix))
        return names[-1]

    yield make
    if names:
        cli("rm", "-f", *names)


# --------------------------------------------------------------------------------------------
# Client-side conversions (no daemon)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1024", 1024),
        ("512m", 512 * 1024**2),
        ("512M", 512 * 1024**2),
        ("1g", 1024**3),
        ("1.5g", int(1.5 * 1024**3)),
        ("100kb", 100 * 1024),
        ("2GiB", 2 * 1024**3),
        ("7b", 7),
    ],
)
def test_memory_strings_convert_to_bytes_like_docker(text, expected):
    assert ram_in_bytes(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid size: ''"),
        ("m", "invalid size: 'm'"),
        ("-5m", "invalid size: '-5m'"),
        ("12x", "invalid suffix: 'x'"),  # docker's words for these
        ("1.2.3q", "invalid suffix: '.3q'"),
        ("1 gb extra", "invalid suffix: 'gb extra'"),
    ],
)
def test_bad_memory_strings_are_refused(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ram_in_bytes(text)


def test_cpus_become_nano_cpus():
    assert nano_cpus("1.5") == 1_500_000_000
    assert nano_cpus("0.01") == 10_000_000
    with pytest.raises(ValueError):
        nano_cpus("lots")


def test_detach_keys_parse_like_docker():
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    assert parse_detach_keys("ctrl-@,ctrl-[") == b"\x00\x1b"


def test_detach_keys_are_held_until_they_match_or_differ():
    session = AttachSession(stream=None, tty=True, stdin_fd=None, detach_keys=b"\x10\x11")
    assert session._scan_detach(b"ab\x10", b"\x10\x11") == (b"ab", b"\x10")
    assert session._scan_detach(b"\x10x", b"\x10\x11") == (b"\x10x", b"")  # not the sequence
    assert not session.detached
    assert session._scan_detach(b"q\x10\x11rest", b"\x10\x11") == (b"q", b"")
    assert session.detached
    # Without a TTY there are no detach keys: stdin is passed on byte for byte, as docker does.
    assert AttachSession(None, tty=False, stdin_fd=0, detach_keys=b"\x10\x11").detach_keys is None


def test_boolean_flags_take_docker_style_values_but_the_command_is_left_alone():
    parser = build_parser()
    argv = ["run", "--sig-proxy=false", "--rm=true", "-d=false", IMAGE, "sh", "--rm=false"]
    rewritten = docker_boolean_flags(parser, argv)
    assert rewritten == ["run", "--no-sig-proxy", "--rm", IMAGE, "sh", "--rm=false"]
    args = parser.parse_args(rewritten)
    assert (args.sig_proxy, args.rm, args.detach) == (False, True, False)
    assert args.command == ["sh", "--rm=false"]


def test_options_end_at_the_image():
    args = build_parser().parse_args(["run", "-h", "box", IMAGE, "ls", "-l", "-h"])
    assert args.hostname == "box" and args.command == ["ls", "-l", "-h"]


def test_log_times_accept_durations_unix_seconds_and_dates():
    assert log_timestamp("90s", now=1000.0) == "910.000000000"
    assert log_timestamp("1m30s", now=1000.0) == "910.000000000"
    assert log_timestamp("1700000000.5") == "1700000000.5"
    assert log_timestamp("2023-11-14T22:13:20Z") == "1700000000.000000000"


def test_documents_are_laid_out_as_go_indents_them_keeping_the_daemons_escapes():
    document = {"a": [], "b": {}, "c": [1, {"d": 'q"uote, {[brackets]}: colon'}], "e": None}
    assert go_indent(json.dumps(document)) == json.dumps(document, indent=4)
    # The daemon's own spelling of a string is kept, as docker inspect prints raw documents.
    assert go_indent('{"x":"\\u003c<"}') == '{\n    "x": "\\u003c<"\n}'


def test_demultiplex_splits_streams_and_stops_at_daemon_errors(tmp_path):
    import io

    def frame(stream: int, data: bytes) -> bytes:
        return struct.pack(">BxxxL", stream, len(data)) + data

    wire = io.BytesIO(frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"cut sh"))
    truncated = io.BytesIO(wire.getvalue()[:-2])  # a stream cut inside a payload is an end
    out, err = io.BytesIO(), io.BytesIO()
    assert demultiplex(truncated.read, out, err) == (len(b"out\ncut "), 4)
    assert (out.getvalue(), err.getvalue()) == (b"out\ncut ", b"err\n")
    with pytest.raises(StdCopyError, match="error from daemon in stream: boom"):
        demultiplex(io.BytesIO(frame(3, b"boom")).read, io.BytesIO(), io.BytesIO())
    with pytest.raises(StdCopyError, match="Unrecognized input header: 9"):
        demultiplex(io.BytesIO(frame(9, b"x")).read, io.BytesIO(), io.BytesIO())


def test_userns_flag_is_the_usernsmode(cli, container_names):
    name = container_names()
    result = cli("create", "--name", name, "--userns=host", IMAGE, "true")
    assert result.returncode == 0, result.stderr
    assert json.loads(cli("inspect", name).stdout)[0]["HostConfig"]["UsernsMode"] == "host"
    # The daemon judges the value (this one runs without userns-remap: "host" is a no-op).
    result = cli("run", "--rm", "--userns", "private", IMAGE, "true")
    assert result.returncode == 125
    assert "invalid USER mode: private" in result.stderr


# --------------------------------------------------------------------------------------------
# run: output, exit statuses, stdin, --rm, -d
# --------------------------------------------------------------------------------------------


def test_run_rm_prints_both_streams_and_exits_with_the_containers_status(cli, container_names):
    name = container_names()
    result = cli("run", "--rm", "--name", name, IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (result.returncode, result.stdout) == (3, "out\n"), result.stderr
    assert "err\n" in result.stderr
    # AutoRemove: gone by the time run returns (it waited for condition=removed).
    assert name not in ok(cli("ps", "-a", "--format", "json"))


def test_run_passes_stdin_from_a_pipe_and_ends_it(cli):
    result = cli("run", "--rm", "-i", IMAGE, "cat", input="line one\nline two\n")
    assert (result.returncode, result.stdout) == (0, "line one\nline two\n"), result.stderr


def test_run_without_i_gives_the_container_no_stdin(cli):
    # The attach half-closes at once: cat sees the end of input instead of waiting forever.
    result = cli("run", "--rm", IMAGE, "sh", "-c", "cat; echo done", input="ignored\n")
    assert (result.returncode, result.stdout) == (0, "done\n"), result.stderr


def test_run_exit_statuses_for_start_failures_and_daemon_errors(cli, container_names):
    missing = cli("run", "--rm", IMAGE, "no-such-command")
    assert missing.returncode == 127, missing.stderr
    assert "executable file not found" in missing.stderr
    not_executable = cli("run", "--rm", IMAGE, "/etc")  # a directory: execve says EACCES
    assert not_executable.returncode == 126, not_executable.stderr
    assert "permission denied" in not_executable.stderr.lower()
    bad_memory = cli("run", "--rm", "-m", "12x", IMAGE, "true")
    assert bad_memory.returncode == 125
    assert 'invalid argument "12x" for "-m, --memory" flag' in bad_memory.stderr
    name = container_names()
    ok(cli("create", "--name", name, IMAGE, "true"))
    taken = cli("run", "--rm", "--name", name, IMAGE, "true")
    assert taken.returncode == 125
    assert "Error response from daemon: Conflict." in taken.stderr
    conflicting = cli("run", "--rm", "--restart", "always", IMAGE, "true")
    assert conflicting.returncode == 125
    assert "cannot specify both --restart and --rm" in conflicting.stderr


def test_run_of_an_image_nobody_has_tries_to_pull_then_exits_125(cli):
    # Port 9 on loopback refuses at once, so the pull fails fast and without a network.
    result = cli("run", "--rm", "127.0.0.1:9/nothing:here", "true")
    assert result.returncode == 125
    assert "Unable to find image '127.0.0.1:9/nothing:here' locally" in result.stderr


def test_run_detached_prints_the_id_even_when_start_fails(cli, container_names):
    name = container_names()
    result = cli("run", "-d", "--name", name, IMAGE, "no-such-command")
    assert result.returncode == 127 and "executable file not found" in result.stderr
    assert result.stdout.strip() == inspect(cli, name)["Id"]  # as docker: printed first


def test_run_rm_leaves_nothing_after_a_failed_start(cli, container_names):
    name = container_names()
    assert cli("run", "--rm", "--name", name, IMAGE, "no-such-command").returncode == 127
    assert name not in ok(cli("ps", "-a", "--format", "json"))


def test_run_detached_prints_the_id_then_logs_ps_stop_rm(cli, container_names):
    name = container_names()
    started = ok(cli("run", "-d", "--name", name, IMAGE, "sh", "-c", "echo ready; sleep 60"))
    container_id = started.strip()
    assert FULL_ID.match(container_id), started
    eventually(lambda: ok(cli("logs", name)) == "ready\n", what="the container's first line")
    listed = ok(cli("ps")).splitlines()
    assert listed[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS",
                                 "PORTS", "NAMES"]  # fmt: skip
    row = next(line for line in listed if line.startswith(container_id[:12]))
    assert '"sh -c \'echo ready; …"' in row and row.rstrip().endswith(name) and " Up " in row
    assert ok(cli("stop", "-t", "1", name)) == f"{name}\n"
    state = inspect(cli, name)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 137  # sh as pid 1 ignores TERM
    assert ok(cli("ps", "-q")).split().count(container_id[:12]) == 0
    assert container_id[:12] in ok(cli("ps", "-a", "-q")).split()
    assert ok(cli("rm", name)) == f"{name}\n"
    gone = cli("rm", name)
    assert gone.returncode == 1 and f"No such container: {name}" in gone.stderr


def test_run_forwards_signals_to_the_container_and_returns_its_status(cli):
    script = 'trap "echo got TERM; exit 7" TERM; echo ready; while true; do sleep 0.1; done'
    process = cli.popen("run", "--rm", IMAGE, "sh", "-c", script,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)  # the CLI does not die: it forwards TERM
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
    assert (process.returncode, out) == (7, b"got TERM\n"), err


def test_run_without_sig_proxy_leaves_signals_to_the_client(cli, container_names):
    name = container_names()
    process = cli.popen("run", "--sig-proxy=false", "--name", name, IMAGE, "sh", "-c",
                        "echo ready; sleep 30", stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        process.send_signal(signal.SIGTERM)
        process.wait(10)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGTERM
    assert inspect(cli, name)["State"]["Running"]  # the container never got the signal


def test_run_flags_reach_the_container_config(cli, container_names, tmp_path):
    name = container_names()
    created = ok(cli(
        "create", "--name", name, "-e", "GREETING=hi", "-e", "FROM_CLIENT", "-w", "/data",
        "-u", "0:0", "--entrypoint", "sh", "--restart", "on-failure:3", "-m", "512m",
        "--cpus", "1.5", "--pids-limit", "64", "--network", "none", "--cap-add", "NET_ADMIN",
        "--cap-drop", "MKNOD", "--read-only", "-l", "team=core", "-l", "empty",
        "-h", "boxhost", "-v", f"{tmp_path}:/host:ro", "-v", "/anonymous",
        "--security-opt", "no-new-privileges", IMAGE, "-c", "env",
    ))  # fmt: skip
    assert FULL_ID.match(created.strip())
    details = inspect(cli, name)
    config, host = details["Config"], details["HostConfig"]
    assert "GREETING=hi" in config["Env"] and config["WorkingDir"] == "/data"
    assert config["User"] == "0:0" and config["Hostname"] == "boxhost"
    assert config["Entrypoint"] == ["sh"] and config["Cmd"] == ["-c", "env"]
    assert config["Labels"] == {"team": "core", "empty": ""}
    assert not config["Tty"] and not config["OpenStdin"]
    assert host["Memory"] == 512 * 1024**2 and host["NanoCpus"] == 1_500_000_000
    assert host["PidsLimit"] == 64 and host["NetworkMode"] == "none"
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["ReadonlyRootfs"] is True and "NET_ADMIN" in host["CapAdd"]
    assert host["Binds"] == [f"{tmp_path}:/host:ro"]
    assert host["SecurityOpt"] == ["no-new-privileges"]


def test_run_in_the_containers_environment(cli, tmp_path):
    (tmp_path / "note").write_text("from the host\n")
    script = "echo $GREETING; pwd; hostname; cat /host/note"
    result = cli("run", "--rm", "-e", "GREETING=hello", "-w", "/data",
                 "-h", "boxhost", "-v", f"{tmp_path}:/host:ro", IMAGE, "sh", "-c", script)  # fmt: skip
    assert result.stdout == "hello\n/data\nboxhost\nfrom the host\n", result.stderr
    user = cli("run", "--rm", "-u", "1000:1000", IMAGE, "id")
    assert user.stdout == "uid=1000 gid=1000 groups=1000\n", user.stderr
    strict = cli("run", "--rm", "--security-opt", "no-new-privileges", IMAGE,
                 "grep", "NoNewPrivs", "/proc/self/status")  # fmt: skip
    assert strict.stdout.split() == ["NoNewPrivs:", "1"], strict.stderr


def test_named_volumes_outlive_containers(cli):
    volume = unique("vol")
    assert ok(cli("volume", "create", volume)) == f"{volume}\n"
    try:
        ok(cli("run", "--rm", "-v", f"{volume}:/store", IMAGE, "sh", "-c", "echo kept > /store/f"))
        assert (
            ok(cli("run", "--rm", "-v", f"{volume}:/store", IMAGE, "cat", "/store/f")) == "kept\n"
        )
        listing = ok(cli("volume", "ls")).splitlines()
        assert listing[0].split() == ["DRIVER", "VOLUME", "NAME"]
        assert any(line.split() == ["local", volume] for line in listing[1:])
        assert volume in ok(cli("volume", "ls", "-q")).split()
        details = json.loads(ok(cli("volume", "inspect", volume)))
        assert details[0]["Name"] == volume and details[0]["Driver"] == "local"
        assert json.loads(ok(cli("inspect", "--type", "volume", volume)))[0]["Name"] == volume
    finally:
        assert ok(cli("volume", "rm", volume)) == f"{volume}\n"
    missing = cli("volume", "inspect", volume)
    assert missing.returncode == 1 and "Error response from daemon:" in missing.stderr


def test_volume_prune_at_141_removes_every_unused_volume(cli, container_names):
    named = unique("keep")
    ok(cli("volume", "create", named))
    # docker's anonymous volume: one a container made for a bare path; `rm` without -v keeps it.
    holder = container_names()
    anonymous = created_anonymous_volume(cli, holder)
    ok(cli("rm", holder))
    assert anonymous in ok(cli("volume", "ls", "-q")).split()
    declined = cli("volume", "prune", "-a", input="n\n")
    assert declined.returncode == 0 and named in ok(cli("volume", "ls", "-q"))
    # at API 1.41 (dockerd 20.10's) a prune takes every unused volume, named ones too
    pruned = ok(cli("volume", "prune", "-f"))
    assert pruned.startswith("Deleted Volumes:\n") and f"\n{anonymous}\n" in pruned
    assert named in pruned
    assert pruned.rstrip().splitlines()[-1].startswith("Total reclaimed space:")


def created_anonymous_volume(cli: DockyardCLI, name: str) -> str:
    """Create container ``name`` with an anonymous volume; the volume's name, found as the
    one new in ``volume ls`` (independently of what inspect says about it)."""
    before = set(ok(cli("volume", "ls", "-q")).split())
    ok(cli("create", "--name", name, "-v", "/scratch", IMAGE, "true"))
    (volume,) = set(ok(cli("volume", "ls", "-q")).split()) - before
    return volume


def test_rm_v_removes_the_containers_anonymous_volumes(cli, container_names):
    holder = container_names()
    anonymous = created_anonymous_volume(cli, holder)
    ok(cli("rm", "-v", holder))
    assert anonymous not in ok(cli("volume", "ls", "-q")).split()


def test_inspect_names_a_containers_anonymous_volume(cli, container_names):
    holder = container_names()
    anonymous = created_anonymous_volume(cli, holder)
    (mount,) = inspect(cli, holder)["Mounts"]
    assert (mount["Type"], mount["Name"], mount["Driver"]) == ("volume", anonymous, "local")


# --------------------------------------------------------------------------------------------
# create/start, lifecycle verbs, wait, rename
# --------------------------------------------------------------------------------------------


def test_create_then_start_attached_returns_the_status(cli, container_names):
    name = container_names()
    ok(cli("create", "--name", name, IMAGE, "sh", "-c", "echo first; exit 4"))
    assert inspect(cli, name)["State"]["Status"] == "created"
    result = cli("start", "-a", name)
    assert (result.returncode, result.stdout) == (4, "first\n"), result.stderr
    assert ok(cli("logs", name)) == "first\n"
    assert inspect(cli, name)["State"]["ExitCode"] == 4


def test_start_attached_again_after_an_exit(cli, container_names):
    name = container_names()
    ok(cli("create", "--name", name, IMAGE, "sh", "-c", "echo run; exit 4"))
    assert cli("start", "-a", name).returncode == 4
    again = cli("container", "start", "--attach", name)
    assert (again.returncode, again.stdout) == (4, "run\n"), again.stderr
    assert ok(cli("logs", name)) == "run\nrun\n"


def test_start_i_feeds_stdin_to_a_created_container(cli, container_names):
    name = container_names()
    ok(cli("create", "-i", "--name", name, IMAGE, "sh", "-c", "read line; echo got $line"))
    result = cli("start", "-a", "-i", name, input="abc\n")
    assert (result.returncode, result.stdout) == (0, "got abc\n"), result.stderr


def test_lifecycle_verbs_print_names_and_report_each_failure(cli, container_names):
    first, second = container_names(), container_names()
    for name in (first, second):
        ok(cli("run", "-d", "--name", name, IMAGE, "sh", "-c", "trap 'exit 0' TERM; "
               "trap 'exit 5' USR1; while true; do sleep 0.1; done"))  # fmt: skip
    assert ok(cli("pause", first)) == f"{first}\n"
    assert inspect(cli, first)["State"]["Status"] == "paused"
    assert "(Paused)" in ok(cli("ps", "--filter", f"name={first}"))
    assert ok(cli("unpause", first)) == f"{first}\n"
    assert ok(cli("kill", "-s", "TERM", first, second)) == f"{first}\n{second}\n"
    eventually(lambda: not inspect(cli, second)["State"]["Running"], what="TERM to end it")
    assert ok(cli("wait", first, second)) == "0\n0\n"
    not_running = cli("kill", first)
    assert not_running.returncode == 1 and "is not running" in not_running.stderr
    assert ok(cli("stop", first)) == f"{first}\n"  # already stopped is fine (304)
    assert ok(cli("restart", "-t", "1", first)) == f"{first}\n"
    assert inspect(cli, first)["State"]["Running"]
    assert ok(cli("container", "stop", "-s", "USR1", "-t", "5", first)) == f"{first}\n"
    assert inspect(cli, first)["State"]["ExitCode"] == 5  # stopped by our signal, not KILL
    assert ok(cli("container", "start", first)) == f"{first}\n"
    mixed = cli("rm", "-f", first, "nothing-by-this-name")
    assert mixed.returncode == 1 and mixed.stdout == f"{first}\n"
    assert "No such container: nothing-by-this-name" in mixed.stderr
    renamed = container_names()
    assert ok(cli("rename", second, renamed)) == ""
    assert inspect(cli, renamed)["Name"] == f"/{renamed}"


def test_update_changes_the_named_limits_only(cli, container_names):
    name = container_names("update")
    ok(cli("run", "-d", "--name", name, "-m", "64m", IMAGE, "sleep", "60"))
    assert ok(cli("update", "--cpus", "0.5", "--pids-limit", "30", "--restart",
                  "on-failure:2", name)) == f"{name}\n"  # fmt: skip
    host = inspect(cli, name)["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"], host["RestartPolicy"]) == (
        64 << 20, 500_000_000, 30, {"Name": "on-failure", "MaximumRetryCount": 2})  # fmt: skip
    nothing = cli("update", name)
    assert nothing.returncode == 1 and "one or more flags" in nothing.stderr
    missing = cli("update", "-m", "96m", name, "nothing-by-this-name")
    assert missing.returncode == 1 and missing.stdout == f"{name}\n"
    assert "No such container: nothing-by-this-name" in missing.stderr
    assert inspect(cli, name)["HostConfig"]["Memory"] == 96 << 20


def test_wait_blocks_until_the_exit_and_prints_the_status(cli, container_names):
    name = container_names()
    ok(cli("run", "-d", "--name", name, IMAGE, "sh", "-c", "sleep 0.5; exit 9"))
    started = time.monotonic()
    assert ok(cli("wait", name)) == "9\n"
    assert time.monotonic() - started > 0.2


def test_container_prune_removes_stopped_containers_only(cli, container_names):
    stopped, running = container_names(), container_names()
    ok(cli("run", "--name", stopped, IMAGE, "true"))
    ok(cli("run", "-d", "--name", running, IMAGE, "sleep", "30"))
    stopped_id = inspect(cli, stopped)["Id"]
    declined = cli("container", "prune", input="n\n")
    assert declined.returncode == 0 and "WARNING! This will remove all stopped containers." in (
        declined.stdout
    )
    assert inspect(cli, stopped)["Id"] == stopped_id
    pruned = ok(cli("container", "prune", "-f"))
    assert pruned.startswith("Deleted Containers:\n") and f"{stopped_id}\n" in pruned
    assert cli("inspect", stopped).returncode == 1
    assert inspect(cli, running)["State"]["Running"]


# --------------------------------------------------------------------------------------------
# ps, inspect, logs, top, stats
# --------------------------------------------------------------------------------------------


def test_ps_filters_limits_formats_and_truncation(cli, container_names):
    label = unique("batch")
    older, newer = container_names("older"), container_names("newer")
    assert (
        cli("run", "--name", older, "-l", f"batch={label}", IMAGE, "sh", "-c", "exit 2").returncode
        == 2
    )
    ok(cli("create", "--name", newer, "-l", f"batch={label}", IMAGE, "echo",
           "a long command line that docker cuts"))  # fmt: skip
    by_label = ["-a", "--filter", f"label=batch={label}"]
    rows = [json.loads(line) for line in ok(cli("ps", *by_label, "--format", "json")).splitlines()]
    assert [r["Names"] for r in rows] == [newer, older]  # newest first
    assert rows[0]["Command"] == '"echo \'a long comman…"' and rows[0]["State"] == "created"
    assert rows[1]["Status"].startswith("Exited (2) ") and rows[1]["Labels"] == f"batch={label}"
    exited = ok(cli("ps", *by_label, "--filter", "status=exited", "-q")).split()
    assert exited == [rows[1]["ID"]] and len(exited[0]) == 12
    full = ok(cli("ps", *by_label, "--no-trunc", "-q")).split()
    assert all(FULL_ID.match(i) for i in full) and len(full) == 2
    no_trunc = ok(cli("ps", *by_label, "--no-trunc"))
    assert "\"echo 'a long command line that docker cuts'\"" in no_trunc
    assert ok(cli("ps", "-a", "-l", "-q")).split() == [rows[0]["ID"]]
    assert len(ok(cli("ps", "-a", "-n", "2", "-q")).split()) == 2
    assert ok(cli("container", "ls", *by_label, "--filter", f"name={older}", "-q")).split() == [
        rows[1]["ID"]
    ]
    bad = cli("ps", "--format", "{{.ID}}")
    assert bad.returncode == 2 and "Go templates are not supported" in bad.stderr


def test_ps_quotes_arguments_with_spaces_as_dockerd_does(cli, container_names):
    name = container_names()
    ok(cli("create", "--name", name, IMAGE, "sh", "-c", "echo a b"))
    row = json.loads(ok(cli("ps", "-a", "--no-trunc", "--filter", f"name={name}", "--format",
                            "json")))  # fmt: skip
    assert row["Command"] == "\"sh -c 'echo a b'\""


def test_inspect_containers_with_templates_and_generic_lookup(cli, container_names):
    name = container_names()
    ok(cli("create", "--name", name, IMAGE, "true"))
    assert ok(cli("inspect", "-f", "{{.State.Status}} {{.Config.Tty}} {{.Name}}", name)) == (
        f"created false /{name}\n"
    )
    assert json.loads(ok(cli("inspect", "-f", "{{json .Config.Cmd}}", name))) == ["true"]
    document = json.loads(ok(cli("inspect", name)))[0]
    assert document["Name"] == f"/{name}" and document["Image"].startswith("sha256:")
    image = json.loads(ok(cli("inspect", IMAGE)))[0]  # not a container: the image is next
    assert image["Id"] == document["Image"]
    missing = cli("inspect", name, "no-such-thing")
    assert missing.returncode == 1 and "Error: No such object: no-such-thing" in missing.stderr
    assert json.loads(missing.stdout)[0]["Name"] == f"/{name}"
    only_containers = cli("container", "inspect", IMAGE)
    assert only_containers.returncode == 1
    assert f"No such container: {IMAGE}" in only_containers.stderr


def test_logs_tail_timestamps_streams_and_since(cli, container_names):
    name = container_names()
    # Pauses keep the order of arrival certain across the two pipes.
    script = "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three"
    result = cli("run", "--name", name, IMAGE, "sh", "-c", script)
    assert result.stdout == "one\nthree\n"
    logs = cli("logs", name)
    assert (logs.stdout, logs.stderr) == ("one\nthree\n", "two\n")
    assert ok(cli("logs", "--tail", "1", name)) == "three\n"
    assert ok(cli("logs", "-n", "0", name)) == ""
    stamped = ok(cli("logs", "-t", name)).splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (one|three)$", s) for s in stamped)
    assert ok(cli("logs", "--since", "1h", name)) == "one\nthree\n"
    assert ok(cli("logs", "--until", "1h", name)) == ""
    missing = cli("logs", "no-such-container")
    assert missing.returncode == 1 and "No such container" in missing.stderr


def test_logs_follow_streams_new_lines_and_ends_with_the_container(cli, container_names):
    name = container_names()
    ok(cli("run", "-d", "--name", name, IMAGE, "sh", "-c",
           "echo a; sleep 0.5; echo b; sleep 0.5; echo c"))  # fmt: skip
    # Unbuffered: a buffered readline could take "b" along with "a" when both are already
    # there (a loaded machine), where communicate() below would not see it.
    process = cli.popen(
        "logs", "-f", name, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"a\n"
        out, err = process.communicate(timeout=10)  # ends on its own when the container does
    finally:
        process.kill()
    assert (process.returncode, out) == (0, b"b\nc\n"), err


def test_top_and_stats_of_a_running_container(cli, container_names):
    name = container_names()
    ok(cli("run", "-d", "--name", name, "-m", "64m", IMAGE, "sh", "-c", "sleep 30"))
    top = ok(cli("top", name)).splitlines()
    assert top[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert any(line.rstrip().endswith("sleep 30") for line in top[1:])
    stats = ok(cli("stats", "--no-stream", name)).splitlines()
    assert stats[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    row = stats[1].split()
    container_id = inspect(cli, name)["Id"]
    assert row[0] == container_id[:12] and row[1] == name
    assert "/ 64MiB" in stats[1]  # the memory limit as docker prints it
    stopped = cli("top", "no-such-container")
    assert stopped.returncode == 1


# Ignored is how a script's background job starts: ^C must end the command all the same.
@pytest.mark.parametrize("inherited", [signal.SIG_DFL, signal.SIG_IGN], ids=["default", "ignored"])
def test_stats_streams_until_interrupted(cli, sleeper, inherited):
    process = cli.popen(
        "stats",
        sleeper,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, inherited),
    )
    try:
        assert process.stdout is not None
        headers = 0
        while headers < 2:  # a second table: it samples again each second
            line = process.stdout.readline()
            assert line, process.stderr.read() if process.stderr else ""
            headers += line.startswith(b"CONTAINER ID")
        assert sleeper.encode() in process.stdout.readline()  # the row under it
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 130
    finally:
        process.kill()


# --------------------------------------------------------------------------------------------
# exec and attach
# --------------------------------------------------------------------------------------------


@pytest.fixture
def sleeper(cli, container_names) -> str:
    name = container_names("sleeper")
    ok(cli("run", "-d", "--name", name, IMAGE, "sh", "-c", "sleep 60"))
    return name


def test_exec_output_status_stdin_and_options(cli, sleeper):
    result = cli("exec", sleeper, "sh", "-c", "echo out; echo err >&2; exit 5")
    assert (result.returncode, result.stdout, result.stderr) == (5, "out\n", "err\n")
    piped = cli("exec", "-i", sleeper, "cat", input="to exec\n")
    assert (piped.returncode, piped.stdout) == (0, "to exec\n")
    env = ok(cli("exec", "-e", "X=1", "-w", "/bin", "-u", "1000", sleeper,
                 "sh", "-c", "echo $X; pwd; id -u"))  # fmt: skip
    assert env == "1\n/bin\n1000\n"
    assert ok(cli("exec", "-d", sleeper, "sh", "-c", "echo detached > /tmp/mark")) == ""
    eventually(lambda: cli("exec", sleeper, "cat", "/tmp/mark").stdout == "detached\n",
             what="the detached exec's file")  # fmt: skip
    missing = cli("exec", sleeper, "no-such-command")
    assert missing.returncode in (126, 127), missing
    gone = cli("exec", "no-such-container", "true")
    assert gone.returncode == 1 and "No such container: no-such-container" in gone.stderr


def test_exec_in_a_stopped_container_is_refused(cli, container_names):
    name = container_names()
    ok(cli("create", "--name", name, IMAGE, "true"))
    result = cli("exec", name, "true")
    assert result.returncode == 1 and "is not running" in result.stderr


def test_attach_follows_output_and_returns_the_exit_status(cli, container_names):
    name = container_names()
    # Attach shows only what comes after it: the sleep gives a loaded machine time to start it.
    ok(cli("run", "-d", "--name", name, IMAGE, "sh", "-c", "sleep 2; echo late; exit 6"))
    result = cli("attach", name)
    assert (result.returncode, result.stdout) == (6, "late\n"), result.stderr
    stopped = cli("attach", name)
    assert stopped.returncode == 1 and "start it first" in stopped.stderr


def test_attach_no_stdin_keeps_our_input_from_the_container(cli, container_names):
    name = container_names()
    # Output from before the attach is not replayed: the container says tick once the daemon
    # has reported the attach (a fixed pause was outlasted by our CLI's start on a loaded
    # machine), then waits a second for input that must not come.
    script = 'while [ ! -e /go ]; do sleep 0.05; done; echo tick; read -t 1 line; echo "got:$line"'
    since = int(time.time())
    ok(cli("run", "-d", "-i", "--name", name, IMAGE, "sh", "-c", script))
    attaching = cli.popen("attach", "--no-stdin", name, text=True, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    filters = json.dumps({"container": [name], "event": ["attach"]})

    def attached() -> bool:
        # Events up to a second from now: the request ends then.
        window = {"since": since, "until": int(time.time()) + 1, "filters": filters}
        return bool(cli.daemon.request("GET", "/events?" + urlencode(window)).body.strip())

    eventually(attached, what="the attach event")
    ok(cli("exec", name, "touch", "/go"))
    out, err = attaching.communicate("not for you\n", timeout=30)
    assert (attaching.returncode, out) == (0, "tick\ngot:\n"), err


def test_attach_sends_stdin_to_an_interactive_container(cli, container_names):
    name = container_names()
    ok(cli("run", "-d", "-i", "--name", name, IMAGE, "sh", "-c", "read line; echo got $line"))
    result = cli("attach", name, input="through attach\n")
    assert (result.returncode, result.stdout) == (0, "got through attach\n"), result.stderr


def test_hijacked_streams_over_tcp_with_a_token(start_daemon, tmp_path):
    """The upgrade over TCP: Host and Authorization on the hijack request, the half-close of
    a TCP socket, and output after it."""
    token_file = tmp_path / "token"
    token_file.write_text("tok-456")
    daemon = start_daemon("--token-file", str(token_file), tcp=True)
    env = plugin_env([], DOCKYARD_TOKEN="tok-456")

    def over_tcp(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        host = f"tcp://127.0.0.1:{daemon.tcp_port}"
        return run_dockyard(["-H", host, *args], env=env, input=input)

    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_rootfs({"bin/sleep": "->busybox"}))
    ok(over_tcp("import", "-c", 'CMD ["/bin/sh"]', str(rootfs), IMAGE))
    piped = over_tcp("run", "--rm", "-i", IMAGE, "sh", "-c", "cat; echo after", input="in\n")
    assert (piped.returncode, piped.stdout) == (0, "in\nafter\n"), piped.stderr
    ok(over_tcp("run", "-d", "--name", "tcp-sleeper", IMAGE, "sleep", "30"))
    executed = over_tcp("exec", "-i", "tcp-sleeper", "sh", "-c", "cat; exit 2", input="x\n")
    assert (executed.returncode, executed.stdout) == (2, "x\n"), executed.stderr
    ok(over_tcp("rm", "-f", "tcp-sleeper"))
    env["DOCKYARD_TOKEN"] = "wrong"
    refused = over_tcp("ps")
    assert refused.returncode == 1 and "Error response from daemon" in refused.stderr


# --------------------------------------------------------------------------------------------
# TTYs through a pseudo-terminal
# --------------------------------------------------------------------------------------------


class Terminal:
    """The CLI on the slave side of a pty of a given size; we type and read on the master."""

    def __init__(self, argv: list[str], env: dict[str, str], rows: int, columns: int) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: set the size before the CLI reads it, then become it
            self._set_size(0, rows, columns)
            os.execvpe(argv[0], argv, env)
        self.output = b""

    @staticmethod
    def _set_size(fd: int, rows: int, columns: int) -> None:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def resize(self, rows: int, columns: int) -> None:
        # The kernel sends SIGWINCH to the terminal's foreground process: the CLI.
        self._set_size(self.fd, rows, columns)

    def type(self, text: bytes) -> None:
        os.write(self.fd, text)

    def read_until(self, pattern: bytes, timeout: float = 10, since: int = 0) -> bytes:
        """Read until ``pattern`` shows up in the output after offset ``since``."""
        deadline = time.monotonic() + timeout
        while pattern not in self.output[since:]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {pattern!r} in {self.output!r}")
            if select.select([self.fd], [], [], remaining)[0]:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:  # EIO: the CLI has exited and closed the slave
                    data = b""
                if not data:
                    raise AssertionError(f"ended without {pattern!r}: {self.output!r}")
                self.output += data
        return self.output

    def exit_status(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                if select.select([self.fd], [], [], 0)[0]:
                    with contextlib.suppress(OSError):
                        self.output += os.read(self.fd, 65536)
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
            if select.select([self.fd], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):
                    self.output += os.read(self.fd, 4096)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError(f"the CLI did not exit: {self.output!r}")

    def raw(self) -> bool:
        """Whether the CLI has the terminal in raw mode (the master sees the slave's modes)."""
        local_modes = termios.tcgetattr(self.fd)[3]
        return not local_modes & (termios.ECHO | termios.ICANON)

    def shows_size(self, size: bytes, timeout: float = 5) -> None:
        """Ask the container's shell for its size until it is ``size``: the resize the CLI
        sends on SIGWINCH races our next keystrokes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            mark = len(self.output)
            self.type(b"stty size\r")
            with contextlib.suppress(AssertionError):
                self.read_until(b"# ", 2, since=mark)
            if size in self.output[mark:]:
                return
        raise AssertionError(f"the size never became {size!r}: {self.output!r}")

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_run_it_gives_a_resizable_tty_and_restores_the_terminal(cli):
    terminal = Terminal(cli.command("run", "--rm", "-it", IMAGE, "sh"), cli.env, 30, 100)
    try:
        terminal.read_until(b"# ")
        assert terminal.raw()  # keys go to the container as typed
        terminal.type(b"stty size\r")
        terminal.read_until(b"30 100")  # create's ConsoleSize and the resize after start
        terminal.resize(40, 120)
        terminal.shows_size(b"40 120")
        # ctrl-c is a byte for the container's shell, not a signal for the CLI.
        mark = len(terminal.output)
        terminal.type(b"sleep 5\r")
        # The echo of the Enter after the command: busybox's line editor may redraw the line
        # midway (when the answer to its cursor query comes late, "sl\r/ # sl\x1b[Jeep 5").
        terminal.read_until(b"5\r\n", since=mark)
        time.sleep(0.1)
        mark = len(terminal.output)
        terminal.type(b"\x03")
        terminal.read_until(b"^C", 3, since=mark)  # the container's line discipline echoes it
        terminal.read_until(b"# ", 3, since=mark)  # and the shell is back long before 5 s
        terminal.type(b"exit 3\r")
        assert terminal.exit_status() == 3
        assert not terminal.raw()  # restored on the way out
    finally:
        terminal.close()


def test_run_it_detach_keys_leave_the_container_running(cli, container_names):
    name = container_names()
    terminal = Terminal(cli.command("run", "-it", "--name", name, IMAGE, "sh"), cli.env, 24, 80)
    try:
        terminal.read_until(b"# ")
        terminal.type(b"echo still-here > /tmp/mark\r")
        time.sleep(0.2)
        terminal.type(b"\x10\x11")  # ctrl-p ctrl-q
        assert terminal.exit_status() == 0
        assert not terminal.raw()
    finally:
        terminal.close()
    assert inspect(cli, name)["State"]["Running"]
    assert ok(cli("exec", name, "cat", "/tmp/mark")) == "still-here\n"


def test_attach_to_a_tty_container_resizes_and_detaches_with_custom_keys(cli, container_names):
    name = container_names()
    ok(cli("run", "-dit", "--name", name, IMAGE, "sh"))  # started with no terminal size
    argv = cli.command("attach", "--detach-keys", "ctrl-a,x", name)
    terminal = Terminal(argv, cli.env, 33, 77)
    try:
        terminal.shows_size(b"33 77")  # attach sent our size
        terminal.type(b"\x10\x11")  # the default keys mean nothing here: they reach the shell
        terminal.type(b"\x01x")
        assert terminal.exit_status() == 0
    finally:
        terminal.close()
    assert inspect(cli, name)["State"]["Running"]


def test_a_fatal_signal_still_restores_the_terminal(cli, container_names):
    name = container_names()
    argv = cli.command("run", "-it", "--sig-proxy=false", "--name", name, IMAGE, "sh")
    terminal = Terminal(argv, cli.env, 24, 80)
    try:
        terminal.read_until(b"# ")
        assert terminal.raw()
        os.kill(terminal.pid, signal.SIGTERM)  # not proxied: it ends the CLI
        assert terminal.exit_status() == 128 + signal.SIGTERM
        assert not terminal.raw()
    finally:
        terminal.close()


def test_exec_it_gives_a_resizable_tty(cli, sleeper):
    terminal = Terminal(cli.command("exec", "-it", sleeper, "sh"), cli.env, 30, 100)
    try:
        terminal.read_until(b"# ")
        terminal.type(b"stty size\r")
        terminal.read_until(b"30 100")
        terminal.resize(50, 132)
        terminal.shows_size(b"50 132")
        terminal.type(b"exit 4\r")
        assert terminal.exit_status() == 4
        assert not terminal.raw()
    finally:
        terminal.close()


def test_tty_containers_log_raw_bytes(cli, container_names):
    name = container_names()
    ok(cli("run", "-t", "--name", name, IMAGE, "sh", "-c", "echo tty line"))
    assert inspect(cli, name)["Config"]["Tty"] is True
    # Bytes, not text: text mode would turn the pty's own "\r\n" into "\n".
    logs = subprocess.run(cli.command("logs", name), capture_output=True, env=cli.env, timeout=30)
    assert logs.stdout == b"tty line\r\n", logs.stderr  # no framing


def test_it_without_a_terminal_is_refused(cli, sleeper):
    for args in (("run", "--rm", "-it", IMAGE, "true"), ("exec", "-it", sleeper, "true")):
        result = cli(*args, input="")
        assert (result.returncode, result.stderr) == (1, "the input device is not a TTY\n")


# --------------------------------------------------------------------------------------------
# The real docker CLI against the same daemon: same output, same exit status
# --------------------------------------------------------------------------------------------


def docker(daemon, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = daemon.host
    env["DOCKER_CONFIG"] = str(Path(daemon.data_root).parent / "docker-config")
    return subprocess.run([docker_cli(), *args], capture_output=True, text=True, env=env,
                          input=input, timeout=30)  # fmt: skip


def _without_created(table: str) -> list[list[str]]:
    """ps rows split on docker's column gaps, minus CREATED and STATUS (they tick)."""
    rows = [re.split(r" {3,}", line.rstrip()) for line in table.splitlines()]
    return [[cell for i, cell in enumerate(row) if i not in (3, 4)] for row in rows]


@pytest.mark.interop
def test_docker_cli_and_ours_agree(cli, container_names):
    daemon = cli.daemon
    script = "echo out; echo err >&2; exit 3"
    for args in (
        ("run", "--rm", IMAGE, "sh", "-c", script),
        ("run", "--rm", IMAGE, "no-such-command"),
        ("run", "--rm", "-i", IMAGE, "cat"),
    ):
        theirs, ours = docker(daemon, *args, input="in\n"), cli(*args, input="in\n")
        assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), (
            args, theirs, ours)  # fmt: skip

    name = container_names()
    ok(cli("run", "-d", "--name", name, IMAGE, "sh", "-c", "echo ready; echo warn >&2; sleep 60"))
    eventually(lambda: cli("logs", name).stdout == "ready\n", what="the first line")
    for args in (
        ("logs", name),
        ("logs", "--tail", "1", name),
        ("exec", name, "sh", "-c", script),
        ("exec", "-i", name, "cat"),
        ("exec", name, "no-such-command"),
    ):
        theirs, ours = docker(daemon, *args, input="in\n"), cli(*args, input="in\n")
        assert (ours.returncode, ours.stdout, ours.stderr) == (
            theirs.returncode, theirs.stdout, theirs.stderr,
        ), args  # fmt: skip

    stopped = container_names()
    assert cli("run", "--name", stopped, IMAGE, "sh", "-c", "exit 1").returncode == 1
    theirs, ours = docker(daemon, "ps", "-a"), cli("ps", "-a")
    assert theirs.returncode == ours.returncode == 0, theirs.stderr
    assert _without_created(ours.stdout) == _without_created(theirs.stdout)
    assert docker(daemon, "ps", "-aq").stdout == ok(cli("ps", "-aq"))

    def json_rows(output: str) -> list[dict]:
        rows = [json.loads(line) for line in output.splitlines()]
        return [{k: v for k, v in r.items() if k not in ("RunningFor", "Status")} for r in rows]

    theirs = docker(daemon, "ps", "-a", "--format", "json")
    assert json_rows(ok(cli("ps", "-a", "--format", "json"))) == json_rows(theirs.stdout)
    assert docker(daemon, "ps", "-a", "--no-trunc", "-q").stdout == ok(cli("ps", "-a",
                                                                           "--no-trunc", "-q"))  # fmt: skip


@pytest.mark.interop
def test_docker_cli_sees_what_our_cli_created(cli, container_names):
    name = container_names()
    ok(cli("create", "--name", name, "-e", "A=1", "-m", "256m", "--cpus", "0.5", IMAGE, "true"))
    theirs = docker(cli.daemon, "inspect", "-f",
                    "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.Config.Env}}", name)  # fmt: skip
    ours = cli("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.Config.Env}}",
               name)  # fmt: skip
    assert theirs.returncode == 0, theirs.stderr
    assert ours.stdout == theirs.stdout
    assert theirs.stdout.startswith(f"{256 * 1024**2} 500000000 [")


@pytest.mark.interop
def test_docker_cli_and_ours_print_the_same_listings_and_documents(cli, container_names):
    daemon = cli.daemon
    volume = unique("vol")
    ok(cli("volume", "create", "--label", "purpose=parity", volume))
    name = container_names()
    ok(cli("run", "-d", "--name", name, "-l", "k=v", "-v", f"{volume}:/v", IMAGE, "sh", "-c",
           "echo '<&>'; sleep 60"))  # fmt: skip
    eventually(lambda: ok(cli("logs", name)) == "<&>\n", what="the container's line")
    try:
        for args in (
            ("inspect", name),
            ("container", "inspect", name),
            ("volume", "inspect", volume),
            ("volume", "ls"),
            ("volume", "ls", "-q"),
            ("ps", "--filter", "label=k=v", "--filter", f"name={name}", "-q"),
            ("logs", "-n", "1", name),
            ("inspect", "no-such-thing"),
            ("rm", "no-such-thing"),
        ):
            theirs, ours = docker(daemon, *args), cli(*args)
            assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), args
    finally:
        cli("rm", "-f", name)
        cli("volume", "rm", volume)


@pytest.mark.interop
def test_our_cli_against_the_real_dockerd_matches_the_docker_cli(real_dockerd, tmp_path):
    """The reference daemon: our client's protocol (hijack, stdcopy, wait, exec inspect) must
    work against dockerd itself, with the docker CLI's output and exit statuses."""
    from dockyard.testing.images import image_archive

    archive = tmp_path / "busybox.tar"
    archive.write_bytes(image_archive([busybox_rootfs({"bin/sleep": "->busybox"})], ["cli-bb:1"]))
    real_dockerd.docker("load", "-i", str(archive))
    env = plugin_env([])

    def ours(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
        return run_dockyard(["-H", real_dockerd.host, *args], env=env, input=input)

    name = unique("real")
    try:
        started = ours("run", "-d", "--name", name, "cli-bb:1", "sh", "-c", "echo up; sleep 30")
        assert started.returncode == 0, started.stderr
        eventually(lambda: ours("logs", name).stdout == "up\n", what="the first line")
        for args, stdin in (
            (("run", "--rm", "cli-bb:1", "sh", "-c", "echo out; echo err >&2; exit 3"), None),
            (("run", "--rm", "-i", "cli-bb:1", "cat"), "piped\n"),
            (("run", "--rm", "cli-bb:1", "no-such-command"), None),
            (("logs", "-t", name), None),
            (("exec", name, "sh", "-c", "echo e; echo f >&2; exit 4"), None),
            (("exec", "-i", name, "cat"), "to exec\n"),
            (("inspect", "-f", "{{.State.Status}} {{.Config.Tty}}", name), None),
        ):
            theirs = real_dockerd.docker(*args, check=False, input=stdin)
            mine = ours(*args, input=stdin)
            assert (mine.returncode, mine.stdout) == (theirs.returncode, theirs.stdout), args
    finally:
        real_dockerd.docker("rm", "-f", name, check=False)
