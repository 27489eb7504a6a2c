"""read_value: one value by what it means, with its source; not found and ambiguous said, never guessed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conclave.tools.tables import table_chunks, table_from_grid, table_from_json
from conclave.tools.toolset import build_tools, run_tool, tool_schemas
from conclave.tools.values import AmbiguousValue, TableSource, ValueNotFound, ValueResult, lookup_value

from conclave.errors import ToolFailed
from conclave.events import Passage
from conclave.settings import load_settings

SALES = [
    ["", "", "Years Ended September 30,", ""],
    ["", "2019", "2018", "2017"],
    ["Revenue:", "", "", ""],
    ["Services", "$ 1,452.4", "$ 1,146.2", "$ 1,036.9"],
    ["Products", "44.1", "(56.7)", "70.8"],
    ["Cost of revenue:", "", "", ""],
    ["Services", "(900.0)", "(800.0)", "(700.0)"],
    ["Total sales", "$1,496.5", "$1,202.9", "$1,107.7"],
]


def stored(grid: list[list[str]], caption: str, document: str, chunk_size: int = 200) -> list[TableSource]:
    """The table as read_value reads it from a collection: chunked, its rows through the chunks' JSON."""
    out = []
    for i, chunk in enumerate(table_chunks(table_from_grid(grid, caption=caption), chunk_size, heading="Report")):
        table, heading = table_from_json(chunk.rows_json)
        out.append(TableSource(table=table, heading=heading, document=document, chunk_id=f"{document}-{i}"))
    return out


@pytest.fixture
def sales() -> list[TableSource]:
    return stored(SALES, "Sales by type (in millions)", "acme-10k.md")


def test_found_value_has_unit_scale_and_source(sales: list[TableSource]) -> None:
    result = lookup_value("services revenue 2019", sales)
    assert result.status == "found"
    assert (result.text, result.value, result.unit, result.scale) == ("1452.4", 1452.4, "$", "million")
    assert result.source is not None
    assert result.source.document == "acme-10k.md"
    assert result.source.row == "Revenue > Services"
    assert result.source.column == "Years Ended September 30, 2019"
    assert result.source.cell == "$ 1,452.4"
    assert result.source.table == "Report — Sales by type (in millions)"
    assert result.source.chunk_id.startswith("acme-10k.md-")


def test_parenthesised_negatives_and_the_section_tell_rows_apart(sales: list[TableSource]) -> None:
    assert lookup_value("cost of revenue services 2018", sales).text == "-800"
    assert lookup_value("products 2018", sales).text == "-56.7"
    assert lookup_value("total sales in 2017", sales).text == "1107.7"


def test_not_found_is_said_and_gives_no_number(sales: list[TableSource]) -> None:
    for query in ("employees 2019", "services revenue 2015", "the"):
        result = lookup_value(query, sales)
        assert result.status == "not_found", query
        assert result.text == "" and result.value is None
        assert "not found" in result.message or "no words" in result.message


def test_ambiguous_lists_every_candidate(sales: list[TableSource]) -> None:
    result = lookup_value("services 2019", sales)  # revenue or cost of revenue?
    assert result.status == "ambiguous"
    assert result.text == "" and result.value is None
    assert {c.text for c in result.candidates} == {"1452.4", "-900"}
    assert "ambiguous" in result.message and "Revenue > Services" in result.message
    assert "Cost of revenue > Services" in result.message
    # Without a year, the three years of one row are three values.
    assert lookup_value("total sales", sales).status == "ambiguous"


def test_two_documents_are_told_apart_by_name(sales: list[TableSource]) -> None:
    other = stored(SALES[:2] + [["Total sales", "$2,000.0", "$1,900.0", "$1,800.0"]], "Sales", "globex-10k.md")
    both = sales + other
    assert lookup_value("total sales 2019", both).status == "ambiguous"
    assert lookup_value("globex total sales 2019", both).text == "2000"


def test_a_sentence_with_one_number_is_the_fallback() -> None:
    passages = [
        Passage("p1", "notes.md", "The company had 1,234 employees at the end of 2019. It grew in 2018 and 2019.", 0.9),
        Passage("p2", "notes.md", "Revenue rose 12% and costs 5% in 2019.", 0.8),
    ]
    found = lookup_value("employees at the end of 2019", [], passages)
    assert found.status == "found" and found.text == "1234"
    assert found.source is not None and found.source.sentence.startswith("The company had 1,234 employees")
    # Two numbers in the one sentence that matches: not a guess.
    assert lookup_value("revenue rose 2019", [], passages).status == "not_found"


def test_sentences_are_read_only_when_no_cell_matches(sales: list[TableSource]) -> None:
    def passages() -> list[Passage]:
        raise AssertionError("searched although a cell matched")

    assert lookup_value("services revenue 2019", sales, passages).text == "1452.4"


def test_result_feeds_arithmetic_as_a_number(sales: list[TableSource]) -> None:
    from conclave.workflows.coa.reify import value_text

    result = lookup_value("products revenue 2018", sales)
    assert value_text(result) == "-56.7"
    data = json.loads(result.model_dump_json())
    assert data["source"]["cell"] == "(56.7)" and data["status"] == "found"


def test_read_value_is_registered_with_words_only() -> None:
    # The model chooses what to read (a query, and optionally the row, column, year and table as words of it); the
    # collection, k and the document scope are the run's and are not offered.
    tools = build_tools(load_settings())
    schema = tool_schemas(tools)["read_value"]["parameters"]
    assert set(schema["properties"]) == {"query", "row", "column", "table", "year"}
    assert schema["required"] == ["query"]


def test_the_parts_of_a_cell_given_as_arguments_are_words_of_the_query() -> None:
    from conclave.tools.values import ReadValueArgs

    args = ReadValueArgs(query="sales", year="2019", table="segment results")
    assert args.words() == "sales 2019 segment results"


@pytest.mark.integration
async def test_tool_reads_a_real_collection(conclave_home: Path, tmp_path: Path) -> None:
    from conclave.tools.ingest import ingest
    from conclave.tools.store import KnowledgeStore

    from tests.integration.test_store import FakeEmbedder

    settings = load_settings()
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    rows = "\n".join("| " + " | ".join(row) + " |" for row in SALES[2:])
    (tmp_path / "acme.md").write_text(
        "# Acme annual report\n\nSales by type (in millions)\n\n| | 2019 | 2018 | 2017 |\n|---|---|---|---|\n"
        f"{rows}\n\nWe had 1,234 employees at the end of 2019.\n"
    )
    ingest([tmp_path / "acme.md"], "reports", settings, store=store)
    registry = build_tools(settings, store, collection="reports")
    found = await registry["read_value"].ainvoke({"query": "services revenue 2019"})  # the reifier's path
    assert isinstance(found, ValueResult) and found.text == "1452.4" and found.scale == "million"
    assert found.source is not None and found.source.document == "acme.md"
    assert json.loads(run_tool(registry, "read_value", {"query": "total sales 2018"}))["text"] == "1202.9"
    employees = await registry["read_value"].ainvoke({"query": "employees at the end of 2019"})
    assert employees.text == "1234" and employees.source.sentence
    with pytest.raises(ValueNotFound, match="not found"):
        await registry["read_value"].ainvoke({"query": "dividend per share 2019"})
    with pytest.raises(AmbiguousValue, match="ambiguous") as info:
        await registry["read_value"].ainvoke({"query": "services 2019"})
    assert len(info.value.result.candidates) == 2
    with pytest.raises(ToolFailed, match="not found"):  # what `conclave tool read_value` shows
        run_tool(registry, "read_value", {"query": "dividend per share 2019"})
