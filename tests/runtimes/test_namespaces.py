"""The ``namespaces`` runtime, container by container: isolation, limits and failures.

Each test starts real containers (see conftest) and looks from inside (the container's own
output) and from the host (cgroup files, mount table, /proc) at what the runtime did.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dockyard.core.errors import Conflict, NotFound
from dockyard.core.interfaces import (
    BindMount,
    IdMapping,
    LaunchError,
    ProcessSpec,
    Resources,
    spec_to_json,
)
from dockyard.linux.cgroups import ContainerCgroup
from tests.runtimes.conftest import (
    CGROUP_PARENT,
    ROOT,
    bind,
    host_mount_points,
    run_on_terminal,
)

DOCKER_DEFAULT_CAPS = "00000000a80425fb"


def status_field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(\S+)", text, re.MULTILINE)
    assert match, f"{name} not in {text!r}"
    return match.group(1)


def cgroup_of(container_id: str) -> ContainerCgroup:
    return ContainerCgroup(container_id, CGROUP_PARENT)


def wait_for_exec(pid: int, program: bytes = b"sleep") -> None:
    """Wait until process ``pid`` runs ``program`` (the script before it has done its work)."""
    deadline = time.monotonic() + 20
    while not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(program + b"\0"):
        assert time.monotonic() < deadline, "the container never reached its final exec"
        time.sleep(0.01)


def mounts_under_test_tree(tmp_path: Path) -> list[str]:
    """Host mount points under the tests' temporary tree (other processes may mount elsewhere)."""
    base = str(tmp_path.parent.parent)
    return [point for point in host_mount_points() if point.startswith(base)]


def assert_nothing_left(spec) -> None:
    """No cgroup directory and no host mount of the container remain."""
    cgroup = cgroup_of(spec.id)
    assert not [path for path in cgroup.dirs.values() if os.path.exists(path)]
    assert not [point for point in host_mount_points() if point.startswith(spec.state_dir)]


# --------------------------------------------------------------------------------------------
# Namespaces and the root filesystem
# --------------------------------------------------------------------------------------------


def test_init_is_pid_1_with_its_own_hostname_and_processes(make_spec, run):
    spec = make_spec("sh", "-c", "echo $$; hostname; ps -o pid,comm; true")
    result = run(spec)
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    assert lines[0] == "1"
    assert lines[1] == spec.hostname
    pids = sorted(int(line.split()[0]) for line in lines[3:])
    assert pids == [1, max(pids)] and max(pids) < 10  # only sh and ps: the host is out of sight


def test_mount_namespace_hides_the_host_and_leaves_no_host_mount(make_spec, run, tmp_path):
    spec = make_spec("cat", "/proc/self/mountinfo")
    before = mounts_under_test_tree(tmp_path)
    result = run(spec)
    assert result.exit_code == 0, result
    points = [line.split()[4] for line in result.stdout.splitlines()]
    assert points[0] == "/"
    assert str(tmp_path) not in result.stdout
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"} <= set(points)
    assert mounts_under_test_tree(tmp_path) == before


def test_none_network_has_only_loopback_and_it_is_up(make_spec, run):
    result = run(make_spec("sh", "-c", "cat /proc/net/dev; cat /sys/class/net/lo/flags"))
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    interfaces = [line.split(":")[0].strip() for line in lines[2:-1]]
    assert interfaces == ["lo"]
    assert int(lines[-1], 16) & 0x1  # IFF_UP


def test_host_network_sees_the_hosts_interfaces(make_spec, run):
    result = run(make_spec("cat", "/proc/net/dev", network_mode="host"))
    assert result.exit_code == 0, result
    host = Path("/proc/net/dev").read_text().splitlines()[2:]
    names = sorted(line.split(":")[0].strip() for line in result.stdout.splitlines()[2:])
    assert names == sorted(line.split(":")[0].strip() for line in host)


def test_dev_holds_the_standard_nodes_and_links(make_spec, run):
    script = "ls /dev; stat -c '%n %F %t:%T %a' /dev/null /dev/zero /dev/urandom /dev/tty; readlink /dev/ptmx; readlink /dev/fd; echo ok > /dev/shm/x && cat /dev/shm/x"
    result = run(make_spec("sh", "-c", script))
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()
    assert set(lines[:16]) >= {
        "fd", "full", "mqueue", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin",
        "stdout", "tty", "urandom", "zero",
    }  # fmt: skip
    assert "/dev/null character special file 1:3 666" in lines
    assert "/dev/zero character special file 1:5 666" in lines
    assert "/dev/urandom character special file 1:9 666" in lines
    assert "/dev/tty character special file 5:0 666" in lines
    assert lines[-3:] == ["pts/ptmx", "/proc/self/fd", "ok"]


def test_masked_paths_read_empty_and_readonly_paths_refuse_writes(make_spec, run):
    script = (
        "wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; "
        "echo x > /proc/sys/kernel/domainname && echo WROTE; "
        "grep -c ' /proc/sys .*ro,' /proc/self/mountinfo"
    )
    result = run(make_spec("sh", "-c", script))
    assert result.exit_code == 0, result
    assert result.stdout.split() == ["0", "0", "1"]
    assert "Read-only file system" in result.stderr


def test_privileged_keeps_every_capability_and_skips_masking(make_spec, run):
    spec = make_spec(
        "sh",
        "-c",
        "grep Cap /proc/self/status; wc -c < /proc/timer_list; grep ' /sys ' /proc/self/mountinfo",
        privileged=True,
    )
    result = run(spec)
    assert result.exit_code == 0, result
    host_bounding = status_field(Path("/proc/self/status").read_text(), "CapBnd")
    assert status_field(result.stdout, "CapBnd") == host_bounding
    assert status_field(result.stdout, "CapEff") == host_bounding
    assert int(result.stdout.splitlines()[5]) > 0  # timer_list is readable
    assert " rw," in result.stdout.splitlines()[6]  # /sys writable


def test_read_only_rootfs_refuses_writes_but_tmpfs_mounts_stay_writable(make_spec, run):
    script = "touch /new-file && echo WROTE; echo ok > /dev/shm/x && cat /dev/shm/x"
    result = run(make_spec("sh", "-c", script, read_only_rootfs=True))
    assert result.exit_code == 0, result
    assert result.stdout == "ok\n"
    assert "Read-only file system" in result.stderr


def test_writable_rootfs_keeps_changes_in_the_snapshot(make_spec, run, image_store):
    spec = make_spec("sh", "-c", "echo data > /tmp/made-inside")
    assert run(spec).exit_code == 0
    upper = Path(spec.rootfs[0].options[-2].removeprefix("upperdir="))
    assert (upper / "tmp" / "made-inside").read_text() == "data\n"


def test_bind_mounts_read_write_and_read_only(make_spec, run, tmp_path):
    writable = tmp_path / "writable"
    read_only = tmp_path / "read-only"
    writable.mkdir()
    read_only.mkdir()
    (read_only / "given").write_text("from the host\n")
    host_file = tmp_path / "hosts"
    host_file.write_text("127.0.0.1 localhost special\n")
    script = (
        "echo inside > /data/out; cat /config/given; echo x > /config/nope && echo WROTE; "
        "cat /etc/hosts"
    )
    spec = make_spec(
        "sh", "-c", script,
        mounts=(bind(writable, "/data"), bind(read_only, "/config", read_only=True)),
        etc_files=((str(host_file), "/etc/hosts"),),
    )  # fmt: skip
    result = run(spec)
    assert result.exit_code == 0, result
    assert result.stdout == "from the host\n127.0.0.1 localhost special\n"
    assert "Read-only file system" in result.stderr
    assert (writable / "out").read_text() == "inside\n"
    assert not (read_only / "nope").exists()


def test_bind_mount_of_a_missing_source_fails_and_leaves_nothing(make_spec, run, tmp_path):
    spec = make_spec("true", mounts=(bind(tmp_path / "missing", "/data"),))
    result = run(spec)
    assert result.launch_exit_code == 125
    assert "bind source path does not exist" in result.launch_error
    assert_nothing_left(spec)


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


def test_root_gets_dockers_default_capabilities(make_spec, run):
    result = run(make_spec("grep", "-E", "^(Cap|NoNewPrivs)", "/proc/self/status"))
    assert result.exit_code == 0, result
    for field in ("CapBnd", "CapEff", "CapPrm"):
        assert status_field(result.stdout, field) == DOCKER_DEFAULT_CAPS
    assert status_field(result.stdout, "CapInh") == "0000000000000000"
    assert status_field(result.stdout, "NoNewPrivs") == "0"


def test_user_and_groups_and_no_effective_capabilities_for_non_root(make_spec, run):
    spec = make_spec(
        "sh", "-c", "id; grep -E '^(Cap|NoNewPrivs)' /proc/self/status",
        process={"uid": 1000, "gid": 1000, "additional_gids": (10, 1000), "cwd": "/home/app",
                 "no_new_privileges": True},
    )  # fmt: skip
    result = run(spec)
    assert result.exit_code == 0, result
    assert result.stdout.splitlines()[0] == "uid=1000(app) gid=1000(app) groups=10(wheel),1000(app)"
    assert status_field(result.stdout, "CapEff") == "0000000000000000"
    assert status_field(result.stdout, "CapBnd") == DOCKER_DEFAULT_CAPS
    assert status_field(result.stdout, "NoNewPrivs") == "1"


def test_device_nodes_may_be_made_but_not_opened_beyond_the_standard_ones(make_spec, run):
    # CAP_MKNOD is in docker's set; the devices cgroup is what keeps the host's disks out.
    host_disk = os.stat("/dev/vda" if os.path.exists("/dev/vda") else "/dev/loop0").st_rdev
    major, minor = os.major(host_disk), os.minor(host_disk)
    script = f"mknod /disk b {major} {minor} && echo made; head -c 1 /disk && echo READ; head -c 1 /dev/zero | wc -c"
    result = run(make_spec("sh", "-c", script))
    assert result.stdout.split() == ["made", "1"]
    assert "Operation not permitted" in result.stderr


def test_cgroup_namespace_roots_the_container_at_its_own_cgroup(make_spec, run):
    result = run(make_spec("cat", "/proc/self/cgroup"))
    assert result.exit_code == 0, result
    paths = {line.split(":", 2)[2] for line in result.stdout.splitlines()}
    assert paths == {"/"}


def test_capabilities_are_enforced(make_spec, run):
    # CAP_SYS_ADMIN is not in docker's set: mounting must fail; CAP_CHOWN is: chown works.
    script = "mkdir /m; mount -t tmpfs none /m && echo MOUNTED; touch /f && chown 1000 /f && stat -c %u /f"
    spec = make_spec("sh", "-c", script)
    result = run(spec)
    assert result.stdout == "1000\n"
    assert "permission denied" in result.stderr.lower()


def test_user_namespace_maps_root_to_an_unprivileged_host_uid(make_spec, start, runtime):
    spec = make_spec(
        "sh", "-c", "cat /proc/self/uid_map; id -u; exec sleep 30",
        uid_mappings=(IdMapping(0, 100000, 65536),),
        gid_mappings=(IdMapping(0, 100000, 65536),),
    )  # fmt: skip
    running = start(spec)
    wait_for_exec(running.pid)
    status = Path(f"/proc/{running.pid}/status").read_text()
    assert status_field(status, "Uid") == "100000"
    # exec joins the user namespace too: root inside, the same maps, and a pid ns of its own.
    code, output = exec_in(runtime, running, "sh", "-c", "id -u; cat /proc/self/uid_map; echo $$")
    assert os.waitstatus_to_exitcode(code) == 0, output
    assert output.split()[:4] == ["0", "0", "100000", "65536"]
    assert 1 < int(output.split()[4]) < 10
    os.kill(running.pid, signal.SIGKILL)
    result = running.wait()
    assert result.stdout.split() == ["0", "100000", "65536", "0"]


def test_user_namespace_sees_the_image_and_idmapped_volumes_as_its_own(
    make_spec, run, runtime, tmp_path
):
    # Sources below pytest's 0700 temp dirs, which the remapped root could not search: the
    # launcher opens them before entering the user namespace.
    volume, host_dir = tmp_path / "volume", tmp_path / "host-dir"
    volume.mkdir()
    host_dir.mkdir()
    (volume / "old").write_text("")
    spec = make_spec(
        "sh", "-c",
        "stat -c %u:%g /bin/busybox /etc/passwd /volume/old /host; touch /made /volume/new",
        uid_mappings=(IdMapping(0, 100000, 65536),),
        gid_mappings=(IdMapping(0, 200000, 65536),),
        mounts=(BindMount(str(volume), "/volume", idmap=True), bind(host_dir, "/host")),
    )  # fmt: skip
    result = run(spec)
    assert result.exit_code == 0, result
    assert result.stdout.split() == ["0:0", "0:0", "0:0", "65534:65534"]
    options = dict(o.split("=", 1) for o in spec.rootfs[0].options if "=" in o)
    made = os.stat(Path(options["upperdir"]) / "made")
    assert (made.st_uid, made.st_gid) == (0, 0)  # stored with the container's ids
    assert os.stat(volume / "new").st_uid == 0
    assert not list(Path(spec.state_dir).rglob(".idmap-staging"))
    runtime.cleanup(spec.id)
    assert_nothing_left(spec)


def test_a_volume_that_cannot_be_idmapped_fails_the_start_clearly(make_spec, run):
    spec = make_spec(
        "true",
        uid_mappings=(IdMapping(0, 100000, 65536),),
        gid_mappings=(IdMapping(0, 100000, 65536),),
        mounts=(BindMount("/sys/kernel", "/k", idmap=True),),  # sysfs has no idmapping
    )
    result = run(spec)
    assert result.launch_exit_code == 125
    assert "cannot make an idmapped mount of /sys/kernel" in result.launch_error
    assert_nothing_left(spec)


# --------------------------------------------------------------------------------------------
# Failures to start
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "code", "wording"),
    [
        ("no-such-command", 127, 'exec: "no-such-command": executable file not found in $PATH'),
        ("/bin/no-such-file", 127, "no such file or directory"),
        ("/bin/not-executable", 126, "permission denied"),
        ("/etc", 126, "permission denied"),
    ],
)
def test_commands_that_cannot_run_fail_like_docker_and_leave_nothing(
    make_spec, run, tmp_path, command, code, wording
):
    plain_file = tmp_path / "plain-file"
    plain_file.write_text("#!/bin/sh\necho never\n")
    plain_file.chmod(0o644)
    spec = make_spec(command, mounts=(bind(plain_file, "/bin/not-executable"),))
    before = mounts_under_test_tree(tmp_path)
    result = run(spec)
    assert result.launch_exit_code == code
    assert wording in result.launch_error
    assert_nothing_left(spec)
    assert mounts_under_test_tree(tmp_path) == before


def test_exit_code_is_the_processes_and_init_is_shielded_from_its_own_signals(make_spec, run):
    assert run(make_spec("sh", "-c", "exit 42")).exit_code == 42
    # As pid 1 of its namespace, the process only gets signals it handles, even SIGKILL.
    assert run(make_spec("sh", "-c", "kill -KILL $$; echo alive")).stdout == "alive\n"


def test_stdin_reaches_the_process(make_spec, run):
    result = run(make_spec("cat"), stdin=b"piped through\n")
    assert result.stdout == "piped through\n"


def test_terminal_is_the_controlling_tty_and_the_console(make_spec):
    script = "test -t 0 && test -t 1 && echo is-a-tty; tty; stat -c %t /dev/console; ps -o pid,tty | tail -1; exit 3"
    spec = make_spec("sh", "-c", script, process={"terminal": True})
    output, code = run_on_terminal(spec)
    assert code == 3
    lines = output.replace("\r\n", "\n").splitlines()
    assert lines[:3] == ["is-a-tty", "/dev/console", "88"]  # pty slaves are major 136 = 0x88
    assert lines[3].split()[1] != "?"  # the shell's session has the terminal as controlling tty


def test_the_same_supervisor_can_launch_again(make_spec):
    # A restart may launch from the same supervisor: neither the second container nor the
    # supervisor's other children may land in the first container's (dead) PID namespace.
    specs = [make_spec("sh", "-c", "echo $$"), make_spec("sh", "-c", "echo $$")]
    script = """
import os, sys
from dockyard.core.interfaces import spec_from_json
from dockyard.plugins.runtimes.namespaces.launch import launch
for path in sys.argv[1:]:
    with open(path) as source:
        os.waitpid(launch(spec_from_json(source.read()), (0, 1, 2)), 0)
sys.stdout.flush()
child = os.fork()
if child == 0:
    os._exit(0 if os.readlink("/proc/self/ns/pid") == os.readlink(f"/proc/{os.getppid()}/ns/pid") else 1)
print("plain fork on the host:", os.waitpid(child, 0)[1] == 0)
"""
    paths = []
    for spec in specs:
        path = Path(spec.state_dir) / "spec.json"
        path.write_text(spec_to_json(spec))
        paths.append(str(path))
    result = subprocess.run(
        [sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1", "1", "plain fork on the host: True"]


# --------------------------------------------------------------------------------------------
# cgroups
# --------------------------------------------------------------------------------------------


def test_memory_limit_oom_kills_and_is_reported(make_spec, run, runtime):
    spec = make_spec(
        "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1",
        resources=Resources(memory_bytes=16 * 1024 * 1024),
    )  # fmt: skip
    result = run(spec)
    assert result.signal == signal.SIGKILL, result
    assert runtime.oom_killed(spec.id)
    fine = make_spec("true", resources=Resources(memory_bytes=16 * 1024 * 1024))
    assert run(fine).exit_code == 0
    assert not runtime.oom_killed(fine.id)


def test_memory_limit_is_set_and_readable_inside_on_a_read_only_cgroupfs(make_spec, run):
    limit_file = (
        "/sys/fs/cgroup/memory/memory.limit_in_bytes"
        if cgroup_of("probe").version == 1
        else "/sys/fs/cgroup/memory.max"
    )
    script = f"cat {limit_file}; mkdir /sys/fs/cgroup/x && echo MADE; ls -d /sys/fs/cgroup/memory/*/ 2>/dev/null | wc -l"
    spec = make_spec("sh", "-c", script, resources=Resources(memory_bytes=64 * 1024 * 1024))
    result = run(spec)
    assert result.stdout.split()[0] == str(64 * 1024 * 1024)
    assert "MADE" not in result.stdout and "Read-only file system" in result.stderr
    assert result.stdout.split()[1] == "0"  # rooted at its own cgroup: no sub-cgroup, no neighbour
    assert cgroup_of(spec.id).memory_limit() == 64 * 1024 * 1024


def test_cpu_quota_from_nano_cpus(make_spec, run):
    spec = make_spec("true", resources=Resources(nano_cpus=1_500_000_000))
    assert run(spec).exit_code == 0
    assert cgroup_of(spec.id).cpu_quota() == (150_000, 100_000)


def test_pids_limit_caps_a_fork_bomb(make_spec, start, runtime):
    # The inner shell forks sleepers until fork fails (busybox sh then gives up); they outlive
    # it, and init ends up as the last sleeper.
    bomb = "for i in $(seq 40); do sleep 30 & done"
    spec = make_spec(
        "sh", "-c", f"sh -c '{bomb}'; exec sleep 30", resources=Resources(pids_limit=12)
    )
    running = start(spec)
    cgroup = cgroup_of(spec.id)
    wait_for_exec(running.pid)
    assert cgroup.pids_max() == 12
    # At the limit there were init, the inner shell and 10 sleepers; the shell is gone now.
    assert cgroup.pids_current() == 11
    assert runtime.stats(spec.id).pids == 11
    runtime.cleanup(spec.id)
    result = running.wait()
    assert result.signal == signal.SIGKILL
    assert "can't fork" in result.stderr
    assert_nothing_left(spec)


def test_pause_freezes_and_resume_thaws(make_spec, start, runtime):
    spec = make_spec("sh", "-c", "while true; do :; done")
    running = start(spec)

    def cpu_used() -> int:
        return runtime.stats(spec.id).cpu_total_ns

    first = cpu_used()
    time.sleep(0.1)
    assert cpu_used() > first + 10_000_000  # spinning
    runtime.pause(spec.id)
    assert cgroup_of(spec.id).is_frozen()
    assert (
        "State:\tD" in Path(f"/proc/{running.pid}/status").read_text()
        or cgroup_of(spec.id).version == 2
    )
    frozen = cpu_used()
    time.sleep(0.2)
    assert cpu_used() == frozen
    with pytest.raises(Conflict, match="is paused"):
        exec_in(runtime, running, "true")
    runtime.resume(spec.id)
    assert not cgroup_of(spec.id).is_frozen()
    time.sleep(0.1)
    assert cpu_used() > frozen + 10_000_000
    runtime.pause(spec.id)
    runtime.cleanup(spec.id)  # a frozen container can be cleaned up too
    assert_nothing_left(spec)


def test_stats_read_the_containers_cgroups(make_spec, start, runtime):
    script = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; exec sleep 30"
    spec = make_spec(
        "sh", "-c", script,
        resources=Resources(memory_bytes=64 * 1024 * 1024, pids_limit=50),
    )  # fmt: skip
    running = start(spec)
    wait_for_exec(running.pid)
    stats = runtime.stats(spec.id)
    assert stats.memory_limit == 64 * 1024 * 1024
    assert 0 < stats.memory_usage < 64 * 1024 * 1024
    assert stats.cpu_total_ns > 50_000_000  # the loop took CPU time
    assert stats.system_cpu_ns > stats.cpu_total_ns
    assert stats.online_cpus == os.cpu_count()
    assert stats.pids == 1
    assert stats.pids_limit == 50
    runtime.cleanup(spec.id)
    with pytest.raises(NotFound):
        runtime.stats(spec.id)


# --------------------------------------------------------------------------------------------
# exec
# --------------------------------------------------------------------------------------------


def exec_in(runtime, running, *args: str, **fields) -> tuple[int, str]:
    """Run a process in the container through the runtime; its wait status and output."""
    out_r, out_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        process = ProcessSpec(
            args=args,
            env=("PATH=/bin",),
            capabilities=running.spec.process.capabilities,
            **fields,
        )
        helper = runtime.exec(running.spec, running.pid, process, (null, out_w, out_w))
    finally:
        os.close(out_w)
        os.close(null)
    output = b""
    while chunk := os.read(out_r, 65536):
        output += chunk
    os.close(out_r)
    _, status = os.waitpid(helper, 0)
    return status, output.decode()


def test_exec_joins_the_running_container(make_spec, start, runtime, tmp_path):
    spec = make_spec("sleep", "30")
    running = start(spec)
    script = "echo $$; hostname; tr '\\0' ' ' < /proc/1/cmdline; echo; grep CapEff /proc/self/status; id -u; pwd"
    status, output = exec_in(runtime, running, "sh", "-c", script, uid=1000, gid=1000, cwd="/tmp")
    assert os.waitstatus_to_exitcode(status) == 0, output
    lines = output.splitlines()
    assert 1 < int(lines[0]) < 10  # a pid of the container's namespace
    assert lines[1] == spec.hostname
    assert lines[2].strip() == "sleep 30"
    assert lines[3].split() == ["CapEff:", "0000000000000000"]
    assert lines[4:] == ["1000", "/tmp"]
    cgroup = cgroup_of(spec.id)
    assert cgroup.pids() == [running.pid]  # the exec'd process was in the cgroup, and is gone


def test_exec_reports_exit_codes_signals_and_launch_failures(make_spec, start, runtime):
    running = start(make_spec("sleep", "30"))
    status, _ = exec_in(runtime, running, "sh", "-c", "exit 7")
    assert os.waitstatus_to_exitcode(status) == 7
    status, _ = exec_in(runtime, running, "sh", "-c", "kill -KILL $$")
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    with pytest.raises(LaunchError) as missing:
        exec_in(runtime, running, "no-such-command")
    assert missing.value.exit_code == 127
    assert "executable file not found in $PATH" in str(missing.value)
    with pytest.raises(LaunchError) as not_executable:
        exec_in(runtime, running, "/etc")
    assert not_executable.value.exit_code == 126


# --------------------------------------------------------------------------------------------
# Clean-up
# --------------------------------------------------------------------------------------------


def test_cleanup_kills_strays_removes_cgroups_and_is_repeatable(make_spec, start, runtime):
    spec = make_spec("sh", "-c", "sleep 30 & exec sleep 30")
    running = start(spec)
    cgroup = cgroup_of(spec.id)
    assert all(os.path.isdir(path) for path in cgroup.dirs.values())
    runtime.cleanup(spec.id)
    assert running.wait().signal == signal.SIGKILL
    assert_nothing_left(spec)
    runtime.cleanup(spec.id)
    assert not runtime.oom_killed(spec.id)
