"""Sessions in the chat: resuming after the app is closed, the sessions screen (open, rename, delete)."""

from __future__ import annotations

import pytest
from conclave.tui import create_app
from conclave.tui.conversation import AssistantMessage, UserMessage
from conclave.tui.screens import ConfirmDialog, SessionsScreen, TextDialog

from conclave.sessions import SessionNotFound, SessionStore
from conclave.settings import Settings, load_settings
from tests.tui.conftest import ANSWER_TEXT, Script, ask, fixed_store, replay_clients, settle, wait_for


async def test_resume_after_the_app_is_closed(settings: Settings) -> None:
    store = fixed_store(settings.sessions_path)
    app = create_app(settings, clients=replay_clients(ANSWER_TEXT), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        await pilot.press("/")  # leave a command half-typed: closing must not lose the conversation
    session_id = app.session_id
    assert session_id is not None
    store.close()

    # A new process would open the file afresh; the model script for the second question is the only one left.
    reopened = SessionStore(settings.sessions_path)
    later = load_settings(method="cot")  # the session's own settings come back unless pinned
    script = Script()
    resumed = create_app(later, session_id=session_id[:4], runner=script, store=reopened)
    async with resumed.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert resumed.session_id == session_id
        assert [m.text for m in resumed.query(UserMessage)] == ["What does Adam combine?"]
        answer = resumed.query_one(AssistantMessage)
        assert answer.markdown.source == ANSWER_TEXT
        assert "direct" in answer.heading_text
        assert resumed.settings.method == "direct"
        assert [e.kind for e in resumed.trace_panel.events][0] == "run_started"
        assert resumed.status_bar.state.tokens and resumed.status_bar.state.seconds is not None
        assert "What does Adam combine?" in str(resumed.conversation.border_title)
        await pilot.press("up")
        assert resumed.prompt.value == "What does Adam combine?"
        resumed.prompt.value = ""
        await ask(pilot, "And what is momentum?")
        await settle(pilot)
        assert script.questions[0].history == [("What does Adam combine?", ANSWER_TEXT)]
        assert script.questions[0].method == "direct"
    assert [m.role for m in reopened.messages(session_id)] == ["user", "assistant", "user", "assistant"]


async def test_pinned_settings_win_over_the_session(settings: Settings, store: SessionStore) -> None:
    info = store.create(settings=load_settings(method="react", collection="notes").redacted())
    app = create_app(load_settings(method="cot"), session_id=info.id, runner=Script(), store=store, pinned={"method"})
    async with app.run_test() as pilot:
        await pilot.pause()
        assert app.settings.method == "cot" and app.settings.collection == "notes"


def test_unknown_session_fails_before_the_app_starts(settings: Settings, store: SessionStore) -> None:
    with pytest.raises(SessionNotFound, match="no session 'nope'"):
        create_app(settings, session_id="nope", runner=Script(), store=store)


async def test_sessions_screen_opens_renames_and_deletes(settings: Settings, store: SessionStore) -> None:
    old = store.create(settings=settings.redacted())
    store.add_message(old.id, "user", "An older question")
    store.add_message(old.id, "assistant", "An older answer", meta={"method": "direct"})
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "A newer question")
        await settle(pilot)
        current = app.session_id
        await pilot.press("f2")
        screen = app.screen
        assert isinstance(screen, SessionsScreen)
        table = screen.query_one("DataTable")
        assert table.row_count == 2
        assert screen._selected() == current  # the open session is selected
        assert app.check_action("new_session", ()) is False  # chat actions are off over the list

        # Rename the older one (second row).
        await pilot.press("down", "r")
        assert isinstance(app.screen, TextDialog)
        app.screen.query_one("Input").value = "Optimizer notes"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, SessionsScreen))
        assert store.get(old.id).title == "Optimizer notes"
        assert "Optimizer notes" in str(table.get_row(old.id))

        # Delete asks first; "n" keeps it.
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert len(store.list_sessions()) == 2

        # Open it: the conversation switches.
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, SessionsScreen))
        assert app.session_id == old.id
        assert [m.text for m in app.query(UserMessage)] == ["An older question"]
        assert "Optimizer notes" in str(app.conversation.border_title)

        # Delete the open session from the list: the chat starts afresh.
        await pilot.press("f2")
        assert app.screen._selected() == old.id  # type: ignore[attr-defined]
        await pilot.press("d", "y")
        await wait_for(pilot, lambda: app.screen.query_one("DataTable").row_count == 1)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.session_id is None)
        assert app.query("#welcome")
        assert [s.id for s in store.list_sessions()] == [current]


async def test_sessions_screen_new_session(settings: Settings, store: SessionStore) -> None:
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test() as pilot:
        await pilot.press("f2")
        assert "No sessions yet" in str(app.screen.query_one("#sessions-empty").render())
        await pilot.press("n")
        assert not isinstance(app.screen, SessionsScreen) and app.session_id is None
