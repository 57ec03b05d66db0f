"""``dockyard pull``, ``push`` and ``run`` of a missing image, side by side with the docker CLI.

Both clients talk to the same daemon, which pulls from and pushes to ``dockyard registry`` on
loopback. The daemon is a parameter (:data:`DAEMONS`): the real dockerd 20.10 now; ours once
its pull and push land (add ``"dockyard"``). The TTY rendering is checked by replaying a stream
recorded from that daemon to both clients, each in a pseudo-terminal of the same size.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs

import attrs
import pytest

from dockyard.testing.images import busybox_rootfs, image_archive, layer_tar
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import http_request
from tests.registry.conftest import htpasswd_file, registry_process
from tests.unix_server import UnixHTTPServer, serving

pytestmark = pytest.mark.interop
__all__ = ["registry_process"]  # a fixture of tests/registry

#: The daemons these tests run against; ours joins when it pulls and pushes.
DAEMONS = ["dockerd", "dockyard"]
USER, PASSWORD = "puller", "pull-Secret-9"


@attrs.frozen
class Engine:
    """A daemon under test, its socket, and the two clients pointed at it (each with its
    own config directory: stored logins are per client)."""

    host: str
    workdir: Path

    @property
    def socket_path(self) -> str:
        return self.host.removeprefix("unix://")

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [docker_cli(), *args],
            env=docker_env(self.host, self.workdir / "docker-config"),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
        return result

    def dockyard(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKYARD_")}
        env["DOCKYARD_CONFIG"] = str(self.workdir / "dockyard-config")
        result = subprocess.run(
            [sys.executable, "-m", "dockyard", "-H", self.host, *args],
            env=env, input=input, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        if check:
            assert result.returncode == 0, f"dockyard {' '.join(args)}: {result.stderr}"
        return result


@pytest.fixture(params=DAEMONS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    if request.param == "dockerd":
        host = request.getfixturevalue("real_dockerd").host
    else:
        host = f"unix://{request.getfixturevalue('daemon').socket_path}"
    return Engine(host, tmp_path)


def fs_config(root: Path, auth: str = "") -> str:
    return (
        f'[registry]\ndata-root = "{root}/state"\n{auth}'
        f'[registries.filesystem]\nroot = "{root}/data"\n'
    )


def load_image(engine: Engine, reference: str, tmp_path: Path) -> None:
    """A two-layer busybox image, built here, loaded into the daemon under ``reference``."""
    layers = [
        busybox_rootfs(compress=True),
        layer_tar({"etc/motd": b"pulled by dockyard\n"}, compress=True),
    ]
    archive = tmp_path / "image.tar"
    archive.write_bytes(image_archive(layers, [reference], layout="docker"))
    engine.docker("load", "-i", str(archive))


def lines(text: str, host: str) -> list[str]:
    return text.replace(host, "HOST").splitlines()


def test_pull_and_push_print_what_the_docker_cli_prints(tmp_path, engine, registry_process):
    ours_registry = registry_process(fs_config(tmp_path / "a"))
    theirs_registry = registry_process(fs_config(tmp_path / "b"))
    ours = f"{ours_registry.host}/x/busybox:1"
    theirs = f"{theirs_registry.host}/x/busybox:1"
    load_image(engine, ours, tmp_path)
    engine.docker("tag", ours, theirs)
    try:
        # Push: each client to a registry of its own, both empty.
        pushed = engine.dockyard("push", ours)
        docker_pushed = engine.docker("push", theirs)
        ours_lines = lines(pushed.stdout, ours_registry.host)
        theirs_lines = lines(docker_pushed.stdout, theirs_registry.host)
        assert ours_lines[0] == "The push refers to repository [HOST/x/busybox]"
        assert sorted(ours_lines) == sorted(theirs_lines)  # layers finish in either order
        assert ours_lines[-1] == theirs_lines[-1]
        assert ours_lines[-1].startswith("1: digest: sha256:")

        # Pull: the same image, gone from the daemon, pulled by each client in turn.
        outputs = []
        for client in (engine.dockyard, engine.docker):
            engine.docker("rmi", ours, theirs)
            pulled = client("pull", ours)
            outputs.append(lines(pulled.stdout, ours_registry.host))
            engine.docker("tag", ours, theirs)
        ours_lines, theirs_lines = outputs
        assert ours_lines[0] == theirs_lines[0] == "1: Pulling from x/busybox"
        # Which intermediate statuses a layer shows depends on timing in the daemon (it
        # keeps only a layer's latest progress for a slow reader): the ends must agree.
        # A layer another image of the daemon holds (the busybox base, once an earlier test
        # has loaded one) shows "Already exists" instead: to both clients alike.
        ends = (": Pull complete", ": Already exists")
        done = sorted(line for line in ours_lines if line.endswith(ends))
        assert len(done) == 2
        assert done == sorted(line for line in theirs_lines if line.endswith(ends))
        assert ours_lines[-3:] == theirs_lines[-3:]
        assert ours_lines[-2:] == [
            "Status: Downloaded newer image for HOST/x/busybox:1",
            "HOST/x/busybox:1",
        ]
        # Present already; and -q prints the reference alone.
        again = engine.dockyard("pull", "--platform", "linux/amd64", ours)
        assert "Status: Image is up to date for" in again.stdout
        elsewhere = engine.dockyard("pull", "--platform", "linux/s390x", ours, check=False)
        docker_elsewhere = engine.docker("pull", "--platform", "linux/s390x", ours, check=False)
        # Whatever the daemon makes of it (dockerd 20.10 finds the image it has and does not
        # look at its platform), both clients show the same.
        assert elsewhere.returncode == docker_elsewhere.returncode
        assert (elsewhere.stdout, elsewhere.stderr) == (
            docker_elsewhere.stdout,
            docker_elsewhere.stderr,
        )
        quiet = engine.dockyard("pull", "-q", ours)
        assert quiet.stdout == f"{ours}\n"
        # A name without a tag: docker says which it uses.
        engine.docker("tag", ours, f"{ours_registry.host}/x/busybox:latest")
        quietly = engine.dockyard("push", "-q", f"{ours_registry.host}/x/busybox")
        assert quietly.stdout == f"{ours_registry.host}/x/busybox:latest\n"
        repushed = engine.dockyard("push", f"{ours_registry.host}/x/busybox")
        docker_repushed = engine.docker("push", f"{ours_registry.host}/x/busybox")
        assert repushed.stdout.splitlines()[0] == "Using default tag: latest"
        assert sorted(repushed.stdout.splitlines()) == sorted(docker_repushed.stdout.splitlines())
        untagged = engine.dockyard("pull", f"{ours_registry.host}/x/busybox")
        docker_untagged = engine.docker("pull", f"{ours_registry.host}/x/busybox")
        assert untagged.stdout.splitlines()[0] == "Using default tag: latest"
        assert untagged.stdout == docker_untagged.stdout
    finally:
        engine.docker("rmi", ours, theirs, f"{ours_registry.host}/x/busybox:latest", check=False)
    assert ours_registry.server_errors() == theirs_registry.server_errors() == []


def test_pull_errors_exit_1_with_the_docker_clis_message(tmp_path, engine, registry_process):
    server = registry_process(fs_config(tmp_path))
    for reference in (f"{server.host}/x/busybox:nope", f"{server.host}/nosuch/repo:1"):
        ours = engine.dockyard("pull", reference, check=False)
        theirs = engine.docker("pull", reference, check=False)
        assert ours.returncode == theirs.returncode == 1
        assert ours.stderr == theirs.stderr
        assert "manifest unknown" in ours.stderr
    for bad in ("Upper/case", "a:b:c", "x@sha256:short"):
        ours = engine.dockyard("pull", bad, check=False)
        assert ours.returncode == 1
        assert "invalid reference format" in ours.stderr
        assert "invalid reference format" in engine.docker("pull", bad, check=False).stderr
    both = engine.dockyard("pull", "-a", f"{server.host}/x/busybox:1", check=False)
    assert both.returncode == 1
    assert "tag can't be used with --all-tags/-a" in both.stderr


def test_push_to_an_htpasswd_registry_sends_the_stored_login(tmp_path, engine, registry_process):
    users = htpasswd_file(tmp_path / "users.htpasswd", {USER: PASSWORD})
    auth = f'auth = "htpasswd"\n[auth.htpasswd]\npath = "{users}"\nrealm = "pull tests"\n'
    # The [auth.htpasswd] table must follow [registry]'s keys, before the backend's table.
    server = registry_process(fs_config(tmp_path, auth))
    reference = f"{server.host}/private/busybox:1"
    load_image(engine, reference, tmp_path)
    try:
        # No login: the daemon's stream ends in an error, which is ours to print; exit 1.
        refused = engine.dockyard("push", reference, check=False)
        docker_refused = engine.docker("push", reference, check=False)
        assert refused.returncode == docker_refused.returncode == 1
        assert refused.stderr == docker_refused.stderr
        assert "no basic auth credentials" in refused.stderr
        assert refused.stdout.startswith("The push refers to repository")

        engine.dockyard("login", server.host, "-u", USER, "--password-stdin", input=PASSWORD)
        pushed = engine.dockyard("push", reference)
        assert "1: digest: sha256:" in pushed.stdout
        engine.docker("rmi", reference)
        pulled = engine.dockyard("pull", reference)
        assert pulled.stdout.endswith(f"{reference}\n")
        engine.dockyard("logout", server.host)
        engine.docker("rmi", reference)
        anonymous = engine.dockyard("pull", reference, check=False)
        assert anonymous.returncode == 1
        assert "no basic auth credentials" in anonymous.stderr
    finally:
        engine.docker("rmi", reference, check=False)
    assert server.server_errors() == []


def test_run_of_a_missing_image_pulls_it_first(tmp_path, engine, registry_process):
    server = registry_process(fs_config(tmp_path))
    reference = f"{server.host}/x/busybox:1"
    load_image(engine, reference, tmp_path)
    try:
        engine.dockyard("push", "-q", reference)
        engine.docker("rmi", reference)
        never = engine.dockyard(
            "run", "--rm", "--pull", "never", "--network", "none", reference, "echo", "hi",
            check=False,
        )  # fmt: skip
        assert never.returncode == 125
        assert f"Error response from daemon: No such image: {reference}" in never.stderr
        assert "Unable to find image" not in never.stderr

        ran = engine.dockyard("run", "--rm", "--network", "none", reference, "echo", "hi")
        assert ran.stdout == "hi\n"
        stderr = ran.stderr.splitlines()
        assert stderr[0] == f"Unable to find image '{reference}' locally"
        assert stderr[1] == "1: Pulling from x/busybox"
        assert stderr[-1] == f"Status: Downloaded newer image for {reference}"

        # Present now: no pull, unless asked for always.
        again = engine.dockyard("run", "--rm", "--network", "none", reference, "echo", "hi")
        assert again.stderr == ""
        always = engine.dockyard(
            "create", "--pull", "always", "--network", "none", reference, "true"
        )
        assert "Status: Image is up to date for" in always.stderr
        engine.docker("rm", always.stdout.strip())
        wrong = engine.dockyard("run", "--pull", "sometimes", reference, check=False)
        assert wrong.returncode == 2
        assert 'must be one of "always", "missing" or "never"' in wrong.stderr

        # A pull that fails in run: docker's exit 125 and the daemon's message.
        missing = f"{server.host}/x/busybox:nope"
        failed = engine.dockyard("run", "--rm", missing, "true", check=False)
        assert failed.returncode == 125
        assert f"Unable to find image '{missing}' locally" in failed.stderr
        assert "manifest unknown" in failed.stderr
    finally:
        engine.docker("rmi", reference, check=False)


# --------------------------------------------------------------------------------------------
# The TTY: a recorded stream replayed to both clients in a pseudo-terminal
# --------------------------------------------------------------------------------------------


class ReplayServer(UnixHTTPServer):
    """A stand-in daemon on a Unix socket: ``/_ping``, and ``stream`` for every pull and
    push; it keeps the requests for those (method, path and query, ``X-Registry-Auth``)."""

    stream = b""
    requests: list[tuple[str, str, str]]
    #: Answer 401 to a pull or push that comes without a login.
    refuse_anonymous = False


class ReplayHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ReplayServer

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._answer(200, b"OK", "text/plain")

    def do_GET(self) -> None:
        self._answer(200, b"OK", "text/plain")

    def do_POST(self) -> None:
        # Read the body (create's JSON): left unread, it would be taken for the next request
        # on this kept-alive connection.
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append(
            (self.command, self.path, self.headers.get("X-Registry-Auth", ""))
        )
        anonymous = self.headers.get("X-Registry-Auth", "") in ("", "e30=")
        if self.server.refuse_anonymous and anonymous:
            self._answer(401, b'{"message":"authentication required"}', "application/json")
        elif "/images/create" in self.path or self.path.split("?")[0].endswith("/push"):
            self._answer(200, self.server.stream, "application/json")
        else:
            self._answer(404, b'{"message":"not replayed"}', "application/json")

    def address_string(self) -> str:
        return "replay"

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def replaying(stream: bytes, socket_path: Path) -> Iterator[ReplayServer]:
    server = ReplayServer(str(socket_path), ReplayHandler)
    server.stream = stream
    server.requests = []
    with serving(server):
        yield server


def both_clients(
    replay: ReplayServer, tmp_path: Path, *args: str
) -> tuple[dict[str, str], list[list[str]]]:
    """The environment and the two command lines (the docker CLI's, then ours) for ``args``
    against the stand-in daemon."""
    host = f"unix://{replay.server_address}"
    env = docker_env(host, tmp_path / "docker-config")
    env["DOCKYARD_CONFIG"] = str(tmp_path / "dockyard-config")
    return env, [[docker_cli(), *args], [sys.executable, "-m", "dockyard", "-H", host, *args]]


def in_a_terminal(
    argv: list[str], env: dict[str, str], columns: int, answers: dict[bytes, bytes] | None = None
) -> bytes:
    """What ``argv`` writes to a pseudo-terminal of ``columns`` columns; ``answers`` are typed
    once their prompt has been written."""
    answers = dict(answers or {})
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    process = subprocess.Popen(
        argv, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True
    )
    os.close(follower)
    output = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 60)
            assert ready, f"{argv} wrote nothing for 60 s: {output!r}"
            try:
                block = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                break
            if not block:
                break
            output += block
            for prompt in [p for p in answers if p in output]:
                os.write(leader, answers.pop(prompt))
    finally:
        os.close(leader)
        assert process.wait(timeout=60) == 0, output
    return output


def recorded_stream(engine: Engine, command: str, server_host: str, tmp_path: Path) -> bytes:
    """The daemon's own stream for ``command`` (pull or push) of a fresh two-layer image, read
    straight from its socket."""
    reference = f"{server_host}/x/busybox:1"
    load_image(engine, reference, tmp_path)
    if command == "pull":
        engine.dockyard("push", "-q", reference)
        engine.docker("rmi", reference)
        path = f"/v1.41/images/create?fromImage={server_host}/x/busybox&tag=1"
    else:
        path = f"/v1.41/images/{server_host}/x/busybox/push?tag=1"
    try:
        recorded = http_request(engine.socket_path, "POST", path, {"X-Registry-Auth": "e30="})
    finally:
        engine.docker("rmi", reference, check=False)
    assert recorded.status == 200, recorded.body
    messages = [json.loads(line) for line in recorded.body.splitlines() if line.strip()]
    assert any(m.get("progressDetail", {}).get("current") for m in messages)  # bars to draw
    return recorded.body


@pytest.mark.parametrize("columns", [150, 80, None])
@pytest.mark.parametrize("command", ["pull", "push"])
def test_progress_is_drawn_as_the_docker_cli_draws_it(
    tmp_path, engine, registry_process, command, columns
):
    """A stream recorded from the daemon, replayed to both clients: in a pseudo-terminal wide
    enough for the bars or not, and into a pipe. The bytes they write are the same."""
    server = registry_process(fs_config(tmp_path))
    reference = f"{server.host}/x/busybox:1"
    stream = recorded_stream(engine, command, server.host, tmp_path)
    with replaying(stream, tmp_path / "replay.sock") as replay:
        env, argvs = both_clients(replay, tmp_path, command, reference)
        if columns is None:  # a pipe: plain lines
            theirs, ours = (
                subprocess.run(argv, env=env, capture_output=True, check=True, timeout=60).stdout
                for argv in argvs
            )
        else:
            theirs, ours = (in_a_terminal(argv, env, columns) for argv in argvs)
    if columns is None:
        assert b"\x1b" not in ours and b"Downloading" not in ours  # no progress off a TTY
        first = b"1: Pulling from x/busybox\n" if command == "pull" else b"The push refers to"
        assert ours.startswith(first)
    else:
        assert b"\x1b[2K\r" in ours and b"\x1b[1A" in ours  # redrawn in place
        assert (b"=>" in ours) == (columns > 110)  # the bar needs room
    assert ours == theirs


def _request(replay: ReplayServer) -> tuple[str, str, dict[str, list[str]], dict[str, str]]:
    """The one request a client sent: method, path without the version, query, auth."""
    [(method, target, auth)] = replay.requests
    replay.requests.clear()
    path, _, query = target.partition("?")
    decoded = json.loads(base64.urlsafe_b64decode(auth)) if auth else None
    return method, path.removeprefix("/v1.41"), parse_qs(query), decoded


@pytest.mark.parametrize(
    "args",
    [
        ["pull", "busybox"],
        ["pull", "127.0.0.1:5999/x/busybox:1"],
        ["pull", "--platform", "Linux/AMD64", "localhost/a/b:c"],
        ["pull", "127.0.0.1:5999/x/busybox@sha256:" + "ab" * 32],
        ["pull", "-a", "127.0.0.1:5999/x/busybox"],
        ["pull", "-q", "index.docker.io/user/app"],
        ["push", "127.0.0.1:5999/x/busybox:1"],
        ["push", "busybox"],
        ["push", "-a", "127.0.0.1:5999/x/busybox"],
        ["run", "--rm", "--network", "none", "127.0.0.1:5999/x/busybox:1", "true"],
    ],
    ids=lambda args: " ".join(args),
)
def test_requests_are_the_docker_clis(tmp_path, args):
    """Each client's request for the same command, to a stand-in daemon: the same path and
    query, and the same login in ``X-Registry-Auth`` (``{}`` for a registry without one)."""
    logins = {"auths": {"127.0.0.1:5999": {"auth": base64.b64encode(b"puller:pw").decode()}}}
    for directory in ("docker-config", "dockyard-config"):
        (tmp_path / directory).mkdir()
        (tmp_path / directory / "config.json").write_text(json.dumps(logins))
    stream = b'{"status":"Digest: sha256:0"}\r\n'
    with replaying(stream, tmp_path / "replay.sock") as replay:
        env, argvs = both_clients(replay, tmp_path, *args)
        requests = []
        for argv in argvs:
            subprocess.run(argv, env=env, capture_output=True, timeout=60)
            pulls = [r for r in replay.requests if "/containers/" not in r[1]]
            replay.requests[:] = pulls
            requests.append(_request(replay))
    theirs, ours = requests
    assert ours == theirs


@pytest.mark.parametrize("command", ["pull", "push"])
def test_an_error_in_the_stream_is_printed_and_exits_1(tmp_path, command):
    """What came before the error is drawn, then its message alone on stderr: as docker's.
    One difference, chosen: the old ``error`` field without ``errorDetail`` also fails (the
    docker CLI 28 prints an empty line and exits 0; docker-py reads only that field)."""
    failing = (
        b'{"status":"Preparing","progressDetail":{},"id":"abc"}\r\n'
        b'{"errorDetail":{"code":3,"message":"unknown blob"},"error":"unknown blob"}\r\n'
        b'{"status":"never shown"}\r\n'
    )
    reference = "127.0.0.1:5999/x/busybox:1"
    results = []
    with replaying(failing, tmp_path / "replay.sock") as replay:
        env, argvs = both_clients(replay, tmp_path, command, reference)
        for argv in argvs:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
            results.append((done.returncode, done.stdout, done.stderr))
        replay.stream = b'{"status":"before"}\r\n{"error":"old style"}\r\n'
        old_style = subprocess.run(argvs[1], env=env, capture_output=True, text=True, timeout=60)
    theirs, ours = results
    assert ours == theirs == (1, "abc: Preparing\n", "unknown blob\n")
    assert (old_style.returncode, old_style.stderr) == (1, "old style\n")


@pytest.mark.parametrize("command", ["pull", "push"])
def test_a_401_asks_for_a_login_and_tries_once_more(tmp_path, command):
    """The docker CLI's privilege function: "Login prior to pull:", a user and password asked
    for on the terminal, the same request again with them (and nothing stored)."""
    reference = "127.0.0.1:5999/x/busybox:1"
    typed = {b"Username: ": b"puller\n", b"Password: ": b"pull-pw\n"}
    outputs, logins = [], []
    with replaying(b'{"status":"Digest: sha256:0"}\r\n', tmp_path / "replay.sock") as replay:
        replay.refuse_anonymous = True
        env, argvs = both_clients(replay, tmp_path, command, reference)
        for argv in argvs:
            outputs.append(in_a_terminal(argv, env, 100, typed))
            logins.append([json.loads(base64.urlsafe_b64decode(r[2])) for r in replay.requests])
            replay.requests.clear()
        # Off a terminal there is no one to ask.
        piped = subprocess.run(
            argvs[1], env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
        )
    theirs, ours = logins
    # The docker CLI 28 names Docker Hub's index as the server here, whatever the registry
    # (the daemon goes by the image's name); ours names the image's registry.
    login = {"username": "puller", "password": "pull-pw", "serveraddress": "127.0.0.1:5999"}
    assert ours == [{}, login]
    assert theirs == [{}, {**login, "serveraddress": "https://index.docker.io/v1/"}]
    # The same, less the Docker Hub advice the docker CLI adds (it thinks it is at the Hub).
    tail = b"Digest: sha256:0\r\n" + (b"%s\r\n" % reference.encode() if command == "pull" else b"")
    expected = f"\r\nLogin prior to {command}:\r\nUsername: puller\r\nPassword: \r\n".encode()
    assert outputs[1] == expected + tail
    assert outputs[0].startswith(expected[:24]) and outputs[0].endswith(b"Password: \r\n" + tail)
    assert piped.returncode == 1
    assert "Cannot perform an interactive login from a non TTY device" in piped.stderr
    assert not (tmp_path / "dockyard-config" / "config.json").exists()
