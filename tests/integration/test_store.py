"""The knowledge store on real Chroma: a persistent folder and a `chroma run` server, same tests for both."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

import pytest
from conclave.tools.ingest import ingest
from conclave.tools.store import KnowledgeStore, validate_collection_name

from conclave.errors import ConfigError, StoreError
from conclave.settings import Settings, load_settings
from tests.fixtures.chroma import start_chroma_server
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration

NOTES = {
    "optimisers.md": "# Optimisers\n\n## Adam\n\nAdam combines momentum (first moment) with RMSprop-style "
    "per-parameter scaling (second moment).\n",
    "cooking.md": "# Bread\n\nKnead the dough for ten minutes, let it rise for an hour, bake at 220 degrees.\n",
    "astronomy.txt": "Jupiter is the largest planet in the Solar System; its Great Red Spot is a giant storm.\n",
    "football.md": "# Football\n\nA match lasts ninety minutes; the team with more goals wins.\n",
}


class FakeEmbedder:
    """A deterministic stand-in embedder with a different name (for mismatch tests)."""

    name = "ollama/fake-embed"
    dimension = 8

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        digest = hashlib.sha256(text.encode()).digest()
        return [b / 255 for b in digest[: self.dimension]]


@pytest.fixture(params=["persistent", "server"])
def settings(request: pytest.FixtureRequest, conclave_home: Path) -> Settings:
    """Settings for a persistent store in this test's home, or for the session's Chroma server."""
    if request.param == "server":
        return load_settings(chroma_url=request.getfixturevalue("chroma_server"))
    return load_settings()


@pytest.fixture
def name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    for filename, text in NOTES.items():
        (folder / filename).write_text(text)
    return folder


def test_search_ranks_the_relevant_passage_first(settings: Settings, name: str, notes: Path) -> None:
    store = KnowledgeStore.open(settings)
    report = ingest([notes], name, settings, store=store)
    assert (report.files_ingested, report.chunks_total) == (4, 4)
    passages = store.search_sync("what does Adam combine", k=3, collection=name)
    assert len(passages) == 3
    assert passages[0].source.endswith("optimisers.md")
    assert passages[0].title == "Optimisers > Adam"
    assert "momentum" in passages[0].text
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[0] > scores[1] + 0.1
    # k larger than the collection returns what there is.
    assert len(store.search_sync("bread", k=50, collection=name)) == 4
    top = store.search_sync("largest planet storm", k=1, collection=name)
    assert top[0].source.endswith("astronomy.txt")


def test_collections_record_embedder_and_dimension(settings: Settings, name: str, notes: Path) -> None:
    store = KnowledgeStore.open(settings)
    assert not store.exists_sync(name)
    ingest([notes], name, settings, store=store)
    assert store.exists_sync(name)
    info = next(i for i in store.list_collections_sync() if i.name == name)
    assert (info.count, info.embedder, info.dimension) == (4, "local:all-MiniLM-L6-v2", 384)


def test_missing_collection_lists_existing_ones(settings: Settings, name: str, notes: Path) -> None:
    store = KnowledgeStore.open(settings)
    ingest([notes], name, settings, store=store)
    with pytest.raises(StoreError) as info:
        store.search_sync("anything", collection="no-such-collection")
    assert "no collection named 'no-such-collection'" in info.value.message
    assert name in info.value.message
    assert "conclave ingest" in (info.value.hint or "")


def test_forget_removes_the_collection(settings: Settings, name: str, notes: Path) -> None:
    store = KnowledgeStore.open(settings)
    ingest([notes], name, settings, store=store)
    assert store.forget_sync(name) == 4
    assert not store.exists_sync(name)
    with pytest.raises(StoreError, match="no collection named"):
        store.forget_sync(name)


def test_embedder_mismatch_names_the_right_embedder(settings: Settings, name: str, notes: Path) -> None:
    ingest([notes], name, settings, store=KnowledgeStore.open(settings))
    other = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    with pytest.raises(StoreError) as info:
        other.search_sync("adam", collection=name)
    assert "local:all-MiniLM-L6-v2" in info.value.message and "ollama/fake-embed" in info.value.message
    assert "CONCLAVE_EMBEDDER=local" in (info.value.hint or "")
    with pytest.raises(StoreError, match="was built with embedder"):
        ingest([notes], name, settings, store=other)
    # The reverse: a collection built with the fake embedder, queried with the local one.
    fake_name = f"{name}-fake"
    ingest([notes], fake_name, settings, store=other)
    with pytest.raises(StoreError) as info:
        KnowledgeStore.open(settings).search_sync("adam", collection=fake_name)
    assert "CONCLAVE_EMBEDDER=ollama/fake-embed" in (info.value.hint or "")


async def test_async_search_does_not_block_the_event_loop(settings: Settings, name: str, notes: Path) -> None:
    store = KnowledgeStore.open(settings)
    await asyncio.to_thread(ingest, [notes], name, settings, store=store)
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    results = await asyncio.gather(*(store.search(q, 2, name) for q in ("adam", "bread", "planet", "goals")))
    stop.set()
    await task
    assert [r[0].source.rsplit("/", 1)[-1] for r in results] == [
        "optimisers.md",
        "cooking.md",
        "astronomy.txt",
        "football.md",
    ]
    assert ticks > 10  # the loop kept running while Chroma and the model worked in threads
    assert [i.name for i in await store.list_collections() if i.name == name] == [name]
    assert await store.exists(name)
    assert await store.forget(name) == 4


def test_many_queries_at_once_are_answered_in_order(settings: Settings, name: str, notes: Path) -> None:
    """9,000 queries x k=4 hits is more than SQLite's 32,766 variables per statement in one Chroma query."""
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    ingest([notes], name, settings, store=store)
    queries = [f"question {i}" for i in range(9000)]
    results = store.search_many_sync(queries, k=4, collection=name)
    assert len(results) == 9000 and all(len(r) == 4 for r in results)
    # Order is kept across batches: each result equals that query searched on its own.
    for i in (0, 2047, 2048, 8999):
        assert [p.id for p in results[i]] == [p.id for p in store.search_sync(queries[i], k=4, collection=name)]


def test_empty_collection_and_bad_queries(settings: Settings, name: str) -> None:
    store = KnowledgeStore.open(settings)
    store.get_or_create_collection(name)
    assert store.search_sync("anything", collection=name) == []
    with pytest.raises(StoreError, match="empty"):
        store.search_sync("   ", collection=name)
    with pytest.raises(StoreError, match="k must be"):
        store.search_sync("x", k=0, collection=name)


@pytest.mark.parametrize("bad", ["ab", "-abc", "abc-", "has space", "a/b", "x" * 513, "naïve", ""])
def test_invalid_collection_names_quote_chromas_rules(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_collection_name(bad)
    assert "3-512 characters" in (info.value.hint or "")


def test_valid_collection_names_are_accepted_by_chroma(conclave_home: Path) -> None:
    store = KnowledgeStore.open(load_settings())
    for good in ("abc", "my.notes_v2-x", "A" * 512):
        store.get_or_create_collection(good)
        assert store.exists_sync(good)


def test_server_down_gives_url_and_how_to_start_it(conclave_home: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreError) as info:
        KnowledgeStore.open(load_settings(chroma_url=url))
    assert url in info.value.message
    assert "chroma run --path" in (info.value.hint or "")


def test_server_that_goes_away_gives_a_clear_error(tmp_path: Path, notes: Path) -> None:
    server = start_chroma_server(tmp_path / "server")
    try:
        settings = load_settings(chroma_url=server.url)
        store = KnowledgeStore.open(settings)
        ingest([notes], "going-away", settings, store=store)
    finally:
        server.stop()
    with pytest.raises(StoreError) as info:
        store.search_sync("adam", collection="going-away")
    assert server.url in info.value.message
    assert "chroma run" in (info.value.hint or "")


def test_chroma_url_without_scheme_and_bad_url(conclave_home: Path) -> None:
    with pytest.raises(ConfigError, match="invalid Chroma URL"):
        KnowledgeStore.open(load_settings(chroma_url="http://"))
    port = free_port()
    with pytest.raises(StoreError, match=f"127.0.0.1:{port}"):
        KnowledgeStore.open(load_settings(chroma_url=f"127.0.0.1:{port}"))
