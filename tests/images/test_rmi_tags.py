"""``docker rmi`` of one tag among several, by id, with and without -f, while containers use
the image: dockerd's rules (tests/images/test_tags_filters_interop.py runs them side by side)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from dockyard.testing.peers import docker_cli, docker_env
from tests.conftest import BusyboxDaemon, Daemon, docker_load


@pytest.fixture(scope="module")
def daemon(busybox_served) -> Daemon:
    return busybox_served.daemon


def docker(daemon: Daemon, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [docker_cli(), *args], env=docker_env(daemon.host), capture_output=True, text=True
    )
    if ok:
        assert result.returncode == 0, result.stderr
    return result


def image_id(daemon: Daemon, name: str = "busybox") -> str:
    return docker(daemon, "image", "inspect", "-f", "{{.Id}}", name).stdout.strip()


def tags(daemon: Daemon) -> list[str]:
    listed = docker(daemon, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    return sorted(listed)


@pytest.fixture
def image(daemon: Daemon, busybox_served: BusyboxDaemon) -> Iterator[str]:
    """busybox under two more tags; afterwards, busybox alone again."""
    ident = image_id(daemon)
    docker(daemon, "tag", "busybox", "one:1")
    docker(daemon, "tag", "busybox", "two:2")
    yield ident
    docker(daemon, "rm", "-f", "user", ok=False)
    for name in ("one:1", "two:2"):
        docker(daemon, "rmi", name, ok=False)
    docker_load(daemon.host, busybox_served.archive)  # busybox:latest again, deleted or untagged


def test_one_tag_of_several_is_only_untagged_even_in_use(daemon, image):
    docker(daemon, "run", "-d", "--name", "user", "busybox", "sleep", "60")
    assert docker(daemon, "rmi", "one:1").stdout == "Untagged: one:1\n"
    # -f removes the tag it names and no other
    assert docker(daemon, "rmi", "-f", "two:2").stdout == "Untagged: two:2\n"
    assert tags(daemon) == ["busybox:latest"]
    # the last tag of an image a container uses: refused without -f
    last = docker(daemon, "rmi", "busybox", ok=False)
    assert last.returncode == 1
    assert last.stderr == (
        'Error response from daemon: conflict: unable to remove repository reference "busybox"'
        f" (must force) - container {container_id(daemon)[:12]} is using its referenced image"
        f" {image[7:19]}\n"
    )
    # with -f: untagged, and the image stays for its running container
    assert docker(daemon, "rmi", "-f", "busybox").stdout == "Untagged: busybox:latest\n"
    assert docker(daemon, "image", "inspect", "-f", "{{.RepoTags}}", image).stdout == "[]\n"


def container_id(daemon: Daemon) -> str:
    return docker(daemon, "inspect", "-f", "{{.Id}}", "user").stdout.strip()


def test_by_id(daemon, image):
    docker(daemon, "run", "-d", "--name", "user", "busybox", "sleep", "60")
    user = container_id(daemon)[:12]
    several = docker(daemon, "rmi", image, ok=False)
    assert "(cannot be forced) - image is being used by running container " + user in (
        several.stderr
    )
    forced = docker(daemon, "rmi", "-f", image, ok=False)
    assert forced.stderr == several.stderr  # a running container stops even -f
    docker(daemon, "rm", "-f", "user")
    untagged = docker(daemon, "rmi", image, ok=False)
    assert untagged.stderr == (
        f"Error response from daemon: conflict: unable to delete {image[7:19]} (must be forced)"
        " - image is referenced in multiple repositories\n"
    )
    docker(daemon, "create", "--name", "user", "busybox", "true")
    docker(daemon, "rmi", "one:1", "two:2")
    stopped = docker(daemon, "rmi", image, ok=False)
    assert stopped.stderr == (
        f"Error response from daemon: conflict: unable to delete {image[7:19]} (must be forced)"
        f" - image is being used by stopped container {container_id(daemon)[:12]}\n"
    )
    # Forced past a stopped container: dockerd deletes the image and leaves the layers to the
    # container; here the image stays, untagged, while the container does (said in the report).
    assert docker(daemon, "rmi", "-f", image).stdout == "Untagged: busybox:latest\n"
    assert docker(daemon, "start", "-a", "user").returncode == 0


def test_untag_and_delete_events_name_the_image_id(daemon, image):
    since = f"{time.time():.9f}"
    docker(daemon, "rmi", "one:1")
    docker(daemon, "tag", "busybox", "gone:1")
    docker(daemon, "rmi", "two:2")
    docker(daemon, "rmi", "busybox")
    removed = docker(daemon, "rmi", "gone:1").stdout.splitlines()
    assert removed[:2] == ["Untagged: gone:1", f"Deleted: {image}"]
    assert removed[2:] and all(line.startswith("Deleted: sha256:") for line in removed[2:])
    until = str(time.time() + 1)
    events = docker(
        daemon, "events", "--since", since, "--until", until, "--filter", "type=image",
        "--format", "{{json .}}",
    ).stdout.splitlines()  # fmt: skip
    seen = [json.loads(line) for line in events]
    actions = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"]["name"]) for e in seen]
    assert actions == [
        ("untag", image, image),
        ("tag", image, "gone:1"),
        ("untag", image, image),
        ("untag", image, image),
        ("untag", image, image),
        ("delete", image, image),
    ]
