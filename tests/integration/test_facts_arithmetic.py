"""A facts + arithmetic question end to end (issue 27): a real ingest of a document with a table into real Chroma,
the real ``read_value`` tool, a scripted reasoner's chain (orchestration: the model is scripted), and the answer a
person reads: a sentence with the value and the sources of the values it used; the filled chain in the trace."""

from __future__ import annotations

from pathlib import Path

import pytest
from conclave.tools.ingest import ingest
from conclave.tools.store import KnowledgeStore
from conclave.tools.toolset import build_tools
from conclave.workflows.runner import build_context, run_question
from conclave.workflows.team import available_tools

from conclave.settings import load_settings
from tests.integration.test_store import FakeEmbedder
from tests.unit.test_knowledge_answers import Recording

pytestmark = pytest.mark.integration

REPORT = """# Annual report 2020

Operating costs (in thousands)

| Cost | 2020 | 2019 |
|---|---|---|
| Rent | 3,400 | 3,100 |
| Utilities | 1,250 | (40) |
| Travel | 820 | 910 |
"""

PROGRAM = """```python
# read the 2020 rent from the report
rent_2020 = read_value("rent 2020")
# read the 2020 utilities cost
utilities_2020 = read_value("utilities 2020")
# how much more was spent on rent
difference = rent_2020 - utilities_2020
answer = difference
```"""


async def ask_over_the_report(
    tmp_path: Path, question: str, replies: list[str], **coa: object
) -> tuple[list, Recording]:
    """Ingest REPORT into a real store (collection ``reports``), then run ``coa`` with a scripted model."""
    settings = load_settings(coa={"form": "program", "use_critic": False, "plan": "never", **coa})
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "costs.md").write_text(REPORT)
    assert ingest([docs], "reports", settings, store=store).files_ingested == 1
    client = Recording(replies)
    ctx = await build_context(
        question,
        settings,
        method="coa",
        collection="reports",
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
        tools=build_tools(settings, store, collection="reports"),
    )
    ctx.store = store
    return [e async for e in run_question(ctx)], client


async def test_a_facts_and_arithmetic_chain_reads_its_values_and_answers_with_their_sources(
    tmp_path: Path, conclave_home: Path
) -> None:
    events, client = await ask_over_the_report(
        tmp_path, "How much more did the firm spend on rent than on utilities in 2020?", [PROGRAM]
    )
    final = next(e for e in events if e.kind == "answer")
    # The values were read in thousands ("Operating costs (in thousands)"): so is their difference.
    assert final.value == "2150 thousand", [e.to_dict() for e in events if e.kind in ("replan", "step_finished")]
    assert events[-1].ok
    # The reasoner was told where numbers come from: the provenance rule is in its prompt when read_value is offered.
    assert "never written from memory" in str(client.calls[0][0].content)
    # A sentence a person reads, with each value's unit/scale and source; no rendered chain.
    assert final.text.startswith("The difference is **2150 thousand**")
    assert "rent 2020 = 3400 (in thousands) from costs.md [1]" in final.text, final.text
    assert "[3400 - 1250" not in final.text
    assert [s.source for s in final.sources] == ["costs.md", "costs.md"]
    assert "3400 - 1250" in final.chain
    # Each value's source reaches the trace.
    reads = {e.value: e for e in events if e.kind == "step_finished" and e.tool == "read_value"}
    assert sorted(reads) == ["1250", "3400"]  # the two reads run concurrently: either may finish first
    assert "Rent" in (reads["3400"].source or "") and "Utilities" in (reads["1250"].source or "")
    assert all(e.source and "costs.md" in e.source and "2020" in e.source for e in reads.values())


async def test_a_value_not_in_the_documents_is_not_found_and_the_run_is_not_ok(
    tmp_path: Path, conclave_home: Path
) -> None:
    program = PROGRAM.replace("utilities 2020", "insurance premiums 2020")
    events, _ = await ask_over_the_report(
        tmp_path,
        "How much more did the firm spend on rent than on insurance in 2020?",
        [program, "The report does not give insurance costs.\nAnswer: not stated"],
        max_replans=0,
    )
    failed = [e for e in events if e.kind == "step_finished" and e.tool == "read_value" and e.status == "failed"]
    assert failed and "not found" in (failed[0].error or "").lower(), [e.to_dict() for e in failed]
    assert not events[-1].ok, "an honest not found, never a made-up number"


def test_without_a_store_the_document_tools_are_not_offered(conclave_home: Path) -> None:
    tools = available_tools(load_settings(), None)
    assert "read_value" not in tools and "search_knowledge" not in tools and "calculator" in tools


def test_tatqa_reports_reach_the_store_with_their_table_rows(conclave_home: Path) -> None:
    """The harness ingests a TAT-QA report's table as a table (rows in the chunk's metadata), or read_value finds no
    cell in an evaluation: every report has a table chunk, and the collection name changes with the rows."""
    import json

    from conclave.workflows.evaluation.datasets import load_dataset
    from conclave.workflows.evaluation.knowledge import collection_for, passages_of

    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "tatqa" / "tatqa_dataset_dev.json"
    if not path.exists():
        pytest.skip(f"TAT-QA is not at {path} (CI clones have ../shared/data beside the repository)")
    data = load_dataset(f"tatqa:{path}")
    data.contexts = data.contexts[:5]
    passages = passages_of(data, load_settings())
    tables = [p for p in passages if p.metadata.get("is_table")]
    assert {p.metadata["context_id"] for p in tables} == {c.id for c in data.contexts}
    assert all(json.loads(p.metadata["table_rows"])["rows"] for p in tables)
    plain = [type(p)(p.id, p.embed_text, p.text, {"context_id": p.metadata["context_id"]}) for p in passages]
    assert collection_for(data, passages) != collection_for(data, plain)
