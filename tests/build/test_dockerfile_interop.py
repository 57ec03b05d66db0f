"""Our Dockerfile parser and dockerd 20.10's, side by side: the same Dockerfile sent to
``POST /build`` of a real dockerd, and to :func:`parse`.

- A Dockerfile dockerd refuses before building answers a 400 ``{"message": ...}``: our
  DockerfileError must say the same.
- A Dockerfile it accepts: the ``Step N/M : ...`` texts it prints must be our ``original``s
  and our step count (only ``FROM scratch`` and metadata steps, so no image is needed).
"""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from dockyard.daemon.build.dockerfile import DockerfileError, parse
from tests.build.test_dockerfile import PARSE_ERRORS
from tests.conftest import http_request

pytestmark = pytest.mark.interop


def build_on_dockerd(real_dockerd, dockerfile: str, query: str = "") -> tuple[int, list[dict]]:
    """POST /build with a context holding only ``dockerfile``: (status, messages)."""
    data = dockerfile.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        entry = tarfile.TarInfo("Dockerfile")
        entry.size = len(data)
        archive.addfile(entry, io.BytesIO(data))
    reply = http_request(
        real_dockerd.host.removeprefix("unix://"),
        "POST",
        f"/v1.41/build?rm=1&forcerm=1{query}",
        {"Content-Type": "application/x-tar"},
        buffer.getvalue(),
        timeout=120,
    )
    if reply.status != 200:
        return reply.status, [reply.json()]
    decoder = json.JSONDecoder()
    text = reply.body.decode()
    messages, position = [], 0
    while position < len(text):
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            break
        message, position = decoder.raw_decode(text, position)
        messages.append(message)
    return reply.status, messages


#: A sample of every kind of refusal: grammar errors, instruction errors, flags, directives.
REFUSED = [
    case
    for case in PARSE_ERRORS
    if any(
        marker in case[1]
        for marker in (
            "unknown instruction",
            "file with no instructions",
            "no build stage",
            "ENV must have two",
            "ENV names can not be blank",
            "ARG requires",
            "Unknown flag: foo",
            "Duplicate flag",
            "Missing a value",
            "Destination could not be determined",
            "FROM requires",
            "invalid name for build stage",
            "escape token",
            "only one syntax",
            "USER requires",
            "VOLUME specified",
            "SHELL requires the arguments",
            "comprised of strings",
            "ONBUILD trigger",
            "Chaining ONBUILD",
            "--retries must be",
            "Unknown type",
            "invalid duration",
            "can't find =",
        )
    )
]


def _without_line(message: str, line: int) -> str:
    """dockerd's words for the grammar errors it reports without a line (we name the line)."""
    prefix = f"dockerfile parse error line {line}: "
    if message.startswith(prefix):
        return "failed to parse Dockerfile: " + message.removeprefix(prefix)
    return message


def test_refusals_match_dockerd(real_dockerd) -> None:
    mismatches = []
    for text, ours in REFUSED:
        status, messages = build_on_dockerd(real_dockerd, text)
        theirs = messages[0].get("message") if status == 400 else messages
        line = 0
        try:
            parse(text)
            got = None
        except DockerfileError as exc:
            got = str(exc)
            line = exc.line
        assert got == ours
        if theirs != ours and theirs != _without_line(ours, line):
            mismatches.append((text, theirs, ours))
    assert not mismatches
    assert len(REFUSED) >= 20


def test_target_errors_and_long_lines_match_dockerd(real_dockerd) -> None:
    text = "FROM scratch AS a\nFROM scratch\n"
    _, messages = build_on_dockerd(real_dockerd, text, "&target=nope")
    with pytest.raises(DockerfileError) as caught:
        parse(text).stage("nope")
    assert str(caught.value) == messages[0]["message"]

    long_text = "FROM scratch\nENV a=" + "x" * 70_000 + "\n"
    _, messages = build_on_dockerd(real_dockerd, long_text)
    with pytest.raises(DockerfileError) as caught:
        parse(long_text)
    assert _without_line(str(caught.value), caught.value.line) == messages[0]["message"]


STEPS = """\
# escape=`
ARG  V=1
from scratch  AS  first
env a=b `
   c=d`
# a comment inside

  e=f
LABEL   x="y  z"   `
   w=1
FROM scratch
USER nobody
"""


def test_step_texts_and_counts_match_dockerd(real_dockerd) -> None:
    dockerfile = parse(STEPS)
    for target in (None, "first"):
        status, messages = build_on_dockerd(
            real_dockerd, STEPS, f"&target={target}" if target else ""
        )
        assert status == 200, messages
        assert any(m.get("stream", "").startswith("Successfully built") for m in messages)
        steps = [m["stream"] for m in messages if m.get("stream", "").startswith("Step ")]
        stages = dockerfile.stages_to_build(target)
        instructions = [*dockerfile.global_args] + [
            instruction
            for stage in stages
            for instruction in (stage.from_instruction, *stage.instructions)
        ]
        total = dockerfile.step_count(target)
        assert steps == [
            f"Step {n}/{total} : {instruction.original}"
            for n, instruction in enumerate(instructions, 1)
        ]
        warnings = "".join(m["stream"] for m in messages if "[WARNING]" in m.get("stream", ""))
        assert warnings == f"\x1b[91m{dockerfile.warning_text()}\x1b[0m"


#: Words whose expansion dockerd 20.10 and we must agree on (dockerd refuses ``${X-d}`` and
#: ``${X+d}``, which we accept as later builders do: they are left out).
EXPANDED_WORDS = [
    "$1x",
    "$@x",
    "$Xb",
    "${X:+alt}${Y:-no}",
    "\\$X",
    "'$X'",
    '"$X\\$\\n"',
    "$",
    "${X}_",
    "a\\ b",
    "${E:-d}",
    "${E:+s}",
    "${X?oops}",
    "${N:-${Y:+in}}",
    '"a  b"',
    "\"'x'\"",
    "'\"x\"'",
    '"a\\"b"',
    '"a\\b"',
    "abc\\",
    "pre${X}post",
]


def test_expansions_match_dockerd(real_dockerd) -> None:
    from dockyard.daemon.build.commands import Env, to_command

    assignments = " ".join(f"v{n}={word}" for n, word in enumerate(EXPANDED_WORDS))
    text = f'FROM scratch\nENV X=x1 Y="a b" E=\nENV {assignments}\nENV legacy $X  "$Y" z\n'
    status, messages = build_on_dockerd(real_dockerd, text)
    assert status == 200, messages
    image_id = next(m["aux"]["ID"] for m in messages if "aux" in m)
    reply = http_request(
        real_dockerd.host.removeprefix("unix://"), "GET", f"/v1.41/images/{image_id}/json"
    )
    theirs = reply.json()["Config"]["Env"]

    dockerfile = parse(text)
    variables: dict[str, str] = {}
    ours = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    for instruction in dockerfile.stages[0].instructions:
        command = to_command(instruction, variables)
        assert isinstance(command, Env)
        for name, value in command.pairs:
            variables[name] = value
            ours = [entry for entry in ours if entry.split("=", 1)[0] != name]
            ours.append(f"{name}={value}")
    assert ours == theirs
