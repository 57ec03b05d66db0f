"""The ``namespaces`` runtime's own ways, beyond the contract every runtime keeps.

The contract is checked by the conformance suite (``test_conformance.py``); these look at what
is particular to this runtime: where its cgroups are, its terminal, its idmapped-mount
staging, its messages, and the supervisor launching again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dockyard.core.errors import Conflict
from dockyard.core.interfaces import BindMount, IdMapping, Resources, spec_to_json
from dockyard.linux.cgroups import ContainerCgroup
from dockyard.plugins.runtimes.namespaces.plugin import NamespacesRuntime
from dockyard.testing.runtimes import REMAPPED, RuntimeHarness
from tests.runtimes.conftest import CGROUP_PARENT

ROOT = Path(__file__).resolve().parents[2]


def cgroup_of(container_id: str) -> ContainerCgroup:
    return ContainerCgroup(container_id, CGROUP_PARENT)


class TestNamespacesRuntime(RuntimeHarness):
    @pytest.fixture
    def runtime(self, namespaces_runtime: NamespacesRuntime) -> NamespacesRuntime:
        return namespaces_runtime

    def test_limits_are_written_to_its_cgroup_under_the_configured_parent(
        self, make_spec, start, runtime
    ) -> None:
        resources = Resources(memory_bytes=64 << 20, nano_cpus=1_500_000_000, pids_limit=20)
        running = start(make_spec("sleep", "30", resources=resources))
        cgroup = cgroup_of(running.spec.id)
        assert all(os.path.isdir(path) for path in cgroup.dirs.values())
        assert cgroup.memory_limit() == 64 << 20
        assert cgroup.cpu_quota() == (150_000, 100_000)
        assert cgroup.pids_max() == 20
        assert cgroup.pids() == [running.pid]
        runtime.cleanup(running.spec.id)
        assert not cgroup.exists()

    def test_the_terminal_is_a_pty_of_its_own_and_the_console(self, make_spec, run_on_terminal):
        script = "tty; stat -c %t /dev/console"
        output, code = run_on_terminal(make_spec("sh", "-c", script, process={"terminal": True}))
        assert code == 0
        # pty slaves are major 136 = 0x88
        assert output.replace("\r\n", "\n").splitlines() == ["/dev/pts/0", "88"]

    def test_a_missing_bind_source_is_reported_in_dockers_words(self, make_spec, run) -> None:
        result = run(make_spec("true", mounts=(BindMount("/no/such/dir", "/data"),)))
        assert result.launch_exit_code == 125
        assert "bind source path does not exist: /no/such/dir" in result.launch_error

    def test_pause_freezes_every_process_and_refuses_exec(self, make_spec, start, runtime) -> None:
        running = start(make_spec("sh", "-c", "while true; do :; done"))
        cgroup = cgroup_of(running.spec.id)
        runtime.pause(running.spec.id)
        assert cgroup.is_frozen()
        if cgroup.version == 1:
            assert "State:\tD" in Path(f"/proc/{running.pid}/status").read_text()
        with pytest.raises(Conflict, match="is paused"):
            self.exec_in(runtime, running, "true")
        runtime.resume(running.spec.id)
        assert not cgroup.is_frozen()

    def test_idmapped_mounts_leave_no_staging_behind(self, make_spec, run, tmp_path) -> None:
        # A volume below pytest's 0700 temporary tree, which the remapped root could not
        # search: the launcher opens it before it enters the user namespace.
        volume = tmp_path / "volume"
        volume.mkdir()
        spec = make_spec(
            "touch", "/volume/new",
            uid_mappings=REMAPPED, gid_mappings=REMAPPED,
            mounts=(BindMount(str(volume), "/volume", idmap=True),),
        )  # fmt: skip
        assert run(spec).exit_code == 0
        assert os.stat(volume / "new").st_uid == 0
        assert not list(Path(spec.state_dir).rglob(".idmap-staging"))

    def test_a_volume_that_cannot_be_idmapped_fails_the_start_clearly(self, make_spec, run) -> None:
        spec = make_spec(
            "true",
            uid_mappings=(IdMapping(0, 100000, 65536),),
            gid_mappings=(IdMapping(0, 100000, 65536),),
            mounts=(BindMount("/sys/kernel", "/k", idmap=True),),  # sysfs has no idmapping
        )
        result = run(spec)
        assert result.launch_exit_code == 125
        assert "cannot make an idmapped mount of /sys/kernel" in result.launch_error
        self.assert_nothing_left(spec)

    def test_the_same_supervisor_can_launch_again(self, make_spec) -> None:
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
