"""A damaged Chroma folder is a one-line StoreError naming the folder, with a fix; nothing in it is ever changed.

One test does a real ingest with the bundled local embedder; the others use real Chroma folders filled through a
small deterministic stand-in embedder (the damage is in Chroma's files, not in the vectors).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest
from conclave.tools.ingest import ingest
from conclave.tools.store import KnowledgeStore

from conclave.errors import ConclaveError, ConfigError, StoreError
from conclave.settings import Settings, load_settings
from tests.integration.test_store import NOTES, FakeEmbedder

pytestmark = pytest.mark.integration


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _scribble(db: Path, *, whole: bool = False) -> None:
    """Overwrite chroma.sqlite3 with garbage: all of it, or every page after the first (the header survives)."""
    data = bytearray(db.read_bytes())
    if whole:
        data = bytearray(os.urandom(len(data)))
    else:
        page = int.from_bytes(data[16:18], "big")
        for i in range(page, len(data), 7):
            data[i] = 0xAB
    db.write_bytes(bytes(data))


def _assert_damaged(error: StoreError, folder: Path) -> None:
    assert isinstance(error, ConclaveError)
    assert "\n" not in error.message
    assert f"the knowledge store at {folder} is damaged" in error.message
    assert error.hint and "mv " in error.hint and ".bak" in error.hint and "CONCLAVE_HOME" in error.hint


def _small_store(home: Path, count: int = 30) -> Settings:
    settings = load_settings(home=home)
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    collection = store.get_or_create_collection("demo")
    store.add_passages(
        collection,
        [f"id{i}" for i in range(count)],
        [f"text {i}" for i in range(count)],
        [f"doc {i}" for i in range(count)],
        [{"source": f"s{i}.md"} for i in range(count)],
    )
    assert store.search_sync("text 3", k=1)[0].id == "id3"
    return settings


def test_a_damaged_store_after_a_real_ingest_is_refused_and_left_alone(conclave_home: Path, tmp_path: Path) -> None:
    settings = load_settings()
    notes = tmp_path / "notes"
    notes.mkdir()
    for filename, text in NOTES.items():
        (notes / filename).write_text(text)
    store = KnowledgeStore.open(settings)
    ingest([notes], "notes", settings, store=store)
    assert store.search_sync("what does Adam combine", k=1, collection="notes")[0].source.endswith("optimisers.md")

    # Damage while the store is open: the next query says so instead of "unexpected InternalError".
    original = _snapshot(settings.chroma_path)
    for whole, home in ((True, tmp_path / "garbage"), (False, tmp_path / "pages")):
        shutil.copytree(settings.home, home)
        _scribble(home / "chroma" / "chroma.sqlite3", whole=whole)
    _scribble(settings.chroma_path / "chroma.sqlite3", whole=True)
    with pytest.raises(StoreError) as info:
        store.search_sync("what does Adam combine", k=1, collection="notes")
    _assert_damaged(info.value, settings.chroma_path)
    assert _snapshot(settings.chroma_path).keys() == original.keys()

    # Damage found when opening: a clear StoreError, and every file stays exactly as it was.
    for home in (tmp_path / "garbage", tmp_path / "pages"):
        folder = home / "chroma"
        before = _snapshot(folder)
        with pytest.raises(StoreError) as info:
            KnowledgeStore.open(load_settings(home=home)).list_collections_sync()
        _assert_damaged(info.value, folder)
        assert _snapshot(folder) == before


@pytest.mark.parametrize("damage", ["garbage", "pages", "cut-short", "emptied"])
def test_a_damaged_folder_is_refused_at_open_without_a_change(tmp_path: Path, damage: str) -> None:
    settings = _small_store(tmp_path / "home")
    home = tmp_path / damage
    shutil.copytree(settings.home, home)
    db = home / "chroma" / "chroma.sqlite3"
    if damage == "cut-short":
        db.write_bytes(db.read_bytes()[:50])  # the header survives; Chroma used to write a new store over it
    elif damage == "emptied":
        db.write_bytes(b"")  # the index folders stay: Chroma used to show an empty store
    else:
        _scribble(db, whole=damage == "garbage")
    before = _snapshot(home / "chroma")
    with pytest.raises(StoreError) as info:
        KnowledgeStore.open(load_settings(home=home), embedder=FakeEmbedder()).search_sync("text 3", k=1)
    _assert_damaged(info.value, home / "chroma")
    assert _snapshot(home / "chroma") == before


def test_after_moving_a_damaged_folder_aside_a_fresh_store_opens_in_the_same_process(tmp_path: Path) -> None:
    settings = _small_store(tmp_path / "home")
    home = tmp_path / "damaged"
    shutil.copytree(settings.home, home)
    _scribble(home / "chroma" / "chroma.sqlite3", whole=False)
    damaged = load_settings(home=home)
    for _ in range(2):  # the second try names the damage again, not a leftover of the first
        with pytest.raises(StoreError, match="is damaged"):
            KnowledgeStore.open(damaged, embedder=FakeEmbedder())
    (home / "chroma").rename(home / "chroma.bak")
    fresh = KnowledgeStore.open(damaged, embedder=FakeEmbedder())
    assert fresh.list_collections_sync() == []


def test_a_zero_byte_database_in_an_empty_folder_becomes_a_new_store(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    settings.chroma_path.mkdir(parents=True)
    (settings.chroma_path / "chroma.sqlite3").write_bytes(b"")
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    assert store.list_collections_sync() == []


@pytest.mark.parametrize("bad", ["", "  ", "ab", "-abc", "a/b"])
def test_an_empty_or_invalid_collection_name_never_falls_back_to_the_default(tmp_path: Path, bad: str) -> None:
    settings = _small_store(tmp_path / "home")  # the default collection "demo" exists and holds passages
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    for call in (
        lambda: store.search_sync("text 3", k=1, collection=bad),
        lambda: store.search_many_sync(["text 3"], k=1, collection=bad),
        lambda: store.count_sync(bad),
        lambda: store.exists_sync(bad),
        lambda: store.get_or_create_collection(bad),
    ):
        with pytest.raises(ConfigError) as info:
            call()
        assert "invalid collection name" in info.value.message
        assert "3-512 characters" in (info.value.hint or "")
    assert [c.name for c in store.list_collections_sync()] == ["demo"]
    assert store.search_sync("text 3", k=1, collection=None)[0].id == "id3"
