"""Real clients against ``dockyard registry``: skopeo and a real Docker daemon."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard.testing.images import busybox_rootfs, image_archive, layer_tar

pytestmark = pytest.mark.interop


def fs_config(root: Path) -> str:
    return (
        f'[registry]\ndata-root = "{root}/state"\n[registries.filesystem]\nroot = "{root}/data"\n'
    )


def skopeo(*args: str) -> subprocess.CompletedProcess:
    if shutil.which("skopeo") is None:
        pytest.fail("skopeo is not installed (apt-get install skopeo)")
    result = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"skopeo {' '.join(args)} failed: {result.stderr}"
    return result


def three_layers() -> list[bytes]:
    return [
        busybox_rootfs(compress=True),
        layer_tar({"etc/motd": b"hello from dockyard\n"}, compress=True),
        layer_tar({"data": None, "data/blob.bin": bytes(range(256)) * 4096}),
    ]


def test_skopeo_copy_inspect_list_tags_delete(tmp_path, registry_process, client_for):
    server = registry_process(fs_config(tmp_path))
    client = client_for(server.url)
    layers = three_layers()
    archive = tmp_path / "image.tar"
    archive.write_bytes(image_archive(layers, ["busy:1"], layout="docker"))
    target = f"docker://{server.host}/interop/busy"
    skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", f"{target}:1")
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "oci",
        f"docker-archive:{archive}",
        f"{target}:oci",
    )
    # An OCI layout directory as the source, too.
    oci_dir = tmp_path / "oci"
    oci_dir.mkdir()
    oci_tar = tmp_path / "oci.tar"
    oci_tar.write_bytes(image_archive(layers[:2], [], layout="oci"))
    with tarfile.open(oci_tar) as tar:
        tar.extractall(oci_dir, filter="data")
    skopeo("copy", "--dest-tls-verify=false", f"oci:{oci_dir}", f"{target}:from-oci")

    inspect = json.loads(skopeo("inspect", "--tls-verify=false", f"{target}:1").stdout)
    assert len(inspect["Layers"]) == 3
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"{target}:oci").stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", target).stdout)
    assert sorted(tags["Tags"]) == ["1", "from-oci", "oci"]
    # Round trip back out, and compare the layers byte for byte.
    out = tmp_path / "out"
    skopeo("copy", "--src-tls-verify=false", f"{target}:1", f"dir:{out}")
    manifest = json.loads((out / "manifest.json").read_text())
    for descriptor in manifest["layers"]:
        blob = (out / descriptor["digest"].split(":")[1]).read_bytes()
        assert client.digest(blob) == descriptor["digest"]
    # Copy between two repositories of the same registry: blobs are mounted, not re-sent.
    skopeo(
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        f"{target}:1",
        f"docker://{server.host}/interop/copy:1",
    )
    skopeo("delete", "--tls-verify=false", f"{target}:oci")
    tags = json.loads(skopeo("list-tags", "--tls-verify=false", target).stdout)
    assert "oci" not in tags["Tags"]
    reply = client.request("GET", "/v2/_catalog").json()
    assert reply["repositories"] == ["interop/busy", "interop/copy"]
    assert server.server_errors() == []


def test_docker_push_and_pull_multi_layer_image(tmp_path, registry_process, real_dockerd):
    server = registry_process(fs_config(tmp_path))
    reference = f"{server.host}/interop/docker:v1"
    archive = tmp_path / "image.tar"
    archive.write_bytes(image_archive(three_layers(), [reference], layout="docker"))
    real_dockerd.docker("load", "-i", str(archive))
    original = json.loads(real_dockerd.docker("image", "inspect", reference).stdout)[0]
    pushed = real_dockerd.docker("push", reference)
    assert "digest: sha256:" in pushed.stdout
    real_dockerd.docker("rmi", reference)
    pulled = real_dockerd.docker("pull", reference)
    assert "Downloaded newer image" in pulled.stdout or "Pull complete" in pulled.stdout
    again = json.loads(real_dockerd.docker("image", "inspect", reference).stdout)[0]
    assert again["Id"] == original["Id"]
    assert again["RootFS"]["Layers"] == original["RootFS"]["Layers"]
    assert len(again["RootFS"]["Layers"]) == 3
    # A second push finds every layer there already.
    second = real_dockerd.docker("push", reference)
    assert "Layer already exists" in second.stdout
    # A tag in another repository mounts the layers.
    other = f"{server.host}/interop/other:v2"
    real_dockerd.docker("tag", reference, other)
    mounted = real_dockerd.docker("push", other)
    assert "Mounted from interop/docker" in mounted.stdout
    real_dockerd.docker("rmi", reference, other)
    assert server.server_errors() == []
