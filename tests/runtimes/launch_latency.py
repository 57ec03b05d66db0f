"""Launch latency of the namespaces runtime: ``python tests/runtimes/launch_latency.py [COUNT]``.

Plays the supervisor (a child subreaper) and starts ``true`` COUNT times (20 by default) on
fresh overlay snapshots of a busybox layer, printing the median time of ``launch()`` (cgroup
creation to the process's successful exec) and of launch + wait + cgroup removal. Needs root.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

from dockyard.core.interfaces import DEFAULT_CAPABILITIES, ContainerSpec, ProcessSpec
from dockyard.linux import syscalls
from dockyard.linux.cgroups import ContainerCgroup
from dockyard.plugins.runtimes.namespaces.launch import launch
from dockyard.plugins.storage.overlay import OverlayDriver
from dockyard.testing.images import busybox_rootfs

CGROUP_PARENT = "dockyard-latency"


def measure(count: int) -> dict[str, float]:
    syscalls.prctl(syscalls.PR_SET_CHILD_SUBREAPER, 1)
    base = tempfile.mkdtemp(prefix="dockyard-latency-", dir="/var/tmp")
    try:
        store = OverlayDriver(os.path.join(base, "overlay"))
        store.apply_layer("busybox", [], io.BytesIO(busybox_rootfs()))
        launch_ms, cycle_ms = [], []
        null = os.open(os.devnull, os.O_RDWR)
        for number in range(count):
            snapshot = f"container-{number}"
            state_dir = os.path.join(base, snapshot)
            os.mkdir(state_dir)
            spec = ContainerSpec(
                id=f"latency{os.getpid()}-{number}",
                rootfs=tuple(store.prepare(snapshot, ["busybox"])),
                process=ProcessSpec(
                    args=("true",), env=("PATH=/bin",), capabilities=DEFAULT_CAPABILITIES
                ),
                hostname="latency",
                state_dir=state_dir,
                runtime_options=(("cgroup-parent", CGROUP_PARENT),),
            )
            started = time.perf_counter()
            pid = launch(spec, (null, null, null))
            launched = time.perf_counter()
            _, status = os.waitpid(pid, 0)
            ContainerCgroup(spec.id, CGROUP_PARENT).remove()
            finished = time.perf_counter()
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"true exited with {os.waitstatus_to_exitcode(status)}")
            launch_ms.append((launched - started) * 1000)
            cycle_ms.append((finished - started) * 1000)
            store.remove(snapshot)
        os.close(null)
        return {
            "launch_median_ms": statistics.median(launch_ms),
            "cycle_median_ms": statistics.median(cycle_ms),
        }
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20)))
