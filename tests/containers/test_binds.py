"""Bind mounts: propagation (``-v`` modes, ``--mount bind-propagation=``), non-recursive binds,
binds of the data root, and empty masked and read-only path lists, on both runtimes.

What each check expects is what dockerd 20.10 does (tests/containers/test_binds_interop.py
shows it side by side). The binds' sources are a tmpfs of the module's own made a shared
mount (the host's ``/`` is private here), so what propagates stays below it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.linux.mounts import set_propagation, unmount_all
from dockyard.linux.syscalls import mount
from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import Daemon, busybox_archive, docker_load
from tests.containers.conftest import runtime_daemon
from tests.containers.engine_api import Api

IMAGE = "busybox"


def docker(host: str, *args: str, input: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [docker_cli(), *args], env=docker_env(host), capture_output=True, input=input, timeout=60
    )


def unique(what: str) -> str:
    return f"binds-{what}-{secrets.token_hex(3)}"


@contextlib.contextmanager
def shared_tree(base: Path) -> Iterator[Path]:
    """``base/shared``: a tmpfs made a shared mount, with ``a/sub``, ``b/sub`` and, at
    ``b/nested``, a tmpfs of its own holding a file ``inside``. Unmounted, with whatever
    containers and tests mounted below it, afterwards."""
    root = base / "shared"
    root.mkdir()
    mount("binds-tree", str(root), "tmpfs", 0, None)
    try:
        set_propagation(str(root), "shared")
        for directory in ("a/sub", "b/sub", "b/nested"):
            (root / directory).mkdir(parents=True)
        mount("binds-nested", str(root / "b" / "nested"), "tmpfs", 0, None)
        (root / "b" / "nested" / "inside").touch()
        yield root
    finally:
        unmount_all(str(root))  # lazily, with every mount below it


@pytest.fixture(scope="module", params=["namespaces", "runc"])
def daemon(request, tmp_path_factory) -> Iterator[Daemon]:
    base = tmp_path_factory.mktemp(f"binds-{request.param}")
    with runtime_daemon(base, request.param, "binds") as (serving, _parent):
        docker_load(serving.host, busybox_archive(base))
        yield serving


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Iterator[Path]:
    with shared_tree(tmp_path_factory.mktemp("binds-tree")) as root:
        yield root


def data_root(host: str) -> str:
    return docker(host, "info", "-f", "{{.DockerRootDir}}").stdout.decode().strip()


# --------------------------------------------------------------------------------------------
# Propagation and recursion, applied
# --------------------------------------------------------------------------------------------

#: /a shared both ways, /b a non-recursive slave, /c a slave, /d private (the default).
PROPAGATED = ("-v", "{tree}/a:/a:rshared",
              "--mount", "type=bind,src={tree}/b,dst=/b,bind-propagation=rslave,"
                         "bind-nonrecursive=true",
              "-v", "{tree}/b:/c:slave", "-v", "{tree}/b:/d")  # fmt: skip
#: The container's mount points below the binds, and their propagation (shared, master or -).
LIST_BELOW = (
    'awk \'$5 ~ "^/[a-d]/" { kind = "-"; for (i = 7; $i != "-"; i++) { split($i, f, ":");'
    " kind = f[1] } print $5, kind }' /proc/self/mountinfo | sort"
)


def propagation_seen(host: str, tree: Path) -> dict[str, Any]:
    """Run a container with PROPAGATED's binds; mount a tmpfs in it at /a/sub, and one on the
    host at ``tree/b/sub``: what each side then sees."""
    name = unique("propagation")
    flags = [flag.format(tree=tree) for flag in PROPAGATED]
    started = docker(host, "run", "-d", "--name", name, "--cap-add", "SYS_ADMIN", *flags,
                     IMAGE, "sleep", "60")  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        made = docker(host, "exec", name, "mount", "-t", "tmpfs", "binds-in-ctr", "/a/sub")
        assert made.returncode == 0, made.stderr
        on_host = os.path.ismount(tree / "a" / "sub")
        mount("binds-on-host", str(tree / "b" / "sub"), "tmpfs", 0, None)
        listed = docker(host, "exec", name, "sh", "-c", LIST_BELOW + "; ls /b/nested /c/nested")
        assert listed.returncode == 0, listed.stderr
        below, _, nested = listed.stdout.decode().partition("/b/nested:")
        return {
            "container's mount on the host": on_host,
            "below the binds": below.splitlines(),
            "nested": nested.split(),
        }
    finally:
        docker(host, "rm", "-f", name)
        unmount_all(str(tree / "a" / "sub"))
        unmount_all(str(tree / "b" / "sub"))


#: What dockerd 20.10 shows for PROPAGATED (the bind below /c and /d keeps its own peer group).
PROPAGATION_AS_DOCKERD = {
    "container's mount on the host": True,
    "below the binds": [
        "/a/sub shared",
        "/b/sub master",
        "/c/nested shared",
        "/c/sub master",
        "/d/nested -",
    ],
    "nested": ["/c/nested:", "inside"],
}


def test_propagation_and_recursion_are_applied_as_asked(daemon, tree):
    assert propagation_seen(daemon.host, tree) == PROPAGATION_AS_DOCKERD


def test_a_bind_of_the_data_root_runs(daemon):
    root = data_root(daemon.host)
    ran = docker(daemon.host, "run", "--rm", "-v", f"{root}:/r", IMAGE, "ls", "/r/containers")
    assert ran.returncode == 0, ran.stderr


def test_cp_from_a_stopped_container_keeps_a_bind_non_recursive(daemon, tree):
    name = unique("cp")
    created = docker(daemon.host, "create", "--name", name, "-v", f"{tree}/b:/c",
                     "--mount", f"type=bind,src={tree}/b,dst=/b,bind-nonrecursive=true",
                     IMAGE, "true")  # fmt: skip
    assert created.returncode == 0, created.stderr
    try:
        names = {}
        for path in ("/b/nested", "/c/nested"):
            copied = docker(daemon.host, "cp", f"{name}:{path}", "-")
            assert copied.returncode == 0, copied.stderr
            with tarfile.open(fileobj=io.BytesIO(copied.stdout)) as tar:
                names[path] = tar.getnames()
        assert names == {"/b/nested": ["nested"], "/c/nested": ["nested", "nested/inside"]}
    finally:
        docker(daemon.host, "rm", name)


# --------------------------------------------------------------------------------------------
# What inspect shows
# --------------------------------------------------------------------------------------------

SHOWN = ("-v", "{tree}/a:/a:ro,rshared",
         "--mount", "type=bind,src={tree}/b,dst=/b,bind-propagation=rslave,bind-nonrecursive=true",
         "-v", "{root}:/root1", "--mount", "type=bind,src={root},dst=/root2",
         "-v", "{root}/..:/above:rshared", "-v", "{tree}:/p", "-v", "binds-shown:/nv:nocopy",
         "-v", "{tree}/b:/cached:ro,cached")  # fmt: skip


def mounts_shown(host: str, tree: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """inspect's Mounts (by destination; the data root, its parent and the tree's path replaced
    by ``<root>``, ``<above>``, ``<tree>``) for a container with SHOWN's mounts, then for one taking them
    with ``--volumes-from``."""
    root = data_root(host)
    flags = [flag.format(tree=tree, root=root) for flag in SHOWN]
    first = docker(host, "create", *flags, IMAGE, "true")
    assert first.returncode == 0, first.stderr
    second = docker(host, "create", "--volumes-from", first.stdout.decode().strip(), IMAGE, "true")
    assert second.returncode == 0, second.stderr
    shown = []
    try:
        for created in (first, second):
            inspected = docker(host, "inspect", "-f", "{{json .Mounts}}", created.stdout.strip())
            text = inspected.stdout.decode().replace(root, "<root>")
            text = text.replace(os.path.dirname(root), "<above>").replace(str(tree), "<tree>")
            shown.append(sorted(json.loads(text), key=lambda m: m["Destination"]))
    finally:
        docker(host, "rm", second.stdout.decode().strip(), first.stdout.decode().strip())
        docker(host, "volume", "rm", "binds-shown")
    return shown[0], shown[1]


def bind(destination: str, source: str, propagation: str, mode: str = "", rw: bool = True):
    return {"Type": "bind", "Source": source, "Destination": destination, "Mode": mode,
            "RW": rw, "Propagation": propagation}  # fmt: skip


def test_inspect_shows_the_modes_and_propagations_dockerd_shows(daemon, tree):
    first, second = mounts_shown(daemon.host, tree)
    volume = {"Type": "volume", "Name": "binds-shown", "Driver": "local", "Destination": "/nv",
              "Source": "<root>/volumes/binds-shown/_data", "RW": True, "Propagation": ""}  # fmt: skip
    assert first == [
        bind("/a", "<tree>/a", "rshared", "ro,rshared", rw=False),
        bind("/above", "<above>", "rshared", "rshared"),
        bind("/b", "<tree>/b", "rslave"),
        bind("/cached", "<tree>/b", "rprivate", "ro,cached", rw=False),
        {**volume, "Mode": "nocopy"},
        bind("/p", "<tree>", "rprivate"),
        bind("/root1", "<root>", "rslave"),
        bind("/root2", "<root>", "rslave"),
    ]
    # --volumes-from: the same propagations, no modes.
    assert second == [{**mount, "Mode": ""} for mount in first]


# --------------------------------------------------------------------------------------------
# Refused
# --------------------------------------------------------------------------------------------

REFUSED_AT_CREATE = [
    (["-v", "binds-vol:/x:shared"], "invalid volume specification: 'binds-vol:/x:shared': "
     'invalid mount config for type "volume": field BindOptions must not be specified'),
    (["-v", "{tree}:/x:shared,slave"], "invalid mode: shared,slave"),
    (["-v", "{tree}:/x:nocopy"], "invalid volume specification: '{tree}:/x:nocopy': invalid "
     'mount config for type "bind": field VolumeOptions must not be specified'),
    (["--mount", "type=bind,src={tree},dst=/x,bind-propagation=bogus"],
     'invalid mount config for type "bind": invalid propagation mode: bogus'),
    (["-v", "{root}:/x:private"], 'invalid mount config: must use either propagation mode '
     '"rslave" or "rshared" when mount source is within the daemon root, daemon root: '
     '"{root}", bind mount source: "{root}", propagation: "private"'),
    (["--volumes-from", "binds-none:shared"], "invalid mode: shared"),
]  # fmt: skip


def refusal(host: str, tree: Path, flags: list[str]) -> str:
    """The first line docker prints for a refused ``run`` with ``flags`` (the data root, the
    tree's path as ``<root>``, ``<tree>``)."""
    root = data_root(host)
    args = [flag.format(tree=tree, root=root) for flag in flags]
    ran = docker(host, "run", "--rm", *args, IMAGE, "true")
    assert ran.returncode == 125, ran.stderr
    first = ran.stderr.decode().strip().splitlines()[0]
    return first.replace(root, "<root>").replace(str(tree), "<tree>")


@pytest.mark.parametrize("flags, message", REFUSED_AT_CREATE)
def test_bad_binds_are_refused(daemon, tree, flags, message):
    expected = message.replace("{tree}", "<tree>").replace("{root}", "<root>")
    shown = refusal(daemon.host, tree, flags)
    if flags[0] == "--volumes-from":
        # Our message names the field (dockerd's says only "invalid mode: shared").
        expected = "HostConfig.VolumesFrom: " + expected
    assert shown == "docker: Error response from daemon: " + expected


@pytest.mark.parametrize(
    "flag, word", [("{src}:/x:rshared", "a shared"), ("{src}:/x:slave", "a shared or slave")]
)
def test_start_refuses_a_source_mount_that_cannot_propagate(daemon, tmp_path, flag, word):
    api = Api(daemon)
    container = api.create(["true"], HostConfig={"Binds": [flag.format(src=tmp_path)]})
    reply = api.call("POST", f"/containers/{container}/start")
    message = f"path {tmp_path} is mounted on / but it is not {word} mount"
    assert (reply.status, reply.json()) == (500, {"message": message})
    state = api.inspect(container)["State"]
    assert (state["Status"], state["ExitCode"], state["Error"]) == ("created", 128, message)
    api.call("DELETE", f"/containers/{container}")


# --------------------------------------------------------------------------------------------
# Masked and read-only paths
# --------------------------------------------------------------------------------------------

#: How many of the paths dockerd masks or makes read-only by default are mounted over.
COUNT_RESTRICTED = (
    "grep -cE ' /proc/(kcore|keys|timer_list|sched_debug|asound|bus|fs|irq|sys|sysrq-trigger) '"
    " /proc/self/mountinfo; true"
)


def restricted_counts(api: Api) -> list[int]:
    """COUNT_RESTRICTED with the default lists, an empty MaskedPaths, an empty ReadonlyPaths,
    and both empty."""
    counts = []
    for lists in ({}, {"MaskedPaths": []}, {"ReadonlyPaths": []},
                  {"MaskedPaths": [], "ReadonlyPaths": []}):  # fmt: skip
        code, out, err = api.run(["sh", "-c", COUNT_RESTRICTED], HostConfig=lists)
        assert code == 0, err
        counts.append(int(out))
    return counts


def test_empty_masked_and_read_only_lists_restrict_nothing(daemon):
    defaults, no_masks, no_read_only, none = restricted_counts(Api(daemon))
    assert none == 0 and 0 < no_masks < defaults and 0 < no_read_only < defaults
