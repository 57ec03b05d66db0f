"""The log-driver conformance suite, for the built-in drivers and third-party ones alike.

Every test runs the driver's real writer (imported by its ``module:function`` path, as the
container's supervisor imports it) into a real directory, and reads the output back through
the driver's reader, entries and follower both. A plugin author subclasses
:class:`LogDriverConformance` and provides the ``driver_factory`` fixture, a callable building
the driver::

    from dockyard.testing.logging import LogDriverConformance

    class TestMyDriver(LogDriverConformance):
        ROTATING_OPTIONS = {"max-size": "1k", "max-file": "2"}

        @pytest.fixture
        def driver_factory(self):
            return MyLogDriver

Class attributes say what the driver promises: ``ACCEPTED_OPTIONS`` (option sets it must take),
``REFUSED_OPTIONS`` (sets it must refuse), ``ROTATING_OPTIONS`` (options under which a log of
a few KiB rotates; ``None``: it never rotates, or keeps nothing).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dockyard.core.errors import InvalidParameter
from dockyard.core.interfaces import LogDriver, LogEntry, LogWriter

DriverFactory = Callable[[], LogDriver]

#: Output a container can print: lines, a chunk of several lines, a line split over two
#: reads, bytes that are not UTF-8, and a last line without its newline.
SAMPLE: Sequence[tuple[str, bytes]] = (
    ("stdout", b"first line\n"),
    ("stderr", b"an error\n"),
    ("stdout", b"two\nlines\n"),
    ("stdout", b"half a "),
    ("stdout", b"line\n"),
    ("stderr", b"\xff\xfe not utf-8 \x00\n"),
    ("stdout", b"no newline at the end"),
)
#: What a reader must give back for :data:`SAMPLE`: one entry per line, streams kept apart.
SAMPLE_ENTRIES: Sequence[tuple[str, bytes]] = (
    ("stdout", b"first line\n"),
    ("stderr", b"an error\n"),
    ("stdout", b"two\n"),
    ("stdout", b"lines\n"),
    ("stdout", b"half a "),
    ("stdout", b"line\n"),
    ("stderr", b"\xff\xfe not utf-8 \x00\n"),
    ("stdout", b"no newline at the end"),
)
#: Modules a writer must not pull into the supervisor (it starts on every container start).
HEAVY_MODULES = ("pluggy", "starlette", "structlog", "dockyard.core.plugins", "dockyard.daemon")


def open_writer(driver: LogDriver, directory: Path, options: Mapping[str, str]) -> LogWriter:
    """The driver's writer, built the way the supervisor builds it."""
    module_name, _, function = driver.writer.partition(":")
    factory: Any = getattr(importlib.import_module(module_name), function)
    writer: LogWriter = factory(directory, dict(options))
    return writer


def pieces(entries: Iterator[LogEntry] | Sequence[LogEntry]) -> list[tuple[str, bytes]]:
    return [(entry.stream, entry.data) for entry in entries]


def followed(driver: LogDriver, directory: Path, write: Callable[[], None]) -> list[LogEntry]:
    """What a follower opened on ``directory`` sees while ``write()`` runs in a thread."""

    async def run() -> list[LogEntry]:
        reader = driver.open_reader(directory)
        list(reader.entries())
        done = threading.Event()

        def writing() -> None:
            try:
                write()
            finally:
                done.set()

        thread = threading.Thread(target=writing)
        thread.start()
        seen = [entry async for entry in reader.follow(done.is_set)]
        thread.join()
        return seen

    return asyncio.run(run())


def files_below(directory: Path) -> dict[str, int]:
    """Every path below ``directory`` (relative) and its mode."""
    found = {}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            path = Path(root) / name
            found[str(path.relative_to(directory))] = os.lstat(path).st_mode
    return found


class LogDriverConformance:
    """The conformance tests; subclass and provide a ``driver_factory`` fixture."""

    ACCEPTED_OPTIONS: ClassVar[Sequence[Mapping[str, str]]] = ({},)
    REFUSED_OPTIONS: ClassVar[Sequence[Mapping[str, str]]] = ({"no-such-option": "1"},)
    ROTATING_OPTIONS: ClassVar[Mapping[str, str] | None] = None

    @pytest.fixture
    def driver_factory(self) -> DriverFactory:
        raise NotImplementedError("provide a driver_factory fixture returning a DriverFactory")

    @pytest.fixture
    def driver(self, driver_factory: DriverFactory) -> LogDriver:
        return driver_factory()

    @pytest.fixture
    def directory(self, tmp_path: Path) -> Path:
        """A container's state directory, as the daemon makes it (0710)."""
        directory = tmp_path / "container"
        directory.mkdir()
        directory.chmod(0o710)
        return directory

    def write_sample(self, driver: LogDriver, directory: Path) -> None:
        writer = open_writer(driver, directory, {})
        for stream, data in SAMPLE:
            writer.write(stream, data)
        writer.close()

    # ------------------------------------------------------------------ the contract

    def test_driver_states_its_writer_and_readability(self, driver: LogDriver) -> None:
        module_name, colon, function = driver.writer.partition(":")
        assert colon and function, "writer must be a 'module:function' path"
        assert callable(getattr(importlib.import_module(module_name), function))
        assert isinstance(driver.readable, bool)

    def test_the_writer_module_stays_light(self, driver: LogDriver) -> None:
        # The supervisor imports it on every container start: no plugin machinery, no server.
        module_name = driver.writer.partition(":")[0]
        code = (
            f"import sys; import {module_name}; "
            f"print(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "", f"the writer's module imports {result.stdout}"

    def test_accepted_options(self, driver: LogDriver, tmp_path: Path) -> None:
        for number, options in enumerate(self.ACCEPTED_OPTIONS):
            driver.check_options(options)
            directory = tmp_path / f"container-{number}"
            directory.mkdir(mode=0o710)
            writer = open_writer(driver, directory, options)
            writer.write("stdout", b"taken\n")
            writer.close()

    def test_refused_options(self, driver: LogDriver) -> None:
        for options in self.REFUSED_OPTIONS:
            with pytest.raises(InvalidParameter):
                driver.check_options(options)
                pytest.fail(f"{options} was accepted")

    # ------------------------------------------------------------------ reading back

    def stored_sample(self, driver: LogDriver, directory: Path, runs: int = 1) -> list[LogEntry]:
        """What a reader gives after ``runs`` runs of the sample (skips a driver keeping none)."""
        if not driver.readable:
            pytest.skip("the driver keeps nothing to read")
        for _ in range(runs):
            self.write_sample(driver, directory)
        reader = driver.open_reader(directory)
        entries = list(reader.entries())
        reader.close()
        return entries

    def test_what_is_written_reads_back_line_by_line(
        self, driver: LogDriver, directory: Path
    ) -> None:
        entries = self.stored_sample(driver, directory)
        assert pieces(entries) == list(SAMPLE_ENTRIES)
        times = [entry.time_ns for entry in entries]
        assert times == sorted(times)
        assert all(abs(t - times[0]) < 60 * 10**9 for t in times)

    def test_a_follower_sees_output_as_it_comes(self, driver: LogDriver, directory: Path) -> None:
        # Every driver, none included: attach and build steps follow the live output.
        writer = open_writer(driver, directory, {})
        writer.write("stdout", b"before the follower\n")

        def write() -> None:
            for stream, data in SAMPLE:
                writer.write(stream, data)
            writer.close()

        assert pieces(followed(driver, directory, write)) == list(SAMPLE_ENTRIES)

    def test_a_reader_opened_before_the_first_start_waits_for_output(
        self, driver: LogDriver, directory: Path
    ) -> None:
        # `docker run` attaches before the container's first start: no log exists yet.
        reader = driver.open_reader(directory)
        assert list(reader.entries()) == []
        reader.close()
        seen = followed(driver, directory, lambda: self.write_sample(driver, directory))
        assert pieces(seen) == list(SAMPLE_ENTRIES)

    def test_a_reader_survives_the_containers_removal(
        self, driver: LogDriver, directory: Path
    ) -> None:
        if not driver.readable:
            pytest.skip("the driver keeps nothing to read")
        self.write_sample(driver, directory)
        reader = driver.open_reader(directory)
        shutil.rmtree(directory)
        assert pieces(reader.entries()) == list(SAMPLE_ENTRIES)
        reader.close()
        reader.close()  # twice is fine

    def test_a_second_run_appends(self, driver: LogDriver, directory: Path) -> None:
        # A second run: docker start of a stopped container.
        entries = self.stored_sample(driver, directory, runs=2)
        assert pieces(entries) == list(SAMPLE_ENTRIES) * 2

    # ------------------------------------------------------------------ rotation

    def test_rotation_keeps_the_newest_lines_in_order(
        self, driver: LogDriver, directory: Path
    ) -> None:
        if self.ROTATING_OPTIONS is None:
            pytest.skip("the driver does not rotate")
        driver.check_options(self.ROTATING_OPTIONS)
        writer = open_writer(driver, directory, self.ROTATING_OPTIONS)
        lines = [f"line {number:04d} {'x' * 40}\n".encode() for number in range(400)]

        def write() -> None:
            for line in lines:
                writer.write("stdout", line)
            writer.close()

        seen = [entry.data for entry in followed(driver, directory, write)]
        # A follower that falls a whole file behind a fast writer may skip that file (as
        # dockerd's may); what it gives is in order, never repeated, and reaches the end.
        positions = [lines.index(data) for data in seen]
        assert positions == sorted(set(positions)), "a follower repeated or reordered lines"
        assert seen[0] == lines[0] and seen[-1] == lines[-1]
        reader = driver.open_reader(directory)
        kept = [entry.data for entry in reader.entries()]
        reader.close()
        assert kept and len(kept) < len(lines), "the log should have rotated old lines away"
        assert kept == lines[-len(kept) :], "what is kept must be the newest lines, in order"
        assert sum(1 for _ in files_below(directory)) > 1

    # ------------------------------------------------------------------ the host

    def test_logs_are_private_to_root(self, driver: LogDriver, directory: Path) -> None:
        previous = os.umask(0)  # the supervisor's umask must not decide
        try:
            self.write_sample(driver, directory)
            if self.ROTATING_OPTIONS is not None:
                writer = open_writer(driver, directory, self.ROTATING_OPTIONS)
                for number in range(200):
                    writer.write("stdout", f"{number} {'y' * 60}\n".encode())
                writer.close()
        finally:
            os.umask(previous)
        made = files_below(directory)
        assert made, "the writer kept nothing in the container's directory"
        loose = {name: oct(mode) for name, mode in made.items() if mode & 0o007}
        assert loose == {}, "other users must not read (or list) a container's output"
        assert all(stat.S_ISREG(m) or stat.S_ISDIR(m) for m in made.values())

    def test_the_writer_keeps_to_its_directory_and_finishes_its_work(
        self, driver: LogDriver, tmp_path: Path, directory: Path
    ) -> None:
        before = set(os.listdir(tmp_path))
        threads = set(threading.enumerate())
        options = self.ROTATING_OPTIONS if self.ROTATING_OPTIONS is not None else {}
        writer = open_writer(driver, directory, options)
        for number in range(200):
            writer.write("stdout", f"{number} {'z' * 60}\n".encode())
        writer.close()
        assert set(os.listdir(tmp_path)) == before
        assert set(threading.enumerate()) <= threads, "close() must wait for work it began"
        assert not [name for name in files_below(directory) if name.split("/")[-1][:1] == "."]
