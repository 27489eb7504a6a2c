"""The sqlite session store: ids, messages written as they complete, traces, redacted settings, export, the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.events import AnswerReady, Passage, RunFinished, RunStarted, event_from_dict
from conclave.sessions import SessionNotFound, SessionStore, export_markdown
from conclave.settings import load_settings


def make_store(path: Path) -> SessionStore:
    ticks = iter(range(10_000))
    ids = iter(["abc12345", "abd67890", "ff000001", "ff000002"])
    return SessionStore(path, clock=lambda: 1_700_000_000.0 + next(ticks), new_id=lambda: next(ids))


def test_create_list_rename_delete(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.sqlite")
    a = store.create()
    b = store.create("named")
    assert (a.id, b.id) == ("abc12345", "abd67890")
    store.add_message(a.id, "user", "first question")
    listed = store.list_sessions()
    assert [s.id for s in listed] == [a.id, b.id]  # the one with the newest message first
    assert listed[0].messages == 1 and listed[0].title == "first question"
    assert store.rename(b.id, "  new   title ").title == "new title"
    with pytest.raises(ConfigError, match="cannot be empty"):
        store.rename(b.id, "   ")
    store.delete(a.id)
    assert [s.id for s in store.list_sessions()] == [b.id]
    with pytest.raises(SessionNotFound):
        store.messages(a.id)


def test_ids_resolve_by_unique_prefix(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.sqlite")
    store.create()
    store.create()
    assert store.resolve("abc") == "abc12345"
    assert store.get("abd6").id == "abd67890"
    with pytest.raises(SessionNotFound, match="ambiguous"):
        store.resolve("ab")
    with pytest.raises(SessionNotFound, match="no session 'zz'") as info:
        store.resolve("zz")
    assert "conclave sessions list" in (info.value.hint or "")
    with pytest.raises(SessionNotFound):
        store.resolve("a%")  # LIKE wildcards are taken literally


def test_the_first_question_titles_the_session_and_long_titles_are_cut(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.sqlite")
    s = store.create()
    store.add_message(s.id, "user", "  What   does\nAdam combine " + "and more " * 20)
    store.add_message(s.id, "user", "a second question does not retitle")
    title = store.get(s.id).title
    assert title.startswith("What does Adam combine and more") and title.endswith("…") and len(title) <= 60


def test_messages_keep_meta_and_trace_and_history_skips_failed_answers(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.sqlite")
    s = store.create()
    passage = Passage(id="p1", source="notes/a.md", text="Adam combines momentum and RMSProp.", score=0.9)
    events = [
        RunStarted(question="q1", method="coa", models={"reasoner": "embedded"}),
        AnswerReady(text="a1", sources=[passage]),
        RunFinished(answer="a1", seconds=1.5),
    ]
    store.add_message(s.id, "user", "q1")
    store.add_message(
        s.id,
        "assistant",
        "a1",
        meta={"method": "coa", "sources": [passage.__dict__]},
        trace=[e.to_dict() for e in events],
    )
    store.add_message(s.id, "user", "q2")
    store.add_message(s.id, "assistant", "", status="failed", meta={"error": "Ollama is not running"})
    store.add_message(s.id, "user", "q3")
    store.add_message(s.id, "assistant", "partial", status="cancelled")
    store.add_message(s.id, "user", "q4")
    messages = store.messages(s.id)
    assert [m.role for m in messages] == ["user", "assistant"] * 3 + ["user"]
    rebuilt = [event_from_dict(d) for d in messages[1].trace]
    assert rebuilt[1] == events[1]
    assert messages[1].meta["sources"][0]["source"] == "notes/a.md"
    assert messages[3].trace == [] and messages[3].status == "failed"
    assert store.history(s.id) == [("q1", "a1")]


def test_each_message_is_on_disk_at_once_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SessionStore(path)
    s = store.create()
    store.add_message(s.id, "user", "written before a crash")
    # Another connection (another process after a crash) sees it without the first one closing or committing more.
    other = sqlite3.connect(path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT content FROM messages").fetchall() == [("written before a crash",)]
    other.close()


def test_a_killed_process_loses_nothing_it_wrote(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    script = textwrap.dedent(f"""
        import os
        from conclave.sessions import SessionStore
        store = SessionStore({str(path)!r})
        s = store.create()
        store.add_message(s.id, "user", "q")
        store.add_message(s.id, "assistant", "a", trace=[{{"kind": "run_finished"}}])
        os._exit(9)  # no close, no cleanup
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 9, result.stderr
    store = SessionStore(path)
    (info,) = store.list_sessions()
    assert [(m.role, m.content) for m in store.messages(info.id)] == [("user", "q"), ("assistant", "a")]
    assert store.messages(info.id)[1].trace == [{"kind": "run_finished"}]


def test_deleting_a_session_deletes_its_traces(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    store = SessionStore(path)
    s = store.create()
    store.add_message(s.id, "assistant", "a", trace=[{"kind": "answer"}])
    store.delete(s.id)
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM traces").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0


def test_settings_are_stored_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-verysecretkey-1234567890")
    settings = load_settings()
    path = tmp_path / "s.sqlite"
    store = SessionStore(path)
    s = store.create(settings=settings.redacted())
    store.update_settings(s.id, settings.redacted())
    assert store.get(s.id).settings["openai_api_key"] == "sk-…90"
    raw = path.read_bytes() + (
        path.with_name(path.name + "-wal").read_bytes() if path.with_name(path.name + "-wal").exists() else b""
    )
    assert b"verysecretkey" not in raw


def test_export_markdown_and_json(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s.sqlite")
    s = store.create(settings={"method": "coa", "model": "embedded", "collection": "demo"})
    store.add_message(s.id, "user", "What does Adam combine?")
    store.add_message(
        s.id,
        "assistant",
        "Momentum and RMSProp [1].",
        meta={
            "method": "coa",
            "models": {"reasoner": "embedded"},
            "seconds": 2.25,
            "sources": [
                {"id": "p1", "source": "notes/opt.md", "text": "Adam combines " * 30, "score": 0.9, "title": ""}
            ],
        },
        trace=[{"kind": "run_finished"}],
    )
    store.add_message(s.id, "user", "And SGD?")
    store.add_message(s.id, "assistant", "", status="failed", meta={"error": "backend down"})
    md = store.export(s.id, tmp_path / "out" / "s.md", "md").read_text()
    assert md.startswith("# What does Adam combine?\n")
    assert "Method `coa` · model `embedded` · collection `demo`" in md
    assert "## Conclave (coa · embedded · 2.2 s)\n\nMomentum and RMSProp [1]." in md
    assert "1. `notes/opt.md` — Adam combines" in md and "…" in md
    assert "_(no answer: backend down)_" in md
    data = json.loads(store.export(s.id, tmp_path / "s.json", "json").read_text())
    assert data["settings"]["method"] == "coa"
    assert [m["status"] for m in data["messages"]] == ["ok", "ok", "ok", "failed"]
    assert data["messages"][1]["trace"] == [{"kind": "run_finished"}]
    with pytest.raises(ConfigError, match="cannot write"):
        store.export(s.id, tmp_path / "s.json" / "nested.md", "md")
    assert export_markdown(store.get(s.id), []).startswith("# What does Adam combine?")


def test_unwritable_database_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot open the sessions database") as info:
        SessionStore(blocker / "sessions.sqlite")
    assert info.value.hint


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_sessions_list_export_rename_delete(conclave_home: Path, tmp_path: Path) -> None:
    from conclave.cli.main import app

    store = SessionStore(load_settings().sessions_path)
    s = store.create()
    store.add_message(s.id, "user", "What does Adam combine?")
    store.add_message(s.id, "assistant", "Momentum and RMSProp.", meta={"method": "direct"})
    runner = CliRunner()

    listed = runner.invoke(app, ["sessions", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output) == [
        {
            "id": s.id,
            "title": "What does Adam combine?",
            "created": s.created,
            "updated": store.get(s.id).updated,
            "messages": 2,
        }
    ]
    table = runner.invoke(app, ["sessions", "list"])
    assert s.id in table.output and "conclave chat --session ID" in table.output

    shown = runner.invoke(app, ["sessions", "export", s.id[:5]])
    assert shown.exit_code == 0 and "## You\n\nWhat does Adam combine?" in shown.output
    out = tmp_path / "x.json"
    written = runner.invoke(app, ["sessions", "export", s.id, "--format", "json", "-o", str(out)])
    assert written.exit_code == 0 and json.loads(out.read_text())["id"] == s.id
    bad = runner.invoke(app, ["sessions", "export", s.id, "--format", "pdf"])
    assert isinstance(bad.exception, ConfigError)

    renamed = runner.invoke(app, ["sessions", "rename", s.id, "Adam"])
    assert renamed.exit_code == 0 and store.get(s.id).title == "Adam"
    kept = runner.invoke(app, ["sessions", "delete", s.id], input="n\n")
    assert kept.exit_code == 1 and store.list_sessions()
    gone = runner.invoke(app, ["sessions", "delete", s.id, "--yes"])
    assert gone.exit_code == 0 and store.list_sessions() == []


def test_cli_chat_with_an_unknown_session_fails_before_starting(conclave_home: Path) -> None:
    from conclave.cli.main import app

    result = CliRunner().invoke(app, ["chat", "--session", "nope"])
    assert isinstance(result.exception, SessionNotFound)
    bad_method = CliRunner().invoke(app, ["chat", "--method", "telepathy"])
    assert isinstance(bad_method.exception, ConfigError) and "unknown method" in str(bad_method.exception)
