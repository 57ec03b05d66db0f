"""The Engine API boundary: every request body is decoded strictly before anything acts on it.

A wrong JSON type is a 400 that names the field, never coerced and never a 500; the daemon's
state is untouched by a refused request (no container made, every list still readable).
"""

from __future__ import annotations

import json
import os
import secrets
import time
import types
import typing
from pathlib import Path
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard.daemon.containers.config import CreateRequest, ExecConfig
from dockyard.daemon.engine_api import ENGINE_API
from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.storage import LayerTar
from tests.conftest import Daemon, Reply

VALID = {"Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": "none"}}


def post(daemon: Daemon, path: str, body: bytes) -> Reply:
    return daemon.request("POST", f"/v1.41{path}", {"Content-Type": "application/json"}, body)


def containers(daemon: Daemon) -> list[dict[str, Any]]:
    reply = daemon.request("GET", "/v1.41/containers/json?all=1")
    assert reply.status == 200, reply.body
    return reply.json()


def remove_all(daemon: Daemon) -> None:
    for container in containers(daemon):
        daemon.request("DELETE", f"/v1.41/containers/{container['Id']}?force=1")


# --------------------------------------------------------------------------------------------
# The cases a review found, one by one
# --------------------------------------------------------------------------------------------

#: (body, what the message must say). Each answered 500, or worse, before the typed boundary.
REFUSED: list[tuple[bytes, str]] = [
    (b'{"Image": "busybox", "HostConfig": {"Privileged": "false"}}',
     "HostConfig.Privileged: expected a boolean, got a string"),
    (b'{"Image": "busybox", "Cmd": [1, 2]}', "Cmd[0]: expected a string, got an integer"),
    (b'{"Image": ["busybox"]}', "Image: expected a string, got an array"),
    (b'{"Image": "busybox", "HostConfig": "x"}', "HostConfig: expected an object, got a string"),
    (b'{"Image": "busybox", "HostConfig": {"RestartPolicy": "x"}}',
     "HostConfig.RestartPolicy: expected an object, got a string"),
    (b'{"Image": "busybox", "HostConfig": {"RestartPolicy": {"MaximumRetryCount": "3"}}}',
     "HostConfig.RestartPolicy.MaximumRetryCount: expected an integer, got a string"),
    (b'\xff\xfe{"Image": "busybox"}', "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested more than"),
    (b'{"Image": "busybox", "HostConfig": {"Memory": ' + b"9" * 5000 + b"}}", "digits"),
    (b'{"Image": "busybox", "HostConfig": {"Memory": 99999999999999999999}}',
     "HostConfig.Memory: the integer 99999999999999999999 does not fit in 64 bits"),
    (b'{"Image": "busybox", "StopTimeout": NaN}', "NaN is not a JSON number"),
    (b'{"Image": "busybox", "StopTimeout": Infinity}', "Infinity is not a JSON number"),
    (b'{"Image": "busybox", "StopTimeout": 1.5}', "StopTimeout: expected an integer, got a number"),
    (b'{"Image": "busybox", "HostConfig": {"Memory": 1e400}}',
     "HostConfig.Memory: expected an integer, got a number"),
    (b'{"Image": "busybox", "Env": "A=1"}', "Env: expected an array, got a string"),
    (b'{"Image": "busybox", "Env": [null]}', "Env[0]: expected a string, got null"),
    (b'{"Image": "busybox", "Labels": {"a": 1}}', 'Labels["a"]: expected a string, got an integer'),
    (b'{"Image": "busybox", "Labels": ["a"]}', "Labels: expected an object, got an array"),
    (b'{"Image": "busybox", "Tty": 1}', "Tty: expected a boolean, got an integer"),
    (b'{"Image": "busybox", "HostConfig": {"Binds": [["/a", "/b"]]}}',
     "HostConfig.Binds[0]: expected a string, got an array"),
    (b'{"Image": "busybox", "HostConfig": {"Mounts": [{"Type": "bind", "ReadOnly": "yes"}]}}',
     "HostConfig.Mounts[0].ReadOnly: expected a boolean, got a string"),
    (b'{"Image": "busybox", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 80}]}}}',
     'HostConfig.PortBindings["80/tcp"][0].HostPort: expected a string, got an integer'),
    (b'{"Image": "busybox", "HostConfig": {"BlkioWeight": -1}}',
     "HostConfig.BlkioWeight: expected an integer from 0 to 2**64-1, got -1"),
    (b'{"Image": "busybox", "HostConfig": {"ConsoleSize": [24, "80"]}}',
     "HostConfig.ConsoleSize[1]: expected an integer, got a string"),
    (b'{"Image": "busybox", "HostConfig": {"ConsoleSize": [24, 80, 1]}}',
     "HostConfig.ConsoleSize: expected [rows, columns]"),
    (b'{"Image": "busybox", "Healthcheck": {"Test": "true"}}',
     "Healthcheck.Test: expected an array, got a string"),
    (b'{"Image": "busybox", "NetworkingConfig": {"EndpointsConfig": {"x": {"Aliases": 1}}}}',
     'NetworkingConfig.EndpointsConfig["x"].Aliases: expected an array, got an integer'),
    (b'"busybox"', "expected an object, got a string"),
    (b"[1]", "expected an object, got an array"),
    (b'{"Image": "busybox", "HostConfig": {"LogConfig": {"Type": "syslog"}}}',
     'error looking up logging plugin syslog: plugin "syslog" not found'),
    (b'{"Image": "busybox", "HostConfig": {"LogConfig": {"Config": {"max-file": "x"}}}}',
     "invalid value for max-file: x: strconv.Atoi"),
    (b'{"Image": "busybox", "StopSignal": "SIGNOPE"}', "Invalid signal: SIGNOPE"),
]  # fmt: skip


def test_each_wrong_input_is_a_400_naming_the_field_and_changes_nothing(shared_daemon):
    before = containers(shared_daemon)
    for body, message in REFUSED:
        reply = post(shared_daemon, "/containers/create?name=refused", body)
        assert reply.status == 400, (body[:80], reply.status, reply.body[:200])
        assert reply.headers["content-type"] == "application/json"
        assert message in reply.json()["message"], (body[:80], reply.json())
    assert containers(shared_daemon) == before  # nothing made, and every record still reads


def test_privileged_is_a_boolean_and_only_true_makes_a_privileged_container(shared_daemon):
    """The worst of them: "false" was truthy, so the container got every capability."""
    for value, status in (("false", 400), ("true", 400), (0, 400), (False, 201)):
        body = {**VALID, "HostConfig": {"Privileged": value}}
        reply = post(shared_daemon, "/containers/create", json.dumps(body).encode())
        assert reply.status == status, (value, reply.body)
    container = reply.json()["Id"]
    inspected = shared_daemon.request("GET", f"/v1.41/containers/{container}/json").json()
    assert inspected["HostConfig"]["Privileged"] is False
    shared_daemon.request("DELETE", f"/v1.41/containers/{container}")


def test_a_string_command_is_one_argument_as_docker_reads_it(shared_daemon):
    """``Cmd`` and ``Entrypoint`` are docker's strslice: a string is a one-element array."""
    reply = post(
        shared_daemon, "/containers/create", json.dumps({**VALID, "Cmd": "echo hi"}).encode()
    )
    assert reply.status == 201, reply.body
    container = reply.json()["Id"]
    inspected = shared_daemon.request("GET", f"/v1.41/containers/{container}/json").json()
    assert (inspected["Path"], inspected["Args"], inspected["Config"]["Cmd"]) == (
        "echo hi",
        [],
        ["echo hi"],
    )
    shared_daemon.request("DELETE", f"/v1.41/containers/{container}")


def test_nulls_mean_not_given_and_unknown_fields_are_left_alone(shared_daemon):
    """Go's decoding, which every client is written against: null keeps the default, and a
    field of a newer API version is no error."""
    body = {
        **VALID,
        "Env": None,
        "Labels": None,
        "HostConfig": {"Binds": None, "Memory": None, "Annotations": {"a": "b"}},
        "SomethingNewer": [1, 2],
    }
    reply = post(shared_daemon, "/containers/create", json.dumps(body).encode())
    assert reply.status == 201, reply.body
    container = reply.json()["Id"]
    inspected = shared_daemon.request("GET", f"/v1.41/containers/{container}/json").json()
    assert inspected["HostConfig"]["Memory"] == 0 and inspected["HostConfig"]["Binds"] is None
    assert "Annotations" not in inspected["HostConfig"]
    shared_daemon.request("DELETE", f"/v1.41/containers/{container}")


def test_exec_and_volume_bodies_are_decoded_as_strictly(shared_daemon):
    created = post(shared_daemon, "/containers/create", json.dumps(VALID).encode())
    container = created.json()["Id"]
    try:
        for body, message in [
            (b'{"Cmd": "id"}', "Cmd: expected an array, got a string"),
            (b'{"Cmd": ["id"], "Tty": "true"}', "Tty: expected a boolean, got a string"),
            (b'{"Cmd": ["id"], "Env": [1]}', "Env[0]: expected a string, got an integer"),
            (b'{"Cmd": ["id"], "User": 0}', "User: expected a string, got an integer"),
        ]:
            reply = post(shared_daemon, f"/containers/{container}/exec", body)
            assert (reply.status, message in reply.json()["message"]) == (400, True), reply.body
        for body, message in [
            (b'{"Name": 5}', "Name: expected a string, got an integer"),
            (b'{"Labels": {"a": false}}', 'Labels["a"]: expected a string, got a boolean'),
            (b'{"DriverOpts": {"type": "tmpfs"}}', 'missing required option: "device"'),
        ]:
            reply = post(shared_daemon, "/volumes/create", body)
            assert (reply.status, message in reply.json()["message"]) == (400, True), reply.body
    finally:
        shared_daemon.request("DELETE", f"/v1.41/containers/{container}")


# --------------------------------------------------------------------------------------------
# Property: any field given a value of the wrong type is refused by name, never a 500
# --------------------------------------------------------------------------------------------

JSON_SCALARS = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    st.none() | JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None``; any other type as it is."""
    if isinstance(annotation, types.UnionType):
        return next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation


def _kind(annotation: Any) -> str:
    """The JSON kind a field's type takes (``X | None`` fields take X's)."""
    kind = typing.get_origin(_without_none(annotation)) or _without_none(annotation)
    if kind in (bool, int, str):
        return {bool: "boolean", int: "integer", str: "string"}[kind]
    if getattr(kind, "__supertype__", None) is int:  # UInt
        return "integer"
    return {list: "array", dict: "object"}.get(kind, "object")


def _schema(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str, bool]]:
    """(JSON path, JSON kind, whether a string also fits) of every field, records included."""
    found = []
    for field in attrs.fields(attrs.resolve_types(cls)):
        path = (*prefix, ENGINE_API.key_of(field))
        found.append((path, _kind(field.type), bool(field.metadata.get("dockyard.str_slice"))))
        if attrs.has(_without_none(field.type)):
            found += _schema(_without_none(field.type), path)
    return found


CREATE_FIELDS = [f for f in _schema(CreateRequest) if f[0] != ("Image",)]


def _wrong_for(kind: str, string_ok: bool) -> st.SearchStrategy[Any]:
    def fits(value: Any) -> bool:
        if kind == "boolean":
            return isinstance(value, bool)
        if kind == "integer":
            return isinstance(value, int) and not isinstance(value, bool)
        if kind == "string":
            return isinstance(value, str)
        if kind == "array":
            return isinstance(value, list) or (string_ok and isinstance(value, str))
        return isinstance(value, dict)

    return JSON_VALUES.filter(lambda value: value is not None and not fits(value))


def _with(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    result = json.loads(json.dumps(body))
    place = result
    for key in path[:-1]:
        place = place.setdefault(key, {})
    place[path[-1]] = value
    return result


@st.composite
def mistyped_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    path, kind, string_ok = draw(st.sampled_from(CREATE_FIELDS))
    value = draw(_wrong_for(kind, string_ok))
    return _with(VALID, path, value), ".".join(path)


@settings(
    max_examples=int(os.environ.get("DOCKYARD_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mistyped_bodies())
def test_a_mistyped_field_anywhere_is_a_400_naming_it(shared_daemon, case):
    body, path = case
    reply = post(shared_daemon, "/containers/create", json.dumps(body).encode())
    assert reply.status == 400, (path, body, reply.status, reply.body[:300])
    assert reply.json()["message"].startswith(path), (path, reply.json())


@settings(
    max_examples=int(os.environ.get("DOCKYARD_PROPERTY_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.sampled_from(["/containers/create", "/volumes/create", "/containers/nosuch/exec"]),
    st.dictionaries(
        st.sampled_from(
            [ENGINE_API.key_of(f) for f in attrs.fields(CreateRequest)]
            + [ENGINE_API.key_of(f) for f in attrs.fields(ExecConfig)]
            + ["Name", "Driver", "DriverOpts", "X"]
        ),
        JSON_VALUES,
        max_size=6,
    ),
)
def test_no_body_makes_the_daemon_fail(shared_daemon, path, body):
    """Random documents at the three endpoints that take JSON: never a 5xx, and the
    daemon's lists stay readable afterwards."""
    reply = post(shared_daemon, path, json.dumps(body).encode())
    assert reply.status < 500, (path, body, reply.status, reply.body[:300])
    assert "message" in reply.json() or reply.status in (200, 201)
    if reply.status == 201 and path == "/containers/create":
        shared_daemon.request("DELETE", f"/v1.41/containers/{reply.json()['Id']}?v=1")
    if reply.status == 201 and path == "/volumes/create":
        shared_daemon.request("DELETE", f"/v1.41/volumes/{reply.json()['Name']}")
    assert shared_daemon.request("GET", "/v1.41/volumes").status == 200
    containers(shared_daemon)


# --------------------------------------------------------------------------------------------
# Files an image controls, read at create
# --------------------------------------------------------------------------------------------


def _load_image(api_daemon: Daemon, name: str, layer: bytes) -> None:
    archive = image_archive([busybox_rootfs(), layer], [name])
    reply = api_daemon.request("POST", "/v1.41/images/load", body=archive)
    assert reply.status == 200, reply.body


def test_an_image_passwd_symlink_to_a_host_file_is_read_inside_the_image(api, tmp_path):
    """``--user`` resolves from the image's files: an absolute symlink in the image points
    into the image, never at the host's file of that name."""
    host_file = Path("/tmp") / f"dockyard-host-passwd-{secrets.token_hex(4)}"
    host_file.write_text("hostonly:x:4242:4242::/:/bin/sh\n")
    try:
        layer = LayerTar().symlink("etc/passwd", str(host_file)).build()
        _load_image(api.daemon, "symlinked:1", layer)
        reply = api.call("POST", "/containers/create", {"Image": "symlinked:1", "User": "hostonly"})
        assert reply.status == 400, reply.body
        assert "unable to find user hostonly" in reply.json()["message"]
        # The symlink names no file inside the image: root resolves as for an image without one.
        code, out, _err = api.run(["id"], Image="symlinked:1")
        assert (code, out) == (0, b"uid=0 gid=0 groups=0\n")  # as the image sees it: no names
    finally:
        host_file.unlink()


def test_a_fifo_passwd_does_not_hang_create(api):
    layer = LayerTar().fifo("etc/passwd").fifo("etc/group").build()
    _load_image(api.daemon, "fifo:1", layer)
    started = time.monotonic()
    reply = api.call("POST", "/containers/create", {"Image": "fifo:1", "User": "1000:1000"})
    assert reply.status == 201, reply.body
    assert time.monotonic() - started < 10
    assert api.inspect(reply.json()["Id"])["Config"]["User"] == "1000:1000"
    named = api.call("POST", "/containers/create", {"Image": "fifo:1", "User": "someone"})
    assert named.status == 400 and "unable to find user someone" in named.json()["message"]


def test_image_files_are_read_without_leaving_a_mount(api):
    """The snapshot is mounted only while its passwd and group files are read."""
    container = api.create(["true"], User="root")
    with open("/proc/self/mountinfo") as mountinfo:
        assert str(api.daemon.data_root / "containers" / container) not in mountinfo.read()
    assert not (api.daemon.data_root / "containers" / container / "peek").exists()
