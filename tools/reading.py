"""Reading one file for ingestion: regular files only, never more than a bound, text decoded by its BOM or its bytes.

An ingested folder is untrusted (SECURITY.md), and so is what its links point at: ``/dev/zero`` never ends, a FIFO
blocks the open until a writer comes, and a file under ``/proc`` is "regular" with a size in ``stat`` that says
nothing of what a read returns. So the type is checked on the path (after links) and again on the opened
descriptor, and at most ``limit + 1`` bytes are ever read, whatever ``stat`` said.

Text is decoded by its byte-order mark when it has one (UTF-8, UTF-16 and UTF-32, either byte order), else as UTF-8,
else as a legacy 8-bit encoding (Windows-1252, then Latin-1). A file is binary, and skipped, when it holds NUL bytes
(without a BOM that explains them) or when too many of its characters are control characters or undecodable.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import stat
from pathlib import Path

from conclave.tools.chunking import Document, SkipFile, _pdf_text, detect_kind, html_to_text

from conclave.fileio import UnsafePathError, open_regular

__all__ = ["BINARY_SHARE", "decode_text", "load_file", "read_bounded"]

BINARY_SHARE = 0.10
"""Above this share of control characters (other than whitespace) or undecodable bytes, a file is binary."""

_READ_PIECE = 1 << 20
_SNIFF_NUL = 8192
# UTF-32 LE's mark begins with UTF-16 LE's, so the longer marks are tried first.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# C0 and C1 controls except tab, newline, vertical tab, form feed and carriage return; U+FFFD is what a decoder
# puts where bytes did not decode.
_NOT_TEXT = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ufffd]")
_FILE_TYPES = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def _mib(size: int) -> str:
    return f"{size / 2**20:,.1f} MiB" if size >= 2**20 else f"{size} bytes"


def _too_large(limit: int, size: str) -> SkipFile:
    return SkipFile(f"too large ({size}; the limit is {_mib(limit)}: raise CONCLAVE_MAX_FILE_MB to read it)")


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"unreadable ({exc.strerror or exc})"


def _not_regular(mode: int) -> SkipFile:
    what = next((name for test, name in _FILE_TYPES if test(mode)), "not a plain file")
    return SkipFile(f"not a regular file ({what})")


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (links followed), or SkipFile when it is something else, is larger
    than ``limit`` bytes (by ``stat`` or by reading), or cannot be read."""
    real = Path(os.path.realpath(path))
    try:
        info = os.stat(real)
    except OSError as exc:
        raise SkipFile(_os_reason(exc)) from exc
    if not stat.S_ISREG(info.st_mode):
        raise _not_regular(info.st_mode)
    if info.st_size > limit:
        raise _too_large(limit, _mib(info.st_size))
    try:
        # The resolved path holds no link, so refusing one here only refuses a path swapped since the stat.
        fd = open_regular(real, os.O_RDONLY)
    except UnsafePathError as exc:
        raise SkipFile("not a regular file (it changed while being read)") from exc
    except OSError as exc:
        raise SkipFile(_os_reason(exc)) from exc
    pieces: list[bytes] = []
    got = 0
    try:
        while got <= limit:
            piece = os.read(fd, min(_READ_PIECE, limit + 1 - got))
            if not piece:
                break
            pieces.append(piece)
            got += len(piece)
    except OSError as exc:
        raise SkipFile(_os_reason(exc)) from exc
    finally:
        os.close(fd)
    if got > limit:
        raise _too_large(limit, f"more than {_mib(limit)} when read, though its size says {_mib(info.st_size)}")
    return b"".join(pieces)


def _refuse_binary(text: str) -> str:
    if not text:
        return text
    share = sum(1 for _ in _NOT_TEXT.finditer(text)) / len(text)
    if share > BINARY_SHARE:
        raise SkipFile(f"binary file ({share:.0%} of it is control characters or bytes that are not text)")
    return text


def decode_text(data: bytes) -> str:
    """``data`` as text (see the module docstring), or SkipFile("binary file ...")."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return _refuse_binary(data[len(bom) :].decode(codec, errors="replace"))
    if b"\x00" in data[:_SNIFF_NUL]:
        raise SkipFile("binary file")
    try:
        return _refuse_binary(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    # Judged as Latin-1, where every byte is one character and C1 controls count as controls.
    _refuse_binary(data.decode("latin-1"))
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def load_file(path: Path, limit: int, *, explicit: bool = False) -> Document:
    """Read a file into a :class:`Document` as ingestion does: :func:`read_bounded`, then :func:`decode_text`
    (HTML to Markdown-like text, PDF through pypdf); SkipFile for anything unsupported, empty or unreadable."""
    kind_lang = detect_kind(path, explicit=explicit)
    if kind_lang is None:
        raise SkipFile(f"unsupported file type ({path.suffix or 'no extension'})")
    kind, language = kind_lang
    data = read_bounded(path, limit)
    if not data.strip():
        raise SkipFile("empty")
    title = ""
    if kind == "pdf":
        text, title, tables = _pdf_text(path, data)
        if tables:
            kind = "markdown"  # its tables were written as Markdown tables, which the Markdown chunker keeps whole
    else:
        text = decode_text(data)
        if kind == "html":
            title, text = html_to_text(text)
            kind = "markdown"  # headings were converted to Markdown headings
    if not text.strip():
        # A scanned page is an image: without a text layer there are no words or table cells to read (no OCR here).
        raise SkipFile("empty" if kind_lang[0] != "pdf" else "no text layer (a scanned PDF?): nothing to read, no OCR")
    return Document(text=text, kind=kind, title=title, language=language)
