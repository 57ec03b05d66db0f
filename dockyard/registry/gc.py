"""Garbage collection: mark and sweep, safe while the registry keeps serving pushes.

The CNCF registry asks for a read-only window while it collects; this one does not. What makes
that safe:

1. **Upload sessions are never swept.** An upload's bytes live under the repository's
   ``_uploads`` directory, not among the blobs, until the final ``PUT`` verifies them. Gc purges
   only sessions idle for longer than ``upload-expiry`` (a request to a session rewrites its
   ``info`` file unless that was done within the last minute, so "idle" counts from about the
   last chunk; expiry is meant in hours).
2. **A grace period for young content.** A blob is a candidate only if neither its data nor any
   repository's link to it was written within ``gc-grace-period``. Finishing an upload (or a
   mount, or a re-upload of a blob the store already has) rewrites the repository's link, so a
   just-finished push stays safe until its manifest arrives. Untagged manifests get the same
   grace, counted from their revision link.
3. **Sweep through a trash, then look again.** Candidates are first *moved* to
   ``/v2/_trash/<run>/``; then gc marks again from scratch and puts back anything that a
   manifest now references or whose links are now fresh; only then does it delete the trash. A
   manifest push, for its part, makes its manifest visible *before* its last check of the
   references, and that check restores a reference from the trash if a gc has just set it aside
   (and undoes the push if a reference is really gone). So for any interleaving either gc's
   second mark sees the new manifest, or the push sees the trash and takes its blob back.
4. **A crashed gc loses nothing.** Each run records what it moves in ``index.json`` before
   moving; the next run first puts back everything a previous run left in the trash.

5. **One gc at a time per storage.** A second one would take the first one's trash for a
   crashed run's and put it back mid-sweep. A run holds ``/v2/_gc.lock``, created only if
   absent (the backend's :class:`~dockyard.core.interfaces.RegistryHousekeeping`: link(2) on a
   filesystem, a conditional write on S3, so it holds across machines sharing a bucket), and a
   second gc is *refused*, naming the holder, rather than made to wait: gc is a batch job, a
   queue of them behind a long one would only sweep again what it has just swept, and whoever
   started the second one learns at once that one is running. A lock left by a gc that died
   on this machine (its pid is gone) is taken over; one from another machine must be deleted by
   hand, as the message says.

Besides blobs and manifests, a run removes what the backend hides from listings and nobody
will finish (temporary files of interrupted writes, multipart uploads nobody can resume) and
directories left empty, once untouched for ``upload-expiry`` (``RegistryHousekeeping.sweep``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator

import attrs
import structlog

from dockyard.core.errors import Conflict, NotFound
from dockyard.core.interfaces import RegistryHousekeeping
from dockyard.registry import layout
from dockyard.registry.errors import RegistryError
from dockyard.registry.manifests import ManifestInfo, read_stored_manifest
from dockyard.registry.names import Digest, parse_digest
from dockyard.registry.store import ManifestRecord, RegistryStore

_log = structlog.get_logger("dockyard.registry.gc")


@attrs.frozen
class GcPolicy:
    """What a collection may delete."""

    grace_period: float = 3600
    upload_expiry: float = 86400
    delete_untagged: bool = False
    dry_run: bool = False


@attrs.define
class GcReport:
    """What a collection deleted (or, in a dry run, would delete)."""

    blobs: list[str] = attrs.field(factory=list)
    manifests: list[str] = attrs.field(factory=list)
    uploads: list[str] = attrs.field(factory=list)
    restored: list[str] = attrs.field(factory=list)
    bytes_freed: int = 0
    kept_blobs: int = 0
    #: Leftovers of interrupted writes and empty directories (see RegistryHousekeeping.sweep).
    swept: list[str] = attrs.field(factory=list)

    def lines(self) -> list[str]:
        return (
            [f"blob {b}" for b in self.blobs]
            + [f"manifest {m}" for m in self.manifests]
            + [f"upload {u}" for u in self.uploads]
            + [f"kept (in use again) {r}" for r in self.restored]
            + self.swept
        )


class GcRunning(Conflict):
    """Another gc holds the storage's gc lock."""


@contextlib.contextmanager
def exclusive_run(store: RegistryStore, run_id: str) -> Iterator[None]:
    """Hold the storage's gc lock for the block, or raise :class:`GcRunning` (see point 5
    above). A backend without :class:`RegistryHousekeeping` cannot be locked: gc runs, warned."""
    backend = store.backend
    if not isinstance(backend, RegistryHousekeeping):
        _log.warning("this backend cannot keep a second gc out: run one gc at a time")
        yield
        return
    host = socket.gethostname()
    mine = json.dumps(
        {"run": run_id, "host": host, "pid": os.getpid(), "started": time.time()}
    ).encode()
    for _ in range(2):
        held = backend.create_exclusive(layout.GC_LOCK, mine)
        if held is None:
            break
        try:
            holder = json.loads(held)
            who, pid, since = holder["host"], int(holder["pid"]), float(holder["started"])
        except (ValueError, KeyError, TypeError):
            who, pid, since = "an unknown host", 0, 0.0
        if who == host and pid and not _alive(pid):
            _log.warning("taking over the gc lock of a gc that died", pid=pid)
            if store.read_bytes(layout.GC_LOCK) == held:
                store.delete_quietly(layout.GC_LOCK)
            continue
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(since))
        raise GcRunning(
            f"another gc is running on this storage (pid {pid} on {who}, since {started}); "
            f"gcs run one at a time: try again when it has finished (if it is gone, killed "
            f"on another machine, delete {layout.GC_LOCK} from the storage)"
        )
    else:
        raise GcRunning("the gc lock keeps being taken: is another gc starting?")
    try:
        yield
    finally:
        with contextlib.suppress(NotFound):
            if store.read_bytes(layout.GC_LOCK) == mine:
                store.delete_quietly(layout.GC_LOCK)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@attrs.define
class _Mark:
    """The result of one mark phase."""

    #: Digests of every blob a surviving manifest needs (manifests themselves included).
    referenced: set[Digest] = attrs.field(factory=set)
    #: Newest link time per blob digest, over every repository.
    newest_link: dict[Digest, float] = attrs.field(factory=dict)


class GarbageCollector:
    """One collection over a store; :meth:`run` does it all."""

    def __init__(self, store: RegistryStore, policy: GcPolicy) -> None:
        self.store = store
        self.backend = store.backend
        self.policy = policy
        self.run_id = f"{int(time.time())}-{uuid.uuid4().hex[:8]}"

    # ------------------------------------------------------------------ helpers

    def _mtime(self, path: str) -> float | None:
        try:
            return self.backend.stat(path).modified
        except NotFound:
            return None

    def _info(self, digest: Digest) -> ManifestInfo | None:
        path = layout.blob_data(digest)
        # A manifest pushed during this run may have its bytes in our trash right now: its
        # references count all the same.
        for candidate in (path, layout.trash(self.run_id, path)):
            try:
                return read_stored_manifest(self.store.read_bytes(candidate))
            except NotFound:
                continue
        return None

    def _revisions(self, name: str) -> list[Digest]:
        found = []
        for algorithm_dir in self.store.list_dir(layout.revisions(name)):
            for digest_dir in self.store.list_dir(algorithm_dir):
                text = f"{layout.child_name(algorithm_dir)}:{layout.child_name(digest_dir)}"
                try:
                    found.append(parse_digest(text))
                except RegistryError:
                    continue  # not ours; leave it alone
        return found

    def _layer_links(self, name: str) -> Iterable[tuple[Digest, str]]:
        for algorithm_dir in self.store.list_dir(layout.layers(name)):
            for digest_dir in self.store.list_dir(algorithm_dir):
                text = f"{layout.child_name(algorithm_dir)}:{layout.child_name(digest_dir)}"
                try:
                    yield parse_digest(text), f"{digest_dir}/link"
                except RegistryError:
                    continue

    def _stored_blobs(self) -> Iterable[Digest]:
        for algorithm_dir in self.store.list_dir(layout.BLOBS):
            for prefix_dir in self.store.list_dir(algorithm_dir):
                for digest_dir in self.store.list_dir(prefix_dir):
                    text = f"{layout.child_name(algorithm_dir)}:{layout.child_name(digest_dir)}"
                    try:
                        yield parse_digest(text)
                    except RegistryError:
                        continue

    # ------------------------------------------------------------------ phases

    def run(self) -> GcReport:
        """One collection; a dry run changes nothing, so it takes no lock."""
        if self.policy.dry_run:
            return self._run()
        with exclusive_run(self.store, self.run_id):
            return self._run()

    def _run(self) -> GcReport:
        report = GcReport()
        started = time.time()
        cutoff = started - self.policy.grace_period
        if not self.policy.dry_run:
            self._recover_previous_runs(report)
        for name in self.store.repositories(with_uploads_only=True):
            self._expire_uploads(name, started, report)
        repositories = self.store.repositories()
        if self.policy.delete_untagged:
            for name in repositories:
                self._delete_untagged(name, cutoff, report)
        mark = self._mark(self.store.repositories())
        candidates: dict[Digest, int] = {}
        total = 0
        for digest in self._stored_blobs():
            total += 1
            if digest in mark.referenced:
                continue
            try:
                info = self.backend.stat(layout.blob_data(digest))
            except NotFound:
                continue
            newest = max(info.modified, mark.newest_link.get(digest, 0.0))
            if newest >= cutoff:
                continue
            candidates[digest] = info.size
        if self.policy.dry_run:
            report.blobs = sorted(str(d) for d in candidates)
            report.bytes_freed = sum(candidates.values())
            report.kept_blobs = total - len(candidates)
            report.swept = self._sweep(started)
            return report
        moved = self._move_to_trash([layout.blob_data(d) for d in candidates])
        # Look again: a push may have referenced or re-linked a candidate meanwhile.
        second = self._mark(self.store.repositories())
        for digest in list(candidates):
            fresh = second.newest_link.get(digest, 0.0) >= cutoff
            if digest in second.referenced or fresh:
                path = layout.blob_data(digest)
                if path in moved:
                    self._put_back(path)
                report.restored.append(str(digest))
                del candidates[digest]
        for digest, size in candidates.items():
            report.blobs.append(str(digest))
            report.bytes_freed += size
        self.store.delete_quietly(f"{layout.TRASH}/{self.run_id}")
        self._drop_stale_links(set(candidates), cutoff)
        report.kept_blobs = total - len(candidates)
        report.swept = self._sweep(started)
        _log.info(
            "gc finished",
            swept=len(report.swept),
            blobs=len(report.blobs),
            bytes=report.bytes_freed,
            manifests=len(report.manifests),
            uploads=len(report.uploads),
            restored=len(report.restored),
            seconds=round(time.time() - started, 3),
        )
        return report

    def _sweep(self, started: float) -> list[str]:
        """The backend's leftovers, idle for as long as an upload session may be."""
        if not isinstance(self.backend, RegistryHousekeeping):
            return []
        return self.backend.sweep(started - self.policy.upload_expiry, self.policy.dry_run)

    def _recover_previous_runs(self, report: GcReport) -> None:
        for run_dir in self.store.list_dir(layout.TRASH):
            try:
                paths = json.loads(self.store.read_bytes(f"{run_dir}/index.json"))
            except (NotFound, ValueError):
                paths = []
            run = layout.child_name(run_dir)
            for path in paths:
                try:
                    self.backend.move(layout.trash(run, path), path)
                    report.restored.append(path)
                except NotFound:
                    continue
            self.store.delete_quietly(run_dir)

    def _move_to_trash(self, paths: list[str]) -> set[str]:
        if not paths:
            return set()
        index = f"{layout.TRASH}/{self.run_id}/index.json"
        self.store.write_bytes(index, json.dumps(paths).encode())
        moved = set()
        for path in paths:
            try:
                self.backend.move(path, layout.trash(self.run_id, path))
                moved.add(path)
            except NotFound:
                continue
        return moved

    def _put_back(self, path: str) -> None:
        # NotFound: a push already took it back.
        with contextlib.suppress(NotFound):
            self.backend.move(layout.trash(self.run_id, path), path)

    def _expire_uploads(self, name: str, now: float, report: GcReport) -> None:
        for upload_dir in self.store.list_dir(layout.uploads(name)):
            upload_id = layout.child_name(upload_dir)
            # A session being created may have no info file yet: its directory's time counts.
            touched = self._mtime(f"{upload_dir}/info") or self._mtime(upload_dir)
            if touched is None or now - touched < self.policy.upload_expiry:
                continue
            report.uploads.append(f"{name}/{upload_id}")
            if not self.policy.dry_run:
                self.store.delete_upload(name, upload_id)

    def _reachable(self, name: str) -> set[Digest]:
        """Manifests of ``name`` that a tag reaches, through indexes and referrers."""
        pending: list[Digest] = []
        for tag in self.store.tags(name):
            try:
                record = ManifestRecord.from_json(self.store.read_bytes(layout.tag_link(name, tag)))
            except (NotFound, ValueError, KeyError, RegistryError):
                continue
            pending.append(record.digest)
        reachable: set[Digest] = set()
        while pending:
            digest = pending.pop()
            if digest in reachable:
                continue
            reachable.add(digest)
            info = self._info(digest)
            if info is not None:
                pending.extend(child.digest for child in info.manifests)
            for descriptor in self.store.referrers(name, digest):
                try:
                    pending.append(parse_digest(descriptor["digest"]))
                except (KeyError, RegistryError):
                    continue
        return reachable

    def _delete_untagged(self, name: str, cutoff: float, report: GcReport) -> None:
        reachable = self._reachable(name)
        doomed = []
        for digest in self._revisions(name):
            if digest in reachable:
                continue
            touched = self._mtime(layout.revision_link(name, digest))
            if touched is None or touched >= cutoff:
                continue
            doomed.append(digest)
        if not doomed:
            return
        if self.policy.dry_run:
            report.manifests.extend(f"{name}@{d}" for d in doomed)
            return
        links = [layout.revision_link(name, d) for d in doomed]
        moved = self._move_to_trash(links)
        # Look again, as for blobs: a new index or tag may have reached one meanwhile.
        reachable = self._reachable(name)
        for digest, link in zip(doomed, links, strict=True):
            if digest in reachable:
                if link in moved:
                    self._put_back(link)
                report.restored.append(f"{name}@{digest}")
                continue
            report.manifests.append(f"{name}@{digest}")
            info = self._info(digest)
            if info is not None and info.subject is not None:
                referrer = layout.referrer_link(name, info.subject.digest, digest)
                self.store.delete_quietly(referrer.rsplit("/", 1)[0])
            self.store.delete_quietly(layout.trash(self.run_id, link).rsplit("/", 1)[0])

    def _mark(self, repositories: list[str]) -> _Mark:
        mark = _Mark()
        for name in repositories:
            for digest in self._revisions(name):
                mark.referenced.add(digest)
                info = self._info(digest)
                if info is not None:
                    mark.referenced.update(blob.digest for blob in info.blobs)
                    mark.referenced.update(child.digest for child in info.manifests)
            for digest, link in self._layer_links(name):
                touched = self._mtime(link)
                if touched is not None and touched > mark.newest_link.get(digest, 0.0):
                    mark.newest_link[digest] = touched
        return mark

    def _drop_stale_links(self, deleted: set[Digest], cutoff: float) -> None:
        """Remove repositories' links to blobs that are gone, unless freshly rewritten."""
        if not deleted:
            return
        for name in self.store.repositories():
            for digest, link in self._layer_links(name):
                if digest not in deleted:
                    continue
                touched = self._mtime(link)
                if touched is not None and touched < cutoff:
                    self.store.delete_quietly(link.rsplit("/", 1)[0])
