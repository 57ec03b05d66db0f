"""The cgroup layer on its own (v2 on the unified tree, even on a hybrid machine) and the
plugin as the core sees it (registration, availability check, config table)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dockyard.core.config import parse_config
from dockyard.core.drivers import DriverKind
from dockyard.core.interfaces import BlockIO, BlockIOEntry, CpuThrottling, CpuTimes
from dockyard.core.plugins import PluginHost
from dockyard.linux.cgroups import DOCKER_MEMORY_STAT, ContainerCgroup, Layout, _keyed
from dockyard.plugins.runtimes.namespaces.plugin import NamespacesConfig, NamespacesRuntime
from dockyard.plugins.runtimes.runc.plugin import _block_io
from tests.conftest import eventually

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="cgroups need root")


def unified_mount() -> str | None:
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields, _, tail = line.partition(" - ")
            if tail.split()[0] == "cgroup2":
                return fields.split()[4]
    return None


@pytest.fixture
def v2_cgroup():
    point = unified_mount()
    if point is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    cgroup = ContainerCgroup(f"v2test{os.getpid()}", "dockyard-test", Layout(2, {"": point}))
    cgroup.create()
    yield cgroup
    cgroup.remove()


def test_v2_freezes_counts_and_removes_a_real_process(v2_cgroup):
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with open(os.path.join(v2_cgroup.dirs[""], "cgroup.procs"), "w") as procs:
            procs.write(str(spinner.pid))
        assert v2_cgroup.pids() == [spinner.pid]
        eventually(lambda: v2_cgroup.cpu_usage_ns() > 10_000_000, what="10 ms of CPU")
        v2_cgroup.freeze()
        assert v2_cgroup.is_frozen()
        assert _keyed(os.path.join(v2_cgroup.dirs[""], "cgroup.events"))["frozen"] == 1
        frozen = v2_cgroup.cpu_usage_ns()
        time.sleep(0.15)
        assert v2_cgroup.cpu_usage_ns() == frozen
        v2_cgroup.thaw()
        eventually(lambda: v2_cgroup.cpu_usage_ns() > frozen, what="CPU after the thaw")
        v2_cgroup.freeze()
        v2_cgroup.remove()  # frozen and busy: killed, thawed, directory gone
        assert spinner.wait(5) == -9
        assert not os.path.exists(v2_cgroup.dirs[""])
    finally:
        if spinner.poll() is None:
            spinner.kill()
            spinner.wait()


def test_v2_stats_read_cpu_times_from_the_unified_tree(v2_cgroup):
    # On a hybrid machine the unified tree has no controllers, but every cgroup counts CPU.
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with open(os.path.join(v2_cgroup.dirs[""], "cgroup.procs"), "w") as procs:
            procs.write(str(spinner.pid))
        eventually(lambda: v2_cgroup.cpu_times().user_ns > 20_000_000, what="20 ms of user CPU")
        times = v2_cgroup.cpu_times()
        assert times.per_cpu_ns == ()  # v2 does not count by CPU
        assert times.user_ns + times.kernel_ns <= v2_cgroup.cpu_usage_ns()
    finally:
        spinner.kill()
        spinner.wait()


def test_v2_stats_files_read_as_dockerd_reports_them(tmp_path):
    # Stand-in files where this machine's unified tree has no memory, io or cpu controller.
    cgroup = ContainerCgroup("c1", "parent", Layout(2, {"": str(tmp_path)}))
    directory = Path(cgroup.dirs[""])
    directory.mkdir(parents=True)
    (directory / "cpu.stat").write_text(
        "usage_usec 900\nuser_usec 600\nsystem_usec 300\nnr_periods 7\nnr_throttled 2\n"
        "throttled_usec 40\n"
    )
    (directory / "memory.stat").write_text("anon 4096\nfile 8192\ninactive_file 4096\nzswap 1\n")
    (directory / "memory.events").write_text("low 0\nhigh 0\nmax 5\noom 3\noom_kill 1\n")
    (directory / "io.stat").write_text(
        "254:0 rbytes=512 wbytes=4096 rios=1 wios=2 dbytes=0 dios=0\n"
    )
    assert cgroup.cpu_times() == CpuTimes(kernel_ns=300_000, user_ns=600_000)
    assert cgroup.cpu_throttling() == CpuThrottling(7, 2, 40_000)
    memory = cgroup.memory_detail()
    assert (memory.max_usage, memory.failcnt) == (0, 3)  # failcnt: memory.events' oom
    assert list(memory.stat) == list(DOCKER_MEMORY_STAT[2])  # zswap is not docker's
    assert (memory.stat["file"], memory.stat["inactive_file"], memory.stat["slab"]) == (
        8192,
        4096,
        0,
    )
    assert cgroup.block_io() == BlockIO(
        service_bytes=(BlockIOEntry(254, 0, "read", 512), BlockIOEntry(254, 0, "write", 4096))
    )
    (directory / "io.stat").write_text("")  # no I/O yet: dockerd sends null
    assert cgroup.block_io() == BlockIO()


def test_runc_events_blkio_on_v2_as_dockerd_reports_it():
    blkio = {
        "ioServiceBytesRecursive": [
            {"major": 254, "op": "Read", "value": 512}, {"major": 254, "op": "Write"},
            {"major": 254, "op": "Discard", "value": 9},
        ],
        "ioServicedRecursive": [{"major": 254, "op": "Read", "value": 1}],
    }  # fmt: skip
    assert _block_io(blkio, 2) == BlockIO(
        service_bytes=(BlockIOEntry(254, 0, "read", 512), BlockIOEntry(254, 0, "write", 0))
    )
    v1 = _block_io(blkio, 1)
    assert v1.serviced == (BlockIOEntry(254, 0, "Read", 1),) and v1.sectors == ()


def test_plugin_is_registered_available_and_reads_its_config_table():
    config = parse_config('[runtimes.namespaces]\ncgroup-parent = "elsewhere"\n', "test.toml")
    host = PluginHost(config, "cli").load()
    report = {r.name: r for r in host.report()}["namespaces"]
    assert report.status == "ok", report
    (info,) = [i for i in host.driver_infos(DriverKind.RUNTIME) if i.name == "namespaces"]
    info.check()
    runtime_config = host.driver_config(DriverKind.RUNTIME, "namespaces")
    assert runtime_config == NamespacesConfig(cgroup_parent="elsewhere")
    runtime = info.factory(runtime_config, None)
    assert isinstance(runtime, NamespacesRuntime)
    assert runtime.launcher == "dockyard.plugins.runtimes.namespaces.launch:launch"
    assert runtime.launch_options == (("cgroup-parent", "elsewhere"),)


def test_launcher_module_stays_light():
    # The supervisor imports the launcher on every container start: no plugin machinery.
    code = (
        "import sys; import dockyard.plugins.runtimes.namespaces.launch; "
        "print(' '.join(m for m in ('pluggy', 'dockyard.core.config', 'dockyard.core.drivers') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_launch_latency_stays_small():
    # launch() costs ~10 ms here; a regression to a slow path (a subprocess, a sleep, a
    # polling loop) would show up as several times that.
    script = Path(__file__).resolve().parent / "launch_latency.py"
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(script), "7"], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)
    assert measured["launch_median_ms"] < 80, measured
