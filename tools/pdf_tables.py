"""Tables in a PDF's text layer.

A PDF has no tables, only text placed on a page. Read in pypdf's layout mode, a table's rows are lines whose cells
are separated by wide gaps and line up in columns. :func:`layout_to_markdown` turns such runs of lines into Markdown
pipe tables (so the Markdown chunker gives them a caption, a header and a scale like any other table: tools/tables.py)
and every other line into plain text with its spacing collapsed. A scanned page has no text layer at all: there is
nothing to read, and the file is skipped with that reason (tools/reading.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["layout_to_markdown"]

# A cell: words separated by single spaces; two or more spaces end it.
_CELL = re.compile(r"\S+(?: \S+)*")
_HAS_DIGIT = re.compile(r"\d")
MIN_ROWS = 2
"""A table is at least a header and one row (or two rows)."""


def _cells(line: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group(0)) for m in _CELL.finditer(line)]


def _is_row(cells: Sequence[tuple[int, int, str]]) -> bool:
    """A line that could be a table row: two cells or more, a gap of at least two spaces between each."""
    return len(cells) >= 2


def _grid(block: list[list[tuple[int, int, str]]]) -> list[list[str]] | None:
    """The rows of a block as a grid: columns are taken from its widest row, and each cell of another row goes to
    the column it overlaps most (numbers are often right-aligned, so their starts differ while their spans overlap).
    None when the block does not line up as a table."""
    widest = max(block, key=len)
    columns = [[start, end] for start, end, _ in widest]
    for row in block:  # widen each column to cover every cell assigned to it
        for start, end, _ in row:
            index = _column_of(columns, start, end)
            columns[index][0] = min(columns[index][0], start)
            columns[index][1] = max(columns[index][1], end)
    grid = []
    for row in block:
        cells = [""] * len(columns)
        for start, end, text in row:
            index = _column_of(columns, start, end)
            if cells[index]:
                return None  # two cells in one column: not aligned, so not a table
            cells[index] = text
        grid.append(cells)
    return grid


def _column_of(columns: list[list[int]], start: int, end: int) -> int:
    def distance(column: list[int]) -> float:
        overlap = min(end, column[1]) - max(start, column[0])
        return -overlap if overlap > 0 else abs((start + end) / 2 - (column[0] + column[1]) / 2)

    return min(range(len(columns)), key=lambda i: distance(columns[i]))


MAX_VALUE_CHARS = 40
"""A value cell longer than this is a fragment of justified prose, not a table cell."""


def _is_table(grid: list[list[str]]) -> bool:
    """Aligned lines that read as a table: numbers in the value columns of the rows, and no long prose there."""
    values = [c for row in grid for c in row[1:] if c]
    return any(_HAS_DIGIT.search(c) for row in grid[1:] for c in row[1:]) and all(
        len(c) <= MAX_VALUE_CHARS for c in values
    )


def _markdown(grid: list[list[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(grid[0]), "|" + " --- |" * len(grid[0]), *(line(r) for r in grid[1:])]


def layout_to_markdown(text: str) -> tuple[str, int]:
    """A page (or document) of layout-mode text as Markdown: runs of at least :data:`MIN_ROWS` aligned lines holding
    numbers become pipe tables; every other line keeps its words with single spaces. Returns the text and the number
    of tables found."""
    out: list[str] = []
    block: list[list[tuple[int, int, str]]] = []
    tables = 0

    def flush() -> None:
        nonlocal tables
        grid = _grid(block) if len(block) >= MIN_ROWS else None
        if grid is not None and _is_table(grid):
            out.extend(["", *_markdown(grid), ""])
            tables += 1
        else:
            out.extend(" ".join(c for _, _, c in row) for row in block)
        block.clear()

    for raw in text.splitlines():
        cells = _cells(raw)
        if cells and _is_row(cells):
            block.append(cells)
            continue
        if not cells and block:  # a blank line inside a table (layout mode keeps vertical gaps) ends nothing yet
            continue
        flush()
        out.append(" ".join(c for _, _, c in cells))
    flush()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip(), tables
