"""Synthetic QA from documents: real ingestion, real Chroma and the real local embedder; scripted models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conclave.workflows.evaluation.cache import CacheSet
from conclave.workflows.synth import SynthConfig, key_terms, synthesize

from conclave.settings import load_settings
from tests.unit.test_harness import Factory

pytestmark = pytest.mark.integration

DOCS = {
    "adam.md": "# Adam\n\nThe Adam optimiser combines momentum with RMSProp: it keeps a running average of the "
    "gradients and of their squares, and scales each parameter's step by both. It is the default "
    "optimiser for training transformers and many other deep networks.\n",
    "sahara.md": "# Sahara\n\nThe Sahara is the largest hot desert in the world. It covers much of North Africa, "
    "from the Atlantic Ocean to the Red Sea, and its dunes can be more than a hundred metres high. "
    "Rain is rare and temperatures are extreme.\n",
    "owls.md": "# Owls\n\nOwls are birds of prey that hunt mostly at night. Their large forward-facing eyes and "
    "very good hearing let them find small mammals in the dark, and soft feathers make their flight "
    "almost silent. Most owls live alone.\n",
}
QUESTIONS = {
    "Adam": ["What does the Adam optimiser combine?", "adam"],
    "Sahara": ["What is the capital of France?"],
    "Owls": ["When do owls hunt?", "What do owls eat?"],
}
ANSWERS = {
    "What does the Adam optimiser combine?": "momentum with RMSProp",
    "What is the capital of France?": "unanswerable",
    "When do owls hunt?": "at night",
    "What do owls eat?": "pizza and pasta",
}


def scripted(user: str, system: str) -> str:
    if "quiz questions" in system:
        topic = next(t for t in QUESTIONS if t in user)
        return json.dumps({"questions": QUESTIONS[topic]})
    question = next(q for q in ANSWERS if q in user)
    if "Answer the question using only the passage" in system:
        return json.dumps({"answer": ANSWERS[question]})
    return json.dumps({"reasoning": "checked", "score": 5 if "Adam" in question else 2})


@pytest.fixture
async def collection(tmp_path: Path, conclave_home: Path) -> str:
    from conclave.tools.ingest import ingest

    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    ingest([folder], "synth-test", load_settings())
    return "synth-test"


async def test_keeps_only_grounded_pairs_and_counts_rejections(tmp_path: Path, collection: str) -> None:
    from conclave.tools.store import KnowledgeStore

    settings = load_settings(model="openai/writer", roles={"judge": "openai/judge"})
    factory = Factory({"openai/writer": scripted, "openai/judge": scripted})
    out = tmp_path / "qa.jsonl"
    report = await synthesize(
        settings,
        SynthConfig(collection=collection, n=10, min_similarity=0.2),
        out,
        caches=CacheSet(settings, factory=factory),
    )

    pairs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(p["question"], p["answer"]) for p in pairs] == [
        ("What does the Adam optimiser combine?", "momentum with RMSProp")
    ]
    assert report.kept == 1 and report.chunks_used == 3
    assert dict(report.rejected) == {
        "not a question": 1,
        "unanswerable from its chunk": 1,
        "judge rating below 4": 1,
        "answer's key terms not in its chunk": 1,
    }
    gold = pairs[0]["gold_ids"][0]
    store = KnowledgeStore.open(settings)
    chunk = store.get_collection(collection).get(ids=[gold], include=["documents"])
    assert "Adam optimiser combines momentum" in chunk["documents"][0]
    assert pairs[0]["collection"] == collection and 0.2 <= pairs[0]["similarity"] <= 1.0
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["kept"] == 1 and summary["rejected_total"] == 4
    assert summary["attempts"] == 5 and summary["stopped"] == "chunks"


async def test_similarity_threshold_rejects_pairs_far_from_their_chunk(tmp_path: Path, collection: str) -> None:
    settings = load_settings(model="openai/writer", roles={"judge": "openai/judge"})
    factory = Factory({"openai/writer": scripted, "openai/judge": scripted})
    report = await synthesize(
        settings,
        SynthConfig(collection=collection, n=10, min_similarity=0.99),
        tmp_path / "qa.jsonl",
        caches=CacheSet(settings, factory=factory),
    )
    assert report.kept == 0
    assert report.rejected["not close to its chunk"] == 3
    assert factory.backends["openai/judge"].calls == 0  # the cheap filters run before the judge


def test_key_terms_ignore_stop_words() -> None:
    assert key_terms("The momentum of the Adam optimiser, in 2014") == {"momentum", "adam", "optimiser", "2014"}


async def test_progress_after_every_question_and_a_bound_on_attempts(tmp_path: Path, collection: str) -> None:
    settings = load_settings(model="openai/writer", roles={"judge": "openai/judge"})
    factory = Factory({"openai/writer": scripted, "openai/judge": scripted})
    seen: list[tuple[int, int, int]] = []
    out = tmp_path / "qa.jsonl"
    report = await synthesize(
        settings,
        SynthConfig(collection=collection, n=10, min_similarity=0.2, max_attempts=2),
        out,
        caches=CacheSet(settings, factory=factory),
        on_progress=lambda r: seen.append((r.attempts, r.kept, sum(r.rejected.values()))),
    )
    assert report.attempts == 2 and report.stopped == "attempts"
    assert [a for a, _, _ in seen] == [1, 2], "one progress call per question checked"
    assert all(kept + rejected == attempts for attempts, kept, rejected in seen)
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["stopped"] == "attempts" and summary["attempts"] == 2


async def test_an_interrupted_run_keeps_the_pairs_it_had(tmp_path: Path, collection: str) -> None:
    """Kept pairs are on disk as they come: a run stopped after its first pair still has it, and says so."""
    settings = load_settings(model="openai/writer", roles={"judge": "openai/judge"})
    factory = Factory({"openai/writer": scripted, "openai/judge": scripted})
    out = tmp_path / "qa.jsonl"

    def stop_after_first_pair(report: Any) -> None:
        if report.kept == 1:
            assert json.loads(out.read_text().splitlines()[0])["answer"] == "momentum with RMSProp", "written already"
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await synthesize(
            settings,
            SynthConfig(collection=collection, n=10, min_similarity=0.2),
            out,
            caches=CacheSet(settings, factory=factory),
            on_progress=stop_after_first_pair,
        )
    assert len(out.read_text().splitlines()) == 1
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["stopped"] == "interrupted" and summary["kept"] == 1


def test_the_cli_shows_progress_writes_json_and_fails_when_nothing_is_kept(
    tmp_path: Path, collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conclave.cli.main import app
    from conclave.workflows.evaluation import cache as cache_module
    from typer.testing import CliRunner

    factory = Factory({"openai/writer": scripted, "openai/judge": scripted})
    real = cache_module.CacheSet.__init__

    def with_factory(self: Any, settings: Any, **kwargs: Any) -> None:
        real(self, settings, **{**kwargs, "factory": factory})

    monkeypatch.setattr(cache_module.CacheSet, "__init__", with_factory)
    monkeypatch.setenv("CONCLAVE_MODEL", "openai/writer")
    monkeypatch.setenv("CONCLAVE_ROLES__JUDGE", "openai/judge")
    out = tmp_path / "qa.jsonl"
    result = CliRunner().invoke(
        app, ["synth", "-c", collection, "-n", "3", "-o", str(out), "--min-similarity", "0.2", "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kept"] == 1 and summary["stopped"] == "chunks" and summary["rejected_total"] == 4
    assert "question 5/20: kept 1/3, rejected 4" in result.stderr
    nothing = CliRunner().invoke(
        app, ["synth", "-c", collection, "-n", "3", "-o", str(out), "--min-similarity", "0.99"]
    )
    assert nothing.exit_code == 1 and "fewer than 3 pairs passed the filters" in nothing.stdout
