"""``dockyard cp``, ``diff``, ``commit`` and ``export`` against a real daemon."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile

import pytest

from tests.conftest import plugin_env, run_dockyard
from tests.containerfs.conftest import start_ready
from tests.containers.engine_api import Api


@pytest.fixture(scope="module")
def cli(shared_daemon):
    def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return run_dockyard(["-H", shared_daemon.host, *args], env=plugin_env([]), **kwargs)

    return run


@pytest.fixture(scope="module")
def box(api: Api) -> str:
    container = start_ready(api, "mkdir -p /tmp/dir/sub; echo y > /tmp/dir/sub/y.txt;")
    yield container
    api.call("DELETE", f"/containers/{container}?force=1")


def test_cp_out_of_a_container(cli, box, tmp_path):
    done = cli("cp", f"{box}:/tmp/dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "dir/sub/y.txt").read_text() == "y\n"
    assert "Successfully copied" in done.stderr
    # a destination that does not exist: the directory is renamed
    assert cli("cp", f"{box}:/tmp/dir", str(tmp_path / "renamed")).returncode == 0
    assert (tmp_path / "renamed/sub/y.txt").read_text() == "y\n"
    # /. copies the contents
    (tmp_path / "contents").mkdir()
    assert cli("cp", f"{box}:/tmp/dir/.", str(tmp_path / "contents")).returncode == 0
    assert (tmp_path / "contents/sub/y.txt").exists()
    # a file onto a new name
    assert cli("cp", f"{box}:/etc/passwd", str(tmp_path / "pw")).returncode == 0
    assert (tmp_path / "pw").read_text().startswith("root:")


def test_cp_to_stdout_and_missing_paths(cli, box, shared_daemon):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dockyard",
            "-H",
            shared_daemon.host,
            "cp",
            f"{box}:/tmp/dir/sub/y.txt",
            "-",
        ],
        capture_output=True,
        env=plugin_env([]),
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        assert archive.getnames() == ["y.txt"]
    missing = cli("cp", f"{box}:/nope", "/tmp")
    assert missing.returncode != 0
    assert f"Could not find the file /nope in container {box}" in missing.stderr


def test_cp_into_a_container(cli, api, box, tmp_path, shared_daemon):
    (tmp_path / "file.txt").write_text("local\n")
    (tmp_path / "srcdir/sub").mkdir(parents=True)
    (tmp_path / "srcdir/sub/b.txt").write_text("b\n")
    assert cli("cp", str(tmp_path / "file.txt"), f"{box}:/tmp/").returncode == 0
    assert cli("cp", str(tmp_path / "file.txt"), f"{box}:/tmp/renamed.txt").returncode == 0
    done = cli("cp", str(tmp_path / "srcdir"), f"{box}:/tmp/")
    assert done.returncode == 0, done.stderr
    code, out, _ = api.exec(
        box, ["cat", "/tmp/file.txt", "/tmp/renamed.txt", "/tmp/srcdir/sub/b.txt"]
    )
    assert (code, out) == (0, b"local\nlocal\nb\n")
    # ownership: root's without -a
    code, out, _ = api.exec(box, ["ls", "-ln", "/tmp/file.txt"])
    assert out.split()[2:4] == [b"0", b"0"]
    # - reads a tar from stdin
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("from-stdin.txt")
        info.size = 3
        archive.addfile(info, io.BytesIO(b"in\n"))
    done = subprocess.run(
        [sys.executable, "-m", "dockyard", "-H", shared_daemon.host, "cp", "-", f"{box}:/tmp"],
        input=buffer.getvalue(),
        capture_output=True,
        env=plugin_env([]),
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert api.exec(box, ["cat", "/tmp/from-stdin.txt"])[1] == b"in\n"
    # a directory that does not exist
    missing = cli("cp", str(tmp_path / "file.txt"), f"{box}:/no/such/")
    assert missing.returncode != 0


def test_diff_commit_export(cli, api, box, tmp_path):
    diff = cli("diff", box)
    assert diff.returncode == 0, diff.stderr
    lines = diff.stdout.splitlines()
    assert "C /tmp" in lines and "A /tmp/dir" in lines and "A /tmp/dir/sub/y.txt" in lines
    done = cli(
        "commit", "-a", "me", "-m", "msg", "-c", "ENV Z=1", "-c", 'CMD ["x"]', box, "clicommit:v1"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("sha256:")
    image = api.call("GET", "/images/clicommit:v1/json").json()
    assert image["Author"] == "me" and image["Config"]["Cmd"] == ["x"]
    output = tmp_path / "exp.tar"
    done = cli("export", "-o", str(output), box)
    assert done.returncode == 0, done.stderr
    with tarfile.open(output) as archive:
        assert "tmp/dir/sub/y.txt" in archive.getnames()
    assert cli("diff", "nosuch").returncode != 0


def test_cp_follow_link_sends_the_target_under_the_links_name(cli, api, box, tmp_path):
    (tmp_path / "target.txt").write_text("target\n")
    (tmp_path / "link").symlink_to(tmp_path / "target.txt")
    assert cli("cp", str(tmp_path / "link"), f"{box}:/tmp/plainlink").returncode == 0
    assert cli("cp", "-L", str(tmp_path / "link"), f"{box}:/tmp/").returncode == 0
    assert cli("cp", "-L", str(tmp_path / "link"), f"{box}:/tmp/renamedlink").returncode == 0
    code, out, _ = api.exec(
        box, ["sh", "-c", "cat /tmp/link /tmp/renamedlink; ls -l /tmp/plainlink"]
    )
    lines = out.decode().splitlines()
    assert lines[:2] == ["target", "target"] and lines[2].startswith("l")
