"""The chain of the issue: the CNCF registry (Debian's ``docker-registry``) → ``dockyard
registry`` as its pull-through cache → ``dockyard daemon``, which pulls an image that only the
CNCF registry holds and runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.distribution.images import busybox_image, push
from tests.distribution.test_pull import inspect, messages, pull, run_echo, succeeded
from tests.registry.test_processes import fs_config

pytestmark = pytest.mark.interop


def test_our_daemon_pulls_through_our_proxy_from_the_cncf_registry_and_runs_it(
    tmp_path: Path, cncf_registry, registry_process, daemon
):
    image = busybox_image(extra=1, cmd="echo hello through the proxy")
    push(cncf_registry.url, "x/busybox", "1", image)
    proxy_table = f'[registry.proxy]\nremote-url = "{cncf_registry.url}"\ntag-ttl = 60\n'
    proxy = registry_process(fs_config(tmp_path / "proxy") + proxy_table)
    found = messages(pull(daemon, f"{proxy.host}/x/busybox", "1"))
    succeeded(found)
    assert inspect(daemon, f"{proxy.host}/x/busybox:1")["Id"] == image.image_id
    assert run_echo(daemon, f"{proxy.host}/x/busybox:1") == "hello through the proxy\n"
    # The proxy kept everything: with the CNCF registry gone it still serves the image.
    cncf_registry.stop()
    url = f"{proxy.url}/v2/x/busybox"
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    assert requests.get(f"{url}/manifests/1", headers=accept, timeout=30).content == image.manifest
    for digest, data in image.blob_map().items():
        assert requests.get(f"{url}/blobs/{digest}", timeout=30).content == data
    assert requests.post(f"{url}/blobs/uploads/", timeout=30).status_code == 405
    assert not proxy.server_errors()
