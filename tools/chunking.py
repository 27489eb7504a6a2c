"""Reading files into text and splitting text into chunks (pure functions, no store, no model).

Markdown (and HTML, converted to Markdown-like text) is split at headings first, keeping the text verbatim, and
each section is then cut to ``chunk_size`` characters with ``chunk_overlap`` by langchain-text-splitters; other
kinds go straight to a language-aware recursive splitter.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from conclave.errors import ConfigError

__all__ = [
    "MAX_FILE_BYTES",
    "Chunk",
    "Document",
    "SkipFile",
    "chunk_id",
    "detect_kind",
    "html_to_text",
    "load_document",
    "split_document",
    "split_markdown_sections",
]

MAX_FILE_BYTES = 50 * 1024 * 1024

_MARKDOWN = {".md", ".markdown", ".mdown", ".mkd"}
_TEXT = {".txt", ".text", ".log", ".csv", ".tsv"}
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
    kind: str  # markdown | text | rst | html | pdf | code
    title: str = ""
    language: str = ""


@dataclass(frozen=True)
class Chunk:
    """One piece of a document; ``heading`` is the Markdown heading path it sits under, if any."""

    text: str
    index: int
    title: str
    heading: str = ""

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


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Latin-1 never fails; legacy 8-bit text still becomes searchable.
        return data.decode("latin-1")


def load_document(path: Path, *, explicit: bool = False) -> Document:
    """Read a file into a :class:`Document`; raise :class:`SkipFile` for empty, binary or unreadable files."""
    kind_lang = detect_kind(path, explicit=explicit)
    if kind_lang is None:
        raise SkipFile(f"unsupported file type ({path.suffix or 'no extension'})")
    kind, language = kind_lang
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SkipFile(f"too large ({size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MiB)")
        data = path.read_bytes()
    except SkipFile:
        raise
    except OSError as exc:
        raise SkipFile(f"unreadable ({exc.strerror or exc})") from exc
    if not data.strip():
        raise SkipFile("empty")
    if kind == "pdf":
        text, title = _pdf_text(path, data)
    else:
        if b"\x00" in data[:8192]:
            raise SkipFile("binary file")
        text = _decode(data)
        title = ""
        if kind == "html":
            title, text = html_to_text(text)
            kind = "markdown"  # headings were converted to Markdown headings
    if not text.strip():
        raise SkipFile("empty" if kind != "pdf" else "no extractable text (scanned PDF?)")
    return Document(text=text, kind=kind, title=title, language=language)


def _pdf_text(path: Path, data: bytes) -> tuple[str, str]:
    import io

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
        pages = [page.extract_text() or "" for page in reader.pages]
        title = ""
        if reader.metadata is not None and reader.metadata.title:
            title = str(reader.metadata.title)
    except SkipFile:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise SkipFile(f"unreadable PDF ({exc})") from exc
    return "\n\n".join(p.strip() for p in pages if p.strip()), title


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

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in self._SKIP:
            self._skip_depth += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.parts.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in self._BLOCK:
            self.parts.append("\n\n" if tag != "br" else "\n")
        elif tag == "td" or tag == "th":
            self.parts.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in self._SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._skip_depth:
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
    """Cut a document into chunks of at most ``chunk_size`` characters (heading-aware for Markdown)."""
    if chunk_overlap >= chunk_size:
        raise ConfigError(
            f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size})",
            hint="set CONCLAVE_CHUNK_OVERLAP below CONCLAVE_CHUNK_SIZE",
        )
    splitter = _splitter(doc.kind, doc.language, chunk_size, chunk_overlap)
    pieces: list[tuple[str, str]] = []  # (heading path, text)
    if doc.kind == "markdown":
        for path, body in split_markdown_sections(doc.text):
            heading = " > ".join(path)
            pieces.extend((heading, t) for t in _split_section(body, chunk_size, chunk_overlap, splitter))
    else:
        pieces.extend(("", t) for t in splitter.split_text(doc.text))
    doc_title = doc.title or name
    chunks: list[Chunk] = []
    for heading, text in pieces:
        text = text.strip()
        if text:
            chunks.append(Chunk(text=text, index=len(chunks), title=heading or doc_title, heading=heading))
    return chunks
