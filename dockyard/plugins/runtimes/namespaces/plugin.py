"""The ``namespaces`` runtime: its config, the daemon-side :class:`Runtime` and the hook."""

from __future__ import annotations

import os

import attrs

from dockyard.core.config import option
from dockyard.core.drivers import DriverContext, DriverInfo, DriverKind
from dockyard.core.errors import Conflict, DriverUnavailable, InvalidParameter, NotFound
from dockyard.core.hookspecs import hookimpl
from dockyard.core.interfaces import (
    ContainerProcess,
    ContainerSpec,
    ContainerStats,
    ProcessSpec,
    Resources,
)
from dockyard.linux.cgroups import (
    CgroupError,
    ContainerCgroup,
    detect_layout,
    system_cpu_ns,
)
from dockyard.linux.processes import describe_all
from dockyard.plugins.runtimes.namespaces import nsenter
from dockyard.plugins.runtimes.namespaces.launch import DEFAULT_CGROUP_PARENT

LAUNCHER = "dockyard.plugins.runtimes.namespaces.launch:launch"
NAMESPACE_FILES = ("pid", "mnt", "uts", "ipc", "net")
CAPABILITIES = frozenset(("cgroup-v1", "cgroup-v2", "user-namespaces"))


@attrs.frozen
class NamespacesConfig:
    """Options of ``[runtimes.namespaces]``."""

    cgroup_parent: str = option(
        DEFAULT_CGROUP_PARENT,
        "cgroup, under each hierarchy's root, holding one cgroup per container",
    )


class NamespacesRuntime:
    """A :class:`~dockyard.core.interfaces.Runtime` built on namespaces, cgroups and pivot_root.

    The launcher does the isolating; this object, in the daemon, enters running containers
    and reads or changes their cgroups, finding them by container id alone so it works for
    containers an earlier daemon started.
    """

    launcher = LAUNCHER

    def __init__(self, config: NamespacesConfig | None = None) -> None:
        self.config = config or NamespacesConfig()
        #: Copied by the core into ``ContainerSpec.runtime_options`` for the launcher.
        self.launch_options: tuple[tuple[str, str], ...] = (
            ("cgroup-parent", self.config.cgroup_parent),
        )

    def _cgroup(self, container_id: str) -> ContainerCgroup:
        return ContainerCgroup(container_id, self.config.cgroup_parent)

    def _existing_cgroup(self, container_id: str) -> ContainerCgroup:
        cgroup = self._cgroup(container_id)
        if not cgroup.exists():
            raise NotFound(f"container {container_id} has no cgroup (is it running?)")
        return cgroup

    def exec(
        self, spec: ContainerSpec, pid: int, process: ProcessSpec, stdio: tuple[int, int, int]
    ) -> int:
        """Start ``process`` in the container through the exec helper; return the helper's pid.

        The helper is the daemon's child and exits with the process's exit status (or dies of
        the same signal), so waiting for it is waiting for the process.
        """
        cgroup = self._existing_cgroup(spec.id)
        if cgroup.is_frozen():
            # The new process would freeze as it joins the cgroup, before it could exec.
            raise Conflict(f"Container {spec.id} is paused, unpause the container before exec")
        procs = [os.path.join(path, "cgroup.procs") for path in dict.fromkeys(cgroup.dirs.values())]
        return nsenter.spawn(
            pid,
            process,
            stdio,
            privileged=spec.privileged,
            cgroup_procs=procs,
            belongs=lambda candidate: candidate in cgroup.pids(),
        )

    def pause(self, container_id: str) -> None:
        self._existing_cgroup(container_id).freeze()

    def resume(self, container_id: str) -> None:
        self._existing_cgroup(container_id).thaw()

    def stats(self, container_id: str) -> ContainerStats:
        cgroup = self._existing_cgroup(container_id)
        return ContainerStats(
            memory_usage=cgroup.memory_usage(),
            memory_limit=cgroup.memory_limit(),
            cpu_total_ns=cgroup.cpu_usage_ns(),
            system_cpu_ns=system_cpu_ns(),
            online_cpus=os.cpu_count() or 1,
            pids=cgroup.pids_current(),
            pids_limit=cgroup.pids_max(),
            cpu_times=cgroup.cpu_times(),
            cpu_throttling=cgroup.cpu_throttling(),
            memory=cgroup.memory_detail(),
            block_io=cgroup.block_io(),
        )

    def processes(self, container_id: str) -> list[ContainerProcess]:
        """The processes in the container's cgroup."""
        cgroup = self._existing_cgroup(container_id)
        return describe_all(cgroup.pids(), cgroup.path)

    def oom_killed(self, container_id: str) -> bool:
        cgroup = self._cgroup(container_id)
        return cgroup.exists() and cgroup.oom_kills() > 0

    def cleanup(self, container_id: str) -> None:
        """Kill what is left in the container's cgroups and remove them.

        The mounts need no undoing: they live in the container's mount namespace, which the
        kernel tears down with its last process (the empty ``rootfs`` mount point stays in the
        state directory, which the core owns).
        """
        self._cgroup(container_id).remove()

    def update(self, container_id: str, resources: Resources) -> None:
        """Write the new limits into the running container's cgroups."""
        cgroup = self._existing_cgroup(container_id)
        try:
            cgroup.update(resources)
        except (OSError, CgroupError) as exc:
            raise InvalidParameter(f"Cannot update container {container_id}: {exc}") from None


_verdict: str | None = None
_checked = False


def check() -> None:
    """Raise DriverUnavailable unless we are root with namespaces and a writable cgroup tree."""
    global _verdict, _checked
    if not _checked:
        _verdict = _find_obstacle()
        _checked = True
    if _verdict is not None:
        raise DriverUnavailable(_verdict)


def _find_obstacle() -> str | None:
    if os.geteuid() != 0:
        return "the namespaces runtime needs root (namespaces, mounts and cgroups)"
    missing = [name for name in NAMESPACE_FILES if not os.path.exists(f"/proc/self/ns/{name}")]
    if missing:
        return f"the kernel lacks namespaces: {', '.join(missing)}"
    try:
        layout = detect_layout()
    except (OSError, CgroupError) as exc:
        return str(exc)
    for point in layout.mounts.values():
        if not os.access(point, os.W_OK):
            return f"the cgroup hierarchy at {point} is not writable (mounted read-only?)"
    return None


def build(config: NamespacesConfig, context: DriverContext) -> NamespacesRuntime:
    """The factory the core calls with the decoded ``[runtimes.namespaces]`` table."""
    return NamespacesRuntime(config)


@hookimpl
def dockyard_runtimes() -> DriverInfo:
    return DriverInfo(
        name="namespaces",
        kind=DriverKind.RUNTIME,
        factory=build,
        config_class=NamespacesConfig,
        description="Linux namespaces, cgroups (v1 and v2) and pivot_root, run in-process",
        capabilities=CAPABILITIES,
        priority=20,
        check=check,
    )
