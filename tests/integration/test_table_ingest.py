"""Tables through a real ingest into real Chroma, and read_value over them: every format, a 10,000-row CSV, and a
real TAT-QA report (read from ../shared/data when it is there; nothing of it is copied into the repository)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conclave.tools.ingest import ingest
from conclave.tools.store import KnowledgeStore
from conclave.tools.tables import parse_number
from conclave.tools.toolset import build_tools, run_tool
from conclave.tools.values import ValueResult

from conclave.settings import Settings, load_settings
from tests.conftest import SHARED_DATA
from tests.integration.test_store import FakeEmbedder

pytestmark = pytest.mark.integration

TATQA = SHARED_DATA / "tatqa" / "tatqa_dataset_dev.json"
TATQA_REPORT = "386352cf-f7e3-4148-920c-63bc57cf156b"
"""A balance-sheet table with three header rows, section rows and parenthesised negatives."""


@pytest.fixture
def settings(conclave_home: Path) -> Settings:
    return load_settings()


@pytest.fixture
def store(settings: Settings) -> KnowledgeStore:
    return KnowledgeStore.open(settings, embedder=FakeEmbedder())


def table_chunks_of(store: KnowledgeStore, collection: str) -> list[dict[str, Any]]:
    col = store.get_collection(collection)
    got = col.get(where={"is_table": True}, include=["documents", "metadatas"])
    return [{"text": doc, **meta} for doc, meta in zip(got["documents"], got["metadatas"], strict=True)]


async def read(tools: dict[str, Any], query: str) -> ValueResult:
    result = await tools["read_value"].ainvoke({"query": query})
    assert isinstance(result, ValueResult)
    return result


async def test_every_format_is_ingested_as_tables(tmp_path: Path, settings: Settings, store: KnowledgeStore) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "report.md").write_text(
        "# Annual report\n\nHeadcount by site\n\n| Site | 2019 | 2018 |\n|---|---|---|\n| Leeds | 1,200 | (3) |\n"
    )
    (docs / "sales.html").write_text(
        "<h1>Sales</h1><table><caption>Net sales (in millions)</caption><tr><th></th><th>2019</th></tr>"
        "<tr><td>Widgets</td><td>$ 40.5</td></tr></table>"
    )
    (docs / "costs.csv").write_text('Costs ($000)\nItem,2019,2018\nRent,"1,000",(20)\n')
    (docs / "staff.tsv").write_text("Team\t2019\nSupport\t12.5%\n")
    (docs / "empty.csv").write_text(",,\n,,\n")
    report = ingest([docs], "tables", settings, store=store)
    assert report.files_ingested == 4
    assert [s.reason for s in report.skipped] == ["empty"]
    chunks = table_chunks_of(store, "tables")
    assert sorted(c["name"] for c in chunks) == ["costs.csv", "report.md", "sales.html", "staff.tsv"]
    for chunk in chunks:
        assert chunk["text"].startswith(chunk["table_caption"])
        assert json.loads(chunk["table_rows"])["rows"]
    tools = build_tools(settings, store, collection="tables")
    leeds = await read(tools, "Leeds headcount 2018")
    assert (leeds.text, leeds.source.document, leeds.source.cell) == ("-3", "report.md", "(3)")  # type: ignore[union-attr]
    widgets = await read(tools, "widgets net sales 2019")
    assert (widgets.text, widgets.unit, widgets.scale) == ("40.5", "$", "million")
    rent = await read(tools, "rent 2019")
    assert (rent.text, rent.scale, rent.source.document) == ("1000", "thousand", "costs.csv")  # type: ignore[union-attr]
    support = await read(tools, "support team 2019")
    assert (support.text, support.unit) == ("12.5", "%")
    # Re-ingesting changes nothing: table chunk ids are content hashes like every other chunk's.
    again = ingest([docs], "tables", settings, store=store)
    assert again.files_unchanged == 4 and again.chunks_added == 0


async def test_ten_thousand_row_csv(tmp_path: Path, settings: Settings, store: KnowledgeStore) -> None:
    path = tmp_path / "ledger.csv"
    rows = "\n".join(f"account {i},{i * 7},({i})" for i in range(10_000))
    path.write_text(f"Account,Debit,Credit\n{rows}\n")
    started = time.perf_counter()
    report = ingest([path], "ledger", settings, store=store)
    ingest_s = time.perf_counter() - started
    assert report.files_ingested == 1 and report.chunks_added > 100
    # Generous bounds (a shared 2-core machine): guards against work that grows out of hand, not a speed claim.
    assert ingest_s < 120, f"ingest took {ingest_s:.1f} s"
    chunks = table_chunks_of(store, "ledger")
    assert all("| Account | Debit | Credit |" in c["text"] for c in chunks)
    assert sum(len(json.loads(c["table_rows"])["rows"]) for c in chunks) == 10_000
    tools = build_tools(settings, store, collection="ledger")
    started = time.perf_counter()
    found = await read(tools, "account 9876 credit")
    lookup_s = time.perf_counter() - started
    assert found.text == "-9876" and found.source is not None and found.source.row == "account 9876"
    assert lookup_s < 60, f"lookup took {lookup_s:.1f} s"
    print(f"10,000-row CSV: ingest {ingest_s:.1f} s ({report.chunks_added} chunks), one lookup {lookup_s:.2f} s")


def tatqa_report(uid: str) -> dict[str, Any]:
    if not TATQA.exists():
        pytest.skip(f"TAT-QA is not at {TATQA} (CI clones have ../shared/data beside the repository)")
    for report in json.loads(TATQA.read_text()):
        if report["table"]["uid"] == uid:
            return dict(report)
    pytest.fail(f"report {uid} is not in {TATQA}")


def as_markdown(report: dict[str, Any]) -> str:
    """The report as a user's document: its paragraphs, then its table as a plain pipe table (first row header)."""
    grid = report["table"]["table"]
    width = max(len(r) for r in grid)
    lines = ["| " + " | ".join([*row, *[""] * (width - len(row))]) + " |" for row in grid]
    lines.insert(1, "|" + "---|" * width)
    paragraphs = [p["text"] for p in sorted(report["paragraphs"], key=lambda p: p["order"])]
    return "# Annual report\n\n" + "\n\n".join(paragraphs) + "\n\n" + "\n".join(lines) + "\n"


def table_lookups(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The report's questions answered by one number read from its table: (question, gold cell)."""
    return [
        (q["question"], q["answer"][0])
        for q in report["questions"]
        if q["answer_from"] == "table" and q["answer_type"] == "span" and len(q["answer"]) == 1
    ]


async def test_tatqa_report_gold_cells_are_found(tmp_path: Path, settings: Settings, store: KnowledgeStore) -> None:
    report = tatqa_report(TATQA_REPORT)
    path = tmp_path / "report.md"
    path.write_text(as_markdown(report))
    ingest([path], "tatqa", settings, store=store)
    tools = build_tools(settings, store, collection="tatqa")
    questions = table_lookups(report)
    assert len(questions) >= 3
    for question, gold in questions:
        found = await read(tools, question)
        number = parse_number(gold)
        assert number is not None and found.value is not None, question
        assert Decimal(found.text) == number.value, (question, gold, found.source)
        assert found.source is not None and gold in found.source.cell  # the cell may carry a "$" the gold lacks
    # The operands of the report's arithmetic question, read the way a chain would, then subtracted.
    revenue = await read(tools, "deferred revenue as reported")
    other = await read(tools, "other non-current liabilities as reported")
    assert float(run_tool(tools, "calculator", {"expression": f"{other.text} - {revenue.text}"})) == 14212
