"""Helpers for driving the chat: fixed-clock session stores, scripted runs, scripted models, a fake knowledge store."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import ModelInfo
from autogen_ext.models.replay import ReplayChatCompletionClient
from conclave.tui.backend import IngestUpdate, Question
from textual.pilot import Pilot

from conclave.events import (
    AnswerDelta,
    AnswerReady,
    ChainDrafted,
    ChainRejected,
    Critique,
    Event,
    Passage,
    PlanMade,
    Retrieved,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    Usage,
)
from conclave.sessions import SessionStore
from conclave.settings import Settings, load_settings

ROLES = ("planner", "reasoner", "critic", "writer")
EPOCH = 1_767_261_600.0  # 2026-01-01 10:00 UTC: snapshots show fixed dates
INFO: ModelInfo = {
    "vision": False,
    "function_calling": False,
    "json_output": True,
    "structured_output": True,
    "family": "unknown",
}

ANSWER_TEXT = "Adam combines momentum with RMSProp-style scaling of each parameter. Answer: momentum and RMSProp"
"""What the scripted model answers (one line: the replay client streams it word by word)."""

ADAM = Passage(
    id="a1f3",
    source="examples/knowledge/optimizers.md",
    title="Optimizers",
    score=0.83,
    text="Adam combines momentum (a running mean of gradients) with RMSProp-style per-parameter scaling "
    "(a running mean of squared gradients).",
)
LR = Passage(
    id="b7c2",
    source="examples/knowledge/training.md",
    title="Training",
    score=0.61,
    text="The learning rate sets the step size of gradient descent.",
)


def fixed_store(path: Path) -> SessionStore:
    """A store whose clock advances one minute per write and whose ids count up (stable snapshots)."""
    ticks = itertools.count()
    ids = itertools.count(1)
    return SessionStore(path, clock=lambda: EPOCH + 60 * next(ticks), new_id=lambda: f"s{next(ids):07d}")


@pytest.fixture(autouse=True)
def _utc() -> Iterator[None]:
    """Dates on screen in UTC, whatever the machine's zone (restored afterwards)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.fixture
def settings() -> Settings:
    """Settings of the private CONCLAVE_HOME, method direct (the scripted model answers in one call)."""
    return load_settings(method="direct")


@pytest.fixture
def store(settings: Settings) -> SessionStore:
    return fixed_store(settings.sessions_path)


def replay_clients(*responses: str) -> dict[str, Any]:
    """One scripted model for every role."""
    client = ReplayChatCompletionClient(list(responses), model_info=INFO)
    client.conclave_name = "replay"  # type: ignore[attr-defined]
    return {role: client for role in ROLES}


def coa_events(question: str) -> list[Event]:
    """A full CoA run as the team reports it: plan, retrieval, a rejected chain, reified steps, critic, answer."""
    models = {role: "embedded" for role in ROLES}
    return [
        RunStarted(question=question, method="coa", models=models, collection="demo"),
        PlanMade(
            subquestions=[
                {"question": "What does Adam combine?", "needs": "knowledge", "query": "Adam optimizer"},
                {"question": "How many ideas is that?", "needs": "calculation", "query": None},
            ]
        ),
        Retrieved(query="Adam optimizer", passages=[ADAM, LR]),
        ChainDrafted(text='[search_knowledge("Adam optimizer") -> y1]\n[1 + y3 = y2]\nAnswer: y2'),
        ChainRejected(errors=["y3 is used before it is defined"]),
        ChainDrafted(text='[search_knowledge("Adam optimizer") -> y1]\n[1 + 1 = y2]\nAnswer: y2', attempt=1),
        StepStarted(step_id="y1", tool="search_knowledge", args={"query": "Adam optimizer"}),
        StepFinished(
            step_id="y1", tool="search_knowledge", status="ok", value="momentum and RMSProp", started=10.0, ended=10.25
        ),
        StepStarted(step_id="y2", tool="calculator", args={"expression": "1 + 1"}),
        StepFinished(step_id="y2", tool="calculator", status="ok", value="2", started=11.0, ended=11.002),
        Critique(verdict="accept", reasons=["the chain matches the passages"]),
        Usage(agent="planner", model="embedded", prompt_tokens=320, completion_tokens=60, seconds=1.2),
        AnswerDelta(text="Adam combines **momentum** ", agent="writer"),
        AnswerDelta(text="with RMSProp-style scaling [1].\n\n", agent="writer"),
        AnswerDelta(text="- momentum: a running mean of gradients\n", agent="writer"),
        AnswerReady(
            text="Adam combines **momentum** with RMSProp-style scaling [1].\n\n"
            "- momentum: a running mean of gradients\n",
            sources=[ADAM],
            value="2",
        ),
        RunFinished(
            answer="Adam combines momentum with RMSProp-style scaling.",
            seconds=4.2,
            usage={"planner": {"calls": 1, "prompt_tokens": 320, "completion_tokens": 60}},
        ),
    ]


class Script:
    """A scripted runner: yields events, optionally stopping at ``hold`` until :meth:`release` (to look mid-run)."""

    def __init__(self, make: Callable[[str], Sequence[Event]] = coa_events, hold: int | None = None):
        self.make = make
        self.hold = hold
        self.questions: list[Question] = []
        self.reached = asyncio.Event()
        self._go = asyncio.Event()
        self.closed = False

    def release(self) -> None:
        self._go.set()

    async def __call__(self, question: Question) -> AsyncIterator[Event]:
        self.questions.append(question)
        try:
            for i, event in enumerate(self.make(question.text)):
                if i == self.hold:
                    self.reached.set()
                    await self._go.wait()
                yield event
                await asyncio.sleep(0)
        finally:
            self.closed = True


class FakeKnowledge:
    """Records calls; answers searches with fixed passages and reports ingest progress."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def ingest(
        self, paths: Sequence[Path], collection: str, settings: Settings, progress: Callable[[IngestUpdate], None]
    ) -> str:
        self.calls.append(("ingest", (list(paths), collection)))
        for i in range(len(paths)):
            progress(IngestUpdate(i + 1, len(paths), 3 * (i + 1), str(paths[i])))
            await asyncio.sleep(0)
        return f"{collection}: {len(paths)} file(s) ingested"

    async def search(self, query: str, collection: str, settings: Settings) -> list[Passage]:
        self.calls.append(("search", (query, collection)))
        return [ADAM, LR]

    async def collections(self, settings: Settings) -> list[tuple[str, int]]:
        self.calls.append(("collections", None))
        return [("demo", 42), ("notes", 7)]


async def wait_for(pilot: Pilot[Any], predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the app run until ``predicate()`` holds (fail after ``timeout`` seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        await pilot.pause(0.02)
    await pilot.pause()


async def ask(pilot: Pilot[Any], text: str) -> None:
    """Type into the question input and press Enter."""
    app = pilot.app
    app.prompt.focus()  # type: ignore[attr-defined]
    app.prompt.value = text  # type: ignore[attr-defined]
    await pilot.press("enter")


async def settle(pilot: Pilot[Any], timeout: float = 15.0) -> None:
    """Wait until no answer is in progress and the screen has caught up."""
    await wait_for(pilot, lambda: not pilot.app.answering, timeout)  # type: ignore[attr-defined]
    await pilot.pause(0.05)


def notices(app: Any) -> list[str]:
    """The text of every notification shown so far (title and message)."""
    return [f"{n.title}: {n.message}" for n in app._notifications]
