"""Ingest files and folders into a collection, idempotently and safely under interruption.

How consistency works: a chunk's id is a hash of (source path, position, text), so the set of ids a file should
have is known before anything is written. For each file the store is compared with that set: nothing missing
and nothing extra means *unchanged*; otherwise the missing chunks are embedded and added first, and only once all
of them are in are the file's stale chunks deleted. A kill at any moment therefore leaves, per file, either its
old chunks, or its old chunks plus some new ones; a re-run adds what is missing and deletes what is stale, ending
with exactly the ids of a clean ingest. Nothing else records progress: the chunk ids in the store are the manifest.
One ingest at a time writes a collection (``KnowledgeStore.writing``): a second waits, then finds the chunks in.

What is read (``tools/reading.py``): regular files only, after links are followed, of at most ``max_file_mb``; in a
folder, a link whose target lies outside the folder is skipped unless ``follow_links``. Everything skipped is
listed in the report with its reason.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conclave.tools.chunking import Chunk, SkipFile, chunk_id, split_document
from conclave.tools.reading import load_file

from conclave.errors import ConfigError

if TYPE_CHECKING:
    from conclave.tools.store import KnowledgeStore

    from conclave.settings import Settings

__all__ = ["BATCH_SIZE", "IngestProgress", "IngestReport", "SkippedFile", "discover_files", "ingest"]

BATCH_SIZE = 64
CHUNKS_PER_SECOND = 16.5
"""Ingest's rate on a small CPU machine (docs/PERFORMANCE.md, '4. Retrieval'), for the warning before a large
ingest."""
"""Measured ingest throughput with the local embedder on 2 cores (docs/PERFORMANCE.md, table 4): for estimates."""
WARN_ABOVE_SECONDS = 120.0
_SKIP_DIRS = {"node_modules", "__pycache__", "venv", "site-packages", "dist", "build"}


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not ingested, and why."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What one ingest run did."""

    collection: str
    files_seen: int = 0
    files_ingested: int = 0
    files_unchanged: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    files_pruned: int = 0
    chunks_added: int = 0
    chunks_removed: int = 0
    chunks_total: int = 0
    seconds: float = 0.0

    @property
    def files_skipped(self) -> int:
        return len(self.skipped)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data (for --json output and run records)."""
        return {
            "collection": self.collection,
            "files_seen": self.files_seen,
            "files_ingested": self.files_ingested,
            "files_unchanged": self.files_unchanged,
            "files_skipped": self.files_skipped,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "files_pruned": self.files_pruned,
            "chunks_added": self.chunks_added,
            "chunks_removed": self.chunks_removed,
            "chunks_total": self.chunks_total,
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class IngestProgress:
    """A progress update: files handled so far and chunks embedded so far."""

    files_done: int
    files_total: int
    chunks_added: int
    current: str
    elapsed: float


@dataclass(frozen=True)
class _File:
    path: Path
    name: str
    explicit: bool
    root: Path
    """The folder it was found in (resolved), or the file itself when it was named."""

    @property
    def source(self) -> str:
        return self.path.as_posix()


def _matches(name: str, patterns: Sequence[str]) -> bool:
    base = name.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(base, p) for p in patterns)


def discover_files(
    paths: Iterable[str | Path], include: Sequence[str] | None = None, exclude: Sequence[str] | None = None
) -> tuple[list[_File], list[Path]]:
    """The files to ingest (sorted, de-duplicated) and the resolved roots; a missing path is a ConfigError.

    Globs match a file's path relative to the folder given (``docs/*.md``) or its bare name (``*.md``). Hidden
    files and folders and dependency folders (``node_modules``, ``__pycache__``, virtualenvs) are not walked.
    """
    include = list(include or [])
    exclude = list(exclude or [])
    files: dict[Path, _File] = {}
    roots: list[Path] = []
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.exists():
            _missing(raw, root)
        root = root.resolve()
        roots.append(root)
        if root.is_file():
            candidates = [(root, root.name, True)]
        else:
            candidates = []
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(
                    d
                    for d in dirnames
                    if not d.startswith(".") and d not in _SKIP_DIRS and not (Path(dirpath, d) / "pyvenv.cfg").exists()
                )
                # Everything that is not a folder, devices and pipes included: the reader skips and lists them.
                for filename in sorted(filenames):
                    if filename.startswith("."):
                        continue
                    full = Path(dirpath, filename)
                    candidates.append((full, full.relative_to(root).as_posix(), False))
        for full, name, explicit in candidates:
            if include and not _matches(name, include):
                continue
            if exclude and _matches(name, exclude):
                continue
            files.setdefault(full, _File(full, name, explicit, root))
    return sorted(files.values(), key=lambda f: f.source), roots


def _missing(raw: str | Path, path: Path) -> None:
    """The ConfigError for a path that does not exist, naming a symbolic link loop as one."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(
                f"symbolic link loop: {raw}", hint="a link on this path leads back to itself; point it at a real file"
            ) from exc
    raise ConfigError(f"no such file or folder: {raw}", hint="check the path (ingest takes files and folders)")


@dataclass
class _Pending:
    file: _File
    missing: int
    stale: list[str]


class _Batcher:
    """Adds new chunks to the collection in batches. A changed file's old chunks are deleted only once all of its new
    ones are in, so an interrupted ingest never leaves a file with fewer chunks than before."""

    def __init__(
        self, store: KnowledgeStore, col: Any, report: IngestReport, size: int, on_batch: Callable[[str], None]
    ):
        self.store, self.col, self.report, self.size, self.on_batch = store, col, report, size, on_batch
        self.queue: list[tuple[str, Chunk, dict[str, Any], _Pending]] = []

    def add(self, cid: str, chunk: Chunk, meta: dict[str, Any], pending: _Pending) -> None:
        self.queue.append((cid, chunk, meta, pending))
        if len(self.queue) >= self.size:
            self.flush()

    def finish(self, pending: _Pending) -> None:
        if pending.stale:
            self.store.call(self.col.delete, ids=pending.stale)
            self.report.chunks_removed += len(pending.stale)
        self.report.files_ingested += 1

    def flush(self) -> None:
        if not self.queue:
            return
        batch, self.queue = self.queue, []
        self.store.add_passages(
            self.col,
            ids=[cid for cid, _, _, _ in batch],
            embed_texts=[c.embed_text for _, c, _, _ in batch],
            documents=[c.text for _, c, _, _ in batch],
            metadatas=[meta for _, _, meta, _ in batch],
        )
        self.report.chunks_added += len(batch)
        for _, _, _, pending in batch:
            pending.missing -= 1
            if pending.missing == 0:
                self.finish(pending)
        self.on_batch(batch[-1][3].file.name)


def _confined(
    files: list[_File], confine_to: Sequence[Path] | None, follow_links: bool, report: IngestReport
) -> list[_File]:
    """The files that really lie (links followed) in one of ``confine_to`` when it is given (a workflow's allowed
    folders decide alone), else, unless ``follow_links``, in the folder they were found in; the others are reported
    as skipped."""
    allowed = None if confine_to is None else [Path(p).resolve() for p in confine_to]
    inside = []
    for file in files:
        real = os.path.realpath(file.path)
        if allowed is not None and not _under_any(real, allowed):
            report.skipped.append(SkippedFile(file.name, "a link to a file outside the allowed folders"))
        elif allowed is None and not follow_links and not file.explicit and not _under_any(real, [file.root]):
            report.skipped.append(
                SkippedFile(file.name, "a link to a file outside the folder (--follow-links reads it)")
            )
        else:
            inside.append(file)
    return inside


def _ingest_file(
    file: _File, settings: Settings, have: set[str], batcher: _Batcher, report: IngestReport, now: str
) -> bool:
    """Queue one file's new chunks (its unchanged ones stay, its stale ones go once the new ones are in); False when
    the file was skipped (unreadable, empty)."""
    try:
        doc = load_file(file.path, settings.max_file_mb * 2**20, explicit=file.explicit)
        chunks = split_document(doc, settings.chunk_size, settings.chunk_overlap, name=file.path.name)
        if not chunks:
            raise SkipFile("empty")
    except SkipFile as skip:
        report.skipped.append(SkippedFile(file.name, skip.reason))
        return False
    ids = [chunk_id(file.source, c.index, c.text) for c in chunks]
    missing = [(cid, c) for cid, c in zip(ids, chunks, strict=True) if cid not in have]
    stale = sorted(have - set(ids))
    if not missing and not stale:
        report.files_unchanged += 1
        return True
    pending = _Pending(file, len(missing), stale)
    if not missing:
        batcher.finish(pending)
    for cid, chunk in missing:
        meta = {
            "source": file.source,
            "name": file.name,
            "title": chunk.title,
            "chunk_index": chunk.index,
            "kind": doc.kind,
            "ingested_at": now,
            **chunk.meta,  # a table chunk's caption and rows (tools/tables.py)
        }
        batcher.add(cid, chunk, meta, pending)
    return True


def _prune(
    store: KnowledgeStore,
    col: Any,
    existing: dict[str, set[str]],
    kept: set[str],
    roots: list[Path],
    report: IngestReport,
) -> None:
    """Remove the chunks of files under the ingested folders that are gone (or no longer match the filters)."""
    for source, ids_of_source in sorted(existing.items()):
        if source in kept or not _under_any(source, roots):
            continue
        store.call(col.delete, ids=sorted(ids_of_source))
        report.chunks_removed += len(ids_of_source)
        report.files_pruned += 1


def ingest(
    paths: Iterable[str | Path],
    collection: str,
    settings: Settings,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    prune: bool = False,
    progress: Callable[[IngestProgress], None] | None = None,
    store: KnowledgeStore | None = None,
    batch_size: int = BATCH_SIZE,
    confine_to: Sequence[Path] | None = None,
    follow_links: bool = False,
    on_warning: Callable[[str], None] | None = None,
) -> IngestReport:
    """Ingest files and folders into ``collection``; re-running is idempotent (see the module docstring).

    ``confine_to``: folders every file must really lie in (after links are followed); a file linked from outside
    them is skipped (a workflow file's ingest step reads only what the user allowed). ``follow_links``: also read
    a file in a given folder that is a link to a file outside it (skipped and listed otherwise). ``on_warning``
    hears, before anything is embedded, when the input would take long (an estimate from its size), and when
    another ingest into the collection has to finish first.
    """
    from conclave.tools.store import KnowledgeStore, validate_collection_name

    started = time.monotonic()
    validate_collection_name(collection)
    if settings.chunk_overlap >= settings.chunk_size:
        raise ConfigError(
            f"chunk_overlap ({settings.chunk_overlap}) must be smaller than chunk_size ({settings.chunk_size})",
            hint="set CONCLAVE_CHUNK_OVERLAP below CONCLAVE_CHUNK_SIZE",
        )
    files, roots = discover_files(paths, include, exclude)
    report = IngestReport(collection=collection, files_seen=len(files))
    files = _confined(files, confine_to, follow_links, report)
    if on_warning is not None and (warning := size_warning(files, settings)):
        on_warning(warning)
    store = store or KnowledgeStore.open(settings)
    with store.writing(collection, on_wait=on_warning):
        _ingest_locked(store, files, roots, report, settings, prune, progress, batch_size, started)
    report.seconds = time.monotonic() - started
    return report


def _ingest_locked(
    store: KnowledgeStore,
    files: list[_File],
    roots: list[Path],
    report: IngestReport,
    settings: Settings,
    prune: bool,
    progress: Callable[[IngestProgress], None] | None,
    batch_size: int,
    started: float,
) -> None:
    """The part of :func:`ingest` that reads and writes the collection (its writer lock held)."""
    col = store.get_or_create_collection(report.collection)
    existing: dict[str, set[str]] = {}
    for cid, meta in store.all_metadata(col).items():
        existing.setdefault(str(meta.get("source", "")), set()).add(cid)

    done = 0

    def tick(current: str) -> None:
        if progress is not None:
            progress(IngestProgress(done, len(files), report.chunks_added, current, time.monotonic() - started))

    batcher = _Batcher(store, col, report, batch_size, tick)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    kept: set[str] = set()
    for file in files:
        tick(file.name)
        if _ingest_file(file, settings, existing.get(file.source, set()), batcher, report, now):
            kept.add(file.source)
        done += 1
    batcher.flush()
    if prune:
        _prune(store, col, existing, kept, roots, report)
    report.chunks_total = int(store.call(col.count))
    tick("")


def size_warning(files: Sequence[_File], settings: Settings) -> str | None:
    """A warning with a time estimate when ingesting ``files`` (not yet in the store) would take long."""
    total = 0
    for file in files:
        try:
            total += file.path.stat().st_size
        except OSError:
            continue
    chunks = total / max(1, settings.chunk_size - settings.chunk_overlap)
    seconds = chunks / CHUNKS_PER_SECOND
    if seconds < WARN_ABOVE_SECONDS:
        return None
    if seconds >= 3600:
        took = f"{seconds / 3600:.1f} hours"
    else:
        took = f"{seconds / 60:.0f} minutes"
    return (
        f"{total / 1e6:,.1f} MB of input is about {chunks:,.0f} chunks: embedding it takes about {took} on this "
        f"kind of machine (~{CHUNKS_PER_SECOND:g} chunks/s); files already ingested and unchanged are skipped. "
        "Ctrl-C stops safely; a re-run continues"
    )


def _under_any(source: str, roots: list[Path]) -> bool:
    path = Path(source)
    return any(path == root or root in path.parents for root in roots)
