"""Log files (core.logfiles): written by the supervisor, read and followed by the daemon."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import shutil
import threading

import pytest

from dockyard.core.interfaces import LogEntry
from dockyard.core.logfiles import (
    FRAMED,
    JSON_LINES,
    LOG_NAME,
    LogFiles,
    RotatingLog,
    go_bool,
    go_int,
)


def test_a_request_reads_logs_removed_after_it_arrived(tmp_path):
    # docker-py's containers.run() asks for the log stream, then removes the container, then
    # reads the stream: what the request saw must still be there.
    directory = tmp_path / "container"
    directory.mkdir()
    writer = RotatingLog(directory, JSON_LINES, max_size=200, max_files=3)  # two lines a file
    for number in range(5):
        writer.write("stdout", f"line {number}\n".encode())
    logs = LogFiles(directory, JSON_LINES)
    writer.write("stderr", b"after the request\n")
    writer.close()
    assert sorted(p.name for p in directory.iterdir()) == [
        LOG_NAME,
        f"{LOG_NAME}.1",
        f"{LOG_NAME}.2",
    ]
    shutil.rmtree(directory)

    history = [entry.data for entry in logs.entries()]
    assert history == [f"line {number}\n".encode() for number in range(5)]

    async def followed() -> list[bytes]:
        return [entry.data async for entry in logs.follow(lambda: True)]

    assert asyncio.run(followed()) == [b"after the request\n"]


def test_follow_reads_on_across_a_rotation(tmp_path):
    writer = RotatingLog(tmp_path, JSON_LINES, max_size=100, max_files=2)
    writer.write("stdout", b"before\n")
    logs = LogFiles(tmp_path, JSON_LINES)
    finished = False

    async def followed() -> list[bytes]:
        seen = []
        async for entry in logs.follow(lambda: finished):
            seen.append(entry.data)
        return seen

    async def scenario() -> list[bytes]:
        nonlocal finished
        task = asyncio.ensure_future(followed())
        for number in range(6):  # about 60 bytes a line: rotates every other line
            writer.write("stdout", f"after {number}\n".encode())
            await asyncio.sleep(0.02)
        finished = True
        return await task

    assert asyncio.run(scenario()) == [f"after {n}\n".encode() for n in range(6)]
    writer.close()


def test_a_torn_framed_record_starts_a_new_file(tmp_path):
    # A supervisor killed mid-write leaves half a record: the next run must not append
    # whole records after it, where a reader would take them for the torn one's bytes.
    writer = RotatingLog(tmp_path, FRAMED, max_size=1 << 20, max_files=2)
    writer.write("stdout", b"whole\n")
    writer.close()
    with open(tmp_path / LOG_NAME, "ab") as log:
        log.write(FRAMED.encode("stdout", b"torn record\n", 1)[:-3])
    writer = RotatingLog(tmp_path, FRAMED, max_size=1 << 20, max_files=2)
    writer.write("stderr", b"next run\n")
    writer.close()
    logs = LogFiles(tmp_path, FRAMED)
    assert [(e.stream, e.data) for e in logs.entries()] == [
        ("stdout", b"whole\n"),
        ("stderr", b"next run\n"),
    ]
    logs.close()


def test_rotated_files_are_gzipped_and_read_back(tmp_path):
    writer = RotatingLog(tmp_path, JSON_LINES, max_size=200, max_files=3, compress=True)
    lines = [f"line {number}\n".encode() for number in range(12)]
    for line in lines:
        writer.write("stdout", line)
    writer.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [LOG_NAME, f"{LOG_NAME}.1.gz", f"{LOG_NAME}.2.gz"]
    assert gzip.decompress((tmp_path / f"{LOG_NAME}.1.gz").read_bytes()).startswith(b'{"log":')
    logs = LogFiles(tmp_path, JSON_LINES)
    kept = [entry.data for entry in logs.entries()]
    logs.close()
    assert kept == lines[-len(kept) :] and len(kept) > 4


def test_go_values():
    assert go_bool("True") and not go_bool("0")
    with pytest.raises(ValueError, match=r'strconv\.ParseBool: parsing "yes": invalid syntax'):
        go_bool("yes")
    assert go_int("-3") == -3
    with pytest.raises(ValueError, match=r'strconv\.Atoi: parsing "3\.5": invalid syntax'):
        go_int("3.5")


@pytest.mark.parametrize(
    "data", [b"hello\n", b"\xff\xfe not utf-8\n", 'ünï "q" \\ <t> \t\x01\u2028\n'.encode(), b""]
)
def test_json_lines_are_what_json_dumps_writes(data):
    # The encoder builds the line by hand (4x faster than a dict through json.dumps per line):
    # it must stay byte for byte what json.dumps gives, which docker's readers parse.
    record = {"log": data.decode("utf-8", "replace"), "stream": "stderr"}
    record["time"] = "2024-12-05T15:25:45.123456789Z"
    if data.decode("utf-8", "replace").encode() != data:
        record["raw"] = base64.b64encode(data).decode()
    expected = json.dumps(record, separators=(",", ":")).encode() + b"\n"
    assert JSON_LINES.encode("stderr", data, 1733412345123456789) == expected
    assert JSON_LINES.decode(expected) == (
        [LogEntry("stderr", data, 1733412345123456789)],
        len(expected),
    )


def test_a_torn_json_line_is_ended_and_skipped(tmp_path):
    writer = RotatingLog(tmp_path, JSON_LINES)
    writer.write("stdout", b"whole\n")
    writer.close()
    with open(tmp_path / LOG_NAME, "ab") as log:
        log.write(b'{"log":"torn')
    writer = RotatingLog(tmp_path, JSON_LINES)  # max-file 1: the history must stay
    writer.write("stdout", b"next run\n")
    writer.close()
    logs = LogFiles(tmp_path, JSON_LINES)
    assert [e.data for e in logs.entries()] == [b"whole\n", b"next run\n"]
    logs.close()


def test_a_follower_starts_after_an_entry_being_written(tmp_path):
    # A request arriving while a record is half on disk must not start following inside it.
    writer = RotatingLog(tmp_path, FRAMED, max_size=1 << 20, max_files=2)
    writer.write("stdout", b"first\n")
    record = FRAMED.encode("stdout", b"second\n", 2)
    with open(tmp_path / LOG_NAME, "ab") as log:
        log.write(record[:5])

    def write_the_rest() -> None:
        with open(tmp_path / LOG_NAME, "ab") as log:
            log.write(record[5:])

    finish = threading.Timer(0.05, write_the_rest)
    finish.start()
    logs = LogFiles(tmp_path, FRAMED)  # waits for the record being written
    finish.join()
    assert logs.end_position.offset == (tmp_path / LOG_NAME).stat().st_size
    assert [e.data for e in logs.entries()] == [b"first\n", b"second\n"]

    async def followed() -> list[bytes]:
        return [entry.data async for entry in logs.follow(lambda: True)]

    writer.write("stdout", b"third\n")
    writer.close()
    assert asyncio.run(followed()) == [b"third\n"]
