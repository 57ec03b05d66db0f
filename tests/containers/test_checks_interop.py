"""Issue 14's checks side by side: the cases of tests/containers/test_checks.py against a real
dockerd 20.10 and against our daemon, both holding the same busybox image.

Where the two answer differently by design the case says so (dockerd 20.10 answers a bad tag
reference, and bad JSON on update and commit, with a 500; Go words bad JSON in its own way).
The ``publish``/``expose`` filters of running containers are not compared: the session's
dockerd has no bridge (``--bridge=none``), so its containers list no ports.
"""

from __future__ import annotations

import pytest

from tests.conftest import docker_load
from tests.containers.test_checks import (
    DOCKER_PY_WORDS,
    VALIDATION,
    check_stats,
    cli,
    container_events,
    docker_py_refusals,
    expected_events,
    rename_to_own_name,
    stats_answers,
    unique,
)

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def engines(real_dockerd, busybox_served) -> dict[str, str]:
    docker_load(real_dockerd.host, busybox_served.archive)
    return {"dockerd": real_dockerd.host, "dockyard": busybox_served.daemon.host}


@pytest.mark.parametrize("case", VALIDATION.values(), ids=VALIDATION.keys())
def test_validation_answers_as_dockerd(engines, case):
    theirs = case.answer(engines["dockerd"])
    ours = case.answer(engines["dockyard"])
    assert ours[0] == case.status and case.words in ours[1], ours
    dockerd_status = case.dockerd_status or case.status
    dockerd_words = case.dockerd_words or case.words
    assert theirs[0] == dockerd_status and dockerd_words in theirs[1], theirs


def test_docker_py_sees_the_same_refusals(engines):
    theirs = docker_py_refusals(engines["dockerd"])
    ours = docker_py_refusals(engines["dockyard"])
    assert {n: (kind, status) for n, (kind, status, _) in ours.items()} == {
        n: (kind, status) for n, (kind, status, _) in theirs.items()
    }
    for name, words in DOCKER_PY_WORDS.items():
        assert words in theirs[name][2] and words in ours[name][2], (theirs[name], ours[name])


def test_rename_to_its_own_name_as_dockerd(engines):
    name = unique()
    assert rename_to_own_name(engines["dockyard"], name) == rename_to_own_name(
        engines["dockerd"], name
    )


def test_same_events_as_dockerd(engines):
    for host in engines.values():
        events = container_events(host)
        assert events == expected_events(events[0][1]["name"], events[-1][1]["name"]), host


def test_stats_as_dockerd(engines):
    for host in engines.values():
        check_stats(stats_answers(host))


PS_FILTERS = (
    "expose=80", "expose=81", "expose=79-81/tcp", "publish=80", "publish=8080", "is-task=false",
    "isolation=default",
)  # fmt: skip


def test_ps_filters_of_containers_that_list_no_ports(engines):
    """Created, and running on the host's network: both list no ports, so publish and expose
    match none of them; the other filters match every one."""

    def listing(host: str) -> dict[str, list[str]]:
        created, host_net = unique(), unique()
        assert cli(host, "create", "--name", created, "-p", "8080:80", "--expose", "81",
                   "busybox").returncode == 0  # fmt: skip
        assert cli(host, "run", "-d", "--name", host_net, "--network", "host", "--expose", "80",
                   "busybox", "sleep", "60").returncode == 0  # fmt: skip
        try:
            found = {}
            for value in PS_FILTERS:
                shown = cli(host, "ps", "-a", "--filter", value, "--filter", "name=checks-",
                            "--format", "{{.Names}}").stdout.split()  # fmt: skip
                found[value] = sorted(
                    "created" if n == created else "host" for n in shown if n in (created, host_net)
                )
            return found
        finally:
            cli(host, "rm", "-f", created, host_net)

    ours = listing(engines["dockyard"])
    assert ours == listing(engines["dockerd"])
    assert ours["expose=80"] == ours["publish=8080"] == []
    assert ours["is-task=false"] == ["created", "host"]
