"""Scoped search on a real Chroma store with the local embedder: a search limited to one document (``where`` on the
passages' source), the knowledge tool bound to a source, the harness asking each TAT-QA question of its own report
(and of every report with ``search="open"``), and ``conclave ask --source`` as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conclave.tools.store import KnowledgeStore
from conclave.tools.toolset import build_tools, parse_passages
from conclave.workflows.evaluation import EvalConfig, run_eval
from conclave.workflows.evaluation.datasets import load_dataset
from conclave.workflows.evaluation.knowledge import ensure_contexts

from conclave.errors import ConfigError
from conclave.settings import Settings, load_settings
from tests.integration.test_cli_errors import assert_clean_error, run_cli
from tests.unit.test_harness import Factory
from tests.unit.test_tatqa_dataset import ACME, GLOBEX, write_tatqa

pytestmark = [pytest.mark.integration]

REVENUE = "What was the product revenue in 2019?"


@pytest.fixture
def settings(conclave_home: Path) -> Settings:
    return load_settings(model="openai/scripted", top_k=8)


@pytest.fixture
def dataset(tmp_path: Path) -> str:
    return f"tatqa:{write_tatqa(tmp_path / 'dev.json', [ACME, GLOBEX])}"


async def test_a_search_limited_to_one_source_sees_only_its_passages(settings: Settings, dataset: str) -> None:
    name, added = await ensure_contexts(settings, load_dataset(dataset))
    assert added >= 2
    store = KnowledgeStore.open(settings)
    everything = store.search_sync(REVENUE, 8, name)
    assert {p.source for p in everything} == {"acme-2019", "globex-2019"}
    assert everything[0].source == "acme-2019", "the revenue table is the best match in the whole collection"
    scoped = store.search_sync(REVENUE, 8, name, where={"source": "globex-2019"})
    assert scoped and {p.source for p in scoped} == {"globex-2019"}
    # The knowledge tool bound to a source: the model still chooses the query only.
    tool = build_tools(settings, store, collection=name, k=8, source="globex-2019")["search_knowledge"]
    found = parse_passages(await tool.ainvoke({"query": REVENUE}))
    assert found and {p.source for p in found} == {"globex-2019"}
    assert set(tool.args_schema.model_json_schema()["properties"]) == {"query"}  # type: ignore[union-attr]


def rag_reply(question: str, system: str) -> str:
    """Right answers with their scale, so the scores show the gold answer and scale reached the scorer."""
    if "product revenue in 2019" in question:
        return "It was $1,452.4 million [1].\nAnswer: $1,452.4 million"
    if "change in product revenue" in question:
        return "1,452.4 - 1,146.2 [1].\nAnswer: 306.2 million"
    if "percentage change in engineers" in question:
        return "Answer: 20%"
    return "Answer: 3"


async def test_the_harness_asks_each_question_of_its_own_report(settings: Settings, dataset: str) -> None:
    base = {"dataset": dataset, "methods": ["rag"], "models": ["openai/scripted"], "cache": False}
    factory = Factory({"openai/scripted": rag_reply})
    scoped = await run_eval(EvalConfig(**base), settings, client_factory=factory)
    for record in scoped.records:
        own = record.gold_ids[0]
        assert record.retrieved_ids and all(i == own or i.startswith(f"{own}#") for i in record.retrieved_ids), record
    by_id = {r.item_id: r for r in scoped.records}
    assert by_id["acme-q1"].scores["tatqa_em"]["value"] == 1.0
    assert by_id["acme-q2"].scores["tatqa_em"]["value"] == 1.0
    assert by_id["globex-q2"].scores["tatqa_em"]["value"] == 1.0
    assert by_id["globex-q1"].scores["tatqa_em"]["value"] == 0.0  # 3 kinds of staff, not 2
    assert by_id["acme-q3"].labels == {"answer_type": "multi-span", "answer_from": "text", "scale": ""}
    cell = scoped.summary["cells"][0]
    assert cell["breakdown"]["answer_type"]["arithmetic"]["scores"]["tatqa_em"] == 1.0
    assert set(cell["breakdown"]["answer_from"]) == {"table", "text", "table-text"}
    assert "## By answer_from" in (scoped.run_dir / "report.md").read_text(encoding="utf-8")

    opened = await run_eval(EvalConfig(**base, search="open"), settings, client_factory=factory)
    reports = {i.split("#")[0] for r in opened.records for i in r.retrieved_ids}
    assert reports == {"acme-2019", "globex-2019"}, "open search reads every report"


async def test_scoped_search_needs_items_that_name_their_document(settings: Settings, tmp_path: Path) -> None:
    path = tmp_path / "dev.jsonl"
    path.write_text(json.dumps({"question": "2+2?", "answer": "4"}) + "\n", encoding="utf-8")
    config = EvalConfig(dataset=f"jsonl:{path}", methods=["cot"], models=["openai/scripted"], search="scoped")
    with pytest.raises(ConfigError, match="name their own document"):
        await run_eval(config, settings, client_factory=Factory())


def test_ask_source_searches_one_ingested_file_and_refuses_one_never_ingested(tmp_path: Path) -> None:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "adam.md").write_text("# Adam\n\nAdam combines momentum with RMSprop scaling.\n", encoding="utf-8")
    (notes / "sgd.md").write_text("# SGD\n\nPlain SGD steps against the gradient.\n", encoding="utf-8")
    env = {"CONCLAVE_EMBEDDED_THREADS": "1"}
    ingested = run_cli("ingest", str(notes), "--collection", "notes", **env)
    assert ingested.returncode == 0, ingested.stderr

    proc = run_cli(
        "ask",
        "What does Adam combine?",
        "-c",
        "notes",
        "--source",
        str(notes / "sgd.md"),
        "--method",
        "rag",
        "--model",
        "embedded",
        "--jsonl",
        "--no-log",
        **env,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    retrieval = next(e for e in events if e["kind"] == "retrieval")
    assert retrieval["passages"] and {p["source"] for p in retrieval["passages"]} == {
        (notes / "sgd.md").resolve().as_posix()
    }

    missing = run_cli("ask", "What does Adam combine?", "-c", "notes", "--source", "adam.txt", **env)
    error, fix = assert_clean_error(missing)
    assert "adam.txt" in error and "notes" in error
    assert "conclave ingest adam.txt --collection notes" in fix
