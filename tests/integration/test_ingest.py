"""Ingestion on real Chroma: idempotence, updates, pruning, skipped files, and a SIGKILL mid-ingest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from conclave.tools.demo import demo_notes_path, ensure_demo_collection
from conclave.tools.ingest import IngestProgress, ingest
from conclave.tools.store import KnowledgeStore

from conclave.errors import ConfigError
from conclave.settings import Settings, load_settings
from tests.integration.test_store import FakeEmbedder
from tests.unit.test_chunking import make_pdf

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
TOPICS = ["gradients", "layers", "optimisers", "attention", "embeddings", "kernels", "batches", "losses"]


def write_corpus(folder: Path, files: int, version: int = 1) -> None:
    """Text files of several paragraphs each; ``version`` changes every paragraph."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        topic = TOPICS[i % len(TOPICS)]
        paragraphs = [
            f"Note {i} v{version}, paragraph {j}: about {topic}. "
            + " ".join(f"{topic}-{i}-{j}-{k}-v{version}" for k in range(12))
            for j in range(5)
        ]
        (folder / f"note-{i:02d}.txt").write_text("\n\n".join(paragraphs))


def snapshot(settings: Settings, collection: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """id -> (document, metadata without the ingest time) for a whole collection."""
    col = KnowledgeStore.open(settings).get_collection(collection)
    got = col.get(include=["documents", "metadatas"])
    return {
        cid: (doc, {k: v for k, v in meta.items() if k != "ingested_at"})
        for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
    }


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("CONCLAVE_CHUNK_SIZE", "200")
    monkeypatch.setenv("CONCLAVE_CHUNK_OVERLAP", "20")
    return load_settings()


def fake(settings: Settings) -> KnowledgeStore:
    """A store with the hash embedder: ingestion mechanics do not depend on the model, and it is instant."""
    return KnowledgeStore.open(settings, embedder=FakeEmbedder())


def other_home(tmp_path: Path, label: str) -> Settings:
    """Settings like the current ones but with a separate store (for 'clean ingest' comparisons)."""
    return load_settings(home=tmp_path / label)


@pytest.fixture(params=["persistent", "server"])
def any_settings(request: pytest.FixtureRequest, small_chunks: Settings) -> Settings:
    if request.param == "server":
        return load_settings(chroma_url=request.getfixturevalue("chroma_server"))
    return small_chunks


def test_reingest_is_idempotent(any_settings: Settings, tmp_path: Path) -> None:
    import uuid

    name = f"idem-{uuid.uuid4().hex[:8]}"
    write_corpus(tmp_path / "docs", 4)
    first = ingest([tmp_path / "docs"], name, any_settings, store=fake(any_settings))
    assert (first.files_seen, first.files_ingested, first.files_unchanged) == (4, 4, 0)
    assert first.chunks_added == first.chunks_total > 4
    before = snapshot(any_settings, name)
    second = ingest([tmp_path / "docs"], name, any_settings, store=fake(any_settings))
    assert (second.files_ingested, second.files_unchanged, second.chunks_added, second.chunks_removed) == (
        0,
        4,
        0,
        0,
    )
    assert second.chunks_total == first.chunks_total
    assert snapshot(any_settings, name) == before


def test_changed_file_replaces_its_chunks(small_chunks: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 3)
    ingest([docs], "notes", small_chunks)
    (docs / "note-01.txt").write_text("A completely new short text about attention heads.")
    report = ingest([docs], "notes", small_chunks)
    assert (report.files_ingested, report.files_unchanged, report.chunks_added) == (1, 2, 1)
    assert report.chunks_removed > 1
    clean = other_home(tmp_path, "clean")
    ingest([docs], "notes", clean)
    assert snapshot(small_chunks, "notes") == snapshot(clean, "notes")
    hits = KnowledgeStore.open(small_chunks).search_sync("attention heads", k=1, collection="notes")
    assert hits[0].text == "A completely new short text about attention heads."


def test_prune_removes_files_that_are_gone(small_chunks: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 3)
    elsewhere = tmp_path / "elsewhere.md"
    elsewhere.write_text("# Elsewhere\n\nA file outside the pruned folder.")
    store = fake(small_chunks)
    ingest([docs, elsewhere], "notes", small_chunks, store=store)
    gone = {cid for cid, (_, meta) in snapshot(small_chunks, "notes").items() if meta["name"] == "note-02.txt"}
    (docs / "note-02.txt").unlink()
    kept = ingest([docs], "notes", small_chunks, store=store)
    assert kept.files_pruned == 0 and gone <= set(snapshot(small_chunks, "notes"))
    pruned = ingest([docs], "notes", small_chunks, prune=True, store=store)
    assert pruned.files_pruned == 1 and pruned.chunks_removed == len(gone)
    remaining = snapshot(small_chunks, "notes")
    assert not gone & set(remaining)
    # Only files under the given paths are pruned: the separately ingested file stays.
    assert any(meta["name"] == "elsewhere.md" for _, meta in remaining.values())


def test_include_and_exclude_globs(small_chunks: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# A\n\nalpha")
    (docs / "sub" / "b.md").write_text("# B\n\nbeta")
    (docs / "sub" / "c.txt").write_text("gamma")
    (docs / ".hidden.md").write_text("hidden")
    report = ingest([docs], "globs", small_chunks, include=["*.md"], exclude=["sub/b*"], store=fake(small_chunks))
    names = sorted(meta["name"] for _, meta in snapshot(small_chunks, "globs").values())
    assert names == ["a.md"]
    assert report.files_seen == 1


def test_skipped_files_are_listed_with_reasons(small_chunks: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Good\n\nBackpropagation is the chain rule applied layer by layer.")
    (docs / "page.html").write_text("<html><title>T</title><body><h1>Heads</h1><p>Self-attention.</p></body></html>")
    (docs / "paper.pdf").write_bytes(make_pdf(["Dropout randomly zeroes activations during training."]))
    (docs / "empty.md").write_text("")
    (docs / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    (docs / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 nonsense")
    os.symlink(docs / "nowhere.md", docs / "dangling.md")
    report = ingest([docs], "mixed", small_chunks)
    reasons = {s.path: s.reason for s in report.skipped}
    assert set(reasons) == {"empty.md", "blob.txt", "image.png", "broken.pdf", "dangling.md"}
    assert reasons["empty.md"] == "empty"
    assert reasons["blob.txt"] == "binary file"
    assert reasons["image.png"].startswith("unsupported file type")
    assert "PDF" in reasons["broken.pdf"]
    assert reasons["dangling.md"].startswith("unreadable")
    assert (report.files_seen, report.files_ingested, report.files_skipped) == (8, 3, 5)
    store = KnowledgeStore.open(small_chunks)
    assert store.search_sync("dropout during training", k=1, collection="mixed")[0].source.endswith("paper.pdf")
    page = store.search_sync("self-attention heads", k=1, collection="mixed")[0]
    assert page.source.endswith("page.html") and page.title == "Heads"


def test_bad_paths_and_names_fail_before_writing(small_chunks: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or folder"):
        ingest([tmp_path / "missing"], "notes", small_chunks)
    with pytest.raises(ConfigError, match="invalid collection name"):
        ingest([tmp_path], "x", small_chunks)
    assert KnowledgeStore.open(small_chunks).list_collections_sync() == []


def test_progress_reports_files_and_chunks(small_chunks: Settings, tmp_path: Path) -> None:
    write_corpus(tmp_path / "docs", 3)
    updates: list[IngestProgress] = []
    report = ingest(
        [tmp_path / "docs"],
        "prog",
        small_chunks,
        progress=updates.append,
        batch_size=4,
        store=fake(small_chunks),
    )
    assert updates[-1].files_done == updates[-1].files_total == 3
    assert updates[-1].chunks_added == report.chunks_added
    done = [u.files_done for u in updates]
    assert done == sorted(done)
    assert len({u.chunks_added for u in updates}) > 2  # the count grows batch by batch


async def test_demo_collection_is_created_only_when_the_store_is_empty(conclave_home: Path) -> None:
    notes = demo_notes_path()
    assert 12 <= len(list(notes.glob("*.md"))) <= 20
    settings = load_settings()
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    assert await ensure_demo_collection(settings, store) is True
    infos = await store.list_collections()
    assert [i.name for i in infos] == ["demo"] and infos[0].count > 16
    assert await ensure_demo_collection(settings, store) is False


# ------------------------------------------------------------------ interruption

_CHILD = textwrap.dedent(
    """
    import sys
    import time
    from conclave.settings import load_settings
    from tests.integration.test_store import FakeEmbedder
    from conclave.tools.ingest import ingest
    from conclave.tools.store import KnowledgeStore

    class SlowFake(FakeEmbedder):
        def embed_documents(self, texts):
            time.sleep(0.1)  # room for the parent's SIGKILL to land mid-run
            return super().embed_documents(texts)

    def progress(p):
        print(p.chunks_added, flush=True)

    settings = load_settings()
    store = KnowledgeStore.open(settings, embedder=SlowFake())
    ingest([sys.argv[1]], sys.argv[2], settings, batch_size=int(sys.argv[3]), progress=progress, store=store)
    print("finished", flush=True)
    """
)


def kill_mid_ingest(settings: Settings, docs: Path, collection: str, *, after_chunks: int, batch: int) -> None:
    """Run ingest in a child process and SIGKILL it once it has written ``after_chunks`` chunks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env.update(
        CONCLAVE_HOME=str(settings.home),
        CONCLAVE_CHUNK_SIZE=str(settings.chunk_size),
        CONCLAVE_CHUNK_OVERLAP=str(settings.chunk_overlap),
        PYTHONPATH=str(REPO_ROOT),
        HF_HUB_OFFLINE="1",
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(docs), collection, str(batch)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:
            assert line.strip() != "finished", "the child finished before it could be killed"
            if int(line) >= after_chunks:
                proc.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_killed_fresh_ingest_completes_on_rerun(small_chunks: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 12)
    clean = other_home(tmp_path, "clean")
    expected = ingest([docs], "notes", clean, store=fake(clean))
    kill_mid_ingest(small_chunks, docs, "notes", after_chunks=16, batch=8)
    partial = snapshot(small_chunks, "notes")
    assert 16 <= len(partial) < expected.chunks_total  # really interrupted part-way
    rerun = ingest([docs], "notes", small_chunks, store=fake(small_chunks))
    assert rerun.chunks_total == expected.chunks_total
    assert rerun.chunks_added == expected.chunks_total - len(partial)
    assert snapshot(small_chunks, "notes") == snapshot(clean, "notes")
    again = ingest([docs], "notes", small_chunks, store=fake(small_chunks))
    assert (again.files_unchanged, again.chunks_added, again.chunks_removed) == (12, 0, 0)


def test_killed_update_completes_on_rerun(small_chunks: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_corpus(docs, 12, version=1)
    ingest([docs], "notes", small_chunks, store=fake(small_chunks))
    old_ids = set(snapshot(small_chunks, "notes"))
    write_corpus(docs, 12, version=2)
    clean = other_home(tmp_path, "clean")
    ingest([docs], "notes", clean, store=fake(clean))
    new_ids = set(snapshot(clean, "notes"))
    assert not old_ids & new_ids
    kill_mid_ingest(small_chunks, docs, "notes", after_chunks=16, batch=8)
    partial = set(snapshot(small_chunks, "notes"))
    # Killed half-way: some new chunks are in, and no file lost its old chunks before its new ones were complete.
    assert partial & new_ids and partial & old_ids
    rerun = ingest([docs], "notes", small_chunks, store=fake(small_chunks))
    assert rerun.chunks_total == len(new_ids)
    assert snapshot(small_chunks, "notes") == snapshot(clean, "notes")
