"""``POST /build`` against a real daemon: steps, the stream, the cache, and what goes wrong.

One daemon for the module (with busybox loaded): the tests use their own tags and Dockerfiles,
so they do not see each other's images except through the cache, which is what they check.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import tarfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, module_daemon, restarted
from tests.containers.engine_api import Api

BASE = "busybox"


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[Api]:
    with module_daemon(tmp_path_factory.mktemp("build-daemon")) as daemon:
        yield Api.with_busybox(daemon)


def context_tar(files: dict[str, bytes | str], modes: dict[str, int] | None = None) -> bytes:
    """A build context: ``bytes`` are files, ``"->target"`` strings symlinks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = int(time.time())
            if isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content.removeprefix("->")
                archive.addfile(info)
            else:
                info.size = len(content)
                info.mode = (modes or {}).get(name, 0o644)
                archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def build(daemon: Daemon, context: bytes, **params: Any) -> tuple[int, list[dict[str, Any]], bytes]:
    """POST /build; the status, the decoded messages and the raw body."""
    query = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            query.append((key, json.dumps(item) if isinstance(item, dict) else str(item)))
    path = "/v1.41/build?" + urllib.parse.urlencode(query)
    reply = daemon.request("POST", path, {"Content-Type": "application/x-tar"}, context)
    if reply.status != 200:
        return reply.status, [], reply.body
    messages = [json.loads(line) for line in reply.body.split(b"\r\n") if line.strip()]
    return reply.status, messages, reply.body


def text_of(messages: list[dict[str, Any]]) -> str:
    return "".join(m.get("stream", "") for m in messages)


def errors_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if "errorDetail" in m]


def built_id(messages: list[dict[str, Any]]) -> str:
    aux = [m["aux"]["ID"] for m in messages if "aux" in m]
    assert aux, text_of(messages)
    return aux[-1]


def containers_of(api: Api) -> list[dict[str, Any]]:
    return api.call("GET", "/containers/json?all=1").json()


def image(api: Api, name: str) -> dict[str, Any]:
    reply = api.call("GET", f"/images/{name}/json")
    assert reply.status == 200, reply.body
    return reply.json()


def run_output(api: Api, name: str) -> bytes:
    """The output of a container of image ``name`` running its own command."""
    container = api.create(None, Image=name)
    api.start(container)
    assert api.wait(container)["StatusCode"] == 0, api.logs(container, "stderr")
    output = api.logs(container)
    api.call("DELETE", f"/containers/{container}")
    return output


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


MULTI_STAGE = """\
# a comment
ARG BASE=busybox
FROM $BASE AS s1
ARG A
RUN echo "made with $A" > /built.txt && echo to-stdout && echo to-stderr >&2
ENV STAGE=one

FROM ${BASE} AS s2
ARG A
ENV APP_HOME=/app A_COPY=$A
WORKDIR $APP_HOME
COPY --from=s1 /built.txt ./from-s1.txt
COPY hello.txt .
USER 65534
EXPOSE 8080 9090/udp
LABEL org.example.kind="multi stage"
CMD ["cat", "/app/from-s1.txt", "/app/hello.txt"]

FROM busybox AS s3
RUN echo never
"""


def test_a_multi_stage_build_streams_dockerds_messages_and_makes_a_runnable_image(api):
    tag = unique("multi")
    context = context_tar({"Dockerfile": MULTI_STAGE.encode(), "hello.txt": b"hello\n"})
    status, messages, raw = build(api.daemon, context, t=tag, target="s2", buildargs={"A": "1"})
    assert status == 200, raw
    assert not errors_of(messages), messages
    text = text_of(messages)
    steps = [line for line in text.splitlines() if line.startswith("Step ")]
    # The target's stage and those before it; the ARG before the first FROM is a step too.
    assert steps[:2] == ["Step 1/15 : ARG BASE=busybox", "Step 2/15 : FROM $BASE AS s1"]
    assert steps[-1] == 'Step 15/15 : CMD ["cat", "/app/from-s1.txt", "/app/hello.txt"]'
    assert "Step 16" not in text and "never" not in text
    assert "to-stdout\n" in text
    assert "\x1b[91mto-stderr\n\x1b[0m" in text
    assert text.count(" ---> Running in ") == text.count("Removing intermediate container ")
    assert f"Successfully tagged {tag}:latest\n" in text
    final = image(api, tag)
    assert text.endswith(
        f"Successfully built {final['Id'][7:19]}\nSuccessfully tagged {tag}:latest\n"
    )
    # One aux message per stage, the last one the image.
    assert [m for m in messages if "aux" in m][-1] == {"aux": {"ID": final["Id"]}}
    assert len([m for m in messages if "aux" in m]) == 2
    config = final["Config"]
    assert config["Env"] == ["PATH=/bin", "APP_HOME=/app", "A_COPY=1"]
    assert config["WorkingDir"] == "/app"
    assert config["User"] == "65534"
    assert config["Cmd"] == ["cat", "/app/from-s1.txt", "/app/hello.txt"]
    assert config["ExposedPorts"] == {"8080/tcp": {}, "9090/udp": {}}
    assert config["Labels"] == {"org.example.kind": "multi stage"}
    assert final["Parent"].startswith("sha256:")
    assert run_output(api, tag) == b"made with 1\nhello\n"
    # No container is left behind by default.
    assert not [c for c in containers_of(api) if c["Image"].startswith("sha256:")]


def test_a_second_build_uses_the_cache_for_every_step_and_makes_nothing_new(api):
    tag = unique("cached")
    context = context_tar({"Dockerfile": MULTI_STAGE.encode(), "hello.txt": b"hello\n"})
    _, first, _ = build(api.daemon, context, t=tag, target="s2", buildargs={"A": "2"})
    images_before = api.call("GET", "/images/json?all=1").json()
    containers_before = containers_of(api)
    _, second, _ = build(api.daemon, context, t=tag, target="s2", buildargs={"A": "2"})
    text = text_of(second)
    assert text.count(" ---> Using cache\n") == 12  # every step but the two FROMs
    assert " ---> Running in" not in text
    assert built_id(second) == built_id(first)
    assert api.call("GET", "/images/json?all=1").json() == images_before
    assert containers_of(api) == containers_before
    # A changed file in the context invalidates its COPY step and every one after it.
    changed = context_tar({"Dockerfile": MULTI_STAGE.encode(), "hello.txt": b"changed\n"})
    _, third, _ = build(api.daemon, changed, t=tag, target="s2", buildargs={"A": "2"})
    lines = text_of(third).splitlines()
    copy_step = lines.index("Step 11/15 : COPY hello.txt .")
    assert " ---> Using cache" in lines[:copy_step]
    assert " ---> Using cache" not in lines[copy_step:]
    assert run_output(api, tag) == b"made with 2\nchanged\n"
    # Another build arg value is another RUN.
    _, fourth, _ = build(api.daemon, context, t=tag, target="s2", buildargs={"A": "3"})
    # The ARG steps are the same (their history names the Dockerfile's default, not the
    # value); the RUN after the first and the ENV using the second are not.
    assert text_of(fourth).count(" ---> Using cache\n") == 2
    # nocache builds every step again.
    _, fifth, _ = build(api.daemon, context, t=tag, target="s2", buildargs={"A": "2"}, nocache=1)
    assert " ---> Using cache" not in text_of(fifth)


def test_the_cache_survives_a_daemon_restart(tmp_path, start_daemon):
    daemon = start_daemon()
    Api.with_busybox(daemon)
    context = context_tar({"Dockerfile": b'FROM busybox\nRUN echo x > /x\nCMD ["cat", "/x"]\n'})
    _, first, _ = build(daemon, context)
    daemon.stop()
    with restarted(daemon) as again:
        _, second, _ = build(again, context)
        assert text_of(second).count(" ---> Using cache\n") == 2
        assert built_id(second) == built_id(first)


def test_a_failing_run_reports_its_code_and_keeps_its_container_unless_forcerm(api):
    dockerfile = b"FROM busybox\nRUN echo before && echo to-stderr >&2 && exit 3\n"
    status, messages, _ = build(api.daemon, context_tar({"Dockerfile": dockerfile}))
    assert status == 200
    error = errors_of(messages)
    assert error == [
        {
            "errorDetail": {
                "code": 3,
                "message": "The command '/bin/sh -c echo before && echo to-stderr >&2 && exit 3' "
                "returned a non-zero code: 3",
            },
            "error": "The command '/bin/sh -c echo before && echo to-stderr >&2 && exit 3' "
            "returned a non-zero code: 3",
        }
    ]
    assert messages[-1] == error[0]
    assert "before\n" in text_of(messages)
    running_in = text_of(messages).split(" ---> Running in ")[1][:12]
    kept = api.inspect(running_in)
    assert kept["State"]["ExitCode"] == 3
    api.call("DELETE", f"/containers/{running_in}?force=1")
    _, again, _ = build(api.daemon, context_tar({"Dockerfile": dockerfile}), forcerm=1)
    gone = text_of(again).split(" ---> Running in ")[1][:12]
    assert api.call("GET", f"/containers/{gone}/json").status == 404


def test_rm_false_keeps_every_intermediate_container(api):
    dockerfile = b'FROM busybox\nRUN echo py-build > /p.txt\nLABEL x=y\nCMD ["cat", "/p.txt"]\n'
    _, messages, _ = build(
        api.daemon, context_tar({"Dockerfile": dockerfile}), rm="False", nocache=1
    )
    text = text_of(messages)
    assert "Removing intermediate container" not in text
    kept = [line.split()[-1] for line in text.splitlines() if "Running in" in line]
    assert len(kept) == 3
    states = [api.inspect(container)["State"]["Status"] for container in kept]
    assert states == ["exited", "created", "created"]
    assert api.inspect(kept[2])["Config"]["Cmd"] == [
        "/bin/sh", "-c", "#(nop) ", 'CMD ["cat" "/p.txt"]'
    ]  # fmt: skip
    history = api.call("GET", f"/images/{built_id(messages)}/history").json()
    assert [h["CreatedBy"] for h in history[:3]] == [
        '/bin/sh -c #(nop)  CMD ["cat" "/p.txt"]',
        "/bin/sh -c #(nop)  LABEL x=y",
        "/bin/sh -c echo py-build > /p.txt",
    ]
    for container in kept:
        api.call("DELETE", f"/containers/{container}?force=1")


def test_quiet_answers_only_the_image_id(api):
    status, messages, _ = build(
        api.daemon, context_tar({"Dockerfile": b"FROM busybox\nENV Q=1\n"}), q=1
    )
    assert status == 200
    assert len(messages) == 1
    assert messages[0]["stream"].startswith("sha256:") and messages[0]["stream"].endswith("\n")


def test_unused_build_args_are_reported(api):
    _, messages, _ = build(
        api.daemon,
        context_tar({"Dockerfile": b"FROM busybox\nARG USED\nRUN echo $USED\n"}),
        buildargs={"USED": "1", "UNUSED": "2", "HTTP_PROXY": "http://127.0.0.1:1"},
    )
    assert "[Warning] One or more build-args [UNUSED] were not consumed\n" in text_of(messages)


def test_from_scratch_copy_and_add_of_a_local_tar(api):
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as archive:
        info = tarfile.TarInfo("unpacked/file.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"in\n"))
    dockerfile = b'FROM scratch\nCOPY busybox-dir/ /\nADD files.tar.gz /opt/\nCMD ["/bin/cat", "/opt/unpacked/file.txt"]\n'
    from dockyard.testing.images import BUSYBOX

    busybox = Path(BUSYBOX).read_bytes()
    context = context_tar(
        {
            "Dockerfile": dockerfile,
            "busybox-dir/bin/busybox": busybox,
            "busybox-dir/bin/cat": "->busybox",
            "files.tar.gz": inner.getvalue(),
        },
        modes={"busybox-dir/bin/busybox": 0o755},
    )
    tag = unique("scratch")
    status, messages, raw = build(api.daemon, context, t=tag)
    assert status == 200 and not errors_of(messages), messages or raw
    assert run_output(api, tag) == b"in\n"


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        (b"FROM busybox\nFOO bar\n", "dockerfile parse error line 2: unknown instruction: FOO"),
        (b"", "the Dockerfile (Dockerfile) cannot be empty"),
    ],
)
def test_a_bad_dockerfile_is_a_400_before_the_stream(api, dockerfile, message):
    status, _, raw = build(api.daemon, context_tar({"Dockerfile": dockerfile}))
    assert status == 400
    assert message in json.loads(raw)["message"]


def test_a_missing_dockerfile_and_an_unknown_target_are_400s(api):
    status, _, raw = build(api.daemon, context_tar({"other": b"x"}))
    assert (status, json.loads(raw)["message"]) == (
        400,
        "Cannot locate specified Dockerfile: Dockerfile",
    )
    status, _, raw = build(api.daemon, context_tar({"Dockerfile": b"FROM busybox\n"}), target="x")
    assert (status, json.loads(raw)["message"]) == (
        400,
        "failed to reach build target x in Dockerfile",
    )


def test_copy_of_a_missing_file_fails_in_the_stream_and_leaves_no_container(api):
    before = containers_of(api)
    status, messages, _ = build(
        api.daemon, context_tar({"Dockerfile": b"FROM busybox\nCOPY nope.txt /\n"})
    )
    assert status == 200
    [error] = errors_of(messages)
    assert "nope.txt" in error["error"]
    assert containers_of(api) == before


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"buildargs": "[1]"}, "buildargs"),
        ({"buildargs": '{"A": 1}'}, "buildargs.A"),
        ({"labels": '{"a": true}'}, "labels.a"),
        ({"nocache": "maybe"}, "nocache"),
        ({"remote": "https://example.invalid/x.git"}, "remote"),
        ({"bogus": "1"}, "bogus"),
        ({"shmsize": "lots"}, "shmsize"),
        ({"t": "Bad:Tag:Name"}, "Bad:Tag:Name"),
        ({"platform": "linux/s390x"}, "platform linux/s390x"),
        ({"platform": "linux"}, "invalid platform"),
        ({"buildid": "b1"}, "buildid"),
    ],
)
def test_bad_parameters_are_400s_naming_them(api, params, named):
    path = "/v1.41/build?" + urllib.parse.urlencode(params)
    reply = api.daemon.request(
        "POST",
        path,
        {"Content-Type": "application/x-tar"},
        context_tar({"Dockerfile": b"FROM busybox\n"}),
    )
    assert reply.status == 400, reply.body
    assert named in reply.json()["message"]


def test_a_context_escaping_with_dot_dot_is_refused(api):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in (("Dockerfile", b"FROM busybox\n"), ("../escape.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    reply = api.daemon.request(
        "POST", "/v1.41/build", {"Content-Type": "application/x-tar"}, out.getvalue()
    )
    assert reply.status == 400
    assert "escape.txt" in reply.json()["message"]


def test_a_context_ending_right_after_its_last_file_is_taken_but_a_cut_file_is_not(api):
    """The docker CLI ends a context whose Dockerfile it added (``-f`` outside the context)
    right after the file's bytes, without padding or end blocks; dockerd takes it. A file cut
    short is still refused."""
    dockerfile = b"FROM busybox\nLABEL unpadded=1\n"
    header = tarfile.TarInfo("Dockerfile")
    header.size = len(dockerfile)
    unpadded = header.tobuf(tarfile.PAX_FORMAT) + dockerfile
    status, messages, raw = build(api.daemon, unpadded)
    assert status == 200 and not errors_of(messages), messages or raw
    status, _, raw = build(api.daemon, unpadded[:-5])
    assert status == 400
    assert "is truncated" in json.loads(raw)["message"]


def last_layer_names(api: Api, name: str) -> list[str]:
    """The entries of the last layer of image ``name``, from ``docker save``."""
    reply = api.call("GET", f"/images/{name}/get")
    assert reply.status == 200, reply.body
    with tarfile.open(fileobj=io.BytesIO(reply.body)) as outer:
        manifest_file = outer.extractfile("manifest.json")
        assert manifest_file is not None
        last = json.load(manifest_file)[0]["Layers"][-1]
        layer_file = outer.extractfile(last)
        assert layer_file is not None
        with tarfile.open(fileobj=layer_file) as layer:
            return sorted(member.name for member in layer.getmembers())


def test_a_steps_layer_holds_its_changes_and_not_the_daemons_mount_points(api):
    """busybox has no /proc, /sys, /dev or /etc/hosts: the runtime makes them as mount points
    in the container, and dockerd keeps such things out of committed layers (its init layer)."""
    tag = unique("layer")
    dockerfile = b"FROM busybox\nRUN echo x > /x && mkdir -p /etc/app && echo y > /etc/app/conf\n"
    status, messages, _ = build(api.daemon, context_tar({"Dockerfile": dockerfile}), t=tag)
    assert status == 200 and not errors_of(messages), messages
    assert last_layer_names(api, tag) == ["etc", "etc/app", "etc/app/conf", "x"]


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("%%%", "X-Registry-Config: not base64url-encoded JSON"),
        (base64.urlsafe_b64encode(b"[1]").decode(), "X-Registry-Config: not a JSON object"),
        (
            base64.urlsafe_b64encode(b'{"127.0.0.1:5000": {"username": 1}}').decode(),
            "X-Registry-Config: 127.0.0.1:5000: username",
        ),
    ],
    ids=["not-base64", "not-an-object", "wrong-type"],
)
def test_bad_registry_config_is_a_400_naming_it(api, header, named):
    reply = api.daemon.request(
        "POST",
        "/v1.41/build",
        {"Content-Type": "application/x-tar", "X-Registry-Config": header},
        context_tar({"Dockerfile": b"FROM busybox\n"}),
    )
    assert reply.status == 400, reply.body
    assert named in reply.json()["message"]


def test_from_another_platform_is_refused_in_the_stream(api):
    dockerfile = b"FROM --platform=linux/s390x busybox\nRUN true\n"
    status, messages, _ = build(api.daemon, context_tar({"Dockerfile": dockerfile}))
    assert status == 200
    [error] = errors_of(messages)
    assert "FROM --platform linux/s390x: only linux/" in error["error"]
    assert "Running in" not in text_of(messages)


def test_build_labels_label_the_image(api):
    tag = unique("labelled")
    status, messages, _ = build(
        api.daemon,
        context_tar({"Dockerfile": b"FROM busybox\nLABEL own=1\n"}),
        t=tag,
        labels={"z": "last", "a": "first"},
    )
    assert status == 200 and not errors_of(messages), messages
    steps = [line for line in text_of(messages).splitlines() if line.startswith("Step ")]
    assert steps[-2:] == ["Step 3/4 : LABEL a=first", "Step 4/4 : LABEL z=last"]
    assert image(api, tag)["Config"]["Labels"] == {"own": "1", "a": "first", "z": "last"}
