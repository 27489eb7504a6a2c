"""How each run event reads in the trace panel and the status bar (pure functions, no app)."""

from __future__ import annotations

import pytest
from conclave.tui.status import models_label
from conclave.tui.trace import describe, short

from conclave.events import (
    EVENT_TYPES,
    AnswerDelta,
    ChainRejected,
    Critique,
    Event,
    Passage,
    Retrieved,
    RunFailed,
    RunFinished,
    StepFinished,
    StepStarted,
    ToolCalled,
    Usage,
    VoteCast,
)
from tests.tui.conftest import coa_events


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            StepFinished(
                step_id="y2",
                tool="calculator",
                status="failed",
                error="division by zero",
                started=1.0,
                ended=1.004,
                sample=1,
            ),
            "✗ s2·y2 failed: division by zero  calculator · 4 ms",
        ),
        (StepFinished(step_id="y3", tool="calculator", status="skipped"), "✗ y3 skipped: skipped  calculator · 0 ms"),
        (
            StepStarted(step_id="y1", tool="search_knowledge", args={"query": "adam", "k": 3}),
            "… y1 search_knowledge(query=adam, k=3)",
        ),
        (VoteCast(answers=["2", "2", "3"], winner="2", counts={"2": 2, "3": 1}), "Vote 2: 2, 3: 1 → 2"),
        (
            ToolCalled(tool="calculator", args={"expression": "1/0"}, result="error: division by zero", is_error=True),
            "Tool calculator(1/0)\n → error: division by zero",
        ),
        (
            Critique(verdict="revise", reasons=["y2 ignores the discount"], round=1),
            "↻ Critic: revise\n - y2 ignores the discount",
        ),
        (ChainRejected(errors=["unknown tool 'lookup'"], attempt=1), "↻ Re-plan (attempt 2 rejected)\n - unknown tool"),
        (Retrieved(query="nothing here", passages=[]), "Retrieve “nothing here”\n no passages found"),
        (
            Usage(agent="critic", model="embedded", prompt_tokens=10, completion_tokens=5, seconds=0.25),
            "critic: 10+5 tokens · 0.2 s",
        ),
        (
            RunFailed(error="Ollama is not running at http://127.0.0.1:11434", hint="start it with `ollama serve`"),
            "✗ Failed Ollama is not running at http://127.0.0.1:11434\n fix: start it with `ollama serve`",
        ),
        (RunFinished(answer="", seconds=1.0, ok=False), "■ Stopped in 1.0 s · 0 tokens"),
        (
            Critique(verdict="reject", reasons=["no valid chain could be built: x", "nothing to revise: no answer"]),
            "✗ Critic: reject\n - no valid chain could be built: x\n - nothing to revise: no answer",
        ),
        (
            RunFinished(answer="", seconds=1.0, ok=False, reason="no answer: no valid chain could be built"),
            "■ No answer in 1.0 s · 0 tokens\n no answer: no valid chain could be built",
        ),
    ],
)
def test_describe(event: Event, expected: str) -> None:
    text = describe(event)
    assert text is not None
    assert expected in text.plain


def test_every_event_kind_is_handled() -> None:
    shown = {type(e) for e in coa_events("q") if describe(e) is not None}
    assert describe(AnswerDelta(text="x")) is None  # deltas stream into the conversation instead
    for cls in EVENT_TYPES.values():
        if cls is AnswerDelta:
            continue
        assert cls in shown or cls in {VoteCast, ToolCalled, RunFailed}, cls


def test_passages_are_cut_to_one_line() -> None:
    long = Passage(id="x", source="a.md", text="word " * 200, score=0.5)
    text = describe(Retrieved(query="q", passages=[long]))
    assert text is not None and text.plain.count("\n") == 1 and text.plain.endswith("…")
    assert short({"a": [1, 2]}) == '{"a": [1, 2]}'


def test_models_label() -> None:
    same = {r: "embedded" for r in ("planner", "reasoner", "critic", "writer")}
    assert models_label(same) == "embedded"
    mixed = {**same, "critic": "openai/gpt-4o"}
    assert models_label(mixed) == "plan embedded · reas embedded · crit openai/gpt-4o · writ embedded"
    assert models_label({}) == "auto"
