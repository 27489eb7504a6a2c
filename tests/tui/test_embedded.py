"""End to end through the app with the real embedded model (the bundled SmolLM2): nothing scripted."""

from __future__ import annotations

import pytest
from conclave.tui import create_app
from conclave.tui.conversation import AssistantMessage

from conclave.sessions import SessionStore
from conclave.settings import load_settings
from tests.tui.conftest import ask, settle


@pytest.mark.integration
@pytest.mark.slow
async def test_the_embedded_model_answers_through_the_app(smollm_path: object) -> None:
    settings = load_settings(model="embedded", method="direct", max_tokens=48)
    store = SessionStore.open(settings)
    app = create_app(settings, store=store)  # the real runner, the real model resolution
    async with app.run_test(size=(120, 40)) as pilot:
        await ask(pilot, "What is the capital of France?")
        await settle(pilot, timeout=240)
        answer = app.query_one(AssistantMessage)
        assert answer.status == "ok", [n.message for n in app._notifications]
        text = answer.markdown.source.strip()
        assert text, "the model answered nothing"
        kinds = [e.kind for e in app.trace_panel.events]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
        assert kinds.count("answer_delta") >= 2, "the embedded backend should stream"
        assert app.status_bar.state.models["reasoner"] == "embedded"
        assert (app.status_bar.state.tokens or 0) > 0
        session = app.session_id
    saved = store.messages(session)
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[1].content.strip() == text
    assert saved[1].meta["usage"]["reasoner"]["completion_tokens"] > 0
