"""SVG snapshots (pytest-textual-snapshot) of the main screen mid-trace, the sessions screen and the help screen.

Built from the app factory with a scripted run and fixed data (session ids, clock, timings), so they are stable.
Regenerate after an intended change with ``pytest tests/tui/test_snapshots.py --snapshot-update`` and review the
SVGs under ``tests/tui/__snapshots__/``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from conclave.tui import create_app
from conclave.tui.conversation import AssistantMessage

from conclave.sessions import SessionStore
from conclave.settings import Settings
from tests.tui.conftest import Script, ask, settle, wait_for


def steady(app: Any) -> None:
    app.prompt.cursor_blink = False  # a blinking cursor would make the picture depend on timing


def test_main_screen_mid_trace(snap_compare: Any, settings: Settings, store: SessionStore) -> None:
    script = Script(hold=14)  # steps reified, critic done, the answer half written
    app = create_app(settings, runner=script, store=store)

    async def run_before(pilot: Any) -> None:
        steady(app)
        await ask(pilot, "What does Adam combine?")
        await asyncio.wait_for(script.reached.wait(), 5)
        await wait_for(pilot, lambda: "RMSProp-style" in app.query_one(AssistantMessage).markdown.source)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_main_screen_after_an_answer_at_80x24(snap_compare: Any, settings: Settings, store: SessionStore) -> None:
    app = create_app(settings, runner=Script(), store=store)

    async def run_before(pilot: Any) -> None:
        steady(app)
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_sessions_screen(snap_compare: Any, settings: Settings, store: SessionStore) -> None:
    for title, question, answer in [
        ("", "What does Adam combine?", "Momentum and RMSProp."),
        ("Learning-rate notes", "Why warm up the learning rate?", "Early steps are noisy."),
        ("", "How many parameters does a 3x3 conv with 64 filters on 32 channels have?", "18,496."),
    ]:
        info = store.create(title)
        store.add_message(info.id, "user", question)
        store.add_message(info.id, "assistant", answer, meta={"method": "coa"})
    app = create_app(settings, runner=Script(), store=store, session_id="s0000002")

    async def run_before(pilot: Any) -> None:
        steady(app)
        await pilot.press("f2")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)


def test_help_screen(snap_compare: Any, settings: Settings, store: SessionStore) -> None:
    app = create_app(settings, runner=Script(), store=store)

    async def run_before(pilot: Any) -> None:
        steady(app)
        await pilot.press("f1")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(120, 40), run_before=run_before)
