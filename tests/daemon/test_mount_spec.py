"""tmpfs options, volume requests and ``--volumes-from`` merging, without a daemon: the pure
parts of tests/containers/test_mounts.py."""

from __future__ import annotations

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import ContainerSpec, TmpfsMount, spec_from_json, spec_to_json
from dockyard.daemon.containers import spec, tmpfs
from dockyard.daemon.containers.config import ContainerConfig, CreateRequest
from dockyard.daemon.engine_api import ENGINE_API
from tests.daemon.test_spec import prepared
from tests.logging.drivers import BUILTIN_LOG_DRIVERS

IMAGE = ContainerConfig(cmd=["/bin/sh"], volumes={"/data": {}, "/cache": {}})
SETTINGS = spec.DaemonSettings(cpu_count=2, host_name="the-host", logging=BUILTIN_LOG_DRIVERS)


def plan(**body: object) -> spec.Plan:
    return spec.plan(
        ENGINE_API.decode({"Image": "busybox", **body}, CreateRequest), IMAGE, SETTINGS
    )


@pytest.mark.parametrize(
    "text, words",
    [
        ("", ("noexec", "nosuid", "nodev")),
        ("exec", ("nosuid", "nodev")),
        ("ro,noexec,exec", ("nosuid", "nodev", "ro")),
        ("size=1m,mode=700,size=2m", ("noexec", "nosuid", "nodev", "mode=700", "size=2m")),
        ("suid,dev,rprivate,defaults,uid=5,gid=6", ("noexec", "uid=5", "gid=6")),
        ("nr_inodes=1k,mpol=default,atime,noatime", ("noexec", "nosuid", "nodev", "noatime",
                                                      "nr_inodes=1k", "mpol=default")),
    ],
)  # fmt: skip
def test_tmpfs_options_merge_over_dockerds_defaults(text, words):
    assert tmpfs.merge_options(text.split(","), "f") == words


@pytest.mark.parametrize(
    "text, message",
    [
        ("bogus", "f: invalid tmpfs option 'bogus'"),
        ("shared", "f: invalid tmpfs option 'shared'"),
        ("size=", "f: invalid value for tmpfs option size: ''"),
        ("mode=8", "f: invalid value for tmpfs option mode: '8'"),
        ("uid=root", "f: invalid value for tmpfs option uid: 'root'"),
    ],
)
def test_bad_tmpfs_options_are_refused_naming_the_field(text, message):
    with pytest.raises(InvalidParameter, match=message):
        tmpfs.merge_options(text.split(","), "f")


def test_tmpfs_mounts_reach_the_spec_and_replace_the_images_volumes():
    planned = plan(
        HostConfig={
            "Tmpfs": {"/data": "size=64m"},
            "Mounts": [{"Type": "tmpfs", "Target": "/m", "ReadOnly": True,
                        "TmpfsOptions": {"SizeBytes": 1000, "Mode": 0o1777}}],
        }
    )  # fmt: skip
    assert planned.tmpfs == (
        TmpfsMount("/data", ("noexec", "nosuid", "nodev", "size=64m")),
        TmpfsMount("/m", ("noexec", "nosuid", "nodev", "ro", "size=1k", "mode=1777")),
    )
    assert [v.destination for v in planned.volumes] == ["/cache"]  # /data is the tmpfs
    built = spec.build_spec(planned, prepared(planned))
    assert built.tmpfs == planned.tmpfs
    assert spec_from_json(spec_to_json(built)) == built


def test_a_spec_from_before_tmpfs_reads_without_them():
    built = spec.build_spec(plan(), prepared(plan()))
    raw = spec_to_json(built).replace(', "tmpfs": []', "")
    assert '"tmpfs"' not in raw
    assert spec_from_json(raw) == built
    assert isinstance(built, ContainerSpec)


def test_image_and_request_anonymous_volumes_are_merged():
    assert [v.destination for v in plan(Volumes={"/more": {}}).volumes] == [
        "/data",
        "/cache",
        "/more",
    ]


def test_volume_options_reach_the_requests():
    planned = plan(
        Binds=["named:/n:nocopy"],
        HostConfig={
            "Mounts": [{"Type": "volume", "Source": "v", "Target": "/v",
                        "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"},
                                          "DriverConfig": {"Name": "local",
                                                           "Options": {"type": "tmpfs",
                                                                       "device": "tmpfs"}}}}],
        },
    )  # fmt: skip
    by_path = {v.destination: v for v in planned.volumes}
    assert by_path["/v"] == spec.VolumeRequest(
        "/v", "v", False, True, (("a", "b"),), (("device", "tmpfs"), ("type", "tmpfs"))
    )


def test_volumes_from_give_way_to_the_containers_own_mounts():
    planned = plan(HostConfig={"Binds": ["/host:/data"], "Tmpfs": {"/t": ""}})
    inherited = [
        spec.VolumeRequest("/data", "theirs", no_copy=True),
        spec.VolumeRequest("/t", "theirs-t", no_copy=True),
        spec.VolumeRequest("/cache", "their-cache", True, no_copy=True),
    ]
    merged = spec.with_inherited(planned, inherited)
    assert [(v.destination, v.source) for v in merged.volumes] == [
        ("/data", "/host"),
        ("/cache", "their-cache"),  # over the image's anonymous volume there
    ]
