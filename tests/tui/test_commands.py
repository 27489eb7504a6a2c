"""Slash commands, the command palette, the help screen, knowledge commands (fake store and, when installed, real)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from conclave.tui import create_app
from conclave.tui.commands import SLASH_COMMANDS, SlashError, parse_slash
from conclave.tui.screens import HelpScreen, SessionsScreen

from conclave.sessions import SessionStore
from conclave.settings import Settings
from tests.tui.conftest import ADAM, FakeKnowledge, Script, ask, notices, settle, wait_for


def test_parse_slash() -> None:
    assert parse_slash("/ingest 'my notes' b.md") == ("ingest", ["my notes", "b.md"])
    assert parse_slash("  /TRACE off ") == ("trace", ["off"])
    with pytest.raises(SlashError, match="unknown command /frobnicate"):
        parse_slash("/frobnicate")
    with pytest.raises(SlashError, match="type a command"):
        parse_slash("/")
    with pytest.raises(SlashError, match="cannot read"):
        parse_slash("/search 'unclosed")


async def command(pilot: Any, text: str) -> None:
    await ask(pilot, text)
    await pilot.pause()


async def test_method_model_collection_and_trace_commands(settings: Settings, store: SessionStore) -> None:
    app = create_app(settings, runner=Script(), store=store, knowledge=FakeKnowledge())
    async with app.run_test(size=(120, 40)) as pilot:
        await command(pilot, "/method cot")
        assert app.settings.method == "cot" and app.status_bar.state.method == "cot"
        await command(pilot, "/method telepathy")
        assert app.settings.method == "cot"
        assert any("unknown method 'telepathy'" in n and "fix: use one of" in n for n in notices(app))
        await command(pilot, "/method coa:k=3,critic=false")
        assert app.settings.method == "coa" and app.settings.coa.samples == 3 and not app.settings.coa.use_critic
        await command(pilot, "/method coa:k=0")
        assert app.settings.coa.samples == 3 and any("bad option samples='0'" in n for n in notices(app))
        await command(pilot, "/method cot")

        await command(pilot, "/model embedded")
        assert app.settings.model == "embedded" and app.status_bar.state.models["critic"] == "embedded"
        await command(pilot, "/model critic openai/gpt-4o-mini")
        assert app.settings.roles.critic == "openai/gpt-4o-mini"
        assert app.status_bar.state.models["critic"] == "openai/gpt-4o-mini"
        assert app.status_bar.state.models["planner"] == "embedded"
        await command(pilot, "/model llama3")
        assert app.settings.model == "embedded"
        assert any("fix:" in n for n in notices(app) if "llama3" in n)

        await command(pilot, "/model")
        assert any(
            n.startswith("Models") and "critic: openai/gpt-4o-mini" in n and "/model ROLE SPEC" in n
            for n in notices(app)
        )
        await command(pilot, "/method")
        assert any("Method: cot (choose from coa, cot, rag, react, direct" in n for n in notices(app))

        await command(pilot, "/collection notes")
        assert app.settings.collection == "notes" and app.status_bar.state.collection == "notes"
        await command(pilot, "/collection x")
        assert app.settings.collection == "notes"
        assert any("invalid collection name 'x'" in n for n in notices(app))

        assert app.query_one("#side").display
        await command(pilot, "/trace off")
        assert not app.query_one("#side").display and app.trace_visible is False
        await command(pilot, "/trace on")
        assert app.query_one("#side").display
        await pilot.press("f3")
        assert not app.query_one("#side").display
        await command(pilot, "/trace sideways")
        assert any("/trace takes on or off" in n for n in notices(app))

        await command(pilot, "/frobnicate")
        assert any("unknown command /frobnicate" in n for n in notices(app))

        # The next question runs with what the commands chose, and the session records it.
        script = Script()
        app.runner = script
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        assert script.questions[0].method == "cot" and script.questions[0].collection == "notes"
        recorded = store.get(app.session_id).settings
        assert recorded["method"] == "cot" and recorded["model"] == "embedded"
        await command(pilot, "/method direct")
        assert store.get(app.session_id).settings["method"] == "direct"


async def test_collection_list_search_and_ingest(settings: Settings, store: SessionStore, tmp_path: Path) -> None:
    knowledge = FakeKnowledge()
    app = create_app(settings, runner=Script(), store=store, knowledge=knowledge)
    async with app.run_test(size=(120, 40)) as pilot:
        await command(pilot, "/collection")
        await wait_for(pilot, lambda: any("Collections" in n for n in notices(app)))
        listing = next(n for n in notices(app) if n.startswith("Collections"))
        assert "● demo (42 chunks)" in listing and "notes (7 chunks)" in listing

        await command(pilot, "/search adam optimizer")
        await wait_for(pilot, lambda: ("search", ("adam optimizer", "demo")) in knowledge.calls)
        await wait_for(pilot, lambda: len(app.sources_view.query(".passage")) == 2)
        assert str(app.query_one("#side").active) == "sources-tab"
        title = str(app.sources_view.query_one(".sources-title").render())
        assert "Search “adam optimizer” in demo: 2 passage(s)" in title

        await command(pilot, "/search")
        assert any("/search needs a query" in n for n in notices(app))

        a, b = tmp_path / "a.md", tmp_path / "b.md"
        a.write_text("# A\nalpha\n")
        b.write_text("# B\nbeta\n")
        await command(pilot, f"/ingest {a} {b}")
        await wait_for(pilot, lambda: any(n.startswith("Ingested") for n in notices(app)))
        assert ("ingest", ([a, b], "demo")) in knowledge.calls
        assert "demo: 2 file(s) ingested" in next(n for n in notices(app) if n.startswith("Ingested"))
        assert not app.query_one("#ingest").display
        await command(pilot, f"/ingest {tmp_path / 'missing.md'}")
        assert any("no such file or folder" in n for n in notices(app))


async def test_ingest_shows_progress_while_it_runs(settings: Settings, store: SessionStore, tmp_path: Path) -> None:
    import asyncio

    gate = asyncio.Event()

    class Slow(FakeKnowledge):
        async def ingest(self, paths: Any, collection: str, settings: Settings, progress: Any) -> str:
            from conclave.tui.backend import IngestUpdate

            progress(IngestUpdate(1, 4, 12, "notes/a.md"))
            await gate.wait()
            return "done"

    (tmp_path / "notes").mkdir()
    app = create_app(settings, runner=Script(), store=store, knowledge=Slow())
    async with app.run_test(size=(120, 40)) as pilot:
        await command(pilot, f"/ingest {tmp_path / 'notes'}")
        await wait_for(pilot, lambda: app.query_one("#ingest").display)
        await pilot.pause()
        assert "1/4 files · 12 chunks · notes/a.md" in str(app.query_one("#ingest-label").render())
        assert app.query_one("#ingest-bar").percentage == pytest.approx(0.25)
        gate.set()
        await wait_for(pilot, lambda: not app.query_one("#ingest").display)


async def test_help_screen_lists_every_binding_and_command(settings: Settings, store: SessionStore) -> None:
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        rows = [keys for _, section in app.screen.sections for keys, _ in section]
        for binding in app.BINDINGS:
            from conclave.tui.screens import key_label

            assert key_label(binding.key) in rows, binding.key  # type: ignore[union-attr]
        assert "Up" in rows and "Ctrl+P" in rows and "r" in rows
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await command(pilot, "/help")
        assert isinstance(app.screen, HelpScreen)
        from rich.console import Console

        console = Console(width=120, record=True, file=open(os.devnull, "w"))
        for table in app.screen.tables:
            console.print(table)
        text = console.export_text()
        for c in SLASH_COMMANDS:
            assert f"/{c.name}" in text
        assert "[coa|cot|rag|react|direct|rag-cot]" in text


async def test_palette_runs_actions(settings: Settings, store: SessionStore, tmp_path: Path) -> None:
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"export session as json")
        await pilot.pause(0.3)
        await pilot.press("enter")
        target = tmp_path / f"conclave-session-{app.session_id}.json"
        await wait_for(pilot, target.exists)
        assert json.loads(target.read_text())["messages"][0]["content"] == "What does Adam combine?"

        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"method: react")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.settings.method == "react")


async def test_sessions_and_new_commands(settings: Settings, store: SessionStore) -> None:
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        first = app.session_id
        await command(pilot, "/new")
        assert app.session_id is None and app.query("#welcome")
        assert app.trace_panel.events == []
        await ask(pilot, "Second topic")
        await settle(pilot)
        assert app.session_id not in (None, first)
        await command(pilot, "/sessions")
        assert isinstance(app.screen, SessionsScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, SessionsScreen)


async def test_export_markdown_and_json(settings: Settings, store: SessionStore, tmp_path: Path) -> None:
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await command(pilot, "/export")
        assert any("Nothing to export yet" in n for n in notices(app))
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        await command(pilot, "/export")
        md = tmp_path / f"conclave-session-{app.session_id}.md"
        assert md.is_file()
        text = md.read_text()
        assert "## You\n\nWhat does Adam combine?" in text
        assert "Adam combines **momentum** with RMSProp-style scaling [1]." in text
        assert f"`{ADAM.source}`" in text
        assert any(f"Exported to {md}" in n for n in notices(app))

        await command(pilot, f"/export json {tmp_path / 'out' / 'chat'}")
        data = json.loads((tmp_path / "out" / "chat.json").read_text())
        assert data["id"] == app.session_id
        answer = data["messages"][1]
        assert answer["role"] == "assistant" and answer["meta"]["sources"][0]["source"] == ADAM.source
        assert [e["kind"] for e in answer["trace"]][:3] == ["run_started", "plan", "retrieval"]

        await command(pilot, f"/export {tmp_path / 'by-suffix.json'}")
        assert json.loads((tmp_path / "by-suffix.json").read_text())["id"] == app.session_id


@pytest.mark.integration
@pytest.mark.slow
async def test_search_and_ingest_with_the_real_store(settings: Settings, store: SessionStore, tmp_path: Path) -> None:
    """The real knowledge store: /ingest a folder into a new collection, then /search it."""
    pytest.importorskip("chromadb")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "owls.md").write_text("# Owls\n\nThe barn owl hunts at night by sound alone, with asymmetric ears.\n")
    (notes / "bees.md").write_text("# Bees\n\nHoney bees communicate the direction of food with a waggle dance.\n")
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await command(pilot, "/collection wildlife")
        await command(pilot, f"/ingest {notes}")
        await wait_for(
            pilot, lambda: any(n.startswith(("Ingested", "Ingest failed")) for n in notices(app)), timeout=240
        )
        summary = next(n for n in notices(app) if n.startswith(("Ingested", "Ingest failed")))
        assert summary.startswith("Ingested: wildlife: 2 file(s) ingested"), summary
        await command(pilot, "/search how do bees tell each other where food is")
        await wait_for(pilot, lambda: len(app.sources_view.query(".passage")) > 0, timeout=120)
        first = str(app.sources_view.query(".passage").first().render())
        assert "bees.md" in first and "waggle dance" in first
        await command(pilot, "/collection")
        await wait_for(pilot, lambda: any(n.startswith("Collections") for n in notices(app)), timeout=60)
        assert any("● wildlife (2 chunks)" in n for n in notices(app))


async def test_chat_parameters_are_edited_in_a_dialog_and_confirmed_in_the_conversation(
    settings: Settings, store: SessionStore
) -> None:
    """Issue 17 §5: oterm's "Edit chat parameters" (F5, /params); /method is confirmed in the conversation."""
    from conclave.tui.screens import ParamsDialog
    from textual.widgets import Input, Static

    app = create_app(settings, runner=Script(), store=store, knowledge=FakeKnowledge())
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")  # a session to remember the parameters in
        await settle(pilot)
        await command(pilot, "/method cot")
        await pilot.pause()
        notes = [str(n.render()) for n in app.conversation.query(".note").results(Static)]
        assert notes == ["method for the next questions: cot"]
        await pilot.press("f5")
        await wait_for(pilot, lambda: isinstance(app.screen, ParamsDialog))
        dialog = app.screen
        dialog.query_one("#param-temperature", Input).value = "0.4"
        dialog.query_one("#param-system", Input).value = "Answer in French."
        dialog.query_one("#param-method", Input).value = "coa:k=3"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, ParamsDialog))
        await pilot.pause()
        assert app.settings.temperature == 0.4 and app.settings.system == "Answer in French."
        assert app.settings.method == "coa" and app.settings.coa.samples == 3
        notes = [str(n.render()) for n in app.conversation.query(".note").results(Static)]
        assert notes[-1] == (
            "parameters for the next questions: method coa:k=3, temperature 0.4, instructions “Answer in French.”"
        )
        # A bad value changes nothing and says why.
        await command(pilot, "/params")
        await wait_for(pilot, lambda: isinstance(app.screen, ParamsDialog))
        app.screen.query_one("#param-temperature", Input).value = "hot"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: not isinstance(app.screen, ParamsDialog))
        await pilot.pause()
        assert app.settings.temperature == 0.4
        assert any("temperature needs a float" in n for n in notices(app))
        # The session remembers the parameters.
        assert app.session_id is not None
        remembered = store.get(app.session_id).settings
        assert remembered["system"] == "Answer in French." and remembered["temperature"] == 0.4
