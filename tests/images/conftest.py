"""Image fixtures: layer tars and archives built from files and a static busybox."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.testing.images import busybox_rootfs, layer_tar, sha256
from dockyard.testing.images import image_archive as docker_archive

__all__ = ["busybox_rootfs", "docker_archive", "layer_tar", "sha256"]


@pytest.fixture
def rootfs_tar(tmp_path) -> Path:
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(busybox_rootfs(compress=True))
    return path
