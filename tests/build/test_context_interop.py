"""The build context side by side with a real dockerd 20.10's classic builder and the docker CLI:
COPY source errors, and what .dockerignore leaves out."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.build.context import receive_context
from dockyard.dockerignore import Matcher
from dockyard.testing.peers import docker_cli, docker_env
from tests.build.test_context import context_tar
from tests.conftest import http_request


def dockerd_build_error(socket_path: str, body: bytes) -> str:
    """The errorDetail message of a classic build of context tar ``body`` on dockerd."""
    reply = http_request(
        socket_path,
        "POST",
        "/v1.41/build?rm=1&forcerm=1",
        headers={"Content-Type": "application/x-tar"},
        body=body,
    )
    assert reply.status == 200, reply.body
    messages = [json.loads(line) for line in reply.body.splitlines() if line.strip()]
    errors = [m["errorDetail"]["message"] for m in messages if "errorDetail" in m]
    assert errors, messages
    return str(errors[0])


@pytest.mark.interop
@pytest.mark.parametrize(
    "source",
    ["nope", "dir/nope.txt", "link/passwd", "nope*", "../x", "ignored.txt"],
)
def test_copy_source_errors_match_dockerd(real_dockerd, tmp_path: Path, source: str) -> None:
    files = {
        ".dockerignore": "ignored.txt\n",
        "ignored.txt": "i",
        "dir": None,
        "dir/a.txt": "a",
        "link": "->/etc",
    }
    # dockerd's daemon leaves .dockerignore to the client; the CLI would not have sent the
    # ignored file at all, which is what dockerd is given here
    theirs_files = {k: v for k, v in files.items() if k != "ignored.txt"}
    theirs_files["Dockerfile"] = f"FROM scratch\nCOPY {source} /\n"
    theirs = dockerd_build_error(
        real_dockerd.host.removeprefix("unix://"), context_tar(theirs_files)
    )

    directory = tmp_path / "context"
    directory.mkdir()
    context = receive_context(io.BytesIO(context_tar(files)), directory)
    with pytest.raises(InvalidParameter) as caught:
        context.sources().select([source])
    assert str(caught.value) == theirs


DOCKERIGNORE_CASES = {
    "exceptions": "*.md\n!README*.md\nREADME-secret.md\n",
    "directories": "build\n!build/keep.txt\nnode_modules\n",
    "double star": "**/*.tmp\n!keep/**/*.tmp\n",
    "anchored": "/top.txt\nsub/*.log\n# comment\n",
}
TREE = [
    "README.md",
    "README-secret.md",
    "README-public.md",
    "CHANGES.md",
    "top.txt",
    "sub/top.txt",
    "sub/a.log",
    "sub/deeper/b.log",
    "build/out.o",
    "build/keep.txt",
    "node_modules/x/index.js",
    "a.tmp",
    "deep/er/c.tmp",
    "keep/d/e.tmp",
    "src/main.go",
]


@pytest.mark.interop
@pytest.mark.parametrize("case", sorted(DOCKERIGNORE_CASES))
def test_dockerignore_selects_what_the_docker_cli_sends(
    real_dockerd, tmp_path: Path, case: str
) -> None:
    context = tmp_path / "context"
    for name in TREE:
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        (context / name).write_text(name)
    (context / ".dockerignore").write_text(DOCKERIGNORE_CASES[case])
    (context / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    tag = f"ignore-{case.replace(' ', '-')}"
    env = docker_env(real_dockerd.host, real_dockerd.root / "client-config")
    env["DOCKER_BUILDKIT"] = "0"
    subprocess.run(
        [docker_cli(), "build", "-q", "-t", tag, str(context)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    saved = subprocess.run(
        [docker_cli(), "save", tag], env=env, check=True, capture_output=True, timeout=120
    ).stdout
    theirs = set()
    with tarfile.open(fileobj=io.BytesIO(saved)) as image:
        manifest = json.load(image.extractfile("manifest.json"))  # type: ignore[arg-type]
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=image.extractfile(layer)) as files:
                theirs |= {entry.name for entry in files if entry.isfile()}

    matcher = Matcher.from_text(DOCKERIGNORE_CASES[case])
    ours = {
        path
        for path, info in matcher.walk(str(context))
        if stat.S_ISREG(info.st_mode) and path not in ("Dockerfile", ".dockerignore")
    }
    theirs -= {"Dockerfile", ".dockerignore"}
    assert ours == theirs
