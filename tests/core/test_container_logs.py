"""Log files (core.logfiles): written by the supervisor, read and followed by the daemon."""

from __future__ import annotations

import asyncio
import shutil

from dockyard.core.logfiles import JSON_LINES, LOG_NAME, LogFiles, RotatingLog


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
