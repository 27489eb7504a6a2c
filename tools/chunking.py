"""Reading files into text and splitting text into chunks (pure functions, no store, no model).

Markdown (and HTML, converted to Markdown-like text) is split at headings first, keeping the text verbatim, and
each section is then cut to ``chunk_size`` characters with ``chunk_overlap`` by langchain-text-splitters; other
kinds go straight to a language-aware recursive splitter. Tables (Markdown pipe tables, HTML tables, CSV and TSV
files) are chunks of their own, cut between rows, each repeating the table's caption and header and carrying its
rows as JSON in :attr:`Chunk.meta` (``tools/tables.py``), so that a value can be looked up by its headers.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from conclave.tools.tables import (
    Table,
    find_markdown_tables,
    table_chunks,
    table_from_grid,
    table_to_markdown,
)

from conclave.errors import ConfigError

__all__ = [
    "TABLE_META_KEYS",
    "Chunk",
    "Document",
    "SkipFile",
    "chunk_id",
    "detect_kind",
    "html_to_text",
    "split_document",
    "split_markdown_sections",
]


_MARKDOWN = {".md", ".markdown", ".mdown", ".mkd"}
_TEXT = {".txt", ".text", ".log"}
_TABLES = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv"}
_DELIMITERS = {"csv": ",", "tsv": "\t"}
TABLE_META_KEYS = ("is_table", "table_caption", "table_rows")
"""The metadata a table chunk carries: a flag to filter on, its caption line, and its rows as JSON."""
_RST = {".rst", ".rest"}
_HTML = {".html", ".htm", ".xhtml"}
_PDF = {".pdf"}
_CODE = {
    ".py": "python",
    ".pyi": "python",
    ".js": "js",
    ".mjs": "js",
    ".jsx": "js",
    ".ts": "ts",
    ".tsx": "ts",
    ".java": "java",
    ".kt": "kotlin",
    ".go": "go",
    ".rs": "rust",
    ".rb": "ruby",
    ".php": "php",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".hpp": "cpp",
    ".cs": "csharp",
    ".scala": "scala",
    ".swift": "swift",
    ".lua": "lua",
    ".pl": "perl",
    ".hs": "haskell",
    ".ex": "elixir",
    ".exs": "elixir",
    ".sol": "sol",
    ".proto": "proto",
    ".tex": "latex",
    ".ps1": "powershell",
    # Plain-text sources without a dedicated splitter.
    ".sh": "",
    ".bash": "",
    ".zsh": "",
    ".sql": "",
    ".r": "",
    ".m": "",
    ".css": "",
    ".scss": "",
    ".toml": "",
    ".yaml": "",
    ".yml": "",
    ".json": "",
    ".ini": "",
    ".cfg": "",
    ".xml": "",
    ".jl": "",
    ".dart": "",
}
_BARE_TEXT_NAMES = {
    "readme",
    "license",
    "licence",
    "changelog",
    "makefile",
    "dockerfile",
    "authors",
    "notice",
}


class SkipFile(Exception):
    """A file that is not ingested; ``reason`` says why (shown in the ingest summary)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Document:
    """Text extracted from one file."""

    text: str
    kind: str  # markdown | text | rst | html | pdf | code | table (CSV/TSV; ``language`` is csv or tsv)
    title: str = ""
    language: str = ""


@dataclass(frozen=True)
class Chunk:
    """One piece of a document; ``heading`` is the Markdown heading path it sits under, if any; ``meta`` is more
    metadata to store with it (a table chunk's :data:`TABLE_META_KEYS`)."""

    text: str
    index: int
    title: str
    heading: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def embed_text(self) -> str:
        """What gets embedded: the heading path gives a section's text the context of its document."""
        if self.heading and not self.text.startswith(self.heading):
            return f"{self.heading}\n\n{self.text}"
        return self.text


def chunk_id(source: str, index: int, text: str) -> str:
    """Content-hash id of a chunk: the same file, position and text always give the same id."""
    digest = hashlib.sha256(f"{source}\x00{index}\x00{text}".encode()).hexdigest()
    return digest[:32]


def detect_kind(path: Path, *, explicit: bool = False) -> tuple[str, str] | None:
    """(kind, language) from the file name, or None when the type is not supported."""
    suffix = path.suffix.lower()
    if suffix in _MARKDOWN:
        return "markdown", ""
    if suffix in _TEXT:
        return "text", ""
    if suffix in _TABLES:
        return "table", _TABLES[suffix]
    if suffix in _RST:
        return "rst", ""
    if suffix in _HTML:
        return "html", ""
    if suffix in _PDF:
        return "pdf", ""
    if suffix in _CODE:
        return "code", _CODE[suffix]
    if not suffix and path.name.lower() in _BARE_TEXT_NAMES:
        return "text", ""
    # A file named on the command line is read as text if it is text, whatever its name.
    return ("text", "") if explicit else None


def _pdf_text(path: Path, data: bytes) -> tuple[str, str, int]:
    """A PDF's text layer, its title, and how many tables it holds: pages with aligned columns of numbers are read
    in layout mode and their tables written as Markdown tables (tools/pdf_tables.py); others as plain text."""
    import io

    from conclave.tools.pdf_tables import layout_to_markdown
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    if not data.startswith(b"%PDF"):
        raise SkipFile("not a PDF (no %PDF header)")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                reader.decrypt("")
            except Exception as exc:  # pypdf raises several types for unsupported encryption
                raise SkipFile("encrypted PDF") from exc
        pages, tables = [], 0
        for page in reader.pages:
            plain = page.extract_text() or ""
            try:
                text, found = layout_to_markdown(page.extract_text(extraction_mode="layout") or "")
            except (ValueError, KeyError, TypeError, IndexError, ZeroDivisionError):  # layout mode is the fragile one
                text, found = plain, 0
            pages.append(text if found else plain)
            tables += found
        title = ""
        if reader.metadata is not None and reader.metadata.title:
            title = str(reader.metadata.title)
    except SkipFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise SkipFile(f"unreadable PDF ({exc})") from exc
    return "\n\n".join(p.strip() for p in pages if p.strip()), title, tables


class _HTMLTable:
    """The rows of one HTML table being read: cells (``colspan`` repeated in header rows), its caption, and which
    rows are header rows (in ``<thead>`` or made only of ``<th>``)."""

    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.header_flags: list[bool] = []
        self.caption = ""
        self.cell: list[str] | None = None
        self.span = 1
        self.cell_is_th = False
        self.in_head = False
        self.in_caption = False

    def start_row(self) -> None:
        self.end_cell()
        self.rows.append([])
        self.header_flags.append(True)  # until a <td> outside <thead> shows otherwise

    def start_cell(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.end_cell()
        if not self.rows:
            self.start_row()
        self.cell = []
        self.cell_is_th = tag == "th" or self.in_head
        self.header_flags[-1] = self.header_flags[-1] and self.cell_is_th
        span = dict(attrs).get("colspan") or "1"
        self.span = int(span) if span.isdigit() and 0 < int(span) <= 50 else 1

    def end_cell(self) -> None:
        if self.cell is None:
            return
        text = " ".join("".join(self.cell).split())
        # A header cell spanning columns names each of them; a spanning value belongs to its first column.
        self.rows[-1].extend([text] + [text if self.cell_is_th else ""] * (self.span - 1))
        self.cell = None

    def table(self) -> Table:
        self.end_cell()
        header_rows = 0
        while header_rows < len(self.rows) and self.header_flags[header_rows] and self.rows[header_rows]:
            header_rows += 1
        return table_from_grid(self.rows, caption=self.caption, header_rows=header_rows or None)


class _HTMLText(HTMLParser):
    _SKIP = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    _BLOCK = frozenset(
        "p div section article main header footer nav aside li ul ol table tr"
        " br hr pre blockquote dd dt dl figure figcaption form".split()
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title = ""
        self._skip_depth = 0
        self._in_title = False
        self._tables: list[_HTMLTable] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip_depth += 1
        elif self._skip_depth:
            return
        elif tag == "table":
            self._tables.append(_HTMLTable())
        elif self._tables and len(self._tables) == 1 and self._table_tag(tag, attrs, start=True):
            return
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCK:
            self._emit("\n\n" if tag != "br" else "\n")
        elif tag == "td" or tag == "th":
            self._emit(" | ")

    def _table_tag(self, tag: str, attrs: list[tuple[str, str | None]], *, start: bool) -> bool:
        """Structure of the (outermost) table being read; True when the tag was one of its own."""
        table = self._tables[0]
        if tag == "thead":
            table.in_head = start
        elif tag == "caption":
            table.in_caption = start
        elif tag == "tr":
            if start:
                table.start_row()
            else:
                table.end_cell()
        elif tag in ("td", "th"):
            if start:
                table.start_cell(tag, attrs)
            else:
                table.end_cell()
        else:
            return False
        return True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif self._skip_depth:
            return
        elif tag == "table" and self._tables:
            self._close_table()
        elif self._tables and len(self._tables) == 1 and self._table_tag(tag, [], start=False):
            return
        elif re.fullmatch(r"h[1-6]", tag) or tag in self._BLOCK:
            self._emit("\n\n")

    def _close_table(self) -> None:
        inner = self._tables.pop()
        if self._tables:  # a table inside a cell: its text stays in that cell
            return
        table = inner.table()
        if not table.rows:
            cells = " ".join(c for row in inner.rows for c in row if c)
            self.parts.append(f"\n\n{inner.caption}\n\n{cells}\n\n")
            return
        caption = f"{table.caption}\n\n" if table.caption else ""
        self.parts.append(f"\n\n{caption}{table_to_markdown(table, limit=10**6)}\n\n")

    def _emit(self, text: str) -> None:
        if not self._tables:
            self.parts.append(text)

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif self._skip_depth:
            return
        elif self._tables:
            table = self._tables[0]
            if table.in_caption:
                table.caption += data
            elif table.cell is not None:
                table.cell.append(data)
        else:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, text) of an HTML page; headings become Markdown ``#`` headings, scripts and styles are dropped."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    text = re.sub(r"^(#{1,6}) +\n+", r"\1 ", text, flags=re.MULTILINE)  # heading marker split from its text
    return " ".join(parser.title.split()), text


_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")


def split_markdown_sections(text: str) -> list[tuple[list[str], str]]:
    """Split Markdown at ATX headings outside code fences: [(heading path, section text)], text verbatim."""
    sections: list[tuple[list[str], str]] = []
    path: list[tuple[int, str]] = []
    current: list[str] = []
    current_path: list[str] = []
    fence: str | None = None
    for line in text.splitlines():
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            fence = None if fence == marker else (marker if fence is None else fence)
        heading = None if fence else _HEADING.match(line)
        if heading:
            body = "\n".join(current).strip()
            # A heading with nothing under it travels with the next section instead of being a chunk of its own.
            if body and not all(_HEADING.match(x) for x in body.splitlines() if x.strip()):
                sections.append((current_path, body))
                current = []
            level, title = len(heading.group(1)), heading.group(2).strip()
            path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
            current_path = [t for _, t in path]
        current.append(line)
    body = "\n".join(current).strip()
    if body:
        sections.append((current_path, body))
    return sections


def _splitter(kind: str, language: str, chunk_size: int, chunk_overlap: int):
    from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

    lang = {"markdown": "markdown", "rst": "rst", "code": language}.get(kind, "")
    if lang:
        try:
            return RecursiveCharacterTextSplitter.from_language(
                Language(lang), chunk_size=chunk_size, chunk_overlap=chunk_overlap
            )
        except ValueError:
            pass
    return RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)


def _split_section(body: str, chunk_size: int, chunk_overlap: int, splitter) -> list[str]:
    """A section as one chunk if it fits; otherwise pieces that each repeat the section's heading line."""
    if len(body) <= chunk_size:
        return [body]
    first, _, rest = body.partition("\n")
    if not _HEADING.match(first) or not rest.strip() or len(first) > chunk_size // 3:
        return list(splitter.split_text(body))
    room = chunk_size - len(first) - 2
    inner = _splitter("markdown", "", room, min(chunk_overlap, room // 2))
    return [f"{first}\n\n{piece.strip()}" for piece in inner.split_text(rest.strip()) if piece.strip()]


def split_document(doc: Document, chunk_size: int, chunk_overlap: int, *, name: str = "") -> list[Chunk]:
    """Cut a document into chunks of at most ``chunk_size`` characters (heading-aware for Markdown; a table's
    chunks each repeat its caption and header)."""
    if chunk_overlap >= chunk_size:
        raise ConfigError(
            f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size})",
            hint="set CONCLAVE_CHUNK_OVERLAP below CONCLAVE_CHUNK_SIZE",
        )
    splitter = _splitter(doc.kind, doc.language, chunk_size, chunk_overlap)
    pieces: list[tuple[str, str, Mapping[str, Any]]] = []  # (heading path, text, metadata)
    if doc.kind == "markdown":
        for path, body in split_markdown_sections(doc.text):
            heading = " > ".join(path)
            for part in _markdown_parts(body, path):
                if isinstance(part, Table):
                    pieces.extend(_table_pieces(part, chunk_size, heading))
                else:
                    pieces.extend((heading, t, {}) for t in _split_section(part, chunk_size, chunk_overlap, splitter))
    elif doc.kind == "table":
        pieces.extend(_delimited_pieces(doc, chunk_size, chunk_overlap, name))
    else:
        pieces.extend(("", t, {}) for t in splitter.split_text(doc.text))
    doc_title = doc.title or name
    chunks: list[Chunk] = []
    for heading, text, meta in pieces:
        text = text.strip()
        if text:
            chunks.append(
                Chunk(text=text, index=len(chunks), title=heading or doc_title, heading=heading, meta=dict(meta))
            )
    return chunks


def _table_pieces(table: Table, chunk_size: int, heading: str) -> list[tuple[str, str, Mapping[str, Any]]]:
    return [
        (
            heading,
            piece.text,
            {"is_table": True, "table_caption": piece.text.split("\n", 1)[0], "table_rows": piece.rows_json},
        )
        for piece in table_chunks(table, chunk_size, heading=heading)
    ]


def _delimited_pieces(
    doc: Document, chunk_size: int, chunk_overlap: int, name: str
) -> list[tuple[str, str, Mapping[str, Any]]]:
    """A CSV/TSV file as one table; a file the csv module cannot read is chunked as plain text (nothing is lost)."""
    from conclave.tools.tables import parse_delimited

    try:
        table = parse_delimited(doc.text, _DELIMITERS.get(doc.language, ","), caption=doc.title or name)
    except csv.Error:
        splitter = _splitter("text", "", chunk_size, chunk_overlap)
        return [("", t, {}) for t in splitter.split_text(doc.text)]
    return _table_pieces(table, chunk_size, "")


_CAPTION_MAX = 200
_CAPTION_WORDS = 8


def _markdown_parts(body: str, path: list[str]) -> list[str | Table]:
    """A section's text cut around its pipe tables: text pieces and :class:`Table` s, in order. A table's caption
    is the short line just above it (when it is not the section's heading)."""
    found = find_markdown_tables(body)
    if not found:
        return [body]
    lines = body.splitlines()
    parts: list[str | Table] = []
    position = 0
    for start, end, rows in found:
        before = "\n".join(lines[position:start])
        above = [line for line in lines[position:start] if line.strip()][-2:]
        table = table_from_grid(
            rows, caption=_caption_above(lines[position:start], path), context="\n".join([*path, *above])
        )
        if not table.rows:
            continue  # a header without rows stays in the text around it
        if before.strip():
            parts.append(before)
        parts.append(table)
        position = end
    rest = "\n".join(lines[position:])
    if rest.strip():
        parts.append(rest)
    return parts


def _caption_above(lines: list[str], path: list[str]) -> str:
    for line in reversed(lines[-3:]):
        text = line.strip().strip("*_").strip()
        if not text:
            continue
        heading = _HEADING.match(line)
        if heading:
            text = heading.group(2).strip()
            return "" if path and text == path[-1] else text
        # A caption is a title ("Net sales (in millions)", "as follows:"), not a paragraph's last sentence.
        sentence = text.endswith(".") and len(text.split()) > _CAPTION_WORDS
        return text if len(text) <= _CAPTION_MAX and not sentence else ""
    return ""
