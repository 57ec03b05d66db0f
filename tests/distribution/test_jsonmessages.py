"""The JSON-message renderer's rules and the reference grammar, without a daemon.

What the docker CLI draws for a real stream is compared byte for byte in
``test_cli_pull_push.py``; here are the cases a recorded pull does not reach.
"""

from __future__ import annotations

import io
import re

import pytest

from dockyard.client import StreamError
from dockyard.commands.common import UsageError
from dockyard.commands.distribution import parse_reference
from dockyard.commands.jsonmessages import (
    JSONMessageRenderer,
    go_duration,
    progress_text,
)
from tests.conftest import run_dockyard


@pytest.mark.parametrize(
    ("detail", "columns", "expected"),
    [
        ({}, 200, ""),
        ({"current": 0, "total": 0}, 200, ""),
        (
            {"current": 500, "total": 1000},
            200,
            "[=========================>" + " " * 25 + "]     500B/1kB",
        ),
        ({"current": 500, "total": 1000}, 110, "    500B/1kB"),  # no room for the bar
        ({"current": 1000, "total": 1000}, 111, "[" + "=" * 50 + ">]      1kB/1kB"),
        ({"current": 3001856, "total": 3000000}, 200, "[" + "=" * 50 + ">]  3.002MB"),
        ({"current": 4096}, 200, " 4.096kB"),  # no total: the count alone
        ({"current": 3, "total": 7, "units": "steps"}, 80, "3/7 steps"),
        ({"current": 9, "total": 7, "units": "steps"}, 80, "9 steps"),
        ({"current": 3, "total": 7, "hidecounts": True}, 80, ""),
    ],
)
def test_progress_text_is_dockers(detail, columns, expected):
    assert progress_text(detail, columns) == expected


def test_time_left_is_shown_with_a_start_and_room_for_it():
    detail = {"current": 250, "total": 1000, "start": 1000}
    # 250 bytes in 10 s: 750 more take 30 s.
    assert progress_text(detail, 80, now=1010).endswith("    250B/1kB 30s")
    assert progress_text(detail, 50, now=1010) == "    250B/1kB"
    assert go_duration(0) == "0s"
    assert go_duration(65) == "1m5s"
    assert go_duration(7203) == "2h0m3s"


def render(messages: list[dict], terminal: bool, **kwargs) -> str:
    out = io.StringIO()
    renderer = JSONMessageRenderer(out, terminal=terminal, columns=120, **kwargs)
    for message in messages:
        renderer.show(message)
    return out.getvalue()


def test_each_id_keeps_its_line_on_a_terminal():
    messages = [
        {"status": "Pulling from x", "id": "1"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "a"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "b"},
        {"status": "Downloading", "progressDetail": {"current": 1, "total": 2}, "id": "a"},
        {"status": "Digest: sha256:0"},
    ]
    bar = "[" + "=" * 25 + ">" + " " * 25 + "]       1B/2B"
    assert render(messages, terminal=True) == (
        "1: Pulling from x\n"
        "\n\x1b[1A\x1b[2K\ra: Pulling fs layer \r\x1b[1B"
        "\n\x1b[1A\x1b[2K\rb: Pulling fs layer \r\x1b[1B"
        f"\x1b[2A\x1b[2K\ra: Downloading {bar}\r\x1b[2B"
        "Digest: sha256:0\n"
    )
    assert render(messages, terminal=False) == (
        "1: Pulling from x\na: Pulling fs layer\nb: Pulling fs layer\nDigest: sha256:0\n"
    )


def test_a_line_without_progress_starts_a_new_block():
    again = [
        {"status": "Waiting", "progressDetail": {}, "id": "a"},
        {"status": "Done"},
        {"status": "Waiting", "progressDetail": {}, "id": "a"},
    ]
    drawn = render(again, terminal=True)
    assert drawn.count("\n\x1b[1A") == 2  # "a" got a fresh line after "Done"


def test_aux_goes_to_the_callback_and_errors_end_the_stream():
    seen: list[object] = []
    messages = [
        {"stream": "Step 1\n"},
        {"aux": {"ID": "sha256:1"}, "progressDetail": {}},
        {"errorDetail": {"code": 2, "message": "it broke"}, "error": "it broke"},
        {"status": "never shown"},
    ]
    out = io.StringIO()
    renderer = JSONMessageRenderer(out, terminal=False, on_aux=seen.append)
    with pytest.raises(StreamError, match=r"^it broke$"):
        for message in messages:
            renderer.show(message)
    assert out.getvalue() == "Step 1\n"
    assert seen == [{"ID": "sha256:1"}]


def test_from_and_progress_text_without_detail():
    assert render([{"status": "create", "id": "abc", "from": "busybox"}], False) == (
        "abc: (from busybox) create\n"
    )
    # Only the daemon's text: docker shows it as it is, with no newline of its own.
    assert render([{"status": "Loading", "progress": "[==>  ] 1B/2B"}], False) == (
        "Loading [==>  ] 1B/2B"
    )


@pytest.mark.parametrize(
    ("text", "name", "api_tag"),
    [
        ("busybox", "docker.io/library/busybox", "latest"),
        ("busybox:1.36", "docker.io/library/busybox", "1.36"),
        ("user/app", "docker.io/user/app", "latest"),
        ("index.docker.io/user/app:v", "docker.io/user/app", "v"),
        ("localhost/app", "localhost/app", "latest"),
        ("localhost:5000/a/b:c", "localhost:5000/a/b", "c"),
        ("127.0.0.1:5181/x/busybox:1", "127.0.0.1:5181/x/busybox", "1"),
        ("registry.example/a@sha256:" + "0" * 64, "registry.example/a", "sha256:" + "0" * 64),
        ("[::1]:5000/a:b", "[::1]:5000/a", "b"),
    ],
)
def test_references_normalise_as_dockers(text, name, api_tag):
    reference = parse_reference(text)
    assert (reference.name, reference.api_tag) == (name, api_tag)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Busybox", "repository name (library/Busybox) must be lowercase"),
        ("a:b:c", "invalid reference format"),
        ("a@sha256:short", "invalid reference format"),
        ("a/-b", "invalid reference format"),
        ("", "invalid reference format"),
    ],
)
def test_bad_references_are_refused(text, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_reference(text)


def test_pull_and_push_usage_errors_need_no_daemon(tmp_path):
    nowhere = f"unix://{tmp_path}/none.sock"
    both = run_dockyard(["-H", nowhere, "pull", "-a", "x/y:1"])
    assert (both.returncode, both.stderr) == (
        1,
        "dockyard pull: tag can't be used with --all-tags/-a\n",
    )
    digest = run_dockyard(["-H", nowhere, "push", "x/y@sha256:" + "0" * 64])
    assert (digest.returncode, digest.stderr) == (
        1,
        "dockyard push: cannot push a digest reference\n",
    )
    policy = run_dockyard(["-H", nowhere, "run", "--pull", "sometimes", "busybox"])
    assert policy.returncode == 2
    assert "invalid pull option: 'sometimes'" in policy.stderr
    unreachable = run_dockyard(["-H", nowhere, "pull", "busybox"])
    assert unreachable.returncode == 1
    assert unreachable.stdout == "Using default tag: latest\n"
    assert "cannot connect to the dockyard daemon" in unreachable.stderr
