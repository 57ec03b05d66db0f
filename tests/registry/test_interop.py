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
    # And by digest, as the push reported it.
    digest = pushed.stdout.split("digest: ")[1].split()[0]
    by_digest = f"{server.host}/interop/docker@{digest}"
    real_dockerd.docker("pull", by_digest)
    pinned = json.loads(real_dockerd.docker("image", "inspect", by_digest).stdout)[0]
    assert pinned["Id"] == original["Id"]
    real_dockerd.docker("rmi", by_digest)
    assert server.server_errors() == []


def oci_layout_with_index(directory: Path) -> str:
    """An OCI layout whose index.json points at a two-platform image index; returns its digest."""
    import hashlib

    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": f"sha256:{digest}", "size": len(data)}

    manifests = []
    for architecture in ("amd64", "arm64"):
        layer = layer_tar({"arch": architecture.encode()}, compress=True)
        diff_id = "sha256:" + hashlib.sha256(layer_tar({"arch": architecture.encode()})).hexdigest()
        config = json.dumps({"architecture": architecture, "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()  # fmt: skip
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put(layer)}],
        }).encode()  # fmt: skip
        manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json",
                          **put(manifest), "platform": {"architecture": architecture, "os": "linux"}})  # fmt: skip
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": manifests}).encode()  # fmt: skip
    descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json", **put(index)}
    (directory / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (directory / "index.json").write_text(
        json.dumps({"schemaVersion": 2, "manifests": [descriptor]})
    )
    return descriptor["digest"]


def test_skopeo_copies_a_multi_platform_index(tmp_path, registry_process, client_for):
    server = registry_process(fs_config(tmp_path))
    client = client_for(server.url)
    digest = oci_layout_with_index(tmp_path / "layout")
    target = f"docker://{server.host}/interop/multi:latest"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}", target)
    raw = skopeo("inspect", "--raw", "--tls-verify=false", target).stdout
    assert client.digest(raw.encode()) == digest
    index = json.loads(raw)
    for child in index["manifests"]:
        reply = client.request("GET", f"/v2/interop/multi/manifests/{child['digest']}")
        assert reply.status_code == 200
    arm = json.loads(skopeo("inspect", "--tls-verify=false", "--override-arch", "arm64",
                            target).stdout)  # fmt: skip
    assert arm["Architecture"] == "arm64"
    out = tmp_path / "back"
    skopeo("copy", "--all", "--src-tls-verify=false", target, f"oci:{out}")
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == digest
    assert server.server_errors() == []
