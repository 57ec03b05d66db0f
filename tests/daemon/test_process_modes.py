"""The checks of process_modes without a daemon: which modes and sysctls pass, and what
joining another container's namespaces needs of it."""

from __future__ import annotations

import pytest

from dockyard.core.errors import Conflict, InvalidParameter
from dockyard.core.interfaces import ContainerSpec, Mount, ProcessSpec
from dockyard.daemon.containers import process_modes, spec
from dockyard.daemon.containers.config import ContainerConfig, CreateRequest
from dockyard.daemon.containers.process_modes import SharedTarget
from dockyard.daemon.engine_api import ENGINE_API
from tests.logging.drivers import BUILTIN_LOG_DRIVERS

DONOR = SharedTarget("d" * 64, "shareable", True, 4242)


def lookup(name: str) -> SharedTarget:
    if name not in ("donor", DONOR.id):
        raise InvalidParameter(f"No such container: {name}")
    return DONOR


def modes(**given: object) -> process_modes.ProcessModes:
    arguments = {"pid_mode": "", "ipc_mode": "", "uts_mode": "", "cgroupns_mode": "",
                 "shm_size": 0, "sysctls": None, **given}  # fmt: skip
    options = {"network_mode": "default", "hostname": "", "remapped": False, "lookup": lookup}
    for key in list(arguments):
        if key in options:
            options[key] = arguments.pop(key)
    return process_modes.process_modes(**arguments, **options)  # type: ignore[arg-type]


def test_defaults_are_dockerds():
    found = modes()
    assert (found.pid_mode, found.ipc_mode, found.uts_mode) == ("", "private", "")
    assert found.shm_size == 64 * 1024 * 1024
    assert found.cgroupns_mode == ("host" if process_modes.cgroup_version() == 1 else "private")


def test_container_modes_name_the_container_by_id():
    found = modes(pid_mode="container:donor", ipc_mode="container:donor")
    assert found.pid_mode == found.ipc_mode == f"container:{DONOR.id}"
    with pytest.raises(InvalidParameter, match="No such container: gone"):
        modes(uts_mode="container:gone")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"pid_mode": "container:"}, "invalid PID mode"),
        ({"ipc_mode": "bogus"}, "Invalid IPC mode: bogus"),
        ({"uts_mode": "host", "hostname": "x"}, "hostname and the UTS mode"),
        ({"pid_mode": "host", "remapped": True}, "user namespaces are enabled"),
        ({"sysctls": {"kernel.hostname": "x"}}, 'conflicts with the OCI "hostname" field'),
        ({"sysctls": {"kernel.domainname": "x"}, "uts_mode": "host"}, "not in a separate"),
        ({"sysctls": {"fs.mqueue.msg_max": "9"}, "ipc_mode": "host"}, "hosts ipc namespace"),
    ],
)
def test_refused(given, message):
    with pytest.raises(InvalidParameter, match=message):
        modes(**given)


def test_namespaced_sysctls_pass():
    sysctls = {"net.core.somaxconn": "1", "kernel.sem": "1 2 3 4", "kernel.domainname": "d"}
    # Beside dockerd's default network sysctls (tests/daemon/test_links.py checks those).
    assert dict(modes(sysctls=sysctls).sysctls).items() >= sysctls.items()


def a_spec() -> ContainerSpec:
    return ContainerSpec(id="c", rootfs=(Mount("bind", "/x"),), process=ProcessSpec(args=("true",)))


def test_joining_finds_the_namespace_files_of_a_running_donor():
    joined = process_modes.join_shared_namespaces(
        a_spec(), f"container:{DONOR.id}", "host", f"container:{DONOR.id}", lookup
    )
    assert (joined.pid_namespace, joined.ipc_namespace, joined.uts_namespace) == (
        "/proc/4242/ns/pid", "host", "/proc/4242/ns/uts",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("target", "mode", "message"),
    [
        (SharedTarget("p", "private", True, 1), "ipc", "non-shareable IPC"),
        (SharedTarget("s", "shareable", False, 0), "ipc", "container s is not running"),
        (SharedTarget("s", "shareable", False, 0), "pid", "^container s is not running$"),
    ],
)
def test_joining_refused(target, mode, message):
    given = {"pid_mode": "", "ipc_mode": "private", "uts_mode": ""}
    given[f"{mode}_mode"] = f"container:{target.id}"
    with pytest.raises(Conflict, match=message):
        process_modes.join_shared_namespaces(a_spec(), **given, lookup=lambda name: target)


def test_init_wraps_the_command_and_inspect_unwraps_it():
    wrapped = process_modes.with_init(a_spec(), "/usr/bin/docker-init")
    assert wrapped.process.args == ("/sbin/docker-init", "--", "true")
    assert wrapped.mounts[-1].read_only and wrapped.mounts[-1].destination == "/sbin/docker-init"
    assert process_modes.command_args(wrapped, True) == ("true",)
    assert process_modes.user_mounts(wrapped, True) == ()
    with pytest.raises(InvalidParameter, match="no docker-init binary found at /nowhere"):
        process_modes.init_binary("/nowhere")


def test_group_add_names_and_numbers():
    group = "audio:x:29:\nstaff:x:50:bob\n"
    assert process_modes.additional_groups((0,), ["staff", "7", "0"], group) == (0, 50, 7)
    with pytest.raises(InvalidParameter, match="Unable to find group video"):
        process_modes.additional_groups((0,), ["video"], group)


def test_the_daemons_init_setting_is_the_default_and_init_path_the_binary():
    binary = process_modes.init_binary("")  # Debian's tini, as scripts/setup installs it
    settings = spec.DaemonSettings(
        cpu_count=1, host_name="h", init=True, init_path=binary, logging=BUILTIN_LOG_DRIVERS
    )
    plan = spec.plan(
        ENGINE_API.decode({"Cmd": ["true"]}, CreateRequest), ContainerConfig(), settings
    )
    assert plan.init_binary == binary
    assert plan.host_config.init is None  # as dockerd: the request's, not the daemon's default
    opted_out = ENGINE_API.decode({"Cmd": ["true"], "HostConfig": {"Init": False}}, CreateRequest)
    assert spec.plan(opted_out, ContainerConfig(), settings).init_binary == ""
