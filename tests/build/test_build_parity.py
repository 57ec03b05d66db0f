"""The same builds through our daemon and a real dockerd 20.10's classic builder, compared.

What must agree: the stream (ids and container ids aside), the image's configuration, its
history (``CreatedBy`` of every step, with the checksum of copied files aside: ours is not
tarsum) and its number of layers (a step that changes no file adds none).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from tests.build.test_build_api import build, context_tar
from tests.conftest import http_request, module_daemon

pytestmark = pytest.mark.interop

EVERY_INSTRUCTION = """\
ARG BASE=busybox
FROM $BASE AS first
ARG A=def
ARG B
ENV E1=x E2="y z"
ENV E3 legacy value
LABEL l1=a "l2"="b c"
EXPOSE 80 81/udp 8000-8001
VOLUME /data /other
VOLUME ["/json"]
USER 1000:1000
WORKDIR /app
WORKDIR sub
SHELL ["/bin/sh", "-xc"]
RUN echo $A $B
STOPSIGNAL SIGUSR1
HEALTHCHECK --interval=5s --retries=2 CMD true
ONBUILD RUN echo onbuild
ENTRYPOINT echo ep
CMD echo cmd
COPY hello.txt /x/
COPY d /dd
ADD hello.txt d/a.txt /multi/
MAINTAINER someone
RUN true

FROM first AS second
COPY --from=0 /x/hello.txt /copied.txt
RUN touch /made
"""

CONTEXT = {
    "Dockerfile": EVERY_INSTRUCTION.encode(),
    "hello.txt": b"hello\n",
    "d/a.txt": b"a\n",
    "d/b.txt": b"b\n",
}

_HEX = re.compile(r"\b[0-9a-f]{12}\b|sha256:[0-9a-f]{64}|(file|dir|multi):[0-9a-f]{64}")


class Peer:
    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path

    def request(self, method: str, path: str, headers=None, body=None):  # type: ignore[no-untyped-def]
        return http_request(self.socket_path, method, path, headers, body, timeout=120)

    def get(self, path: str) -> Any:
        reply = self.request("GET", f"/v1.41{path}")
        assert reply.status == 200, reply.body
        return reply.json()


@pytest.fixture(scope="module")
def peers(real_dockerd, tmp_path_factory) -> Iterator[tuple[Peer, Peer]]:
    with module_daemon(tmp_path_factory.mktemp("build-parity")) as ours:
        try:
            pair = (Peer(ours.socket_path), Peer(real_dockerd.host.removeprefix("unix://")))
            archive = image_archive([busybox_rootfs()], ["busybox:latest"])
            for peer in pair:
                assert peer.request("POST", "/v1.41/images/load", body=archive).status == 200
            yield pair
        finally:
            real_dockerd.docker("image", "prune", "-af", check=False)
            real_dockerd.docker("container", "prune", "-f", check=False)


def normal(text: str) -> str:
    return _HEX.sub(lambda m: (m.group(1) + ":H") if m.group(1) else "ID", text)


def built(peer: Peer, context: bytes, **params: Any) -> tuple[list[dict[str, Any]], str]:
    status, messages, raw = build(peer, context, **params)  # type: ignore[arg-type]
    assert status == 200, raw
    aux = [m["aux"]["ID"] for m in messages if "aux" in m]
    return messages, aux[-1] if aux else ""


_STDERR = re.compile("\x1b\\[91m(.*?)\x1b\\[0m", re.DOTALL)


def _ends_output(message: dict[str, Any]) -> bool:
    text = message.get("stream")
    return text is None or text.startswith(("Removing intermediate container", " ---> "))


def shown(messages: list[dict[str, Any]]) -> tuple[list[str], list[tuple[str, str]]]:
    """The builder's messages, and apart from them what each RUN printed (its standard output
    and its standard error, each joined): how a process's writes are cut into messages, and
    how its two streams interleave, depend on timing."""
    builder: list[str] = []
    outputs: list[tuple[str, str]] = []
    running = False
    for message in messages:
        if running and _ends_output(message):
            running = False
        if running:
            text = outputs[-1][0] + message["stream"]
            outputs[-1] = (text, outputs[-1][1])
            continue
        builder.append(normal(json.dumps(message, sort_keys=True)))
        if message.get("stream", "").startswith(" ---> Running in "):
            running = True
            outputs.append(("", ""))
    return builder, [(_STDERR.sub("", text), "".join(_STDERR.findall(text))) for text, _ in outputs]


def test_every_instruction_builds_alike(peers):
    ours, theirs = peers
    context = context_tar(CONTEXT)
    params = {"t": "parity", "buildargs": {"B": "bee", "Z": "1"}}
    mine, my_id = built(ours, context, **params)
    dockers, their_id = built(theirs, context, **params)
    assert shown(mine) == shown(dockers)
    my_image, their_image = (
        ours.get(f"/images/{my_id}/json"),
        theirs.get(f"/images/{their_id}/json"),
    )
    for key in ("Config", "ContainerConfig"):
        for image in (my_image, their_image):
            image[key].pop("Image")
            image[key].pop("Hostname")
    assert my_image["Config"] == their_image["Config"]
    assert my_image["ContainerConfig"] == their_image["ContainerConfig"]
    assert my_image["Author"] == their_image["Author"] == "someone"
    assert len(my_image["RootFS"]["Layers"]) == len(their_image["RootFS"]["Layers"])
    my_history = [normal(h["CreatedBy"]) for h in ours.get(f"/images/{my_id}/history")]
    their_history = [normal(h["CreatedBy"]) for h in theirs.get(f"/images/{their_id}/history")]
    assert my_history == their_history
    # Built again: every step from the cache, on both.
    again_mine, again_my_id = built(ours, context, **params)
    again_theirs, _ = built(theirs, context, **params)
    assert shown(again_mine) == shown(again_theirs)
    assert again_my_id == my_id


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM busybox AS base\nONBUILD RUN echo triggered\nONBUILD ENV T=1\n"
        "FROM base AS child\nRUN echo child\n",
        "FROM busybox\nRUN echo before && echo to-stderr >&2 && exit 3\n",
        "FROM busybox\nENV A=${B:?x}\n",
        "FROM $NOPE\n",
        "FROM scratch\n",
        "FROM busybox\nCOPY nope.txt /\n",
        "FROM busybox\nCOPY ../x /\n",
        "FROM busybox\nRUN true\nWORKDIR /tmp\n",
        "ARG V=1\nARG W\nFROM busybox\nARG V\nRUN echo $V\nFROM scratch\nCOPY x /\n",
    ],
    ids=[
        "triggers", "failing-run", "bad-expansion", "empty-base", "scratch-only",
        "missing-source", "outside-the-context", "empty-steps", "global-args",
    ],
)  # fmt: skip
def test_short_builds_stream_alike(peers, dockerfile):
    ours, theirs = peers
    context = context_tar({"Dockerfile": dockerfile.encode(), "x": b"x"})
    mine, _ = built(ours, context, buildargs={"W": "2"}, forcerm=1)
    dockers, _ = built(theirs, context, buildargs={"W": "2"}, forcerm=1)
    assert shown(mine) == shown(dockers)


def test_quiet_and_docker_py_defaults_answer_alike(peers):
    ours, theirs = peers
    context = context_tar({"Dockerfile": b"FROM busybox\nLABEL q=1\n"})
    for params in ({"q": 1}, {"q": "False", "nocache": "False", "rm": "False", "pull": "False"}):
        mine, _ = built(ours, context, **params)
        dockers, _ = built(theirs, context, **params)
        assert shown(mine) == shown(dockers), params
    # rm=False kept the LABEL step's container on both; remove them.
    for peer in (ours, theirs):
        for container in peer.get("/containers/json?all=1"):
            peer.request("DELETE", f"/v1.41/containers/{container['Id']}?force=1")


def test_build_labels_become_label_steps_alike(peers):
    """``labels=`` adds one LABEL step per label (sorted by key) after the last stage."""
    ours, theirs = peers
    context = context_tar({"Dockerfile": b"FROM busybox AS x\nENV A=1\nFROM busybox\nENV B=1\n"})
    labels = {"b": "2", "a": "one two"}
    for _ in range(2):  # built, then from the cache
        mine, my_id = built(ours, context, labels=labels)
        dockers, their_id = built(theirs, context, labels=labels)
        assert shown(mine) == shown(dockers)
    for peer, image in ((ours, my_id), (theirs, their_id)):
        assert peer.get(f"/images/{image}/json")["Config"]["Labels"] == labels
        history = [h["CreatedBy"] for h in peer.get(f"/images/{image}/history")][:2]
        assert history == ["/bin/sh -c #(nop)  LABEL b=2", "/bin/sh -c #(nop)  LABEL a=one two"]
