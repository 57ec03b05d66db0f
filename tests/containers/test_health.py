"""Health checks with the docker CLI against our daemon: ``--health-*`` and the image's
HEALTHCHECK, ``State.Health``, ``health_status`` events, ``ps --filter health=`` and the STATUS
column, probes stopped with the container and resumed after a daemon restart.

Intervals are short (1 s, 100 ms) and every wait polls; the containers of one test run at once.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import daemon_in, eventually, restarted, serving, shut_down
from tests.containers.conftest import APPLETS, IMAGE, import_busybox


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


class Docker:
    """The docker CLI (API 1.41) against one daemon."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.env = {**docker_env(host), "DOCKER_API_VERSION": "1.41"}

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [docker_cli(), *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if check:
            assert result.returncode == 0, (args, result.stderr)
        return result

    def inspect(self, name: str) -> dict[str, Any]:
        return json.loads(self("inspect", name).stdout)[0]

    def health(self, name: str) -> dict[str, Any] | None:
        return self.inspect(name)["State"].get("Health")

    def names(self, *filters: str) -> set[str]:
        args = [arg for f in filters for arg in ("--filter", f)]
        return set(self("ps", "-a", *args, "--format", "{{.Names}}").stdout.split())

    def events(self, since: float, container: str) -> list[dict[str, Any]]:
        result = self("events", "--since", f"{since:.3f}", "--until", f"{time.time():.3f}",
                      "--format", "{{json .}}")  # fmt: skip
        events = [json.loads(line) for line in result.stdout.splitlines()]
        return [e for e in events if e["Actor"]["Attributes"].get("name") == container]


@pytest.fixture(scope="module")
def docker(shared_daemon) -> Iterator[Docker]:
    client = Docker(shared_daemon.host)
    made: list[str] = []
    client.made = made  # type: ignore[attr-defined]
    yield client
    if made:
        client("rm", "-f", *made, check=False)


def run(docker: Docker, *args: str, command: tuple[str, ...] = ("sleep", "300")) -> str:
    name = unique("hc")
    docker.made.append(name)  # type: ignore[attr-defined]
    docker("run", "-d", "--name", name, *args, IMAGE, *command)
    return name


def status(docker: Docker, name: str) -> str | None:
    health = docker.health(name)
    return health["Status"] if health else None


def test_states_log_events_filters_and_status_column(docker):
    since = time.time() - 1
    good = run(docker, "--health-cmd", "true", "--health-interval", "1s")
    bad = run(docker, "--health-cmd", "echo out; echo err >&2; exit 1",
              "--health-interval", "1s", "--health-retries", "2")  # fmt: skip
    off = run(docker, "--no-healthcheck")
    plain = run(docker)
    waiting = run(docker, "--health-cmd", "true")  # dockerd's default interval: 30 s
    assert docker.health(waiting) == {"Status": "starting", "FailingStreak": 0, "Log": []}
    assert waiting in docker.names("health=starting")
    eventually(lambda: status(docker, good) == "healthy" and status(docker, bad) == "unhealthy")

    assert docker.inspect(good)["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"], "Interval": 1_000_000_000,
    }  # fmt: skip
    failing = docker.health(bad)
    assert failing["FailingStreak"] >= 2
    first = failing["Log"][0]
    assert (first["ExitCode"], sorted(first["Output"].splitlines())) == (1, ["err", "out"])
    assert first["Start"] < first["End"]
    # NONE, or no check at all: no State.Health, "none" to the filter.
    assert docker.inspect(off)["Config"]["Healthcheck"] == {"Test": ["NONE"]}
    assert docker.health(off) is None and docker.health(plain) is None
    assert {good, bad, off, plain} & docker.names("health=none") == {off, plain}
    assert {good, bad} & docker.names("health=healthy") == {good}
    assert {good, bad} & docker.names("health=unhealthy") == {bad}
    refused = docker("ps", "--filter", "health=sick", check=False)
    assert "Unrecognised filter value for health: sick" in refused.stderr
    statuses = dict(
        line.split("\t")
        for line in docker("ps", "--format", "{{.Names}}\t{{.Status}}").stdout.splitlines()
    )
    assert statuses[good].endswith("(healthy)") and statuses[bad].endswith("(unhealthy)")
    assert statuses[waiting].endswith("(health: starting)")
    assert "(" not in statuses[off]

    events = docker.events(since, good)
    actions = [e["Action"] for e in events]
    assert actions.count("health_status: healthy") == 1  # on the transition only
    created = next(e for e in events if e["Action"] == "exec_create: /bin/sh -c true")
    exec_id = created["Actor"]["Attributes"]["execID"]
    died = [e for e in events if e["Action"] == "exec_die"]
    assert died[0]["Actor"]["Attributes"] == {
        "execID": exec_id, "exitCode": "0", "image": IMAGE, "name": good,
    }  # fmt: skip
    assert "exec_start: /bin/sh -c true" in actions
    assert [e["Action"] for e in docker.events(since, bad)].count("health_status: unhealthy") == 1
    # A probe is an exec instance only while it runs, as with dockerd: one may be under way now.
    assert exec_id not in (docker.inspect(good)["ExecIDs"] or [])
    eventually(lambda: docker.inspect(good)["ExecIDs"] is None)


def test_log_keeps_five_probes_output_cut_and_probes_end_with_the_container(docker):
    noisy = run(docker, "--health-cmd", "head -c 5000 /dev/zero | tr '\\0' x; exit 3",
                "--health-interval", "100ms", "--health-retries", "1")  # fmt: skip
    health = eventually(lambda: (h := docker.health(noisy)) and h["FailingStreak"] >= 6 and h)
    assert health["Status"] == "unhealthy" and len(health["Log"]) == 5
    assert {entry["Output"] for entry in health["Log"]} == {"x" * 4096 + "..."}
    assert {entry["ExitCode"] for entry in health["Log"]} == {3}
    docker("stop", "-t", "0", noisy)
    stopped = docker.health(noisy)
    time.sleep(0.4)
    assert docker.health(noisy) == stopped  # no probe runs in a stopped container
    docker("start", noisy)
    restarted_health = docker.health(noisy)
    assert (restarted_health["Status"], restarted_health["FailingStreak"]) == ("starting", 0)


def test_timeout_start_period_and_probe_that_cannot_start(docker):
    slow = run(docker, "--health-cmd", "sleep 5", "--health-interval", "100ms",
               "--health-timeout", "300ms", "--health-retries", "1")  # fmt: skip
    missing = run(docker, "--health-interval", "100ms", "--health-retries", "1",
                  "--health-start-period", "1h", "--health-cmd", "exit 1")  # fmt: skip
    health = eventually(lambda: (h := docker.health(slow)) and h["Log"] and h)
    assert health["Log"][0]["ExitCode"] == -1
    assert health["Log"][0]["Output"] == "Health check exceeded timeout (300ms)"
    assert health["Status"] == "unhealthy"
    # Within the start period failures do not count: still starting.
    eventually(lambda: len(docker.health(missing)["Log"]) >= 3)
    assert docker.health(missing)["Status"] == "starting"
    assert docker.health(missing)["FailingStreak"] == 0


def test_image_healthcheck_is_merged_with_the_request(docker, shared_daemon, tmp_path):
    base = unique("hcbase")
    docker.made.append(base)  # type: ignore[attr-defined]
    docker("create", "--name", base, IMAGE, "true")
    image = f"hcimage:{secrets.token_hex(3)}"
    docker("commit", "-c", 'HEALTHCHECK --interval=1s --retries=4 CMD ["true"]', base, image)
    try:
        merged = run(docker, "--health-retries", "7", image)
        assert docker.inspect(merged)["Config"]["Healthcheck"] == {
            "Test": ["CMD", "true"], "Interval": 1_000_000_000, "Retries": 7,
        }  # fmt: skip
        eventually(lambda: status(docker, merged) == "healthy")
        off = run(docker, "--no-healthcheck", image)
        assert docker.health(off) is None
    finally:
        docker("rm", "-f", *docker.made, check=False)  # type: ignore[attr-defined]
        docker.made.clear()  # type: ignore[attr-defined]
        docker("rmi", image, check=False)


@pytest.mark.parametrize(
    ("healthcheck", "message"),
    [
        ({"Test": ["CMD", "true"], "Interval": 999_999}, "Interval in Healthcheck cannot be less than 1ms"),
        ({"Test": ["CMD", "true"], "Timeout": -5}, "Timeout in Healthcheck cannot be less than 1ms"),
        ({"Test": ["CMD", "true"], "StartPeriod": 10}, "StartPeriod in Healthcheck cannot be less than 1ms"),
        ({"Test": ["CMD", "true"], "Retries": -1}, "Retries in Healthcheck cannot be negative"),
    ],
)  # fmt: skip
def test_bad_healthcheck_is_refused_as_dockerd_refuses_it(shared_daemon, healthcheck, message):
    body = json.dumps({"Image": IMAGE, "Cmd": ["true"], "Healthcheck": healthcheck}).encode()
    reply = shared_daemon.request("POST", "/v1.41/containers/create",
                                  {"Content-Type": "application/json"}, body)  # fmt: skip
    assert (reply.status, reply.json()) == (400, {"message": message})


def test_probes_resume_after_a_daemon_restart(tmp_path):
    daemon = serving(daemon_in(tmp_path))
    try:
        import_busybox(daemon, tmp_path / "rootfs.tar", APPLETS)
        docker = Docker(daemon.host)
        docker("run", "-d", "--name", "survivor", "--health-cmd", "true",
               "--health-interval", "100ms", IMAGE, "sleep", "300")  # fmt: skip
        eventually(lambda: status(docker, "survivor") == "healthy")
        daemon.stop()
        with restarted(daemon) as again:
            docker = Docker(again.host)
            before = docker.health("survivor")["Log"][-1]["Start"]
            eventually(lambda: docker.health("survivor")["Log"][-1]["Start"] > before)
            eventually(lambda: status(docker, "survivor") == "healthy")
            docker("rm", "-f", "survivor")
    finally:
        shut_down(daemon)


def test_our_cli_sends_the_health_flags_as_the_docker_cli_does(docker, cli):
    name = unique("hcli")
    docker.made.append(name)  # type: ignore[attr-defined]
    made = cli("run", "-d", "--name", name, "--health-cmd", "true", "--health-interval", "1.5s",
               "--health-timeout", "2s", "--health-start-period", "1ms", "--health-retries", "2",
               IMAGE, "sleep", "300")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert docker.inspect(name)["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "true"], "Interval": 1_500_000_000, "Timeout": 2_000_000_000,
        "StartPeriod": 1_000_000, "Retries": 2,
    }  # fmt: skip
    for flags, message in (
        (["--no-healthcheck", "--health-cmd", "true"],
         "--no-healthcheck conflicts with --health-* options"),
        (["--health-retries=-1"], "--health-retries cannot be negative"),
        (["--health-timeout=-1s"], "--health-timeout cannot be negative"),
        (["--health-interval", "soon"],
         'invalid argument "soon" for "--health-interval" flag: time: invalid duration "soon"'),
    ):  # fmt: skip
        refused = cli("create", *flags, IMAGE, "true")
        assert refused.returncode == 125 and message in refused.stderr, refused.stderr
