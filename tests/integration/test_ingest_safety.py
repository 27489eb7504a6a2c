"""What ingestion reads and skips, on real files and real Chroma: devices, pipes, links out of the folder, link
loops, the size bound, encodings (BOMs, legacy 8-bit text, binary files without NUL bytes), long lines."""

from __future__ import annotations

import codecs
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conclave.cli.main import app
from conclave.tools.ingest import ingest
from conclave.tools.store import KnowledgeStore
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.settings import Settings, load_settings
from tests.integration.test_store import FakeEmbedder

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).absolute().parents[2]
GOOD = "# Good\n\nBackpropagation is the chain rule applied layer by layer."


def fake(settings: Settings) -> KnowledgeStore:
    return KnowledgeStore.open(settings, embedder=FakeEmbedder())


def reasons(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {s.path: s.reason for s in report.skipped}


def documents(settings: Settings, collection: str) -> dict[str, str]:
    """source file name -> the text of its chunks, joined."""
    got = fake(settings).get_collection(collection).get(include=["documents", "metadatas"])
    out: dict[str, str] = {}
    for doc, meta in zip(got["documents"], got["metadatas"], strict=True):
        name = Path(meta["source"]).name
        out[name] = (out.get(name, "") + "\n" + doc).strip()
    return out


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "good.md").write_text(GOOD)
    return folder


def test_a_link_to_dev_zero_is_never_read(docs: Path, conclave_home: Path) -> None:
    """The link is reported, and at most a bounded amount is read: in a child process whose address space is
    capped 1 GiB above what it holds, so reading /dev/zero to the end fails the test instead of the machine."""
    os.symlink("/dev/zero", docs / "zero.txt")
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        from conclave.tools.ingest import ingest
        from conclave.tools.store import KnowledgeStore
        from conclave.settings import load_settings
        from tests.integration.test_store import FakeEmbedder

        settings = load_settings()
        store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
        store.get_or_create_collection("zero")
        size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, resource.RLIM_INFINITY))
        report = ingest([{str(docs)!r}], "zero", settings, store=store)
        print(json.dumps(report.to_dict()))
        report = ingest([{str(docs)!r}], "zero", settings, store=store, follow_links=True)
        print(json.dumps(report.to_dict()))
        """
    )
    env = {**os.environ, "CONCLAVE_HOME": str(conclave_home), "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    confined, followed = (json.loads(line) for line in done.stdout.splitlines()[-2:])
    by_path = {s["path"]: s["reason"] for s in confined["skipped"]}
    assert by_path == {"zero.txt": "a link to a file outside the folder (--follow-links reads it)"}
    by_path = {s["path"]: s["reason"] for s in followed["skipped"]}
    assert by_path == {"zero.txt": "not a regular file (a character device)"}
    assert (followed["files_seen"], followed["files_unchanged"], followed["files_skipped"]) == (2, 1, 1)


def test_pipes_and_sockets_in_the_folder_are_listed_not_dropped(docs: Path, conclave_home: Path) -> None:
    import socket

    os.mkfifo(docs / "pipe.txt")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(docs / "sock.md"))
    try:
        settings = load_settings()
        report = ingest([docs], "special", settings, store=fake(settings))
    finally:
        sock.close()
    assert reasons(report) == {
        "pipe.txt": "not a regular file (a named pipe)",
        "sock.md": "not a regular file (a socket)",
    }
    assert (report.files_seen, report.files_ingested) == (3, 1)


def test_links_out_of_the_folder_are_skipped_unless_follow_links(tmp_path: Path, docs: Path) -> None:
    secrets = tmp_path / "home" / ".ssh"
    secrets.mkdir(parents=True)
    (secrets / "id_rsa").write_text("BEGIN PRIVATE KEY material that must stay home")
    os.symlink(secrets / "id_rsa", docs / "key.md")
    (docs / "sub").mkdir()
    (docs / "sub" / "real.md").write_text("# Real\n\nAttention weighs tokens.")
    os.symlink(docs / "sub" / "real.md", docs / "alias.md")  # stays inside: read
    settings = load_settings()
    report = ingest([docs], "links", settings, store=fake(settings))
    assert reasons(report) == {"key.md": "a link to a file outside the folder (--follow-links reads it)"}
    texts = documents(settings, "links")
    assert set(texts) == {"good.md", "real.md", "alias.md"}
    assert not any("PRIVATE" in text for text in texts.values())

    followed = ingest([docs], "links", settings, store=fake(settings), follow_links=True)
    assert followed.skipped == []
    assert "PRIVATE" in documents(settings, "links")["key.md"]


def test_a_workflows_allowed_folders_decide_which_links_it_follows(tmp_path: Path, docs: Path) -> None:
    """A workflow's ingest step is confined to its allowed folders (``--allow-paths``), not to the folder itself."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "glossary.md").write_text("# Glossary\n\nA gradient is a vector of partial derivatives.")
    os.symlink(shared / "glossary.md", docs / "glossary.md")
    settings = load_settings()
    allowed = ingest([docs], "wf-allowed", settings, store=fake(settings), confine_to=[docs, shared])
    assert allowed.skipped == [] and allowed.files_ingested == 2
    confined = ingest([docs], "wf-confined", settings, store=fake(settings), confine_to=[docs])
    assert reasons(confined) == {"glossary.md": "a link to a file outside the allowed folders"}


def test_cli_ingest_lists_a_link_out_and_reads_it_with_follow_links(
    tmp_path: Path, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCLAVE_EMBEDDED_THREADS", "1")
    outside = tmp_path / "outside.md"
    outside.write_text("# Outside\n\nDropout zeroes activations.")
    os.symlink(outside, docs / "out.md")
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(docs), "-c", "cli-links", "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["skipped"] == [
        {"path": "out.md", "reason": "a link to a file outside the folder (--follow-links reads it)"}
    ]
    assert report["files_ingested"] == 1
    table = runner.invoke(app, ["ingest", str(docs), "-c", "cli-links"])
    assert "out.md" in table.stdout and "--follow-links" in table.stdout
    second = runner.invoke(app, ["ingest", str(docs), "-c", "cli-links", "--follow-links", "--json"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["skipped"] == []
    assert json.loads(second.stdout)["files_ingested"] == 1
    assert "--follow-links" in runner.invoke(app, ["ingest", "--help"]).stdout


def test_a_symbolic_link_loop_is_called_one(tmp_path: Path, docs: Path) -> None:
    os.symlink(docs / "loop-b.md", docs / "loop-a.md")
    os.symlink(docs / "loop-a.md", docs / "loop-b.md")
    settings = load_settings()
    report = ingest([docs], "loops", settings, store=fake(settings))
    assert reasons(report) == {"loop-a.md": "symbolic link loop", "loop-b.md": "symbolic link loop"}
    with pytest.raises(ConfigError, match="symbolic link loop") as info:
        ingest([docs / "loop-a.md"], "loops", settings, store=fake(settings))
    assert "no such file" not in info.value.message


def test_a_file_above_max_file_mb_is_skipped_with_the_limit_named(docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (docs / "big.txt").write_text(("words " * 100 + "\n") * 2000)  # about 1.2 MiB
    monkeypatch.setenv("CONCLAVE_MAX_FILE_MB", "1")
    settings = load_settings()
    report = ingest([docs], "sizes", settings, store=fake(settings))
    assert reasons(report)["big.txt"].startswith("too large (1.1 MiB; the limit is 1.0 MiB")
    assert "CONCLAVE_MAX_FILE_MB" in reasons(report)["big.txt"]
    assert report.files_ingested == 1


def test_the_read_stops_at_the_bound_when_stat_says_less() -> None:
    """/proc files are regular with a size of 0 in stat: the read itself must stop at the bound."""
    from conclave.tools.reading import read_bounded

    maps = Path("/proc/self/maps")
    if not maps.is_file():
        pytest.skip("needs Linux /proc")
    assert maps.stat().st_size == 0
    with pytest.raises(Exception, match=r"more than 64 bytes when read, though its size says 0 bytes"):
        read_bounded(maps, 64)
    assert len(read_bounded(maps, 2**24)) > 64


@pytest.mark.parametrize(
    ("codec", "bom"),
    [
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-32-le", codecs.BOM_UTF32_LE),
        ("utf-32-be", codecs.BOM_UTF32_BE),
        ("utf-8", codecs.BOM_UTF8),
    ],
)
def test_text_with_a_byte_order_mark_is_read_in_its_encoding(docs: Path, codec: str, bom: bytes) -> None:
    text = "Café notes: the Größe of a layer is its width — naïve but useful."
    (docs / "notes.txt").write_bytes(bom + text.encode(codec))
    settings = load_settings()
    report = ingest([docs], "boms", settings, store=fake(settings))
    assert report.skipped == []
    assert documents(settings, "boms")["notes.txt"] == text


def test_binary_without_nul_bytes_is_skipped_and_legacy_text_is_kept(docs: Path) -> None:
    (docs / "blob.txt").write_bytes(bytes(range(1, 256)) * 40)
    (docs / "old.txt").write_bytes(b"Les r\xe9seaux na\xeffs \x93apprennent\x94 vite.")  # Windows-1252
    (docs / "colours.log").write_bytes(b"\x1b[32mok\x1b[0m training finished after 12 epochs, loss 0.031\n" * 20)
    settings = load_settings()
    report = ingest([docs], "binary", settings, store=fake(settings))
    skipped = reasons(report)
    assert set(skipped) == {"blob.txt"}
    assert skipped["blob.txt"].startswith("binary file (")
    texts = documents(settings, "binary")
    assert texts["old.txt"] == "Les réseaux naïfs “apprennent” vite."
    assert "training finished" in texts["colours.log"]


def test_a_long_single_line_is_cut_into_bounded_chunks(docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONCLAVE_CHUNK_SIZE", "500")
    monkeypatch.setenv("CONCLAVE_CHUNK_OVERLAP", "50")
    (docs / "line.txt").write_text(" ".join(f"token{i}" for i in range(30_000)))  # one line, about 260 kB
    (docs / "solid.txt").write_text("x" * 150_000)  # one line without a single space
    settings = load_settings()
    report = ingest([docs], "lines", settings, store=fake(settings))
    assert report.skipped == []
    got = fake(settings).get_collection("lines").get(include=["documents"])
    assert max(len(d) for d in got["documents"]) <= 500
    assert report.chunks_added >= 150_000 // 500
