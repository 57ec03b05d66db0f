"""Building with real clients: the docker CLI's classic builder path (``DOCKER_BUILDKIT=0``, and
unset), ``dockyard build``, docker-py's ``images.build`` and docker-compose 1.29's ``build:``.

Every test runs against the real dockerd 20.10 and against our daemon (:data:`DAEMONS`); ours
is marked to fail until its builder is merged. Images are never pulled: a busybox made here
is loaded into each daemon. Each test removes the images and containers it made (dockerd is
shared by the session).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import docker as docker_sdk
import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import Daemon, module_daemon, plugin_env

pytestmark = pytest.mark.interop

DAEMONS = [
    "dockerd",
    "dockyard",
]
#: The base image every Dockerfile here starts from (loaded, never pulled).
BASE = "busybox:latest"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MULTI_STAGE = """\
ARG BASE=busybox
FROM ${BASE} AS builder
ARG MESSAGE=default
RUN mkdir /out && echo "built with $MESSAGE" > /out/message.txt
COPY . /ctx/
RUN ls -A /ctx /ctx/logs > /out/listing.txt

FROM busybox
ARG MESSAGE
ENV APP_HOME=/app GREETING="hello $MESSAGE"
WORKDIR $APP_HOME
COPY --from=builder /out/ ./
COPY hello.txt .
LABEL org.example.stage=final org.example.message=$MESSAGE
EXPOSE 8080/tcp
HEALTHCHECK --interval=30s --timeout=3s CMD cat /app/hello.txt || exit 1
USER nobody
CMD ["cat", "/app/message.txt"]
"""
#: The steps of MULTI_STAGE (the ARG before the first FROM is one).
STEPS = 17


@attrs.frozen
class Engine:
    """A daemon under test and the clients pointed at it."""

    name: str
    host: str
    workdir: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**docker_env(self.host, self.workdir / "docker-config"), **extra}

    def docker(
        self, *args: str, check: bool = True, env: dict[str, str] | None = None, **kwargs
    ) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        done = subprocess.run(
            [docker_cli(), *args],
            env={**self.env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
            **kwargs,
        )
        if check:
            assert done.returncode == 0, f"docker {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    def dockyard(self, *args: str, **_: object) -> subprocess.CompletedProcess:
        """``dockyard -H HOST ARGS`` (whatever it exits with)."""
        return subprocess.run(
            [sys.executable, "-m", "dockyard", "-H", self.host, *args],
            env=plugin_env([], DOCKYARD_CONFIG=str(self.workdir / "dockyard-config")),
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    def inspect(self, kind: str, name: str) -> dict:
        return json.loads(self.docker(kind, "inspect", name).stdout)[0]

    def container_ids(self) -> set[str]:
        return set(self.docker("ps", "-aq", "--no-trunc").stdout.split())


@pytest.fixture(scope="module")
def own_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with module_daemon(tmp_path_factory.mktemp("build-daemon")) as daemon:
        yield daemon


@pytest.fixture(params=DAEMONS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A daemon with busybox loaded; the images and containers a test makes are removed."""
    if request.param == "dockerd":
        host = request.getfixturevalue("real_dockerd").host
    else:
        host = request.getfixturevalue("own_daemon").host
    engine = Engine(request.param, host, tmp_path)
    archive = tmp_path / "busybox.tar"
    rootfs = busybox_rootfs({"etc/passwd": PASSWD, "etc/group": GROUP})
    archive.write_bytes(image_archive([rootfs], [BASE], config_extra={"config": {}}))
    engine.docker("load", "-i", str(archive))
    containers_before = engine.container_ids()
    images_before = set(engine.docker("images", "-aq", "--no-trunc").stdout.split())
    try:
        yield engine
    finally:
        made = engine.container_ids() - containers_before
        if made:
            engine.docker("rm", "-f", *made, check=False)
        for line in engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
            if line.startswith("bcli-"):
                engine.docker("rmi", "-f", line, check=False)
        left = set(engine.docker("images", "-aq", "--no-trunc").stdout.split()) - images_before
        if left:
            engine.docker("rmi", "-f", *left, check=False)


def multi_stage_context(root: Path) -> Path:
    """A context for MULTI_STAGE, with a .dockerignore that has an exception."""
    (root / "logs").mkdir(parents=True)
    (root / "secret").mkdir()
    (root / "Dockerfile").write_text(MULTI_STAGE)
    (root / "hello.txt").write_text("hello from the context\n")
    (root / "logs" / "debug.log").write_text("noise\n")
    (root / "logs" / "keep.log").write_text("kept\n")
    (root / "secret" / "token").write_text("s3cret\n")
    (root / ".dockerignore").write_text("# not sent\nsecret\n**/*.log\n!logs/keep.log\n")
    return root


def steps(output: str) -> list[tuple[int, int, str]]:
    """``(N, M, instruction)`` of each ``Step N/M : …`` line."""
    return [
        (int(n), int(m), text)
        for n, m, text in re.findall(r"^Step (\d+)/(\d+) : (.*)$", output, re.MULTILINE)
    ]


def check_built_image(engine: Engine, tag: str, message: str) -> None:
    """The image MULTI_STAGE made: its config, and what it does when it runs."""
    image = engine.inspect("image", tag)
    config = image["Config"]
    assert config["Env"] == [DEFAULT_PATH, "APP_HOME=/app", f"GREETING=hello {message}"]
    assert config["WorkingDir"] == "/app"
    assert config["User"] == "nobody"
    assert config["Cmd"] == ["cat", "/app/message.txt"]
    assert config["Labels"] == {
        "org.example.stage": "final",
        "org.example.message": message,
    }
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "cat /app/hello.txt || exit 1"],
        "Interval": 30_000_000_000,
        "Timeout": 3_000_000_000,
    }
    ran = engine.docker("run", "--rm", "--network", "none", tag)
    assert ran.stdout == f"built with {message}\n"
    listing = engine.docker("run", "--rm", "--network", "none", tag, "cat", "listing.txt")
    # The context as COPY saw it: the patterns applied, the exception kept.
    assert listing.stdout.split("\n\n") == [
        "/ctx:\n.dockerignore\nDockerfile\nhello.txt\nlogs",
        "/ctx/logs:\nkeep.log\n",
    ]
    whoami = engine.docker("run", "--rm", "--network", "none", tag, "id", "-u")
    assert whoami.stdout.strip() == "65534"


@pytest.mark.parametrize("buildkit", ["0", None], ids=["DOCKER_BUILDKIT=0", "default"])
def test_the_docker_cli_builds_a_multi_stage_dockerfile(
    engine: Engine, tmp_path: Path, buildkit: str | None
) -> None:
    context = multi_stage_context(tmp_path / "ctx")
    env = {} if buildkit is None else {"DOCKER_BUILDKIT": buildkit}  # docker_env drops it
    tag = "bcli-multi:1"
    flags = ["build", "-t", tag, "--build-arg", "MESSAGE=from-arg", str(context)]
    first = engine.docker(*flags, env=env)
    numbered = steps(first.stdout)
    assert [n for n, _, _ in numbered] == list(range(1, STEPS + 1))
    assert {m for _, m, _ in numbered} == {STEPS}
    # The ARG before the first FROM is a step too; instructions are shown as written.
    assert numbered[0][2] == "ARG BASE=busybox"
    assert numbered[1][2] == "FROM ${BASE} AS builder"
    assert numbered[-1][2] == 'CMD ["cat", "/app/message.txt"]'
    assert "---> Using cache" not in first.stdout
    assert re.search(r"^Successfully built [0-9a-f]{12}$", first.stdout, re.MULTILINE)
    assert first.stdout.endswith(f"Successfully tagged {tag}\n")
    image_id = engine.inspect("image", tag)["Id"]
    check_built_image(engine, tag, "from-arg")

    containers = engine.container_ids()
    again = engine.docker(*flags, env=env)
    # Every step but the FROMs comes from the cache; the same image, no container made.
    # The ARG before the first FROM prints nothing more, either time.
    after_steps = re.split(r"^Step \d+/\d+ : ", again.stdout, flags=re.MULTILINE)[1:]
    assert len(after_steps) == STEPS
    assert after_steps[0] == "ARG BASE=busybox\n"
    for text in after_steps[1:]:
        if not text.startswith("FROM "):
            assert " ---> Using cache\n" in text, text
    assert engine.inspect("image", tag)["Id"] == image_id
    assert engine.container_ids() == containers
    assert again.stdout.endswith(
        f"Successfully built {image_id[7:19]}\nSuccessfully tagged {tag}\n"
    )


def test_dockyard_build_builds_and_prints_as_the_docker_cli(engine: Engine, tmp_path: Path) -> None:
    context = multi_stage_context(tmp_path / "ctx")
    tag = "bcli-ours:1"
    flags = ["-t", tag, "--build-arg", "MESSAGE=from-ours", str(context)]
    ours = engine.dockyard("build", *flags)
    assert ours.returncode == 0, ours.stderr
    assert ours.stderr == ""
    check_built_image(engine, tag, "from-ours")
    # The same build again through each client: both print the same cached steps.
    ours_again = engine.dockyard("build", *flags)
    theirs_again = engine.docker("build", *flags, env={"DOCKER_BUILDKIT": "0"})
    assert ours_again.stdout == theirs_again.stdout
    quiet = engine.dockyard("build", "-q", *flags)
    assert quiet.stdout == engine.inspect("image", tag)["Id"] + "\n"


@pytest.mark.parametrize("from_stdin", [False, True], ids=["outside", "stdin"])
def test_the_docker_cli_sends_a_dockerfile_from_outside_the_context(
    engine: Engine, tmp_path: Path, from_stdin: bool
) -> None:
    """``-f`` outside the context, or ``-f -``: the docker CLI adds the Dockerfile under a
    random name, adds that name to the .dockerignore it sends, and ends that tar right after
    the last file's content (no padding, no end-of-archive blocks), which dockerd accepts."""
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hello.txt").write_text("hello\n")
    dockerfile = 'FROM busybox\nCOPY . /ctx/\nCMD ["ls", "-A", "/ctx"]\n'
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text(dockerfile)
    tag = "bcli-outside:1"
    source = "-" if from_stdin else str(outside)
    engine.docker(
        "build", "-t", tag, "-f", source, str(context),
        env={"DOCKER_BUILDKIT": "0"}, input=dockerfile if from_stdin else None,
    )  # fmt: skip
    listed = engine.docker("run", "--rm", "--network", "none", tag).stdout.split()
    # COPY . sees neither the added Dockerfile nor the .dockerignore made to exclude it (and
    # itself).
    assert listed == ["hello.txt"]


@pytest.mark.parametrize("client", ["docker", "dockyard"])
def test_a_failing_run_exits_with_its_code_and_keeps_its_container(
    engine: Engine, tmp_path: Path, client: str
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(
        "FROM busybox\nRUN echo before && echo to-stderr >&2 && exit 3\n"
    )
    message = (
        "The command '/bin/sh -c echo before && echo to-stderr >&2 && exit 3' "
        "returned a non-zero code: 3"
    )
    run = engine.dockyard if client == "dockyard" else engine.docker

    before = engine.container_ids()
    kwargs = {} if client == "dockyard" else {"check": False, "env": {"DOCKER_BUILDKIT": "0"}}
    failed = run("build", str(context), **kwargs)
    assert failed.returncode == 3
    assert failed.stderr.endswith(message + "\n")
    # The step's output and its stderr (in red); the two may come in either order.
    assert "before\n" in failed.stdout.split("Running in ", 1)[1]
    assert "\x1b[91mto-stderr\n\x1b[0m" in failed.stdout
    # Without --force-rm the failed step's container stays, exited with the step's code.
    (kept,) = engine.container_ids() - before
    state = engine.inspect("container", kept)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 3)
    engine.docker("rm", kept)

    forced = run("build", "--force-rm", str(context), **kwargs)
    assert forced.returncode == 3
    assert engine.container_ids() == before


def test_docker_py_builds_from_a_path_and_from_a_file_object(
    engine: Engine, tmp_path: Path
) -> None:
    context = multi_stage_context(tmp_path / "ctx")
    client = docker_sdk.DockerClient(base_url=engine.host, version="1.41", timeout=300)
    try:
        image, logs = client.images.build(
            path=str(context), tag="bcli-py:1", buildargs={"MESSAGE": "from-py"}, rm=True
        )
        text = "".join(chunk.get("stream", "") for chunk in logs)
        assert "Successfully tagged bcli-py:1" in text
        assert image.id == engine.inspect("image", "bcli-py:1")["Id"]
        check_built_image(engine, "bcli-py:1", "from-py")

        dockerfile = io.BytesIO(b'FROM busybox\nLABEL x=y\nCMD ["cat", "/etc/passwd"]\n')
        image, logs = client.images.build(fileobj=dockerfile, tag="bcli-pyfile:1")
        assert image.labels == {"x": "y"}
        output = client.containers.run("bcli-pyfile:1", network_mode="none", remove=True)
        assert output == PASSWD
    finally:
        client.close()


COMPOSE_FILE = """\
version: "2.4"
services:
  app:
    build:
      context: ./app
      args:
        MESSAGE: from-compose
    image: bcli-compose-app:1
    network_mode: none
"""


def compose_cli() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed (apt-get install docker-compose)")
    return found


def test_docker_compose_builds_a_service_then_runs_it(engine: Engine, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    multi_stage_context(project / "app")
    (project / "docker-compose.yml").write_text(COMPOSE_FILE)
    env = {**engine.env(), "COMPOSE_PROJECT_NAME": "bclicompose"}

    def compose(*args: str) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [compose_cli(), "--ansi", "never", *args], cwd=project, env=env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, f"compose {args}: {done.stdout}{done.stderr}"
        return done

    try:
        built = compose("build")
        assert "Successfully tagged bcli-compose-app:1" in built.stdout
        check_built_image(engine, "bcli-compose-app:1", "from-compose")
        up = compose("up", "--exit-code-from", "app")
        assert "built with from-compose" in up.stdout
    finally:
        with contextlib.suppress(AssertionError):
            compose("down", "--rmi", "local")
    assert os.path.isdir(project)
