"""Pilot tests of the chat: asking (scripted models and scripted runs), the live trace, cancelling, errors."""

from __future__ import annotations

import asyncio
from typing import Any

from conclave.tui import create_app
from conclave.tui.conversation import AssistantMessage, UserMessage
from conclave.tui.trace import TracePanel

from conclave.events import RunFailed, RunStarted
from conclave.sessions import SessionStore
from conclave.settings import Settings, load_settings
from tests.tui.conftest import ANSWER_TEXT as ANSWER
from tests.tui.conftest import Script, ask, notices, replay_clients, settle, wait_for


def trace_text(app: Any) -> str:
    return "\n".join(str(entry.render()) for entry in app.query_one(TracePanel).query(".entry"))


async def test_question_streams_answer_and_trace_with_a_scripted_model(settings: Settings, store: SessionStore) -> None:
    app = create_app(settings, clients=replay_clients(ANSWER), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        answer = app.query_one(AssistantMessage)
        assert answer.markdown.source.strip() == ANSWER
        assert answer.status == "ok"
        assert "direct" in answer.heading_text and "replay" in answer.heading_text
        assert [m.text for m in app.query(UserMessage)] == ["What does Adam combine?"]
        kinds = [e.kind for e in app.trace_panel.events]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
        assert kinds.count("answer_delta") > 3, "the answer should arrive in pieces"
        text = trace_text(app)
        assert "▶ direct" in text and "reasoner:" in text and "■ Done" in text
        state = app.status_bar.state
        assert state.models == {r: "replay" for r in ("planner", "reasoner", "critic", "writer")}
        assert state.tokens is not None and state.tokens > 0 and state.seconds is not None
        # Both messages are in the database already, the answer with its trace and the settings in force.
        messages = store.messages(app.session_id)
        assert [(m.role, m.status) for m in messages] == [("user", "ok"), ("assistant", "ok")]
        assert messages[1].content == ANSWER
        assert messages[1].meta["method"] == "direct"
        assert [e["kind"] for e in messages[1].trace][-1] == "run_finished"
        assert store.get(app.session_id).settings["method"] == "direct"


async def test_the_answer_is_rendered_while_it_streams(settings: Settings, store: SessionStore) -> None:
    script = Script(hold=14)  # after the first two answer pieces of the CoA script
    app = create_app(settings, runner=script, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await asyncio.wait_for(script.reached.wait(), 5)
        answer = app.query_one(AssistantMessage)
        await wait_for(pilot, lambda: "RMSProp-style" in answer.markdown.source)
        assert "momentum: a running mean" not in answer.markdown.source
        assert answer.status == "running" and app.answering
        assert app.status_bar.state.activity  # the status bar says an answer is coming
        # The input stays usable while the answer streams.
        app.prompt.focus()
        await pilot.press(*"next question")
        assert app.prompt.value == "next question"
        script.release()
        await settle(pilot)
        assert "- momentum: a running mean of gradients" in answer.markdown.source
        assert "Sources: [1] Optimizers" in str(answer.query_one(".sources-line").render())


async def test_trace_shows_plan_retrieval_chain_steps_and_critic(settings: Settings, store: SessionStore) -> None:
    script = Script(hold=9)  # y2 has started, not finished
    app = create_app(settings, runner=script, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await asyncio.wait_for(script.reached.wait(), 5)
        await pilot.pause()
        text = trace_text(app)
        assert "Plan" in text and "What does Adam combine? (knowledge)" in text
        assert "Retrieve “Adam optimizer”" in text and "0.83 Optimizers" in text
        assert "Chain (attempt 1)" in text and "↻ Re-plan" in text and "y3 is used before it is defined" in text
        assert "✓ y1 = momentum and RMSProp" in text and "250 ms" in text
        assert "… y2 calculator(1 + 1)" in text
        script.release()
        await settle(pilot)
        text = trace_text(app)
        # The step's entry was updated in place: one line for y2, now finished.
        assert "… y2" not in text and "✓ y2 = 2" in text
        assert "✓ Critic: accept" in text and "Answer ready · 1 source" in text and "■ Done in 4.2 s" in text
        assert app.status_bar.state.tokens == 380 and app.status_bar.state.seconds == 4.2
        # The sources view lists the cited passage with its snippet.
        sources = "\n".join(str(w.render()) for w in app.sources_view.query(".passage"))
        assert "[1] Optimizers" in sources and "running mean of squared gradients" in sources


async def test_ctrl_c_cancels_the_answer_and_the_app_stays(settings: Settings, store: SessionStore) -> None:
    script = Script(hold=13)  # one answer piece shown, then the run hangs
    app = create_app(settings, runner=script, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await asyncio.wait_for(script.reached.wait(), 5)
        await pilot.press("ctrl+c")
        await settle(pilot)
        assert script.closed, "the run's generator must be closed"
        answer = app.query_one(AssistantMessage)
        assert answer.status == "cancelled"
        assert any("cancelled" in n for n in notices(app))
        saved = store.messages(app.session_id)[-1]
        assert (saved.role, saved.status) == ("assistant", "cancelled")
        assert saved.content.startswith("Adam combines **momentum**")
        assert app.is_running and app.status_bar.state.activity == ""
        # A cancelled answer is not history for the next question, and the next question works.
        follow_up = Script()
        app.runner = follow_up
        await ask(pilot, "And SGD?")
        await settle(pilot)
        assert follow_up.questions[0].history == []
        assert len(app.query(AssistantMessage)) == 2
        # Ctrl+C with nothing running says how to quit instead.
        await pilot.press("ctrl+c")
        assert any("Ctrl+Q quits" in n for n in notices(app))
        assert app.is_running


async def test_backend_failure_is_a_notification_with_the_fix(settings: Settings, store: SessionStore) -> None:
    # A real backend failure: an Ollama model on a port where nothing listens (loopback, conftest's closed port).
    closed = load_settings(method="direct", model="ollama/llama3.2")
    app = create_app(closed, store=store, models=None)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot, timeout=30)
        errors = [n for n in app._notifications if n.severity == "error"]
        assert errors, notices(app)
        assert "127.0.0.1:9" in errors[0].message and "fix:" in errors[0].message
        answer = app.query_one(AssistantMessage)
        assert answer.status == "failed"
        saved = store.messages(app.session_id)[-1]
        assert saved.status == "failed" and "127.0.0.1:9" in saved.meta["error"] and saved.meta["hint"]
        assert "✗ Failed" in trace_text(app)
        assert app.is_running


async def test_run_failed_event_is_shown_with_its_hint(settings: Settings, store: SessionStore) -> None:
    def failing(question: str) -> list[Any]:
        return [
            RunStarted(question=question, method="coa", models={}, collection="demo"),
            RunFailed(
                error="the Chroma server at http://127.0.0.1:8000 is not answering",
                hint="start it with `chroma run --port 8000`",
            ),
        ]

    app = create_app(settings, runner=Script(failing), store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        assert any("not answering" in n and "fix: start it with `chroma run --port 8000`" in n for n in notices(app))
        assert app.query_one(AssistantMessage).status == "failed"


async def test_a_second_question_gets_the_first_as_history(settings: Settings, store: SessionStore) -> None:
    script = Script()
    app = create_app(settings, runner=script, store=store)
    async with app.run_test() as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        await ask(pilot, "And what is momentum?")
        await settle(pilot)
        first, second = script.questions
        assert first.history == []
        assert second.history == [("What does Adam combine?", first_answer(store, app.session_id))]
        assert second.method == "direct" and second.collection == "demo"


def first_answer(store: SessionStore, session_id: str) -> str:
    return next(m.content for m in store.messages(session_id) if m.role == "assistant")


async def test_a_question_while_one_is_answering_is_refused(settings: Settings, store: SessionStore) -> None:
    script = Script(hold=3)
    app = create_app(settings, runner=script, store=store)
    async with app.run_test() as pilot:
        await ask(pilot, "first")
        await asyncio.wait_for(script.reached.wait(), 5)
        await ask(pilot, "second")
        assert any("still coming" in n for n in notices(app))
        script.release()
        await settle(pilot)
        assert len(script.questions) == 1


async def test_input_history_with_up_and_down(settings: Settings, store: SessionStore) -> None:
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test() as pilot:
        for q in ("first question", "second question"):
            await ask(pilot, q)
            await settle(pilot)
        await pilot.press(*"draft")
        await pilot.press("up")
        assert app.prompt.value == "second question"
        await pilot.press("up", "up")
        assert app.prompt.value == "first question"
        await pilot.press("down")
        assert app.prompt.value == "second question"
        await pilot.press("down")
        assert app.prompt.value == "draft"


async def test_clicking_an_earlier_answer_shows_its_trace(settings: Settings, store: SessionStore) -> None:
    def short(question: str) -> list[Any]:
        from tests.tui.conftest import coa_events

        events = coa_events(question)
        return [events[0], *events[-5:]] if question == "second" else events

    app = create_app(settings, runner=Script(short), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "first")
        await settle(pilot)
        await ask(pilot, "second")
        await settle(pilot)
        assert "Plan" not in trace_text(app)
        first = app.query(AssistantMessage).first()
        first.post_message(AssistantMessage.Selected(first))
        await pilot.pause()
        assert "Plan" in trace_text(app)


async def test_no_color_turns_the_app_monochrome(settings: Settings, store: SessionStore, monkeypatch: Any) -> None:
    from textual.filter import Monochrome

    monkeypatch.setenv("NO_COLOR", "1")
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test() as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        assert app.no_color
        assert any(isinstance(f, Monochrome) for f in app._filters)


async def test_layout_fits_80x24(settings: Settings, store: SessionStore) -> None:
    app = create_app(settings, runner=Script(), store=store)
    async with app.run_test(size=(80, 24)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        screen = app.screen.region
        for selector in ("#conversation", "#prompt", "#side", "#status", "Footer"):
            region = app.query_one(selector).region
            assert region.width > 0 and region.height > 0, selector
            assert screen.contains_region(region), (selector, region)
        assert app.query_one("#conversation").region.width >= 40
        assert app.query_one("#side").region.width >= 28
        assert app.query_one("#prompt").region.height == 3
        assert app.screen.has_class("-narrow") or app.has_class("-narrow")


async def test_quitting_mid_answer_keeps_what_was_said(settings: Settings, store: SessionStore) -> None:
    script = Script(hold=13)
    app = create_app(settings, runner=script, store=store)
    async with app.run_test() as pilot:
        await ask(pilot, "What does Adam combine?")
        await asyncio.wait_for(script.reached.wait(), 5)
        await pilot.press("ctrl+q")
    saved = store.messages(store.list_sessions()[0].id)
    assert [(m.role, m.status) for m in saved] == [("user", "ok"), ("assistant", "cancelled")]
    assert saved[1].content.startswith("Adam combines **momentum**")
    assert [e["kind"] for e in saved[1].trace][:2] == ["run_started", "plan"]


async def test_a_chat_answer_is_logged_and_a_damaged_log_is_said_once(settings: Settings, store: SessionStore) -> None:
    from conclave.logs import LogStore, logs_path

    app = create_app(settings, clients=replay_clients(ANSWER, ANSWER), store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await settle(pilot)
        log = LogStore(logs_path(settings))
        [record] = log.recent()
        log.close()
        assert (record.origin, record.session, record.question, record.answer, record.ok, record.method) == (
            "chat",
            app.session_id,
            "What does Adam combine?",
            ANSWER,
            True,
            "direct",
        )
        assert record.trace[-1]["kind"] == "run_finished" and "answer_delta" not in {e["kind"] for e in record.trace}
        logs_path(settings).write_bytes(b"not a database at all" * 8)  # damaged now: the next answer still comes
        await ask(pilot, "And then?")
        await settle(pilot)
        assert [m.status for m in store.messages(app.session_id)] == ["ok", "ok", "ok", "ok"]
        assert sum("Logging is off" in n for n in notices(app)) == 1


async def test_the_status_bar_shows_the_stage_of_the_run(settings: Settings, store: SessionStore) -> None:
    """Issue 17 §2: not only "answering…", but what the team is doing (the stages `ask` shows on stderr)."""
    script = Script(hold=9)  # held right after the calculator step started (event 8)
    app = create_app(settings, runner=script, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await asyncio.wait_for(script.reached.wait(), 5)
        await wait_for(pilot, lambda: app.status_bar.state.activity == "tool calculator running…")
        script.release()
        await settle(pilot)
        assert app.status_bar.state.activity == ""
    held = Script(hold=15)  # the first answer piece is out
    app = create_app(settings, runner=held, store=store)
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What does Adam combine?")
        await asyncio.wait_for(held.reached.wait(), 5)
        await wait_for(pilot, lambda: app.status_bar.state.activity == "writing the answer…")
        held.release()
        await settle(pilot)
