"""Tables in a PDF's text layer (issue 27): aligned columns of numbers become a table with its header, its row
labels, negatives in brackets and the scale stated above it; prose stays prose; a PDF without a text layer is
skipped with the reason."""

from __future__ import annotations

import json
from pathlib import Path

from conclave.tools.chunking import split_document
from conclave.tools.pdf_tables import layout_to_markdown
from conclave.tools.reading import load_file

from tests.unit.test_chunking import make_pdf

REPORT = [
    (72, 740, "Annual report 2020"),
    (72, 720, "Our costs rose in 2020 because rent went up. Operating costs (in thousands):"),
    (72, 700, "Cost"),
    (300, 700, "2020"),
    (400, 700, "2019"),
    (72, 685, "Rent"),
    (300, 685, "3,400"),
    (400, 685, "3,100"),
    (72, 670, "Utilities and heating"),
    (300, 670, "1,250"),
    (400, 670, "\\(40\\)"),
    (72, 655, "Travel"),
    (300, 655, "820"),
    (400, 655, "910"),
    (72, 630, "Travel fell as meetings moved online."),
]


def test_a_pdf_table_is_ingested_as_a_table_with_its_header_labels_and_scale(tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(make_pdf([], placed=REPORT))
    doc = load_file(pdf, 2**20)
    assert doc.kind == "markdown"
    assert "| Utilities and heating | 1,250 | (40) |" in doc.text
    assert "Travel fell as meetings moved online." in doc.text
    [table] = [c for c in split_document(doc, 1000, 100) if c.meta.get("is_table")]
    # The caption line above the table states the scale; the header and each row's label stay with the values.
    assert table.text.startswith("Table: ") and "(in thousands)" in table.text.splitlines()[0]
    rows = json.loads(table.meta["table_rows"])
    assert rows["scale"] == "thousand"
    assert rows["columns"] == ["Cost", "2020", "2019"]
    assert ["", "Utilities and heating", ["1,250", "(40)"]] in rows["rows"]


def test_a_pdf_of_prose_stays_plain_text(tmp_path: Path) -> None:
    pdf = tmp_path / "prose.pdf"
    pdf.write_bytes(make_pdf(["Backpropagation applies the chain rule.", "Layer by layer, in 2 passes."]))
    doc = load_file(pdf, 2**20)
    assert doc.kind == "pdf" and "|" not in doc.text


def test_aligned_prose_without_numbers_or_with_long_fragments_is_not_a_table() -> None:
    words = "Name                 Role\nAda                  Engineer\nGrace                Admiral"
    assert layout_to_markdown(words)[1] == 0  # no numbers in its value column
    justified = (
        "The committee met in 2019  and decided that the budget would be raised by a large amount\n"
        "after the vote in 2020     and the members agreed to review it again in the following years"
    )
    text, tables = layout_to_markdown(justified)
    assert tables == 0 and "|" not in text


def test_a_right_aligned_column_and_a_blank_cell_line_up() -> None:
    text, tables = layout_to_markdown(
        "Segment              2020        2019\n"
        "Services            1,234         987\n"
        "Products               56       1,001\n"
        "Other                              12\n"
    )
    assert tables == 1
    assert "| Products | 56 | 1,001 |" in text and "| Other |  | 12 |" in text


def test_a_pdf_without_a_text_layer_is_skipped_with_the_reason(tmp_path: Path) -> None:
    import pytest
    from conclave.tools.chunking import SkipFile

    scanned = tmp_path / "scan.pdf"
    scanned.write_bytes(make_pdf([], placed=[]))  # a page with nothing drawn as text, as a scanned image is
    with pytest.raises(SkipFile, match="no text layer"):
        load_file(scanned, 2**20)
