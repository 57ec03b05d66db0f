"""Other local users cannot read what containers leave in the data root.

The data root lives in a directory anyone may search (pytest's temp dirs are 0700, which
would refuse everyone whatever our modes are): a reader is refused by our modes or not at all.
Readers are the ``nobody`` user, run with ``subprocess``'s ``user``/``group``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive
from dockyard.testing.peers import RealDockerd
from tests.conftest import (
    Daemon,
    daemon_in,
    restarted,
    serving,
    shut_down,
)
from tests.containers.engine_api import Api

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="containers need root")

NOBODY = pwd.getpwnam("nobody")

#: What the daemon sets, by path below the data root ("<id>": a container, "<volume>": a
#: named volume), and the path of the same thing under dockerd 20.10's data root.
MODES = {
    ".": (0o710, "."),
    "containers": (0o710, "containers"),
    "containers/<id>": (0o710, "containers/<id>"),
    "containers/<id>/container.log": (0o640, "containers/<id>/<id>-json.log"),
    "containers/<id>/container.json": (0o600, "containers/<id>/config.v2.json"),
    "containers/<id>/hosts": (0o644, "containers/<id>/hosts"),
    "containers/<id>/hostname": (0o644, "containers/<id>/hostname"),
    "containers/<id>/resolv.conf": (0o644, "containers/<id>/resolv.conf"),
    "volumes": (0o701, "volumes"),
    "volumes/<volume>": (0o701, "volumes/<volume>"),
    "volumes/<volume>/_data": (0o755, "volumes/<volume>/_data"),
    "image": (0o700, "image"),
}
#: Ours only: the spec the supervisor reads holds the environment; the blob store.
OUR_MODES = {"containers/<id>/spec.json": 0o600, "content": 0o700}

SECRET_SCRIPT = "echo top-secret-output; echo top-secret-file > /vol/secret"


def as_nobody(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv,
        user=NOBODY.pw_uid,
        group=NOBODY.pw_gid,
        extra_groups=[],
        capture_output=True,
        text=True,
        timeout=10,
    )


@contextlib.contextmanager
def searchable_base() -> Iterator[Path]:
    """A temp directory anyone may search, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="dockyard-private-"))
    try:
        base.chmod(0o711)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def start(base: Path, umask: int = 0o022) -> Daemon:
    """A daemon on ``base/root``, started with ``umask``."""
    previous = os.umask(umask)  # the daemon inherits it
    try:
        daemon = daemon_in(base)
    finally:
        os.umask(previous)
    return serving(daemon)


@pytest.fixture
def private_daemon() -> Iterator[Api]:
    with searchable_base() as base:
        daemon = start(base)
        try:
            yield Api.with_busybox(daemon)
        finally:
            shut_down(daemon)


def run_secret_container(api: Api) -> str:
    """A container that wrote a log line and a file in the named volume ``vault``."""
    code, out, err = api.run(["sh", "-c", SECRET_SCRIPT], HostConfig={"Binds": ["vault:/vol"]})
    assert (code, out) == (0, b"top-secret-output\n"), err
    return api.call("GET", "/containers/json?all=1").json()[0]["Id"]


def paths(root: Path, container: str) -> dict[str, Path]:
    def resolve(pattern: str) -> Path:
        return root / pattern.replace("<id>", container).replace("<volume>", "vault")

    return {pattern: resolve(pattern) for pattern in [*MODES, *OUR_MODES]}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def assert_modes(root: Path, container: str) -> None:
    expected = {p: m for p, (m, _) in MODES.items()} | OUR_MODES
    found = {pattern: mode(path) for pattern, path in paths(root, container).items()}
    assert {p: oct(m) for p, m in found.items()} == {p: oct(m) for p, m in expected.items()}


def test_other_users_cannot_read_logs_volumes_or_the_data_root(private_daemon):
    api = private_daemon
    root = api.daemon.data_root
    container = run_secret_container(api)
    log = root / "containers" / container / "container.log"
    secret = root / "volumes" / "vault" / "_data" / "secret"
    # The set-up lets nobody in where our modes do not stop it.
    probe = root.parent / "probe"
    probe.write_text("readable\n")
    probe.chmod(0o644)
    assert as_nobody("cat", str(probe)).stdout == "readable\n"

    def refused(*argvs: tuple[str, ...]) -> None:
        for argv in argvs:
            result = as_nobody(*argv)
            assert result.returncode != 0, (argv, result.stdout)
            assert "Permission denied" in result.stderr, (argv, result.stderr)
            assert "top-secret" not in result.stdout

    contents = [("cat", str(log)), ("cat", str(root / "containers" / container / "spec.json"))]
    listings = [("ls", str(root / "containers")), ("ls", str(root / "volumes"))]
    refused(("ls", str(root)), ("cat", str(secret)), *contents, *listings)
    # The layers below hold on their own, as dockerd's do: with the data root opened up,
    # containers' files stay unreadable and the volumes cannot be listed.
    root.chmod(0o755)
    try:
        refused(*contents, *listings)
    finally:
        root.chmod(0o710)
    assert_modes(root, container)


def test_modes_do_not_depend_on_the_umask(tmp_path):
    for umask in (0o000, 0o077):
        with searchable_base() as base:
            daemon = start(base, umask)
            try:
                api = Api.with_busybox(daemon)
                container = run_secret_container(api)
                assert_modes(daemon.data_root, container)
                # The container's /etc files stay readable to its other users.
                code, out, err = api.run(["cat", "/etc/hostname", "/etc/hosts"], User="65534")
                assert code == 0 and b"localhost" in out, (oct(umask), err)
            finally:
                shut_down(daemon)


def test_a_data_root_from_an_earlier_version_is_tightened_at_start(private_daemon):
    api = private_daemon
    daemon = api.daemon
    root = daemon.data_root
    container = run_secret_container(api)
    log = root / "containers" / container / "container.log"
    rotated = log.with_name("container.log.1")
    rotated.write_text("")
    daemon.process.kill()
    daemon.process.wait()
    # As versions before this one left them.
    for directory in (root, root / "containers", root / "containers" / container):
        directory.chmod(0o755)
    for path in (root / "volumes", root / "volumes" / "vault", root / "image", root / "content"):
        path.chmod(0o755)
    for path in (log, rotated, log.with_name("spec.json"), log.with_name("supervisor.log")):
        path.chmod(0o644)
    with restarted(daemon):
        assert_modes(root, container)
        assert mode(rotated) == mode(log.with_name("supervisor.log")) == 0o640


@pytest.mark.interop
def test_modes_match_dockerds(private_daemon, real_dockerd: RealDockerd, tmp_path):
    ours = run_secret_container(private_daemon)
    archive = tmp_path / "busybox.tar"
    archive.write_bytes(image_archive([busybox_rootfs()], ["busybox:latest"]))
    real_dockerd.docker("load", "-i", str(archive))
    real_dockerd.docker("volume", "rm", "-f", "vault", check=False)
    theirs = real_dockerd.docker(
        "run", "-d", "-v", "vault:/vol", "busybox", "sh", "-c", SECRET_SCRIPT
    ).stdout.strip()
    try:
        assert real_dockerd.docker("wait", theirs).stdout.strip() == "0"
        our_root, their_root = private_daemon.daemon.data_root, real_dockerd.root / "data"
        for pattern, (_, their_pattern) in MODES.items():
            our_path = paths(our_root, ours)[pattern]
            their_path = their_root / their_pattern.replace("<id>", theirs).replace(
                "<volume>", "vault"
            )
            assert oct(mode(our_path)) == oct(mode(their_path)), (pattern, their_pattern)
        # What a container writes into a volume keeps the container's modes under both.
        our_file = our_root / "volumes" / "vault" / "_data" / "secret"
        their_file = their_root / "volumes" / "vault" / "_data" / "secret"
        assert mode(our_file) == mode(their_file)
    finally:
        real_dockerd.docker("rm", "-f", theirs, check=False)
        real_dockerd.docker("volume", "rm", "-f", "vault", check=False)
