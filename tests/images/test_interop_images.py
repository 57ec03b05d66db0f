"""The real docker CLI, docker-py and a real dockerd exchanging images with our daemon."""

from __future__ import annotations

import io
import os
import subprocess

import docker
import pytest

from tests.conftest import docker_cli
from tests.images.conftest import busybox_rootfs

pytestmark = pytest.mark.interop


def docker_against(
    daemon, *args: str, input: bytes | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_HOST"] = daemon.host
    result = subprocess.run(
        [docker_cli(), *args], env=env, capture_output=True, input=input, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


def test_docker_cli_image_flow(daemon, tmp_path):
    rootfs = tmp_path / "rootfs.tar.gz"
    rootfs.write_bytes(busybox_rootfs(compress=True))
    imported = docker_against(
        daemon,
        "import",
        "-c",
        'CMD ["/bin/sh"]',
        "-c",
        "ENV GREETING=hi",
        "-m",
        "from a tarball",
        str(rootfs),
        "busybox:latest",
    )
    image_id = imported.stdout.decode().strip()
    assert image_id.startswith("sha256:")
    listing = docker_against(daemon, "images").stdout.decode().splitlines()
    assert listing[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert listing[1].split()[:3] == ["busybox", "latest", image_id[7:19]]
    docker_against(daemon, "tag", "busybox", "127.0.0.1:5001/busybox:spy")
    only = (
        docker_against(daemon, "images", "busybox", "--format", "{{.Repository}}:{{.Tag}}")
        .stdout.decode()
        .split()
    )
    assert only == ["busybox:latest"]
    inspected = docker_against(
        daemon,
        "image",
        "inspect",
        "-f",
        "{{.Id}} {{.Config.Cmd}} {{.Config.Env}} {{.Comment}}",
        "127.0.0.1:5001/busybox:spy",
    )
    assert inspected.stdout.decode().strip() == f"{image_id} [/bin/sh] [GREETING=hi] from a tarball"
    history = docker_against(daemon, "history", "busybox").stdout.decode()
    assert "from a tarball" in history
    saved = docker_against(daemon, "save", "busybox").stdout
    untag = docker_against(daemon, "rmi", "127.0.0.1:5001/busybox:spy").stdout.decode()
    assert untag.strip() == "Untagged: 127.0.0.1:5001/busybox:spy"
    removed = docker_against(daemon, "rmi", "busybox").stdout.decode().splitlines()
    # Then its one layer, as dockerd lists what it deletes.
    assert removed[:2] == ["Untagged: busybox:latest", f"Deleted: {image_id}"]
    assert len(removed) == 3 and removed[2].startswith("Deleted: sha256:")
    loaded = docker_against(daemon, "load", input=saved).stdout.decode()
    assert loaded.strip() == "Loaded image: busybox:latest"
    assert (
        docker_against(daemon, "image", "inspect", "-f", "{{.Id}}", "busybox")
        .stdout.decode()
        .strip()
        == image_id
    )
    missing = docker_against(daemon, "rmi", "nope", check=False)
    assert missing.returncode == 1
    assert b"Error response from daemon: No such image: nope:latest" in missing.stderr


def test_docker_py_images(daemon):
    client = docker.DockerClient(base_url=daemon.host)
    try:
        client.api.import_image(src=io.BytesIO(busybox_rootfs()), repository="pyimg", tag="1")
        (image,) = client.images.list()
        assert image.tags == ["pyimg:1"]
        assert client.images.get("pyimg:1").id == image.id
        assert image.tag("pyimg", "2") is True
        data = b"".join(image.save())
        client.images.remove("pyimg:1")
        client.images.remove("pyimg:2")
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("pyimg:1")
        (loaded,) = client.images.load(data)
        assert loaded.id == image.id
        assert loaded.labels == {}
    finally:
        client.close()


def test_archives_move_between_real_dockerd_and_ours(daemon, real_dockerd, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(busybox_rootfs(extra={"hello.txt": b"from dockerd\n"}))
    real_dockerd.docker("import", "-c", 'CMD ["/bin/cat", "/hello.txt"]', str(rootfs), "fromreal:1")
    real_archive = tmp_path / "real.tar"
    real_dockerd.docker("save", "-o", str(real_archive), "fromreal:1")
    real_id = real_dockerd.docker("image", "inspect", "-f", "{{.Id}}", "fromreal:1").stdout.strip()
    docker_against(daemon, "load", "-i", str(real_archive))
    assert (
        docker_against(daemon, "image", "inspect", "-f", "{{.Id}}", "fromreal:1")
        .stdout.decode()
        .strip()
        == real_id
    )

    ours = tmp_path / "ours.tar.gz"
    ours.write_bytes(busybox_rootfs(extra={"hello.txt": b"from dockyard\n"}, compress=True))
    docker_against(
        daemon, "import", "-c", 'CMD ["/bin/cat", "/hello.txt"]', str(ours), "fromours:1"
    )
    our_archive = tmp_path / "ours-saved.tar"
    docker_against(daemon, "save", "-o", str(our_archive), "fromours:1")
    real_dockerd.docker("load", "-i", str(our_archive))
    ran = real_dockerd.docker("run", "--rm", "--network", "none", "fromours:1")
    assert ran.stdout == "from dockyard\n"
