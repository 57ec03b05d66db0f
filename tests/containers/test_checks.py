"""Issue 14's checks against our daemon: the validation 400s and 404s (raw HTTP and docker-py),
the ``rename``/``resize``/``update``/``exec_*`` events, the stats frames (zeroed first
``precpu_stats``, a frame a second, ``one-shot`` and ``stream=false``) and the ``publish`` and
``expose`` filters of ``ps``.

Each expectation is dockerd 20.10's: tests/containers/test_checks_interop.py runs the same
cases against a real dockerd side by side.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import docker
import pytest

from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import UnixHTTPConnection, http_request
from tests.containers.conftest import IMAGE, import_busybox


def unique(prefix: str = "checks") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def socket_of(host: str) -> str:
    return host.removeprefix("unix://")


@attrs.frozen
class Case:
    """One request and what answers it: ``status`` and ``words`` (found in the message) are
    ours; dockerd's are the same unless given (it answers some with a 500, or in Go's
    words)."""

    method: str
    path: str
    body: bytes | None
    status: int
    words: str
    dockerd_status: int | None = None
    dockerd_words: str | None = None

    def answer(self, host: str) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"} if self.body is not None else {}
        reply = http_request(socket_of(host), self.method, f"/v1.41{self.path}", headers, self.body)
        return reply.status, (reply.json().get("message", "") if reply.body.strip() else "")


def _create(config: dict[str, Any], query: str = "") -> tuple[str, str, bytes]:
    return "POST", f"/containers/create{query}", json.dumps({"Image": "busybox", **config}).encode()


_HEX = "a" * 64
_BAD_JSON = b"{invalid json"
#: Python's words for bad JSON, and Go's (dockerd's).
_OURS_BAD_JSON, _GO_BAD_JSON = "invalid JSON", "invalid character 'i' looking for beginning"
_EOF = "got EOF while reading request body"


def _bad_json(path: str, dockerd_status: int | None = None) -> Case:
    """Bad JSON to ``path``: a 400 here, worded by Python; dockerd words it in Go's way."""
    return Case("POST", path, _BAD_JSON, 400, _OURS_BAD_JSON, dockerd_status, _GO_BAD_JSON)


VALIDATION: dict[str, Case] = {
    "env-empty": Case(*_create({"Env": [""]}), 400, "invalid environment variable: "),
    "env-equals": Case(*_create({"Env": ["A=1", "="]}), 400, "invalid environment variable: ="),
    "env-no-name": Case(*_create({"Env": ["=X"]}), 400, "invalid environment variable: =X"),
    "tmpfs-relative": Case(
        *_create({"HostConfig": {"Tmpfs": {"rel": ""}}}), 400, "mount path must be absolute"
    ),
    "tmpfs-root": Case(
        *_create({"HostConfig": {"Tmpfs": {"/": ""}}}), 400, "destination can't be '/'"
    ),
    "tmpfs-double-slash": Case(
        *_create({"HostConfig": {"Tmpfs": {"//": ""}}}), 400, "destination can't be '/'"
    ),
    "volumes-from-missing": Case(
        *_create({"HostConfig": {"VolumesFrom": ["checks-nosuch"]}}),
        400,
        "No such container: checks-nosuch",
    ),
    "health-interval-negative": Case(
        *_create({"Healthcheck": {"Test": ["CMD", "true"], "Interval": -1}}),
        400,
        "Interval in Healthcheck cannot be less than 1ms",
    ),
    "health-timeout-under-1ms": Case(
        *_create({"Healthcheck": {"Test": ["CMD", "true"], "Timeout": 999_999}}),
        400,
        "Timeout in Healthcheck cannot be less than 1ms",
    ),
    "health-start-period-under-1ms": Case(
        *_create({"Healthcheck": {"Test": ["CMD", "true"], "StartPeriod": 5}}),
        400,
        "StartPeriod in Healthcheck cannot be less than 1ms",
    ),
    "health-retries-negative": Case(
        *_create({"Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}}),
        400,
        "Retries in Healthcheck cannot be negative",
    ),
    # dockerd 20.10 answers a bad reference with a 500 (moby 23 made it the 400 it is here).
    "tag-uppercase": Case(
        "POST", "/images/busybox/tag?repo=BAD", None, 400, "invalid reference format",
        dockerd_status=500,
    ),
    "tag-bad-tag": Case(
        "POST", "/images/busybox/tag?repo=ok&tag=-bad", None, 400, "invalid tag format",
        dockerd_status=500,
    ),
    "tag-digest-name": Case(
        "POST", "/images/busybox/tag?repo=sha256", None, 400,
        "refusing to create an ambiguous tag using digest algorithm as name",
    ),
    "tag-hex-name": Case(
        "POST", f"/images/busybox/tag?repo={_HEX}", None, 400,
        f"invalid repository name ({_HEX}), cannot specify 64-byte hexadecimal strings",
        dockerd_status=500,
    ),
    "volume-create-empty": Case("POST", "/volumes/create", b"", 400, _EOF),
    "volume-create-bad-json": _bad_json("/volumes/create"),
    "volume-create-bad-name": Case(
        "POST", "/volumes/create", b'{"Name": "bad name"}', 400,
        '"bad name" includes invalid characters for a local volume name',
    ),
    "exec-create-empty-missing-container": Case(
        "POST", "/containers/checks-nosuch/exec", b"", 400, _EOF
    ),
    "exec-create-bad-json-missing-container": _bad_json("/containers/checks-nosuch/exec"),
    "exec-start-empty-missing-exec": Case("POST", "/exec/checks-nosuch/start", b"", 400, _EOF),
    "exec-start-bad-json-missing-exec": _bad_json("/exec/checks-nosuch/start"),
    "network-create-empty": Case("POST", "/networks/create", b"", 400, _EOF),
    "network-connect-bad-json": _bad_json("/networks/checks-nosuch/connect"),
    "network-disconnect-empty": Case("POST", "/networks/checks-nosuch/disconnect", b"", 400, _EOF),
    # dockerd 20.10 decodes these bodies without its bad-request wrapper: a 500.
    "commit-bad-json-missing-container": _bad_json("/commit?container=checks-nosuch", 500),
    "update-bad-json-missing-container": _bad_json("/containers/checks-nosuch/update", 500),
    "resize-without-height": Case(
        "POST", "/containers/checks-nosuch/resize?w=80", None, 400, "h:",
        dockerd_words="strconv.Atoi",
    ),
    "exec-resize-without-width": Case(
        "POST", "/exec/checks-nosuch/resize?h=24", None, 400, "w:", dockerd_words="strconv.Atoi"
    ),
    "platform-other-architecture": Case(
        *_create({}, "?platform=linux/arm64"), 404,
        "image with reference busybox was found but does not match the specified platform: "
        "wanted linux/arm64, actual: linux/amd64",
    ),
    "platform-other-os": Case(
        *_create({}, "?platform=windows/amd64"), 404,
        "does not match the specified platform: wanted windows/amd64, actual: linux/amd64",
    ),
    "platform-arm-variant": Case(
        *_create({}, "?platform=arm"), 404, "wanted linux/arm, actual: linux/amd64"
    ),
    "platform-unparsable": Case(
        *_create({}, "?platform=bad/x/y/z"), 400,
        '"bad/x/y/z": cannot parse platform specifier: invalid argument',
    ),
    "platform-unknown-word": Case(
        *_create({}, "?platform=foo"), 400,
        '"foo": unknown operating system or architecture: invalid argument',
    ),
    "platform-missing-image": Case(
        "POST", "/containers/create?platform=linux/arm64", b'{"Image": "checks-nosuch"}', 404,
        "No such image: checks-nosuch:latest",
    ),
    "stats-stream-and-one-shot": Case(
        "GET", "/containers/checks-nosuch/stats?one-shot=1", None, 404,
        "No such container: checks-nosuch",
    ),
}  # fmt: skip


@pytest.fixture(scope="module")
def daemon(busybox_served):
    return busybox_served.daemon


@pytest.mark.parametrize("case", VALIDATION.values(), ids=VALIDATION.keys())
def test_validation_answers(daemon, case):
    status, message = case.answer(daemon.host)
    assert status == case.status and case.words in message, (status, message)


def test_nothing_was_created_by_the_refused_requests(daemon):
    """Refused creates leave no container, and refused tags no image name behind."""
    listed = daemon.request("GET", "/v1.41/containers/json?all=1").json()
    assert [c["Names"] for c in listed if c["Image"] == "busybox" and not c["Labels"]] == []
    tags = {t for image in daemon.request("GET", "/v1.41/images/json").json()
            for t in image["RepoTags"] or []}  # fmt: skip
    assert not {"sha256:latest", f"{_HEX}:latest", "ok:-bad"} & tags


# --------------------------------------------------------------------------------------------
# docker-py: the client sends what the CLI would refuse before asking
# --------------------------------------------------------------------------------------------


def docker_py_refusals(host: str) -> dict[str, tuple[str, int, str]]:
    """What docker-py's calls raise: error class, status and message, by case."""
    api = docker.APIClient(base_url=host, version="1.41")
    calls = {
        "env": lambda: api.create_container(IMAGE, "true", environment=["=X"]),
        "health": lambda: api.create_container(
            IMAGE, "true", healthcheck={"test": ["CMD", "true"], "interval": -1}
        ),
        "volumes-from": lambda: api.create_container(
            IMAGE, "true", host_config=api.create_host_config(volumes_from=["checks-nosuch"])
        ),
        "tmpfs": lambda: api.create_container(
            IMAGE, "true", host_config=api.create_host_config(tmpfs={"/": ""})
        ),
        "platform": lambda: api.create_container(IMAGE, "true", platform="linux/arm64"),
        "tag": lambda: api.tag(IMAGE, "sha256"),
    }
    found = {}
    try:
        for name, call in calls.items():
            with pytest.raises(docker.errors.APIError) as raised:
                call()
            error = raised.value
            assert error.response is not None
            found[name] = (type(error).__name__, error.response.status_code, error.explanation)
    finally:
        api.close()
    return found


#: The words each of docker_py_refusals' messages holds.
DOCKER_PY_WORDS = {
    "env": "invalid environment variable: =X",
    "health": "Interval in Healthcheck cannot be less than 1ms",
    "volumes-from": "No such container: checks-nosuch",
    "tmpfs": "destination can't be '/'",
    "platform": "does not match the specified platform: wanted linux/arm64, actual: linux/amd64",
    "tag": "refusing to create an ambiguous tag using digest algorithm as name",
}


def test_docker_py_sees_the_refusals(daemon):
    found = docker_py_refusals(daemon.host)
    assert {name: status for name, (_, status, _) in found.items()} == {
        "env": 400, "health": 400, "volumes-from": 400, "tmpfs": 400, "platform": 404, "tag": 400,
    }  # fmt: skip
    assert found["platform"][0] == "ImageNotFound"  # the CLI pulls the platform's image then
    for name, words in DOCKER_PY_WORDS.items():
        assert words in found[name][2], found[name]


def test_platform_of_the_image_is_taken(daemon):
    """This machine's platform, said in any of the ways containerd reads, creates; and before
    API 1.41 ``platform`` is not a parameter (dockerd ignores it there)."""
    made = []
    for query in ("platform=linux/amd64", "platform=amd64", "platform=linux",
                  "platform=linux/x86_64", "platform=linux/amd64/v3"):  # fmt: skip
        reply = daemon.request("POST", f"/v1.41/containers/create?{query}",
                               {"Content-Type": "application/json"}, b'{"Image": "busybox"}')  # fmt: skip
        assert reply.status == 201, (query, reply.body)
        made.append(reply.json()["Id"])
    older = daemon.request("POST", "/v1.40/containers/create?platform=linux/arm64",
                           {"Content-Type": "application/json"}, b'{"Image": "busybox"}')  # fmt: skip
    assert older.status == 201, older.body
    made.append(older.json()["Id"])
    for container in made:
        assert daemon.request("DELETE", f"/v1.41/containers/{container}").status == 204


# --------------------------------------------------------------------------------------------
# rename to its own name, with the docker CLI
# --------------------------------------------------------------------------------------------


def cli(host: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args], env=docker_env(host), capture_output=True, text=True, timeout=60
    )


def rename_to_own_name(host: str, name: str) -> tuple[int, str]:
    assert cli(host, "create", "--name", name, IMAGE, "true").returncode == 0
    try:
        renamed = cli(host, "rename", name, name)
        return renamed.returncode, renamed.stderr
    finally:
        cli(host, "rm", name)


def test_rename_to_its_own_name_is_refused(daemon):
    code, stderr = rename_to_own_name(daemon.host, unique())
    assert code == 1
    assert "Renaming a container with the same name as its current name" in stderr


# --------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------


def container_events(host: str) -> list[tuple[str, dict[str, str]]]:
    """The container events of a run, rename, resize, update and exec, then a removal:
    actions and attributes, without the image's and the exec's ids."""
    first, second = unique(), unique()
    since = time.time()
    assert cli(host, "run", "-d", "-t", "--name", first, IMAGE, "sleep", "60").returncode == 0
    assert cli(host, "rename", first, second).returncode == 0
    resized = http_request(socket_of(host), "POST", f"/v1.41/containers/{second}/resize?h=30&w=100")
    assert resized.status == 200, resized.body
    assert cli(host, "update", "--cpu-shares", "512", second).returncode == 0
    assert cli(host, "exec", second, "sh", "-c", "exit 3").returncode == 3
    assert cli(host, "rm", "-f", second).returncode == 0
    until = time.time() + 0.5
    reply = http_request(
        socket_of(host),
        "GET",
        f"/v1.41/events?since={since:.3f}&until={until:.3f}&filters="
        + urllib.parse.quote(json.dumps({"type": ["container"]})),
    )
    found = []
    for line in reply.body.decode().splitlines():
        event = json.loads(line)
        attributes = event["Actor"]["Attributes"]
        kept = {k: v for k, v in attributes.items() if k not in ("image", "execID")}
        found.append((event["Action"], kept))
    return found


def expected_events(renamed_from: str, name: str) -> list[tuple[str, dict[str, str]]]:
    return [
        ("create", {"name": renamed_from}),
        ("start", {"name": renamed_from}),
        ("rename", {"name": name, "oldName": f"/{renamed_from}"}),
        ("resize", {"name": name, "height": "30", "width": "100"}),
        ("update", {"name": name}),
        ("exec_create: sh -c exit 3", {"name": name}),
        ("exec_start: sh -c exit 3", {"name": name}),
        ("exec_die", {"name": name, "exitCode": "3"}),
        ("kill", {"name": name, "signal": "9"}),
        ("die", {"name": name, "exitCode": "137"}),
        ("destroy", {"name": name}),
    ]


def test_rename_resize_update_and_exec_events(daemon):
    events = container_events(daemon.host)
    first, second = events[0][1]["name"], events[-1][1]["name"]
    assert events == expected_events(first, second)


# --------------------------------------------------------------------------------------------
# Stats
# --------------------------------------------------------------------------------------------

ZERO_TIME = "0001-01-01T00:00:00Z"
#: A first frame's ``precpu_stats``, as dockerd sends them.
ZEROED_PRECPU = {
    "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
    "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
}


@attrs.frozen
class StatsAnswers:
    """What a daemon answers the ways of asking for stats: statuses, documents, and the
    seconds between frames of a stream."""

    streamed: list[dict[str, Any]]
    gaps: list[float]
    no_stream: dict[str, Any]
    one_shot: dict[str, Any]
    one_shot_before_1_41: tuple[int, dict[str, Any]]
    stream_and_one_shot: tuple[int, str]
    stopped: dict[str, Any]


def stats_answers(host: str) -> StatsAnswers:
    sock = socket_of(host)
    running, stopped = unique(), unique()
    assert cli(host, "run", "-d", "--name", running, IMAGE, "sleep", "60").returncode == 0
    assert cli(host, "create", "--name", stopped, IMAGE, "true").returncode == 0
    try:
        connection = UnixHTTPConnection(sock, timeout=10)
        connection.request("GET", f"/v1.41/containers/{running}/stats")
        response = connection.getresponse()
        frames, arrivals = [], []
        while len(frames) < 3:
            frames.append(json.loads(response.readline()))
            arrivals.append(time.monotonic())
        connection.close()

        def get(path: str) -> Any:
            reply = http_request(sock, "GET", path)
            return reply.status, reply.json()

        refused = get(f"/v1.41/containers/{running}/stats?one-shot=1")
        return StatsAnswers(
            streamed=frames,
            gaps=[b - a for a, b in itertools.pairwise(arrivals)],
            no_stream=get(f"/v1.41/containers/{running}/stats?stream=false")[1],
            one_shot=get(f"/v1.41/containers/{running}/stats?stream=false&one-shot=true")[1],
            one_shot_before_1_41=get(f"/v1.40/containers/{running}/stats?stream=0&one-shot=1"),
            stream_and_one_shot=(refused[0], refused[1]["message"]),
            stopped=get(f"/v1.41/containers/{stopped}/stats?stream=false")[1],
        )
    finally:
        cli(host, "rm", "-f", running, stopped)


def check_stats(answers: StatsAnswers) -> None:
    """What dockerd answers, in the fields that do not depend on timing or load."""
    first, second, third = answers.streamed
    assert first["precpu_stats"] == ZEROED_PRECPU and first["preread"] == ZERO_TIME
    assert second["preread"] == first["read"] and third["preread"] == second["read"]
    assert second["precpu_stats"]["cpu_usage"] == first["cpu_stats"]["cpu_usage"]
    # About a second apart; the slack is a loaded machine's, which can delay one arrival and so
    # shorten the next gap (an unpaced stream would be milliseconds apart).
    assert all(0.5 < gap < 2.5 for gap in answers.gaps), answers.gaps
    # stream=false: the change over a second, like a stream's second frame
    assert answers.no_stream["preread"] != ZERO_TIME
    assert answers.no_stream["precpu_stats"]["cpu_usage"]["total_usage"] > 0
    assert answers.no_stream["precpu_stats"]["system_cpu_usage"] > 0
    # one-shot: the first sample alone
    assert answers.one_shot["precpu_stats"] == ZEROED_PRECPU
    assert answers.one_shot["preread"] == ZERO_TIME and answers.one_shot["read"] != ZERO_TIME
    assert answers.one_shot["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    # before 1.41 one-shot is no parameter: stream=false as ever
    status, older = answers.one_shot_before_1_41
    assert status == 200 and older["preread"] != ZERO_TIME
    assert answers.stream_and_one_shot == (400, "cannot have stream=true and one-shot=true")
    stopped = answers.stopped
    assert (stopped["read"], stopped["preread"]) == (ZERO_TIME, ZERO_TIME)
    assert stopped["cpu_stats"] == stopped["precpu_stats"] == ZEROED_PRECPU
    assert stopped["name"].startswith("/checks-")


def test_stats_frames_one_shot_and_no_stream(daemon):
    started = time.monotonic()
    check_stats(stats_answers(daemon.host))
    # A stream's first frame comes at once: three frames, a no-stream answer and the rest
    # in about four seconds (dockerd takes about six; the bound leaves a loaded machine room).
    assert time.monotonic() - started < 12


# --------------------------------------------------------------------------------------------
# ps: publish and expose, on a daemon with the default bridge
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bridged(tmp_path_factory) -> Iterator[str]:
    """A daemon of the module's own with the default bridge (its tests hold the host-network
    lock and leave the host's network as they found it)."""
    from dockyard.testing.networks import host_left_as_found
    from tests.conftest import daemon_in, serving, shut_down

    base = tmp_path_factory.mktemp("checks-bridged")
    with host_left_as_found():
        daemon = serving(daemon_in(base, network=True))
        try:
            import_busybox(daemon, base / "rootfs.tar", ("sleep",))
            yield daemon.host
        finally:
            shut_down(daemon)


def ps_names(host: str, *filters: str) -> list[str]:
    args = [arg for f in filters for arg in ("--filter", f)]
    listed = cli(host, "ps", "-a", *args, "--format", "{{.Names}}")
    assert listed.returncode == 0, listed.stderr
    return sorted(listed.stdout.split())


def test_ps_publish_and_expose_filters_match_what_ps_lists(bridged):
    """As dockerd: ``publish`` is a host port, ``expose`` a container port, of those the
    PORTS column lists; a container that is not running lists none."""
    running, created, host_net = unique(), unique(), unique()
    ok = cli(bridged, "run", "-d", "--name", running, "-p", "127.0.0.1::80", "--expose", "81",
             IMAGE, "sleep", "60")  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    cli(bridged, "create", "--name", created, "-p", "127.0.0.1::80", "--expose", "81", IMAGE)
    cli(bridged, "run", "-d", "--name", host_net, "--network", "host", "--expose", "82", IMAGE,
        "sleep", "60")  # fmt: skip
    try:
        port = cli(bridged, "port", running, "80/tcp").stdout.strip().rpartition(":")[2]
        assert ps_names(bridged, f"publish={port}") == [running]
        assert ps_names(bridged, f"publish={port}/tcp") == [running]
        assert ps_names(bridged, f"publish={port}/udp") == []
        assert ps_names(bridged, "publish=80") == []  # the container's side is expose's
        assert ps_names(bridged, "expose=80") == ps_names(bridged, "expose=81") == [running]
        assert ps_names(bridged, "expose=79-81/tcp") == [running]
        assert ps_names(bridged, "expose=82") == []  # on the host's network: nothing listed
        listed = cli(bridged, "ps", "-a", "--filter", f"name={created}", "--format", "{{.Ports}}")
        assert listed.stdout == "\n"
    finally:
        cli(bridged, "rm", "-f", running, created, host_net)
