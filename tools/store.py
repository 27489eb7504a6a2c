"""The Chroma knowledge store: collections of embedded chunks, searched by similarity.

A store is a persistent Chroma client under ``settings.chroma_path`` or, when ``settings.chroma_url`` is set, an
HTTP client to a Chroma server (``chroma run --path ...``). Every collection records the embedder that filled it
and the vector dimension; searching it with another embedder is an error naming the right one. The async methods
run Chroma (and the embedding model) in a worker thread so they never block an event loop.

Concurrency: Chroma's clients are thread-safe once made, and all clients of one folder (or one server) in a process
share one Chroma "system"; making two at the same moment is not safe (the second can use the shared system before
the first has started it: "could not connect to tenant", "no attribute 'bindings'"), so clients are made one at a
time (``_CLIENT_LOCK``), and any number of stores, in any threads, may then search at once. Writers take
:meth:`KnowledgeStore.writing`: one writer per collection, across threads and processes (``fcntl.flock`` on a file
in ``chroma.locks/`` beside the store), so two ingests of one folder never both count the same chunks as added.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import shlex
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from conclave.errors import ConclaveError, ConfigError, StoreError
from conclave.events import Passage
from conclave.fileio import open_regular

if TYPE_CHECKING:
    from conclave.embeddings import Embedder
    from conclave.settings import Settings

__all__ = ["COLLECTION_NAME_RULES", "CollectionInfo", "KnowledgeStore", "validate_collection_name"]

T = TypeVar("T")

COLLECTION_NAME_RULES = (
    "3-512 characters from a-z, A-Z, 0-9, '.', '_' and '-', starting and ending with a letter or digit"
)
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]$")
MAX_K = 100
QUERY_HITS_PER_CALL = 8192  # queries x k per Chroma query call (see search_many_sync)
_PAGE = 1000
_CLIENT_LOCK = threading.Lock()
_LOCK_NAME_CHARS = 200  # a collection name may be 512 characters; a file name may not


@dataclass(frozen=True)
class CollectionInfo:
    """A collection's name, chunk count and the embedder that filled it."""

    name: str
    count: int
    embedder: str
    dimension: int | None


def validate_collection_name(name: str) -> str:
    """Return ``name`` if Chroma accepts it, else raise ConfigError with Chroma's naming rules.

    An empty name is an error like any other invalid one, never a stand-in for the default collection.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        what = f"invalid collection name {name!r}" + (
            ": it is empty" if isinstance(name, str) and not name.strip() else ""
        )
        raise ConfigError(what, hint=f"collection names need {COLLECTION_NAME_RULES}, e.g. my-notes")
    return name


_SQLITE_HEADER = b"SQLite format 3\x00"
# What Chroma's (Rust) SQLite layer says when chroma.sqlite3 is damaged (SQLITE_NOTADB = 26, SQLITE_CORRUPT = 11).
_DAMAGE_MARKERS = ("file is not a database", "malformed", "(code: 26)", "(code: 11)", "no such table")


def _one_line(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    for prefix in ("Database error: ", "error returned from database: "):
        text = text.removeprefix(prefix)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _looks_damaged(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(marker in text for marker in _DAMAGE_MARKERS)


def _damaged_store(path: Path, why: str) -> StoreError:
    """The one-line StoreError for a damaged persistent store; nothing is ever deleted to get past it."""
    folder, aside = shlex.quote(str(path)), shlex.quote(f"{path}.bak")
    return StoreError(
        f"the knowledge store at {path} is damaged ({why})",
        hint=f"nothing was deleted: move it aside with `mv {folder} {aside}` and ingest your files again, "
        "or set CONCLAVE_HOME to a fresh folder and re-ingest there",
    )


def _check_store_folder(path: Path) -> None:
    """Refuse a ``chroma.sqlite3`` that Chroma would silently replace or misread (checked before Chroma opens it).

    A missing or 0-byte file in an otherwise empty folder holds nothing and becomes a new store. Anything else
    that cannot be an SQLite database (other bytes, cut short below one page, or 0 bytes beside index data) would be
    overwritten by Chroma or shown as an empty store; it is a StoreError instead, and the folder is left as it is.
    """
    db = path / "chroma.sqlite3"
    try:
        if not db.is_file():
            return
        size = db.stat().st_size
        if size == 0:
            if any(p.is_dir() for p in path.iterdir()):
                raise _damaged_store(path, "chroma.sqlite3 is empty but the folder holds index data")
            return
        with db.open("rb") as fh:
            head = fh.read(100)
    except OSError as exc:
        raise StoreError(
            f"cannot read the knowledge store at {path}: {exc.strerror or exc}", hint="check the folder's permissions"
        ) from exc
    if not head.startswith(_SQLITE_HEADER):
        raise _damaged_store(path, "chroma.sqlite3 is not an SQLite database")
    page = int.from_bytes(head[16:18], "big") if len(head) >= 18 else 0
    page = 65536 if page == 1 else page
    if len(head) < 100 or size < page:
        raise _damaged_store(path, f"chroma.sqlite3 is cut short ({size} bytes)")


def _forget_failed_client(path: Path) -> None:
    """Drop the half-started Chroma system a failed open leaves in chromadb's per-folder cache.

    Otherwise the next open of the same folder in this process (after the user moved the damaged one aside, say)
    gets that broken system back and fails with an unrelated AttributeError.
    """
    try:
        from chromadb.api.shared_system_client import SharedSystemClient
    except ImportError:  # pragma: no cover - another chromadb layout
        return
    systems = getattr(SharedSystemClient, "_identifier_to_system", None)
    refcounts = getattr(SharedSystemClient, "_identifier_to_refcount", {})
    if isinstance(systems, dict) and refcounts.get(str(path), 0) <= 0:
        system = systems.pop(str(path), None)
        if system is not None:
            try:
                system.stop()
            except Exception:  # noqa: BLE001 - it failed to start; stopping it is best effort
                pass


@dataclass
class _WriterLock:
    """One collection's writer lock: ``thread`` orders this process's writers (re-entrant, so a caller holding it
    may call ingest, which takes it again); the first level also holds ``flock`` on ``path`` against other
    processes."""

    path: Path
    thread: threading.RLock = field(default_factory=threading.RLock)
    depth: int = 0
    fd: int | None = None


_WRITER_LOCKS: dict[Path, _WriterLock] = {}
_WRITER_LOCKS_GUARD = threading.Lock()


def _writer_lock(path: Path) -> _WriterLock:
    with _WRITER_LOCKS_GUARD:
        return _WRITER_LOCKS.setdefault(path, _WriterLock(path))


def _flock(path: Path, waiting: Callable[[], None]) -> int | None:
    """A descriptor holding an exclusive ``flock`` on ``path`` (created if need be; never through a link), waiting
    for another process's; None where there is no ``fcntl`` (Windows: threads are still ordered)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = open_regular(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(
            f"cannot create the lock file {path}: {exc.strerror or exc}", hint="check the folder's permissions"
        ) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _is_connection_error(exc: BaseException) -> bool:
    import httpx

    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, ConnectionError)):
        return True
    text = str(exc).lower()
    return "could not connect" in text or "connection refused" in text


class KnowledgeStore:
    """Collections of chunks in Chroma, with the embedder each was built with."""

    def __init__(self, settings: Settings, client: Any, *, embedder: Embedder | None = None, location: str = ""):
        self.settings = settings
        self.client = client
        self.location = location
        self._embedder = embedder
        self._lock = threading.Lock()

    # ------------------------------------------------------------ opening

    @classmethod
    def open(cls, settings: Settings, *, embedder: Embedder | None = None) -> KnowledgeStore:
        """A store on the configured Chroma: a server when ``chroma_url`` is set, else the persistent folder."""
        import chromadb

        chroma_settings = chromadb.Settings(anonymized_telemetry=False, allow_reset=False)
        if settings.chroma_url:
            url = settings.chroma_url
            parsed = urlparse(url if "://" in url else f"http://{url}")
            if not parsed.hostname:
                raise ConfigError(
                    f"invalid Chroma URL {url!r}", hint="use e.g. CONCLAVE_CHROMA_URL=http://127.0.0.1:8000"
                )
            port = parsed.port or (443 if parsed.scheme == "https" else 8000)
            try:
                with _CLIENT_LOCK:
                    client = chromadb.HttpClient(
                        host=parsed.hostname, port=port, ssl=parsed.scheme == "https", settings=chroma_settings
                    )
            except Exception as exc:  # chromadb raises ValueError when the server does not answer
                raise cls._server_down(url, settings) from exc
            return cls(settings, client, embedder=embedder, location=url)
        path = settings.chroma_path
        with _CLIENT_LOCK:
            client = cls._persistent_client(path, chroma_settings)
        return cls(settings, client, embedder=embedder, location=str(path))

    @staticmethod
    def _persistent_client(path: Path, chroma_settings: Any) -> Any:
        """A Chroma client on the folder, or StoreError; the caller holds ``_CLIENT_LOCK``."""
        import chromadb

        _check_store_folder(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
        except OSError as exc:
            raise StoreError(
                f"cannot open the knowledge store at {path}: {exc}", hint="check the folder's permissions"
            ) from exc
        except Exception as exc:  # chromadb's InternalError (and others) on a damaged or unreadable folder
            _forget_failed_client(path)
            if _looks_damaged(exc):
                raise _damaged_store(path, _one_line(exc)) from exc
            raise StoreError(
                f"cannot open the knowledge store at {path}: {type(exc).__name__}: {_one_line(exc)}",
                hint=f"if this persists the folder may be damaged: move it aside (mv {shlex.quote(str(path))} "
                f"{shlex.quote(f'{path}.bak')}) and ingest again",
            ) from exc

    @staticmethod
    def _server_down(url: str, settings: Settings) -> StoreError:
        return StoreError(
            f"the Chroma server at {url} is not answering",
            hint=f"start it with `chroma run --path {settings.chroma_path} --port {urlparse(url).port or 8000}`, "
            "or unset CONCLAVE_CHROMA_URL to use the local folder",
        )

    @property
    def embedder(self) -> Embedder:
        """The configured embedder (created on first use: loading a model takes seconds)."""
        if self._embedder is None:
            from conclave.embeddings import get_embedder

            with self._lock:
                if self._embedder is None:
                    self._embedder = get_embedder(self.settings.embedder, self.settings)
        return self._embedder

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a Chroma call, turning a vanished server or a damaged store into a StoreError that names it."""
        try:
            return fn(*args, **kwargs)
        except ConclaveError:
            raise
        except Exception as exc:
            if self.settings.chroma_url and _is_connection_error(exc):
                raise self._server_down(self.settings.chroma_url, self.settings) from exc
            if _looks_damaged(exc):
                if self.settings.chroma_url:
                    raise StoreError(
                        f"the Chroma server at {self.settings.chroma_url} reports a damaged store ({_one_line(exc)})",
                        hint="stop the server, move its --path folder aside and ingest again (nothing was deleted)",
                    ) from exc
                raise _damaged_store(self.settings.chroma_path, _one_line(exc)) from exc
            from chromadb.errors import InternalError

            if isinstance(exc, InternalError):
                raise StoreError(
                    f"the knowledge store at {self.location or self.settings.chroma_path} failed: {_one_line(exc)}",
                    hint="try again; if it keeps failing, move the store folder aside and ingest again",
                ) from exc
            raise

    def add_passages(
        self,
        collection: Any,
        ids: Sequence[str],
        embed_texts: Sequence[str],
        documents: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Embed ``embed_texts`` (what a search should match: a chunk with its heading, a context with its title) and
        add them with their ``documents`` (what a search returns) in one call; ids must be new."""
        vectors = self.embedder.embed_documents(list(embed_texts))
        self.call(
            collection.add, ids=list(ids), embeddings=vectors, documents=list(documents), metadatas=list(metadatas)
        )

    # ------------------------------------------------------------ one writer per collection

    def lock_path(self, collection: str) -> Path:
        """The file whose ``flock`` a writer of ``collection`` holds: in ``chroma.locks/`` beside the store folder
        (a server's collections are told apart by its URL)."""
        name = validate_collection_name(collection)
        if self.settings.chroma_url:
            name = hashlib.sha256(self.settings.chroma_url.encode()).hexdigest()[:12] + "-" + name
        if len(name) > _LOCK_NAME_CHARS:
            name = name[:_LOCK_NAME_CHARS] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
        return self.settings.chroma_path.with_name("chroma.locks") / f"{name}.lock"

    @contextlib.contextmanager
    def writing(self, collection: str, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
        """Be the only writer of ``collection`` while the block runs: other threads and processes wait (``on_wait``
        hears once that this one does). A thread that holds it may take it again."""
        lock = _writer_lock(self.lock_path(collection))
        told = False

        def waiting() -> None:
            nonlocal told
            if on_wait is not None and not told:
                on_wait(f"another ingest into collection {collection!r} is running; waiting for it to finish")
            told = True

        if not lock.thread.acquire(blocking=False):
            waiting()
            lock.thread.acquire()
        try:
            if lock.depth == 0:
                lock.fd = _flock(lock.path, waiting)
            lock.depth += 1
            try:
                yield
            finally:
                lock.depth -= 1
                if lock.depth == 0 and lock.fd is not None:
                    os.close(lock.fd)  # releases the flock
                    lock.fd = None
        finally:
            lock.thread.release()

    # ------------------------------------------------------------ collections

    def _names(self) -> list[str]:
        cols = self.call(self.client.list_collections)
        return sorted(c if isinstance(c, str) else c.name for c in cols)

    def exists_sync(self, name: str) -> bool:
        """Whether a collection of that name exists."""
        validate_collection_name(name)
        return name in self._names()

    def get_collection(self, name: str) -> Any:
        """The Chroma collection, or StoreError listing the collections that exist."""
        validate_collection_name(name)
        from chromadb.errors import NotFoundError

        try:
            return self.call(self.client.get_collection, name, embedding_function=None)
        except (NotFoundError, ValueError) as exc:
            if isinstance(exc, ValueError) and "does not exist" not in str(exc):
                raise
            names = self._names()
            existing = ", ".join(names) if names else "none yet"
            raise StoreError(
                f"no collection named {name!r} (existing: {existing})",
                hint="create it with `conclave ingest PATH --collection NAME`, or pick one from `conclave collections`",
            ) from exc

    def get_or_create_collection(self, name: str) -> Any:
        """The collection for writing, created with this store's embedder if it does not exist yet."""
        validate_collection_name(name)
        embedder = self.embedder
        if name in self._names():
            collection = self.get_collection(name)
            self.check_embedder(collection)
            return collection
        return self.call(
            self.client.get_or_create_collection,
            name,
            metadata={"embedder": embedder.name, "dimension": embedder.dimension},
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )

    def check_embedder(self, collection: Any) -> None:
        """Raise StoreError when the collection was built with another embedder than this store's."""
        from conclave.embeddings import spec_for_embedder_name

        meta = collection.metadata or {}
        recorded = meta.get("embedder")
        current = self.embedder.name
        if recorded and recorded != current:
            raise StoreError(
                f"collection {collection.name!r} was built with embedder {recorded!r}, "
                f"but the current embedder is {current!r}",
                hint=f"set CONCLAVE_EMBEDDER={spec_for_embedder_name(recorded)} to use it, "
                "or re-ingest into a new collection",
            )
        dimension = meta.get("dimension")
        if recorded and dimension and int(dimension) != self.embedder.dimension:
            raise StoreError(
                f"collection {collection.name!r} holds {dimension}-dimensional vectors but {current!r} "
                f"makes {self.embedder.dimension}-dimensional ones",
                hint="re-ingest into a new collection",
            )

    def list_collections_sync(self) -> list[CollectionInfo]:
        """Every collection with its chunk count and embedder."""
        infos = []
        for name in self._names():
            col = self.call(self.client.get_collection, name, embedding_function=None)
            meta = col.metadata or {}
            dim = meta.get("dimension")
            infos.append(
                CollectionInfo(
                    name=name,
                    count=self.call(col.count),
                    embedder=str(meta.get("embedder", "unknown")),
                    dimension=int(dim) if dim is not None else None,
                )
            )
        return infos

    def count_sync(self, name: str) -> int:
        """How many chunks a collection holds (StoreError if it does not exist)."""
        return int(self.call(self.get_collection(name).count))

    def forget_sync(self, name: str) -> int:
        """Delete a collection; returns how many chunks it held."""
        collection = self.get_collection(name)
        count = self.call(collection.count)
        self.call(self.client.delete_collection, name)
        return int(count)

    # ------------------------------------------------------------ search

    def search_sync(
        self, query: str, k: int = 5, collection: str | None = None, where: dict[str, Any] | None = None
    ) -> list[Passage]:
        """The ``k`` passages most similar to ``query``, best first; score is cosine similarity in [0, 1]. ``where``
        (a Chroma metadata filter, e.g. ``{"source": path}``) limits the search to the passages it matches."""
        return self.search_many_sync([query], k, collection, where)[0]

    def search_many_sync(
        self, queries: list[str], k: int = 5, collection: str | None = None, where: dict[str, Any] | None = None
    ) -> list[list[Passage]]:
        """:meth:`search_sync` for several queries at once (one batched embedding call; Chroma queried in batches)."""
        for query in queries:
            if not isinstance(query, str) or not query.strip():
                raise StoreError("the search query is empty", hint="search for some words, e.g. 'what is Adam'")
        if not 1 <= k <= MAX_K:
            raise StoreError(f"k must be between 1 and {MAX_K} (got {k})", hint="use e.g. -k 5")
        # Only None means "the configured collection": an empty name is invalid, not a way to reach the default.
        col = self.get_collection(self.settings.collection if collection is None else collection)
        self.check_embedder(col)
        count = self.call(col.count)
        if count == 0 or not queries:
            return [[] for _ in queries]
        vectors = (
            self.embedder.embed_documents(list(queries))
            if len(queries) > 1
            else [self.embedder.embed_query(queries[0])]
        )
        n_results = min(k, count)
        # Chroma looks every hit up in SQLite with one variable each, and SQLite allows 32,766 per statement
        # ("too many SQL variables" at 5,397 queries x k=10), so long query lists go in batches.
        batch = max(1, QUERY_HITS_PER_CALL // n_results)
        found: list[list[Passage]] = []
        for start in range(0, len(vectors), batch):
            result = self.call(
                col.query,
                query_embeddings=vectors[start : start + batch],
                n_results=n_results,
                where=where or None,
                include=["documents", "metadatas", "distances"],
            )
            found.extend(
                self._passages(ids, docs, metas, dists)
                for ids, docs, metas, dists in zip(
                    result["ids"], result["documents"], result["metadatas"], result["distances"], strict=True
                )
            )
        return found

    @staticmethod
    def _passages(ids: list[str], docs: list[Any], metas: list[Any], dists: list[float]) -> list[Passage]:
        passages = []
        for pid, doc, meta, dist in zip(ids, docs, metas, dists, strict=True):
            meta = meta or {}
            score = min(1.0, max(0.0, 1.0 - float(dist)))
            passages.append(
                Passage(
                    id=pid,
                    source=str(meta.get("source", "")),
                    text=doc or "",
                    score=round(score, 4),
                    title=str(meta.get("title", "")),
                )
            )
        passages.sort(key=lambda p: p.score, reverse=True)
        return passages

    # ------------------------------------------------------------ helpers for ingestion

    def all_metadata(self, collection: Any, where: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """id -> metadata for every chunk in the collection (optionally filtered), read in pages."""
        out: dict[str, dict[str, Any]] = {}
        offset = 0
        while True:
            page = self.call(collection.get, where=where, include=["metadatas"], limit=_PAGE, offset=offset)
            ids = page["ids"]
            for cid, meta in zip(ids, page["metadatas"] or [{}] * len(ids), strict=True):
                out[cid] = dict(meta or {})
            if len(ids) < _PAGE:
                return out
            offset += _PAGE

    # ------------------------------------------------------------ async API

    async def search(
        self, query: str, k: int = 5, collection: str | None = None, where: dict[str, Any] | None = None
    ) -> list[Passage]:
        """Async :meth:`search_sync` (runs in a worker thread)."""
        return await asyncio.to_thread(self.search_sync, query, k, collection, where)

    async def list_collections(self) -> list[CollectionInfo]:
        """Async :meth:`list_collections_sync`."""
        return await asyncio.to_thread(self.list_collections_sync)

    async def forget(self, name: str) -> int:
        """Async :meth:`forget_sync`."""
        return await asyncio.to_thread(self.forget_sync, name)

    async def exists(self, name: str) -> bool:
        """Async :meth:`exists_sync`."""
        return await asyncio.to_thread(self.exists_sync, name)
