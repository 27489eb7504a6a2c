"""Tables as first-class content: numbers as reports write them, scales, and table chunks for each format."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
from conclave.tools.chunking import Chunk, Document, SkipFile, detect_kind, split_document
from conclave.tools.reading import load_file
from conclave.tools.tables import (
    MAX_CELL_CHARS,
    detect_scale,
    parse_number,
    table_chunks,
    table_from_grid,
    table_from_json,
)

from tests.conftest import HANG_GUARD_S


@pytest.mark.parametrize(
    ("text", "value", "unit", "scale"),
    [
        ("(1,234)", "-1234", "", ""),
        ("$ 1,452.4", "1452.4", "$", ""),
        ("$1,496.5", "1496.5", "$", ""),
        ("12.5%", "12.5", "%", ""),
        ("(0.9)", "-0.9", "", ""),
        ("$ (1,234)", "-1234", "$", ""),
        ("($12)", "-12", "$", ""),
        ("−5", "-5", "", ""),
        ("1,234,567", "1234567", "", ""),
        ("US$ 3.5 billion", "3.5", "US$", "billion"),
        ("2019", "2019", "", ""),
    ],
)
def test_numbers_are_read_as_reports_write_them(text: str, value: str, unit: str, scale: str) -> None:
    number = parse_number(text)
    assert number is not None
    assert (number.text, number.unit, number.scale) == (value, unit, scale)
    assert number.value == Decimal(value)


@pytest.mark.parametrize("text", ["", "—", "–", "-", "n/a", "about 5 units", "5 (see note", "Fixed Price"])
def test_blank_and_worded_cells_are_not_numbers(text: str) -> None:
    assert parse_number(text) is None


@pytest.mark.parametrize(
    ("text", "scale"),
    [
        ("(in millions)", "million"),
        ("In millions, except per share data", "million"),
        ("$000", "thousand"),
        ("$'000", "thousand"),
        ("Amounts in thousands of dollars", "thousand"),
        ("€ million", "million"),
        ("(in billions)", "billion"),
        ("Sales by contract type", ""),
        ("millions of customers", ""),
    ],
)
def test_scale_stated_once(text: str, scale: str) -> None:
    assert detect_scale(text) == scale


TATQA_LIKE = [
    ["", "", "Years Ended September 30,", ""],
    ["", "2019", "2018", "2017"],
    ["Fixed Price", "$  1,452.4", "$  1,146.2", "$  1,036.9"],
    ["Other", "44.1", "(56.7)", "—"],
    ["Total sales", "$1,496.5", "$1,202.9", "$1,107.7"],
]


def test_header_rows_name_every_column_and_rows_keep_their_labels() -> None:
    table = table_from_grid(TATQA_LIKE, caption="Sales by contract type (in millions)")
    assert table.scale == "million"
    assert table.columns[1:] == tuple(f"Years Ended September 30, {y}" for y in (2019, 2018, 2017))
    cells = {(c.row, c.column.rsplit(" ", 1)[-1]): c for c in table.cells()}
    assert cells["Other", "2018"].number is not None and cells["Other", "2018"].number.text == "-56.7"
    assert ("Other", "2017") not in cells  # a dash is no value
    assert cells["Fixed Price", "2019"].raw == "$ 1,452.4"


def test_unit_label_row_below_the_header_is_a_header_row() -> None:
    grid = [
        ["", "December 31, 2019", "", "December 31, 2018", ""],
        ["(In millions)", "Carrying Amount", "Fair Value", "Carrying Amount", "Fair Value"],
        ["Total debt", "$ 3,774.4", "$ 4,073.9", "$ 3,400.0", "$ 3,500.1"],
    ]
    table = table_from_grid(grid)
    assert table.scale == "million"
    assert table.columns[2] == "December 31, 2019 Fair Value"
    assert [c.raw for c in table.cells() if c.column == "December 31, 2019 Fair Value"] == ["$ 4,073.9"]


def test_table_without_a_header_row_gets_column_numbers() -> None:
    table = table_from_grid([["Revenue", "100", "200"], ["Costs", "(50)", "60"]])
    assert table.header == ()
    assert [(c.row, c.column, c.raw) for c in table.cells()][:2] == [
        ("Revenue", "column 2", "100"),
        ("Revenue", "column 3", "200"),
    ]


def test_section_rows_name_the_rows_below_them() -> None:
    grid = [["", "2019"], ["Revenue:", ""], ["Services", "10"], ["Products", "20"], ["Costs:", ""], ["Services", "4"]]
    table = table_from_grid(grid)
    assert [(c.section, c.row, c.raw) for c in table.cells()] == [
        ("Revenue", "Services", "10"),
        ("Revenue", "Products", "20"),
        ("Costs", "Services", "4"),
    ]


def _rows_of(chunks: list[Chunk]) -> list[tuple[str, str, str]]:
    out = []
    for chunk in chunks:
        table, _ = table_from_json(str(chunk.meta["table_rows"]))
        out.extend((c.row, c.column, c.raw) for c in table.cells())
    return out


def test_markdown_table_chunks_repeat_caption_and_header() -> None:
    rows = "\n".join(f"| Region {i} | {i},000 | ({i}) |" for i in range(60))
    text = f"# Annual report\n\nSome words.\n\nRegional sales (in thousands)\n\n| Region | 2019 | 2018 |\n|---|---:|---|\n{rows}\n\nAfter."
    chunks = split_document(Document(text, "markdown"), 400, 50, name="r.md")
    tables = [c for c in chunks if c.meta.get("is_table")]
    assert len(tables) > 3
    for chunk in tables:
        assert len(chunk.text) <= 400
        first, _, rest = chunk.text.partition("\n\n")
        assert first == "Table: Annual report — Regional sales (in thousands)"
        assert rest.startswith("| Region | 2019 | 2018 |\n|---|---|---|\n")
        assert chunk.title == "Annual report"
    cells = _rows_of(tables)
    assert len(cells) == 120  # every row once, none lost or repeated at the cuts
    assert ("Region 7", "2018", "(7)") in cells
    assert json.loads(str(tables[0].meta["table_rows"]))["scale"] == "thousand"
    prose = [c.text for c in chunks if not c.meta]
    assert any("Some words." in t for t in prose) and any("After." in t for t in prose)


HTML = """<html><body><h1>Results</h1><p>Intro.</p>
<table><caption>Net sales ($000)</caption>
<thead><tr><th></th><th colspan="2">Year ended</th></tr><tr><th></th><th>2019</th><th>2018</th></tr></thead>
<tbody><tr><td>Services</td><td>1,200</td><td>(300)</td></tr><tr><td>Products</td><td>$ 40.5</td><td>&mdash;</td></tr>
</tbody></table><p>Closing words.</p></body></html>"""


def test_html_tables_keep_caption_header_and_cells(tmp_path: Path) -> None:
    path = tmp_path / "results.html"
    path.write_text(HTML)
    doc = load_file(path, 2**20)
    chunks = split_document(doc, 800, 100, name=path.name)
    tables = [c for c in chunks if c.meta.get("is_table")]
    assert len(tables) == 1
    assert tables[0].text.startswith("Table: Results — Net sales ($000)\n\n|  | Year ended 2019 | Year ended 2018 |")
    assert _rows_of(tables) == [
        ("Services", "Year ended 2019", "1,200"),
        ("Services", "Year ended 2018", "(300)"),
        ("Products", "Year ended 2019", "$ 40.5"),
    ]
    assert json.loads(str(tables[0].meta["table_rows"]))["scale"] == "thousand"
    assert any("Closing words." in c.text for c in chunks)


@pytest.mark.parametrize(("suffix", "sep"), [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv_files_are_tables(tmp_path: Path, suffix: str, sep: str) -> None:
    assert detect_kind(Path(f"a{suffix}")) == ("table", suffix[1:])
    path = tmp_path / f"costs{suffix}"
    lines = [["Costs in thousands"], ["Item", "2019", "2018"], ["Rent", "1,000", "(20)"], ["Staff", "12.5%", ""]]
    path.write_text("\n".join(sep.join(f'"{c}"' if sep == "," else c for c in line) for line in lines))
    doc = load_file(path, 2**20)
    assert doc.kind == "table"
    chunks = split_document(doc, 800, 100, name=path.name)
    assert len(chunks) == 1 and chunks[0].meta["is_table"] is True
    assert chunks[0].text.startswith(f"Table: costs{suffix} — Costs in thousands\n\n| Item | 2019 | 2018 |")
    assert _rows_of(chunks) == [("Rent", "2019", "1,000"), ("Rent", "2018", "(20)"), ("Staff", "2019", "12.5%")]
    assert json.loads(str(chunks[0].meta["table_rows"]))["scale"] == "thousand"


def test_ragged_rows_are_padded_and_extra_cells_get_columns() -> None:
    doc = Document("Item,2019\nRent,5,extra\nStaff\n", "table", language="csv")
    chunks = split_document(doc, 800, 100, name="r.csv")
    assert _rows_of(chunks) == [("Rent", "2019", "5"), ("Rent", "column 3", "extra")]


def test_a_huge_cell_stays_bounded() -> None:
    doc = Document("Item,Notes\nRent," + "x" * 100_000 + "\nStaff,short\n", "table", language="csv")
    chunks = split_document(doc, 800, 100, name="big.csv")
    assert chunks and all(len(c.text) <= 800 for c in chunks)
    assert all(len(str(c.meta["table_rows"])) < 2_000 for c in chunks)
    raw = [cell for _, _, cell in _rows_of(chunks)]
    assert raw[0].endswith("…") and len(raw[0]) <= MAX_CELL_CHARS and raw[1] == "short"


def test_an_empty_csv_gives_no_chunks(tmp_path: Path) -> None:
    assert split_document(Document(",,,\n,,\n", "table", language="csv"), 800, 100) == []
    empty = tmp_path / "empty.csv"
    empty.write_text("\n\n")
    with pytest.raises(SkipFile, match="empty"):
        load_file(empty, 2**20)


def test_ten_thousand_rows_chunk_quickly_with_the_header_in_every_chunk() -> None:
    body = "\n".join(f"item {i},{i * 3},({i})" for i in range(10_000))
    doc = Document(f"Item,Sales,Returns\n{body}\n", "table", language="csv")
    started = time.perf_counter()
    chunks = split_document(doc, 800, 100, name="big.csv")
    took = time.perf_counter() - started
    assert took < HANG_GUARD_S, f"{took:.1f} s"
    assert all(c.text.split("\n")[2] == "| Item | Sales | Returns |" for c in chunks)
    assert all(len(c.text) <= 800 for c in chunks)
    assert sum(len(json.loads(str(c.meta["table_rows"]))["rows"]) for c in chunks) == 10_000


def test_wide_tables_still_fit_the_chunk_size() -> None:
    grid = [["Item", *[f"Quarter {i} of the fiscal year" for i in range(40)]], ["Rent", *[str(i) for i in range(40)]]]
    chunks = table_chunks(table_from_grid(grid), 300)
    assert chunks and all(len(c.text) <= 300 for c in chunks)


def test_the_scale_stated_above_a_table_is_read_but_prose_about_other_amounts_is_not() -> None:
    from conclave.tools.tables import stated_scale

    assert stated_scale("Deferred charges consisted of the following (in thousands):") == "thousand"
    assert stated_scale("NOTES TO FINANCIAL STATEMENTS (in thousands, except per share data)") == "thousand"
    assert stated_scale("(Dollars in millions)") == "million"
    assert stated_scale("Amounts are in billions:") == "billion"
    assert stated_scale("We sold 3 million shares in thousands of stores across the country.") == ""
    assert stated_scale("Revenue grew in millions of units sold") == ""
    # A table whose caption and header state no scale takes the one stated just above it.
    grid = [["", "2019", "2018"], ["Raw materials", "23,363", "25,746"]]
    assert table_from_grid(grid, caption="Inventories").scale == ""
    assert table_from_grid(grid, caption="Inventories", context="Inventories (in thousands):").scale == "thousand"
