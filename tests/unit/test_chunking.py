"""Reading files and splitting them into chunks (no store, no model)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conclave.tools.chunking import (
    Document,
    SkipFile,
    chunk_id,
    detect_kind,
    html_to_text,
    split_document,
    split_markdown_sections,
)
from conclave.tools.reading import load_file
from hypothesis import given, settings
from hypothesis import strategies as st

from conclave.errors import ConfigError


def make_pdf(lines: list[str], title: str = "", *, placed: list[tuple[int, int, str]] | None = None) -> bytes:
    """A minimal one-page PDF with text lines in Helvetica (enough for pypdf to extract); ``placed``: pieces of text
    at (x, y) positions instead, as a PDF lays out a table's cells."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) Tj T*" for line in lines) + " ET"
    if placed is not None:
        content = "\n".join(f"BT /F1 10 Tf {x} {y} Td ({text}) Tj ET" for x, y, text in placed)
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            "/Resources << /Font << /F1 5 0 R >> >> >>"
        ),
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    if title:
        objects.append(f"<< /Title ({title}) >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{obj}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    info = f" /Info {len(objects)} 0 R" if title else ""
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{info} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


MARKDOWN = """# Optimisers

Intro paragraph.

## Momentum

Momentum keeps a velocity.

```python
# not a heading, inside a fence
x = 1
```

## Adam

Adam combines momentum with RMSprop.

### Bias correction

Both moments start at zero.
"""


def test_markdown_sections_keep_text_verbatim_and_heading_paths() -> None:
    sections = split_markdown_sections(MARKDOWN)
    assert [path for path, _ in sections] == [
        ["Optimisers"],
        ["Optimisers", "Momentum"],
        ["Optimisers", "Adam"],
        ["Optimisers", "Adam", "Bias correction"],
    ]
    momentum = sections[1][1]
    assert "```python\n# not a heading, inside a fence\nx = 1\n```" in momentum
    assert sections[2][1] == "## Adam\n\nAdam combines momentum with RMSprop."


def test_heading_without_body_joins_the_next_section() -> None:
    sections = split_markdown_sections("# Title\n\n## Part\n\nText.\n")
    assert sections == [(["Title", "Part"], "# Title\n\n## Part\n\nText.")]


def test_markdown_chunks_carry_titles_and_embed_with_context() -> None:
    chunks = split_document(Document(MARKDOWN, "markdown"), 800, 100, name="opt.md")
    assert [c.index for c in chunks] == list(range(len(chunks)))
    adam = next(c for c in chunks if "Adam combines" in c.text)
    assert adam.title == "Optimisers > Adam"
    assert adam.embed_text.startswith("Optimisers > Adam\n\n## Adam")


def test_long_sections_are_split_within_size_with_overlap() -> None:
    words = " ".join(f"word{i}" for i in range(600))
    doc = Document(f"# Big\n\n{words}\n", "markdown")
    chunks = split_document(doc, 300, 60)
    assert len(chunks) > 5
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(c.title == "Big" for c in chunks)
    # Every piece repeats its heading line, so no chunk loses its context.
    assert all(c.text.startswith("# Big\n\nword") for c in chunks)
    # Consecutive chunks overlap: the next one starts with words the previous one ended with.
    first_word = chunks[1].text.split()[2]
    assert first_word in chunks[0].text


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab cd\n#."), min_size=1, max_size=3000), st.integers(100, 400))
def test_chunks_never_exceed_size(text: str, size: int) -> None:
    for kind in ("markdown", "text"):
        for chunk in split_document(Document(text, kind), size, size // 5):
            assert 0 < len(chunk.text) <= size


def test_overlap_must_be_smaller_than_size() -> None:
    with pytest.raises(ConfigError, match="chunk_overlap"):
        split_document(Document("text", "text"), 200, 200)


def test_code_and_rst_use_language_splitters() -> None:
    code = "\n\n".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(40))
    chunks = split_document(Document(code, "code", language="python"), 200, 0, name="m.py")
    assert all(c.text.startswith("def f") for c in chunks)
    assert chunks[0].title == "m.py"
    rst = "Title\n=====\n\n" + "Some text. " * 100
    assert len(split_document(Document(rst, "rst"), 300, 30)) > 2


def test_chunk_ids_are_content_hashes() -> None:
    assert chunk_id("/a.md", 0, "x") == chunk_id("/a.md", 0, "x")
    ids = {
        chunk_id("/a.md", 0, "x"),
        chunk_id("/b.md", 0, "x"),
        chunk_id("/a.md", 1, "x"),
        chunk_id("/a.md", 0, "y"),
    }
    assert len(ids) == 4
    assert all(len(i) == 32 for i in ids)


def test_html_text_extraction() -> None:
    html = """<html><head><title>The  Page</title><style>p {color: red}</style></head>
    <body><script>alert('x')</script><h1>Main</h1><p>First &amp; foremost.</p>
    <h2>Sub</h2><ul><li>one</li><li>two</li></ul></body></html>"""
    title, text = html_to_text(html)
    assert title == "The Page"
    assert "alert" not in text and "color" not in text
    assert "# Main" in text and "## Sub" in text
    assert "First & foremost." in text
    assert [p for p, _ in split_markdown_sections(text)] == [["Main"], ["Main", "Sub"]]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.md", "markdown"),
        ("a.txt", "text"),
        ("a.rst", "rst"),
        ("a.html", "html"),
        ("a.pdf", "pdf"),
        ("a.py", "code"),
        ("README", "text"),
        ("a.png", None),
        ("a.bin", None),
    ],
)
def test_detect_kind(name: str, kind: str | None) -> None:
    found = detect_kind(Path(name))
    assert (found[0] if found else None) == kind


def test_explicit_files_of_unknown_type_are_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.weird"
    path.write_text("plain words")
    assert load_file(path, 2**20, explicit=True).text == "plain words"
    with pytest.raises(SkipFile, match="unsupported file type"):
        load_file(path, 2**20)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.md", b"", "empty"),
        ("blank.txt", b"  \n\n ", "empty"),
        ("binary.txt", b"abc\x00\x01\x02def", "binary"),
        ("fake.pdf", b"this is not a pdf", "not a PDF"),
        ("broken.pdf", b"%PDF-1.4\ngarbage", "PDF"),
        ("image.png", b"\x89PNG\r\n", "unsupported file type (.png)"),
        ("script.html", b"<script>x()</script>", "empty"),
    ],
)
def test_unusable_files_are_skipped_with_reason(tmp_path: Path, name: str, content: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SkipFile) as info:
        load_file(path, 2**20)
    assert reason in info.value.reason


def test_unreadable_file_is_skipped(tmp_path: Path) -> None:
    link = tmp_path / "dangling.md"
    os.symlink(tmp_path / "missing-target.md", link)
    with pytest.raises(SkipFile, match="unreadable"):
        load_file(link, 2**20)


def test_pdf_and_latin1_text(tmp_path: Path) -> None:
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(make_pdf(["Backpropagation applies the chain rule.", "Layer by layer."], title="Backprop"))
    doc = load_file(pdf, 2**20)
    assert doc.kind == "pdf" and doc.title == "Backprop"
    assert "chain rule" in doc.text
    latin = tmp_path / "old.txt"
    latin.write_bytes("caf\xe9 na\xefve".encode("latin-1"))
    assert load_file(latin, 2**20).text == "café naïve"
