"""From request and image to the runtime's spec, without a daemon: the pure create path."""

from __future__ import annotations

import pytest

from dockyard.core.capabilities import ALL_CAPABILITIES, DEFAULT_CAPABILITIES
from dockyard.core.errors import Conflict, InvalidParameter
from dockyard.core.interfaces import DEFAULT_MASKED_PATHS, BindMount, IdMapping, Mount
from dockyard.daemon.containers import spec
from dockyard.daemon.containers.config import ContainerConfig, CreateRequest
from dockyard.daemon.containers.options import ResolvedUser
from dockyard.daemon.engine_api import ENGINE_API
from tests.logging.drivers import BUILTIN_LOG_DRIVERS

IMAGE = ContainerConfig(
    env=["PATH=/bin", "LANG=C"],
    cmd=["/bin/sh"],
    working_dir="/srv",
    labels={"from": "image", "both": "image"},
    volumes={"/data": {}},
    user="app",
    stop_signal="SIGQUIT",
)
SETTINGS = spec.DaemonSettings(cpu_count=2, host_name="the-host", logging=BUILTIN_LOG_DRIVERS)
REMAPPED = spec.DaemonSettings(
    cpu_count=2,
    host_name="the-host",
    logging=BUILTIN_LOG_DRIVERS,
    user_namespace=spec.UserNamespace(
        (IdMapping(0, 100000, 65536),), (IdMapping(0, 100000, 65536),)
    ),
)


def request(**body: object) -> CreateRequest:
    return ENGINE_API.decode({"Image": "busybox", **body}, CreateRequest)


def prepared(plan: spec.Plan, hostname: str = "abc") -> spec.Prepared:
    return spec.Prepared(
        container_id="c" * 64,
        hostname=hostname,
        rootfs=(Mount("bind", "/snap"),),
        user=ResolvedUser(1000, 1000, (1000, 10), "/home/app"),
        volume_sources=tuple(f"/volumes/{i}" for i, _ in enumerate(plan.volumes)),
        etc_files=(("/state/hosts", "/etc/hosts"),),
        state_dir="/state",
    )


def test_the_image_config_is_merged_under_the_request():
    plan = spec.plan(request(Env=["LANG=en", "X=1"], Labels={"both": "request"}), IMAGE, SETTINGS)
    assert plan.args == ("/bin/sh",)
    assert plan.env == ("LANG=en", "X=1", "PATH=/bin")  # the request's first, as dockerd
    assert plan.user == "app"
    assert plan.config.working_dir == "/srv"
    assert plan.config.labels == {"from": "image", "both": "request"}
    assert plan.config.stop_signal == "SIGQUIT"
    assert plan.volumes == (spec.VolumeRequest("/data"),)


def test_an_entrypoint_in_the_request_drops_the_image_command():
    plan = spec.plan(request(Entrypoint=["/bin/echo"]), IMAGE, SETTINGS)
    assert plan.args == ("/bin/echo",)
    assert (plan.config.entrypoint, plan.config.cmd) == (["/bin/echo"], None)
    with pytest.raises(InvalidParameter, match="No command specified"):
        spec.plan(request(Entrypoint=[""]), ContainerConfig(), SETTINGS)


def test_the_process_gets_docker_environment_and_the_user_home():
    plan = spec.plan(request(Tty=True), IMAGE, SETTINGS)
    process = spec.build_spec(plan, prepared(plan, "host-1")).process
    assert process.env == (
        "PATH=/bin", "HOSTNAME=host-1", "TERM=xterm", "LANG=C", "HOME=/home/app",
    )  # fmt: skip
    assert (process.uid, process.gid, process.additional_gids) == (1000, 1000, (1000, 10))
    assert process.cwd == "/srv" and process.terminal


def test_binds_cover_the_image_volumes_they_name():
    plan = spec.plan(request(HostConfig={"Binds": ["/host:/data:ro", "named:/n"]}), IMAGE, SETTINGS)
    assert plan.volumes == (
        spec.VolumeRequest("/data", "/host", True, propagation="rprivate"),
        spec.VolumeRequest("/n", "named"),
    )
    mounts = spec.build_spec(plan, prepared(plan)).mounts
    assert mounts == (
        BindMount("/volumes/0", "/data", True, propagation="rprivate"),
        BindMount("/volumes/1", "/n"),
    )


def test_with_a_user_namespace_volumes_are_idmapped_and_host_paths_are_not():
    body = {"Binds": ["/host:/h", "named:/n"]}
    plan = spec.plan(request(HostConfig=body), IMAGE, REMAPPED)
    built = spec.build_spec(plan, prepared(plan))
    assert [m.idmap for m in built.mounts] == [False, True, True]  # /h, /n, the image's /data
    assert built.uid_mappings == (IdMapping(0, 100000, 65536),)
    assert (
        spec.plan(request(HostConfig={"UsernsMode": "host"}), IMAGE, REMAPPED).user_namespace
        is None
    )
    with pytest.raises(InvalidParameter, match="privileged mode is incompatible"):
        spec.plan(request(HostConfig={"Privileged": True}), IMAGE, REMAPPED)
    with pytest.raises(InvalidParameter, match="cannot share the host's network namespace"):
        spec.plan(request(HostConfig={"NetworkMode": "host"}), IMAGE, REMAPPED)


def test_privileged_means_every_capability_no_filter_no_masked_paths():
    plan = spec.plan(request(HostConfig={"Privileged": True}), IMAGE, SETTINGS)
    built = spec.build_spec(plan, prepared(plan))
    assert built.process.capabilities == ALL_CAPABILITIES
    assert built.process.seccomp == "unconfined"
    assert built.masked_paths == () and built.privileged
    plain = spec.plan(request(), IMAGE, SETTINGS)
    built = spec.build_spec(plain, prepared(plain))
    assert built.process.capabilities == DEFAULT_CAPABILITIES
    assert (built.process.seccomp, built.masked_paths) == ("default", DEFAULT_MASKED_PATHS)


@pytest.mark.parametrize(
    ("host_config", "error", "message"),
    [
        ({"Memory": 1024}, InvalidParameter, "Minimum memory limit allowed is 6MB"),
        ({"NanoCpus": 3 * 10**9}, InvalidParameter, "Range of CPUs is from 0.01 to 2.00"),
        ({"RestartPolicy": {"Name": "always"}, "AutoRemove": True}, Conflict, "--restart and --rm"),
        ({"RestartPolicy": {"Name": "sometimes"}}, InvalidParameter, "invalid restart policy"),
        ({"CapAdd": ["CAP_NOPE"]}, InvalidParameter, "invalid capability: CAP_NOPE"),
        ({"Binds": ["relative:path"]}, InvalidParameter, "mount path must be absolute"),
        ({"LogConfig": {"Type": "json-file", "Config": {"compress": "true"}}}, InvalidParameter,
         "compress cannot be true when max-file is less than 2"),
        ({"LogConfig": {"Config": {"max-size": "1q"}}}, InvalidParameter,
         "invalid value for max-size: 1q: invalid suffix"),
        ({"LogConfig": {"Config": {"max-file": "3"}}}, InvalidParameter, "together with max-size"),
    ],
)  # fmt: skip
def test_every_error_is_found_before_anything_is_made(host_config, error, message):
    with pytest.raises(error, match=message):
        spec.plan(request(HostConfig=host_config), IMAGE, SETTINGS)


def test_resources_as_docker_computes_them():
    plan = spec.plan(
        request(HostConfig={"Memory": 64 << 20, "CpuQuota": 50000, "CpuPeriod": 100000,
                            "PidsLimit": -1}),
        IMAGE,
        SETTINGS,
    )  # fmt: skip
    assert (plan.resources.memory_bytes, plan.resources.nano_cpus) == (64 << 20, 500_000_000)
    assert plan.resources.pids_limit is None  # -1 and 0 are unlimited
    # As dockerd shows them: the quota and period given, not NanoCpus (docker update's rules
    # tell the two apart).
    assert (plan.host_config.nano_cpus, plan.host_config.cpu_quota) == (0, 50000)
    assert plan.host_config.log_config.type == "json-file"
