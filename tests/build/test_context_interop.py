"""COPY source errors side by side with a real dockerd 20.10's classic builder."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.daemon.build.context import receive_context
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
