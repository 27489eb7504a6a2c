"""The knowledge store used by many units at once (an evaluation's rag items), and one writer per collection."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from conclave.tools.demo import DEMO_COLLECTION, ensure_demo_collection
from conclave.tools.ingest import ingest
from conclave.tools.store import KnowledgeStore

from conclave.settings import Settings, load_settings
from tests.integration.test_ingest import write_corpus
from tests.integration.test_store import NOTES, FakeEmbedder

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).absolute().parents[2]
UNITS = 16
ROUNDS = 5


@pytest.fixture
def notes(tmp_path: Path, conclave_home: Path) -> Settings:
    """A fresh home with collection ``notes`` filled (the hash embedder: the store is what is under test)."""
    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    settings = load_settings()
    ingest([folder], "notes", settings, store=KnowledgeStore.open(settings, embedder=FakeEmbedder()))
    return settings


def _forget_chroma_systems() -> None:
    """Start the next open from nothing, as a new process does (the fixture's open left a system behind)."""
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


def _expected(settings: Settings) -> list[str]:
    """What each unit's search finds when the units run one at a time."""
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    return [store.search_sync(_query(i), k=2, collection="notes")[0].source for i in range(UNITS)]


def _query(i: int) -> str:
    return NOTES[sorted(NOTES)[i % len(NOTES)]]


def test_many_threads_open_the_store_and_search_at_once(notes: Settings) -> None:
    expected = _expected(notes)
    _forget_chroma_systems()
    start = threading.Barrier(UNITS)
    errors: list[BaseException] = []
    found: dict[int, str] = {}

    def unit(i: int) -> None:
        try:
            start.wait()
            store = KnowledgeStore.open(notes, embedder=FakeEmbedder())
            found[i] = store.search_sync(_query(i), k=2, collection="notes")[0].source
        except BaseException as exc:  # noqa: BLE001 - collected and shown below
            errors.append(exc)

    threads = [threading.Thread(target=unit, args=(i,)) for i in range(UNITS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [], [f"{type(e).__name__}: {e}" for e in errors]
    assert [found[i] for i in range(UNITS)] == expected


async def test_many_asyncio_units_open_the_store_and_search_at_once(notes: Settings) -> None:
    """What `conclave eval --method rag` does: each unit opens the store in a thread, then searches."""
    expected = _expected(notes)

    async def unit(i: int) -> str:
        store = await asyncio.to_thread(KnowledgeStore.open, notes, embedder=FakeEmbedder())
        passages = await store.search(_query(i), k=2, collection="notes")
        return passages[0].source

    for _ in range(ROUNDS):  # each round starts as a new process would (the race is a matter of timing)
        _forget_chroma_systems()
        sources = await asyncio.gather(*(unit(i) for i in range(UNITS)), return_exceptions=True)
        failures = [f"{type(s).__name__}: {s}" for s in sources if isinstance(s, BaseException)]
        assert failures == []
        assert sources == expected


async def test_units_starting_at_once_on_an_empty_store_share_one_demo_ingest(conclave_home: Path) -> None:
    settings = load_settings()
    _forget_chroma_systems()

    async def unit() -> tuple[bool, int]:
        store = await asyncio.to_thread(KnowledgeStore.open, settings, embedder=FakeEmbedder())
        created = await ensure_demo_collection(settings, store)
        return created, await asyncio.to_thread(store.count_sync, DEMO_COLLECTION)

    results = await asyncio.gather(*(unit() for _ in range(8)))
    counts = {count for _, count in results}
    assert sum(created for created, _ in results) == 1
    assert len(counts) == 1 and counts.pop() > 0  # nobody searched a half-filled collection


class _HeldEmbedder(FakeEmbedder):
    """Holds its first batch until ``go`` is set (or a few seconds pass): a slow ingest, made slow on cue."""

    def __init__(self, go: threading.Event):
        self.go = go

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.go.wait(timeout=3)
        return super().embed_documents(texts)


def test_two_ingests_of_one_folder_at_once_count_each_chunk_once(notes: Settings, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 4)
    second_started = threading.Event()
    reports = {}
    warnings: list[str] = []

    def first() -> None:
        store = KnowledgeStore.open(notes, embedder=_HeldEmbedder(second_started))
        reports["first"] = ingest([tmp_path / "docs"], "pair", notes, store=store)

    def second() -> None:
        time.sleep(0.3)  # the first is inside its ingest, holding its first batch
        store = KnowledgeStore.open(notes, embedder=FakeEmbedder())
        reports["second"] = ingest(
            [tmp_path / "docs"],
            "pair",
            notes,
            store=store,
            progress=lambda _: second_started.set(),
            on_warning=warnings.append,
        )

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    total = reports["first"].chunks_total
    assert total > 0 and reports["second"].chunks_total == total
    assert reports["first"].chunks_added + reports["second"].chunks_added == total
    assert reports["second"].files_unchanged == 4
    assert any("another ingest into collection 'pair'" in w for w in warnings)


def test_an_ingest_in_another_process_waits_for_the_writer(notes: Settings, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 2)
    script = textwrap.dedent(
        f"""
        import json, sys
        from conclave.tools.ingest import ingest
        from conclave.tools.store import KnowledgeStore
        from conclave.settings import load_settings
        from tests.integration.test_store import FakeEmbedder

        settings = load_settings()
        store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
        warn = lambda message: print("WARN", message, file=sys.stderr, flush=True)
        report = ingest([{str(tmp_path / "docs")!r}], "shared", settings, store=store, on_warning=warn)
        print(json.dumps(report.to_dict()))
        """
    )
    env = {**os.environ, "CONCLAVE_HOME": str(notes.home), "PYTHONPATH": str(REPO_ROOT)}
    store = KnowledgeStore.open(notes, embedder=FakeEmbedder())
    with store.writing("shared"):
        child = subprocess.Popen(
            [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert child.stderr is not None
        line = "start"
        while line and not line.startswith("WARN"):
            line = child.stderr.readline().decode()
        assert "another ingest into collection 'shared' is running; waiting" in line
        time.sleep(0.5)
        assert child.poll() is None  # still waiting
        assert not store.exists_sync("shared")
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err.decode()[-2000:]
    report = json.loads(out.decode().splitlines()[-1])
    assert report["files_ingested"] == 2 and report["chunks_added"] == report["chunks_total"] > 0
    assert store.lock_path("shared").parent == notes.chroma_path.with_name("chroma.locks")


def test_a_rag_evaluation_at_the_default_concurrency_loses_no_item(tmp_path: Path, conclave_home: Path) -> None:
    """The reported symptom, end to end: `conclave eval --method rag -c notes` lost items to "cannot open the
    knowledge store" (a fresh process, units opening the store at once); the model is a loopback stub."""
    from tests.servers.openai_stub import StubEndpoint

    folder = tmp_path / "notes"
    folder.mkdir()
    for name, text in NOTES.items():
        (folder / name).write_text(text)
    items = tmp_path / "items.jsonl"
    items.write_text(
        "".join(json.dumps({"question": f"Item {i}: what is Adam?", "answer": "42"}) + "\n" for i in range(8))
    )
    env = {**os.environ, "CONCLAVE_HOME": str(conclave_home), "CONCLAVE_EMBEDDED_THREADS": "1"}
    cli = [sys.executable, "-c", "from conclave.cli.main import main; main()"]
    ingested = subprocess.run(
        [*cli, "ingest", str(folder), "-c", "notes", "--json"], cwd=REPO_ROOT, env=env, capture_output=True
    )
    assert ingested.returncode == 0, ingested.stderr.decode()[-2000:]
    stub = StubEndpoint(delay=0.05).start()
    try:
        run = [*cli, "eval", "--method", "rag", "-c", "notes", "-m", "openai/stub", "--endpoint", stub.base_url]
        done = subprocess.run(
            [*run, "-d", f"jsonl:{items}", "--no-cache", "--json"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            timeout=600,
        )
    finally:
        stub.stop()
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    summary = json.loads(done.stdout)["summary"]
    assert (summary["units"], summary["failed_units"]) == (8, 0)
    assert stub.served == 8
