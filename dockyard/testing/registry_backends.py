"""A conformance suite for registry backends, importable by plugin authors.

Use it like distribution's storage-driver test suite::

    import pytest
    from dockyard.testing.registry_backends import RegistryBackendSuite

    class TestMyBackend(RegistryBackendSuite):
        @pytest.fixture
        def backend(self):
            backend = MyBackend(...)      # fresh and empty for every test
            yield backend

        # Optional: look below the API for debris (temporary files, multipart uploads...).
        @pytest.fixture
        def backend_leftovers(self, backend):
            return lambda: my_storage_listing()

Every test deletes what it wrote, and after each one the suite checks that nothing is left
behind: the backend lists nothing at ``/`` and ``backend_leftovers()`` returns nothing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dockyard.core.errors import NotFound
from dockyard.core.interfaces import RegistryBackend, RegistryHousekeeping

#: The largest chunk ``read`` may yield ("a few MiB at most").
MAX_READ_CHUNK = 16 * 1024 * 1024


def _read_all(
    backend: RegistryBackend, path: str, offset: int = 0, length: int | None = None
) -> bytes:
    return b"".join(backend.read(path, offset, length))


def _put(backend: RegistryBackend, path: str, data: bytes) -> None:
    writer = backend.writer(path)
    writer.write(data)
    writer.commit()


class RegistryBackendSuite:
    """The tests every :class:`~dockyard.core.interfaces.RegistryBackend` must pass."""

    @pytest.fixture
    def backend(self) -> Any:
        raise NotImplementedError("provide a `backend` fixture yielding a fresh, empty backend")

    @pytest.fixture
    def backend_leftovers(self, backend: RegistryBackend) -> Callable[[], list[str]]:
        """What remains in the storage; the default asks the backend itself."""

        def listing() -> list[str]:
            try:
                return list(backend.list("/"))
            except NotFound:
                return []

        return listing

    @pytest.fixture(autouse=True)
    def _nothing_left_behind(
        self, backend: RegistryBackend, backend_leftovers: Callable[[], list[str]]
    ) -> Iterator[None]:
        yield
        assert backend_leftovers() == [], "the test deleted everything it wrote; debris remains"

    # ------------------------------------------------------------------ basics

    def test_is_a_registry_backend(self, backend: RegistryBackend) -> None:
        assert isinstance(backend, RegistryBackend)

    def test_write_commit_stat_read_delete(self, backend: RegistryBackend) -> None:
        data = os.urandom(100_000)
        before = time.time()
        _put(backend, "/a/b/file", data)
        info = backend.stat("/a/b/file")
        assert (info.path, info.size, info.is_dir) == ("/a/b/file", len(data), False)
        # Modification times drive gc's grace period: they must be real wall-clock times.
        assert before - 5 <= info.modified <= time.time() + 5
        assert _read_all(backend, "/a/b/file") == data
        assert _read_all(backend, "/a/b/file", 1000) == data[1000:]
        assert _read_all(backend, "/a/b/file", 1000, 500) == data[1000:1500]
        assert _read_all(backend, "/a/b/file", len(data)) == b""
        backend.delete("/a/b/file")
        with pytest.raises(NotFound):
            backend.stat("/a/b/file")
        with pytest.raises(NotFound):
            backend.stat("/a")

    def test_empty_file(self, backend: RegistryBackend) -> None:
        _put(backend, "/empty", b"")
        assert backend.stat("/empty").size == 0
        assert _read_all(backend, "/empty") == b""
        backend.delete("/empty")

    def test_missing_paths_raise_not_found(self, backend: RegistryBackend) -> None:
        with pytest.raises(NotFound):
            backend.stat("/nope")
        with pytest.raises(NotFound):
            _read_all(backend, "/nope")
        with pytest.raises(NotFound):
            backend.list("/nope")
        with pytest.raises(NotFound):
            backend.delete("/nope")
        with pytest.raises(NotFound):
            backend.move("/nope", "/elsewhere")
        with pytest.raises(NotFound):
            backend.writer("/nope", append=True)

    def test_large_reads_come_in_bounded_chunks(self, backend: RegistryBackend) -> None:
        data = os.urandom(3 * 1024 * 1024) * 8  # 24 MiB
        writer = backend.writer("/big")
        for start in range(0, len(data), 1024 * 1024):
            writer.write(data[start : start + 1024 * 1024])
        assert writer.size == len(data)
        writer.commit()
        received = bytearray()
        for chunk in backend.read("/big"):
            assert len(chunk) <= MAX_READ_CHUNK
            received += chunk
        assert received == data
        assert (
            _read_all(backend, "/big", 20 * 1024 * 1024 + 3, 10)
            == data[20 * 1024 * 1024 + 3 : 20 * 1024 * 1024 + 13]
        )
        backend.delete("/big")

    def test_overwrite_replaces_content(self, backend: RegistryBackend) -> None:
        _put(backend, "/f", b"first version")
        _put(backend, "/f", b"second")
        assert _read_all(backend, "/f") == b"second"
        assert backend.stat("/f").size == 6
        backend.delete("/f")

    # ------------------------------------------------------------------ directories

    def test_directories_and_listing(self, backend: RegistryBackend) -> None:
        for path in ("/d/x/1", "/d/x/2", "/d/y", "/d/z/deep/er/file", "/other/file"):
            _put(backend, path, path.encode())
        assert sorted(backend.list("/d")) == ["/d/x", "/d/y", "/d/z"]
        assert sorted(backend.list("/d/")) == ["/d/x", "/d/y", "/d/z"]
        assert sorted(backend.list("/")) == ["/d", "/other"]
        assert sorted(backend.list("/d/x")) == ["/d/x/1", "/d/x/2"]
        assert backend.stat("/d/z").is_dir
        assert backend.stat("/d/z/deep").is_dir
        backend.delete("/d/x")
        assert sorted(backend.list("/d")) == ["/d/y", "/d/z"]
        with pytest.raises(NotFound):
            backend.stat("/d/x/1")
        backend.delete("/d")
        backend.delete("/other")
        with pytest.raises(NotFound):
            backend.list("/d")

    def test_names_with_punctuation(self, backend: RegistryBackend) -> None:
        paths = ["/r/my-app.v2_x/_manifests/tags/1.0-rc_1/link", "/r/a__b/c-d/e.f/link"]
        for path in paths:
            _put(backend, path, b"x")
            assert _read_all(backend, path) == b"x"
        assert backend.list("/r/my-app.v2_x/_manifests/tags") == [
            "/r/my-app.v2_x/_manifests/tags/1.0-rc_1"
        ]
        backend.delete("/r")

    # ------------------------------------------------------------------ writers

    def test_uncommitted_write_is_invisible_and_cancel_leaves_nothing(
        self, backend: RegistryBackend
    ) -> None:
        _put(backend, "/w/other", b"x")
        writer = backend.writer("/w/file")
        writer.write(b"pending")
        with pytest.raises(NotFound):
            backend.stat("/w/file")
        assert backend.list("/w") == ["/w/other"]
        writer.close()
        assert backend.list("/w") == ["/w/other"]
        with pytest.raises(NotFound):
            _read_all(backend, "/w/file")
        writer = backend.writer("/w/file", append=True)
        writer.cancel()
        backend.delete("/w/other")
        with pytest.raises(NotFound):
            backend.stat("/w/file")
        with pytest.raises(NotFound):
            backend.writer("/w/file", append=True)

    def test_cancel_keeps_the_previous_content(self, backend: RegistryBackend) -> None:
        _put(backend, "/keep", b"old")
        writer = backend.writer("/keep")
        writer.write(b"new")
        writer.cancel()
        assert _read_all(backend, "/keep") == b"old"
        backend.delete("/keep")

    def test_close_and_resume_across_sessions(self, backend: RegistryBackend) -> None:
        # Sizes straddle S3's 5 MiB part minimum on purpose.
        pieces = [
            os.urandom(6 * 1024 * 1024),
            os.urandom(100),
            os.urandom(5 * 1024 * 1024 + 1),
            b"",
            os.urandom(3),
        ]
        writer = backend.writer("/up/data")
        writer.write(pieces[0])
        writer.close()
        written = len(pieces[0])
        for piece in pieces[1:]:
            writer = backend.writer("/up/data", append=True)
            assert writer.size == written
            writer.write(piece)
            written += len(piece)
            assert writer.size == written
            writer.close()
        with pytest.raises(NotFound):
            backend.stat("/up/data")
        writer = backend.writer("/up/data", append=True)
        writer.commit()
        assert _read_all(backend, "/up/data") == b"".join(pieces)
        with pytest.raises(NotFound):
            backend.writer("/up/data", append=True)
        backend.delete("/up")

    def test_resumed_write_can_be_cancelled(self, backend: RegistryBackend) -> None:
        writer = backend.writer("/c/data")
        writer.write(os.urandom(6 * 1024 * 1024))
        writer.close()
        resumed = backend.writer("/c/data", append=True)
        resumed.cancel()
        with pytest.raises(NotFound):
            backend.writer("/c/data", append=True)
        with pytest.raises(NotFound):
            backend.stat("/c/data")

    def test_small_closed_write_resumes(self, backend: RegistryBackend) -> None:
        writer = backend.writer("/s")
        writer.close()
        writer = backend.writer("/s", append=True)
        assert writer.size == 0
        writer.write(b"abc")
        writer.commit()
        assert _read_all(backend, "/s") == b"abc"
        backend.delete("/s")

    def test_concurrent_writers_of_one_path_never_mix(self, backend: RegistryBackend) -> None:
        contents = [bytes([i]) * 300_000 for i in range(4)]
        errors: list[BaseException] = []

        def write(data: bytes) -> None:
            try:
                writer = backend.writer("/race")
                for start in range(0, len(data), 50_000):
                    writer.write(data[start : start + 50_000])
                writer.commit()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(c,)) for c in contents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert _read_all(backend, "/race") in contents
        backend.delete("/race")

    # ------------------------------------------------------------------ move, redirect

    def test_move_replaces_destination(self, backend: RegistryBackend) -> None:
        _put(backend, "/m/src", b"source")
        _put(backend, "/m/dst", b"destination")
        backend.move("/m/src", "/m/dst")
        assert _read_all(backend, "/m/dst") == b"source"
        with pytest.raises(NotFound):
            backend.stat("/m/src")
        backend.move("/m/dst", "/n/new/place")
        assert _read_all(backend, "/n/new/place") == b"source"
        with pytest.raises(NotFound):
            backend.stat("/m")
        backend.delete("/n")

    # ------------------------------------------------------------------ housekeeping (optional)

    def _housekeeping(self, backend: RegistryBackend) -> RegistryHousekeeping:
        if not isinstance(backend, RegistryHousekeeping):
            pytest.skip("the backend has no RegistryHousekeeping (gc cannot lock it or sweep it)")
        return backend

    def test_create_exclusive_creates_once(self, backend: RegistryBackend) -> None:
        keeper = self._housekeeping(backend)
        assert keeper.create_exclusive("/lock/held", b"first") is None
        assert keeper.create_exclusive("/lock/held", b"second") == b"first"
        assert _read_all(backend, "/lock/held") == b"first"
        backend.delete("/lock/held")
        assert keeper.create_exclusive("/lock/held", b"third") is None
        backend.delete("/lock")

    def test_create_exclusive_has_one_winner(self, backend: RegistryBackend) -> None:
        keeper = self._housekeeping(backend)
        results: list[bytes | None] = [b""] * 8

        def contend(index: int) -> None:
            results[index] = keeper.create_exclusive("/contended", b"%d" % index)

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(results))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [i for i, result in enumerate(results) if result is None]
        assert len(winners) == 1, results
        assert all(r == b"%d" % winners[0] for r in results if r is not None)
        backend.delete("/contended")

    def test_sweep_spares_content_and_live_writes(self, backend: RegistryBackend) -> None:
        """Even when everything counts as idle: what is committed, a write still open, and a
        closed write that may resume all stay."""
        keeper = self._housekeeping(backend)
        _put(backend, "/kept/blob", b"committed")
        open_write = backend.writer("/kept/open")
        open_write.write(b"being written")
        parked = backend.writer("/kept/parked")
        parked.write(b"parked ")
        parked.close()
        keeper.sweep(time.time() + 3600)
        assert _read_all(backend, "/kept/blob") == b"committed"
        open_write.write(b", still")
        open_write.commit()
        assert _read_all(backend, "/kept/open") == b"being written, still"
        resumed = backend.writer("/kept/parked", append=True)
        resumed.write(b"and resumed")
        resumed.commit()
        assert _read_all(backend, "/kept/parked") == b"parked and resumed"
        backend.delete("/kept")

    def test_redirect_url_is_none_or_a_url(self, backend: RegistryBackend) -> None:
        _put(backend, "/r", b"x")
        url = backend.redirect_url("/r")
        assert url is None or url.startswith(("http://", "https://"))
        backend.delete("/r")
