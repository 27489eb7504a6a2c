"""Tables as data: parsing (Markdown pipe tables, HTML, CSV/TSV), numbers as reports write them, and table chunks.

A :class:`Table` is a caption, a scale stated once for the whole table ("in millions"), header rows and body rows
whose first cell is the row label. Every value cell can be named by what it means: its row label (with the section
row above it, "Revenue:"), its column header (all header rows joined, "Years Ended September 30, 2019") and the
table's caption. :func:`table_chunks` renders a table as Markdown chunks that each repeat the caption and the header,
and carry the rows they hold as JSON (``TableChunk.rows_json``), so that a value can be looked up by its headers
(``tools/values.py``) wherever the chunker cut. Pure functions: no store, no model.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any

__all__ = [
    "MAX_CELL_CHARS",
    "Cell",
    "Number",
    "Table",
    "TableChunk",
    "detect_scale",
    "stated_scale",
    "find_markdown_tables",
    "is_blank_cell",
    "parse_delimited",
    "parse_number",
    "split_markdown_row",
    "table_chunks",
    "table_from_grid",
    "table_from_json",
    "table_to_markdown",
]

MAX_CELL_CHARS = 300
"""A cell longer than this is clipped (with "…") in chunks and in the stored rows: a 100 kB cell stays bounded."""

MAX_CAPTION_CHARS = 200

# ------------------------------------------------------------------ numbers

_BLANKS = frozenset({"", "-", "—", "–", "−", "--", "n/a", "na", "n.a.", "nm", "n.m.", "*", "none", "nil"})
_SCALE_WORDS = {
    "thousand": "thousand",
    "thousands": "thousand",
    "k": "thousand",
    "000": "thousand",
    "000s": "thousand",
    "million": "million",
    "millions": "million",
    "m": "million",
    "mn": "million",
    "mm": "million",
    "billion": "billion",
    "billions": "billion",
    "bn": "billion",
    "b": "billion",
}
_CURRENCY = r"(?:US\$|A\$|C\$|\$|€|£|¥|RMB|USD|EUR|GBP)"
_NUMBER_RE = re.compile(
    rf"""
    (?P<sign>[-−–])?\s*
    (?P<open>\()?\s*
    (?P<cur1>{_CURRENCY})?\s*
    (?P<open2>\()?\s*
    (?P<sign2>[-−–])?\s*
    (?P<digits>\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)
    \s*(?P<close>\))?
    \s*(?P<pct>%)?
    (?:\s*(?P<scale>thousands?|millions?|billions?|bn|mn|mm|m|k)\b)?
    \s*(?P<close2>\))?
    """,
    re.VERBOSE | re.IGNORECASE,
)


@dataclass(frozen=True)
class Number:
    """A number read from a cell or a sentence: ``text`` is its plain form ("-1234", "1452.4") for arithmetic."""

    value: Decimal
    unit: str = ""  # "%", "$", "€", ... or ""
    scale: str = ""  # a scale written next to the number itself ("$5.2 million")

    @property
    def text(self) -> str:
        """The number without separators, currency or a trailing ``.0`` (what a calculator reads)."""
        text = format(self.value.normalize(), "f")
        return "0" if text in ("-0", "0") else text


def is_blank_cell(text: str) -> bool:
    """Whether a cell holds no value: empty, a dash, "n/a"."""
    return " ".join(text.split()).lower() in _BLANKS


def parse_number(text: str) -> Number | None:
    """The number a whole cell holds, as reports write it, or None when the cell is not one number.

    ``(1,234)`` is -1234, ``$ 1,452.4`` is 1452.4 in dollars, ``12.5%`` is 12.5 percent, ``1.2 million`` carries its
    scale; a dash or an empty cell is no number. Text around the number ("about 5 units") makes it not a number.
    """
    cleaned = " ".join(text.replace("\u00a0", " ").split())
    if is_blank_cell(cleaned) or len(cleaned) > 60:
        return None
    match = _NUMBER_RE.fullmatch(cleaned)
    if match is None:
        return None
    return _number_of(match)


def _number_of(match: re.Match[str]) -> Number | None:
    opened = bool(match.group("open") or match.group("open2"))
    closed = bool(match.group("close") or match.group("close2"))
    if opened != closed:
        return None
    try:
        value = Decimal(match.group("digits").replace(",", ""))
    except InvalidOperation:
        return None
    if opened or match.group("sign") or match.group("sign2"):
        value = -value
    unit = "%" if match.group("pct") else (match.group("cur1") or "")
    scale = _SCALE_WORDS.get((match.group("scale") or "").lower(), "")
    return Number(value=value, unit=unit, scale=scale)


def find_numbers(text: str) -> list[tuple[int, int, Number]]:
    """Every number in running text, with its span (a sentence's "$5.2 million", "(0.9)", "12.5%")."""
    found = []
    for match in _NUMBER_RE.finditer(text):
        start, end = match.start("digits"), match.end("digits")
        glued = end < len(text) and text[end].isalpha() and not match.group("scale")
        if (start and text[start - 1].isalnum()) or glued:
            continue  # part of a word: "Q4", "FY2019", "10x"
        number = _number_of(match)
        sign = match.start("sign")
        if number is not None and match.group("sign") and sign and text[sign - 1].isalnum():
            number = Number(-number.value, number.unit, number.scale)  # the dash of a range, "2018-2019"
        if number is None:
            # "(12" and "5.0)" in "(12 and 5.0)": read the digits without the unmatched parenthesis.
            try:
                number = Number(Decimal(match.group("digits").replace(",", "")))
            except InvalidOperation:
                continue
        found.append((match.start("digits"), match.end(), number))
    return found


_SCALE_PATTERNS = [
    (re.compile(r"\b(?:in|of)\s+(?:\w+\s+){0,2}billions?\b|[$€£]\s?(?:bn|billions?)\b", re.I), "billion"),
    (
        re.compile(
            r"\b(?:in|of)\s+(?:\w+\s+){0,2}millions?\b|[$€£]\s?(?:m|mn|mm|millions?)\b"
            r"|\((?:[$€£]\s?)?millions?\b|\bmillions?\)",
            re.I,
        ),
        "million",
    ),
    (
        re.compile(
            r"\b(?:in|of)\s+(?:\w+\s+){0,2}thousands?\b|[$€£]\s?['’]?000s?\b"
            r"|\((?:[$€£]\s?)?thousands?\b|\bthousands?\)|['’]000s?\b",
            re.I,
        ),
        "thousand",
    ),
]


def detect_scale(*texts: str) -> str:
    """The scale stated in a caption or header ("in millions", "$000", "(€ thousands)"): thousand, million,
    billion, or "" when none is stated. The first text that states one wins."""
    for text in texts:
        if not text:
            continue
        hits = [(m.start(), scale) for pattern, scale in _SCALE_PATTERNS for m in [pattern.search(text)] if m]
        if hits:
            return min(hits)[1]
    return ""


# A scale stated in the sentence that introduces a table rather than in its caption or header: "(in thousands,
# except per share data)", "(Dollars in millions)", "consisted of the following (in thousands):", "amounts in
# millions:". Stricter than the caption patterns: prose above a table says "of 3 million shares" about other things.
_STATED_SCALE = re.compile(
    r"\(\s*(?:[^()]{0,40}?\s)?in\s+(?P<a>thousands|millions|billions)\b"
    r"|\bin\s+(?P<b>thousands|millions|billions)(?:\s+of\s+[^\s,:;()]+)?\s*(?:[,:;)]|$)",
    re.I,
)


def stated_scale(text: str) -> str:
    """The scale the text just above a table states for it (see ``_STATED_SCALE``), or "" when it states none."""
    found = _STATED_SCALE.search(text)
    return (found.group("a") or found.group("b")).lower().rstrip("s") if found else ""


# ------------------------------------------------------------------ tables


def _clip(text: str, limit: int = MAX_CELL_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


@dataclass(frozen=True)
class Cell:
    """One value cell with what names it: its row label (and section), column header and the table's caption."""

    row: str
    column: str
    raw: str
    section: str = ""
    caption: str = ""
    scale: str = ""
    row_index: int = 0
    column_index: int = 0

    @property
    def number(self) -> Number | None:
        return parse_number(self.raw)


@dataclass(frozen=True)
class Table:
    """A table: ``header`` rows name the columns, each body row starts with its label. Rows are padded to one width."""

    header: tuple[tuple[str, ...], ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    scale: str = ""
    columns: tuple[str, ...] = field(default=())
    """One name per column (the header rows joined); computed from ``header`` when not given."""

    def __post_init__(self) -> None:
        if not self.columns:
            object.__setattr__(self, "columns", _column_names(self.header, self.width))

    @cached_property
    def width(self) -> int:
        return max((len(r) for r in (*self.header, *self.rows)), default=0)

    def body(self) -> Iterator[tuple[str, str, tuple[str, ...]]]:
        """(section, label, cells) per body row; a row with a label and no values is a section, not a data row."""
        section = ""
        for row in self.rows:
            label, values = row[0].strip(), row[1:]
            if _is_section_row(row) and len(self.rows) > 1:
                # Its one text, wherever it sits ("| | Liabilities and equity | |"), names the rows below.
                label = next(c.strip() for c in row if not is_blank_cell(c))
                section = label.rstrip(":").strip()
                yield section, label, ()
                continue
            if label.lower().startswith("total"):
                section = ""  # a total names what it sums, and closes its section
            yield section, label, values

    def cells(self) -> Iterator[Cell]:
        """Every non-blank value cell (columns after the label column), named by its headers."""
        for index, (section, label, values) in enumerate(self.body()):
            for offset, raw in enumerate(values, start=1):
                if is_blank_cell(raw):
                    continue
                yield Cell(
                    row=label,
                    column=self.columns[offset] if offset < len(self.columns) else f"column {offset + 1}",
                    raw=raw,
                    section=section if section != label else "",
                    caption=self.caption,
                    scale=self.scale,
                    row_index=index,
                    column_index=offset,
                )


def _is_section_row(row: Sequence[str]) -> bool:
    """A row with one text and no values: a section heading inside the table."""
    filled = [c for c in row if not is_blank_cell(c)]
    return len(filled) == 1 and len(row) > 1 and parse_number(filled[0]) is None


def _column_names(header: Sequence[Sequence[str]], width: int) -> tuple[str, ...]:
    """Column names from the header rows: a spanning upper cell ("Years Ended September 30,") names every value
    column when it stands alone in its row, else the columns to its right up to the next one; generic names
    ("column 3") where the header says nothing."""
    filled: list[list[str]] = []
    for depth, row in enumerate(header):
        cells = [c.strip() for c in row] + [""] * (width - len(row))
        if depth < len(header) - 1:
            present = [i for i in range(1, width) if cells[i]]
            if len(present) == 1:
                cells = [cells[0]] + [cells[present[0]]] * (width - 1)
            else:
                for i in range(2, width):
                    if not cells[i] and cells[i - 1]:
                        cells[i] = cells[i - 1]
        filled.append(cells)
    names = []
    for column in range(width):
        parts: list[str] = []
        for cells in filled:
            if cells[column] and cells[column] not in parts:
                parts.append(cells[column])
        names.append(" ".join(parts) if parts else ("" if column == 0 else f"column {column + 1}"))
    return tuple(names)


def _is_data_row(row: Sequence[str]) -> bool:
    """Whether a first row holds values rather than names: a number past the label column that is not a year."""
    return any(parse_number(c) is not None and not _is_year(c) for c in row[1:])


MAX_HEADER_ROWS = 4


def _continues_header(rows: Sequence[Sequence[str]], index: int) -> bool:
    """Whether a row below the header still names columns: no label (or a unit label: "(In millions)", "$'000"),
    names or years but no values, above rows that hold values."""
    row = rows[index]
    label = row[0]
    if label and not detect_scale(label) and label.strip("()$€£ ").lower() not in _UNIT_LABELS:
        return False
    if not any(row[1:]) or _is_data_row(row):
        return False
    return any(_is_data_row(later) for later in rows[index + 1 :])


_UNIT_LABELS = frozenset({"usd", "usdm", "eur", "gbp", "m", "£m", "$m", "€m", "%", "in %", "unaudited", "audited"})


def _is_year(text: str) -> bool:
    text = text.strip()
    return len(text) == 4 and text.isdigit() and 1900 <= int(text) <= 2100


def table_from_grid(
    grid: Sequence[Sequence[str]], *, caption: str = "", header_rows: int | None = None, context: str = ""
) -> Table:
    """A table from rows of cell texts (ragged rows are padded). ``header_rows`` None: the first row is a header
    unless it holds values, and the rows after it that have no label (``| | 2019 | 2018 |``) are header rows too.
    ``context``: the text just above the table (its section's headings, the sentence introducing it), which gives
    the scale when the caption and header state none (:func:`stated_scale`)."""
    rows = [[" ".join(str(c).split()) for c in row] for row in grid]
    rows = [r for r in rows if any(r)]
    width = max((len(r) for r in rows), default=0)
    rows = [r + [""] * (width - len(r)) for r in rows]
    # Lines above the table with one cell (a title, "in thousands") are its caption.
    lead: list[str] = []
    while header_rows is None and len(rows) > 1 and sum(1 for c in rows[0] if c) == 1 and width > 1 and rows[0][0]:
        lead.append(rows.pop(0)[0])
    if header_rows is None:
        header_rows = 0 if not rows or _is_data_row(rows[0]) else 1
        while (
            header_rows and header_rows < min(len(rows) - 1, MAX_HEADER_ROWS) and _continues_header(rows, header_rows)
        ):
            header_rows += 1
    header = [r for r in rows[:header_rows] if any(r)]
    body = rows[header_rows:]
    caption = " — ".join(p for p in (caption, *lead) if p)
    scale = detect_scale(caption, " ".join(c for r in header for c in r)) or stated_scale(context)
    return Table(
        header=tuple(tuple(r) for r in header),
        rows=tuple(tuple(r) for r in body),
        caption=_clip(caption, MAX_CAPTION_CHARS),
        scale=scale,
    )


def parse_delimited(text: str, delimiter: str = ",", *, caption: str = "") -> Table:
    """A CSV or TSV file as one table (raises ``csv.Error`` on a file the csv module cannot read)."""
    if delimiter == "," and text.count(";") > text.count(",") * 2:
        delimiter = ";"  # European exports
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    return table_from_grid([row for row in reader], caption=caption)


# ------------------------------------------------------------------ Markdown

_DELIMITER_ROW = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")


def split_markdown_row(line: str) -> list[str]:
    """The cells of a pipe-table row (``\\|`` is a literal pipe)."""
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|") and not line.endswith("\\|"):
        line = line[:-1]
    return [c.replace("\\|", "|").strip() for c in re.split(r"(?<!\\)\|", line)]


def find_markdown_tables(text: str) -> list[tuple[int, int, list[list[str]]]]:
    """Pipe tables in Markdown: (first line, line after the last, rows with the header row first); the delimiter
    row (``|---|---|``) is dropped. Lines are ``text.splitlines()``."""
    lines = text.splitlines()
    found = []
    i = 0
    while i + 1 < len(lines):
        if "|" in lines[i] and "|" in lines[i + 1] and _DELIMITER_ROW.match(lines[i + 1]):
            header = split_markdown_row(lines[i])
            end = i + 2
            rows = [header]
            while end < len(lines) and "|" in lines[end] and lines[end].strip():
                rows.append(split_markdown_row(lines[end]))
                end += 1
            found.append((i, end, rows))
            i = end
        else:
            i += 1
    return found


def table_to_markdown(
    table: Table, rows: Sequence[tuple[str, ...]] | None = None, *, limit: int = MAX_CELL_CHARS
) -> str:
    """A pipe table: one header line of the column names (blank when the table has none), then ``rows``."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(_clip(c, limit).replace("|", "\\|") for c in cells) + " |"

    names = list(table.columns) if table.header else [""] * table.width
    out = [line(names), "|" + "|".join("---" for _ in range(table.width)) + "|"]
    out.extend(line(r) for r in (table.rows if rows is None else rows))
    return "\n".join(out)


# ------------------------------------------------------------------ chunks


@dataclass(frozen=True)
class TableChunk:
    """One chunk of a table: its text (context line, header, whole rows) and the rows it holds as JSON."""

    text: str
    rows_json: str


def _context_line(table: Table, heading: str) -> str:
    parts = [p for p in (heading, table.caption) if p]
    context = " — ".join(dict.fromkeys(parts)) or "table"
    if table.scale and detect_scale(context) != table.scale:
        context += f" (in {table.scale}s)"
    return f"Table: {context}"


def table_chunks(table: Table, chunk_size: int, *, heading: str = "") -> list[TableChunk]:
    """The table cut between rows into chunks of at most ``chunk_size`` characters, each opening with the caption
    (or heading) and the header line, a chunk that starts inside a section repeating the section's row first.

    Cells are clipped to :data:`MAX_CELL_CHARS`, and further when a wide table's header and one row would not fit."""
    if not table.rows or table.width == 0:
        return []
    context = _clip(_context_line(table, heading), max(20, chunk_size // 4))
    limit = MAX_CELL_CHARS
    while True:
        prefix = f"{context}\n\n{table_to_markdown(table, [], limit=limit)}\n"
        widest = max(len(table_to_markdown(table, [r], limit=limit).split("\n", 2)[2]) for r in table.rows)
        if len(prefix) + widest <= chunk_size or limit <= 1:
            break
        limit = max(1, limit // 2)
    chunks: list[TableChunk] = []
    lines: list[str] = []
    held: list[tuple[str, str, tuple[str, ...]]] = []
    section_row: tuple[str, ...] | None = None
    size = len(prefix)

    def flush() -> None:
        if held and any(values for _, _, values in held):
            body = "\n".join(lines)
            chunks.append(TableChunk(text=(prefix + body)[:chunk_size], rows_json=_rows_json(table, heading, held)))

    for row, (section, label, values) in zip(table.rows, table.body(), strict=True):
        text = table_to_markdown(table, [row], limit=limit).split("\n", 2)[2]
        if lines and size + 1 + len(text) > chunk_size:
            flush()
            lines, held, size = [], [], len(prefix)
            if section_row is not None and values:
                repeat = table_to_markdown(table, [section_row], limit=limit).split("\n", 2)[2]
                if size + len(repeat) + 1 + len(text) <= chunk_size:
                    lines.append(repeat)
                    size += len(repeat) + 1
        if not values:
            section_row = row
        lines.append(text)
        held.append((section, label, values))
        size += len(text) + 1
    flush()
    return chunks


def _rows_json(table: Table, heading: str, rows: list[tuple[str, str, tuple[str, ...]]]) -> str:
    """The rows of one chunk with everything that names their cells, as compact JSON (chunk metadata)."""
    data: dict[str, Any] = {
        "caption": table.caption,
        "heading": heading,
        "scale": table.scale,
        "columns": [_clip(c) for c in table.columns],
        "rows": [
            [_clip(section), _clip(label), [_clip(v) for v in values]] for section, label, values in rows if values
        ],
    }
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def table_from_json(text: str) -> tuple[Table, str]:
    """(table, heading) from a :class:`TableChunk`'s ``rows_json``; a section is kept as a section row before its rows.
    Raises ValueError on anything else (metadata is untrusted data)."""
    data = json.loads(text)
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("rows"), list)
        or not isinstance(data.get("columns"), list)
    ):
        raise ValueError("not a table chunk's rows")
    columns = tuple(str(c) for c in data["columns"])
    rows: list[tuple[str, ...]] = []
    section = ""
    for entry in data["rows"]:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], list)):
            raise ValueError("not a table chunk's rows")
        row_section, label, values = str(entry[0]), str(entry[1]), [str(v) for v in entry[2]]
        if row_section and row_section != section:
            rows.append((row_section, *[""] * (len(columns) - 1)))
            section = row_section
        rows.append((label, *values))
    table = Table(
        header=(columns,) if any(columns) else (),
        rows=tuple(rows),
        caption=str(data.get("caption", "")),
        scale=str(data.get("scale", "")),
        columns=columns,
    )
    return table, str(data.get("heading", ""))
