"""Retrieval quality on real data: recall@5 of the gold SQuAD paragraph for every question of a few articles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conclave.tools.ingest import ingest
from conclave.tools.store import KnowledgeStore

from conclave.settings import load_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# The smallest articles of the shared dev split (about 300 questions over 66 paragraphs), not hand-picked by score.
ARTICLES = ("Sky_(United_Kingdom)", "Black_Death", "Jacksonville,_Florida")
RECALL_FLOOR = 0.85


def test_recall_at_5_on_squad_articles(shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = json.loads((shared_data / "squad" / "dev-v1.1-even.json").read_text(encoding="utf-8"))
    articles = {a["title"]: a for a in data["data"]}
    corpus = tmp_path / "squad"
    questions: list[tuple[str, str]] = []  # (question, gold file name)
    for title in ARTICLES:
        folder = corpus / title.replace(",", "").replace("(", "").replace(")", "")
        folder.mkdir(parents=True)
        for i, paragraph in enumerate(articles[title]["paragraphs"]):
            path = folder / f"p{i:03d}.txt"
            path.write_text(paragraph["context"], encoding="utf-8")
            questions.extend((qa["question"], path.resolve().as_posix()) for qa in paragraph["qas"])
    paragraphs = sum(len(articles[t]["paragraphs"]) for t in ARTICLES)

    # One chunk per paragraph: the chunk size exceeds the longest paragraph of these articles.
    monkeypatch.setenv("CONCLAVE_CHUNK_SIZE", "4000")
    settings = load_settings()
    store = KnowledgeStore.open(settings)
    report = ingest([corpus], "squad", settings, store=store)
    assert report.chunks_total == paragraphs == report.files_ingested

    results = store.search_many_sync([q for q, _ in questions], k=5, collection="squad")
    hits = sum(any(p.source == gold for p in passages) for passages, (_, gold) in zip(results, questions, strict=True))
    # The batched path finds what one query at a time finds.
    for (question, _), batched in list(zip(questions, results, strict=True))[:3]:
        assert store.search_sync(question, k=5, collection="squad")[0].id == batched[0].id
    recall = hits / len(questions)
    print(
        f"\nSQuAD recall@5 = {recall:.3f} ({hits}/{len(questions)} questions, {paragraphs} paragraphs, {', '.join(ARTICLES)})"
    )
    assert recall >= RECALL_FLOOR
