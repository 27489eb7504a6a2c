"""Typed events a run yields; the CLI, the TUI and the evaluation harness only consume these.

Every event is a frozen dataclass with a ``kind`` tag and ``to_dict()`` for JSON (traces, sessions, reports).
Events carry plain data only (no model SDK objects), so consumers need not import AutoGen.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    at: float = field(default_factory=time.time, kw_only=True)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["kind"] = self.kind
        return data


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    question: str
    method: str
    models: dict[str, str]
    collection: str | None = None


@dataclass(frozen=True)
class PlanMade(Event):
    kind: ClassVar[str] = "plan"
    subquestions: list[dict[str, Any]]
    """Each: {"question": str, "needs": "knowledge" | "calculation" | "none", "query": str | None}."""
    raw: str = ""
    route: str = ""
    """Empty when a chain will be written; otherwise why none is (``no plan: ...``)."""


@dataclass(frozen=True)
class Passage:
    id: str
    source: str
    text: str
    score: float
    title: str = ""


@dataclass(frozen=True)
class Retrieved(Event):
    kind: ClassVar[str] = "retrieval"
    query: str
    passages: list[Passage]


@dataclass(frozen=True)
class ChainDrafted(Event):
    kind: ClassVar[str] = "chain"
    text: str
    """The chain in text form, with placeholders."""
    form: str = "json"
    attempt: int = 0
    sample: int = 0


@dataclass(frozen=True)
class ChainRejected(Event):
    """The chain failed to parse or validate; the reasoner gets these errors back (a re-plan)."""

    kind: ClassVar[str] = "replan"
    errors: list[str]
    attempt: int = 0
    sample: int = 0


@dataclass(frozen=True)
class StepStarted(Event):
    kind: ClassVar[str] = "step_started"
    step_id: str
    tool: str
    args: dict[str, Any]
    sample: int = 0


@dataclass(frozen=True)
class StepFinished(Event):
    kind: ClassVar[str] = "step_finished"
    step_id: str
    tool: str
    status: str
    """``ok`` | ``failed`` | ``timeout`` | ``skipped``."""
    value: str | None = None
    error: str | None = None
    started: float = 0.0
    ended: float = 0.0
    sample: int = 0
    source: str | None = None
    """Where the value came from, for a value read from the documents (document, table, row, column, cell)."""


@dataclass(frozen=True)
class VoteCast(Event):
    kind: ClassVar[str] = "vote"
    answers: list[str | None]
    winner: str | None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Critique(Event):
    kind: ClassVar[str] = "critique"
    verdict: str
    """``accept`` | ``revise`` | ``reject`` (the chain did not reify and no revision is left: no answer)."""
    reasons: list[str]
    round: int = 0


@dataclass(frozen=True)
class ToolCalled(Event):
    """A tool call outside a chain (the ``react`` method)."""

    kind: ClassVar[str] = "tool_call"
    tool: str
    args: dict[str, Any]
    result: str
    is_error: bool = False
    seconds: float = 0.0
    """From the tool call's request to its result (react; coa's steps carry their own times)."""


@dataclass(frozen=True)
class AnswerDelta(Event):
    """A piece of the final answer as it streams."""

    kind: ClassVar[str] = "answer_delta"
    text: str
    agent: str = "answer"


@dataclass(frozen=True)
class Usage(Event):
    kind: ClassVar[str] = "usage"
    agent: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    calls: int = 1
    seconds: float = 0.0
    finish_reason: str = ""
    """Why the model stopped (``stop``, ``length``, ...; the reasoner's own ``budget`` or ``repeat``), when known."""


@dataclass(frozen=True)
class AnswerReady(Event):
    kind: ClassVar[str] = "answer"
    text: str
    sources: list[Passage] = field(default_factory=list)
    value: str | None = None
    """The bare answer value (e.g. the reified number) when the method has one."""
    chain: str = ""
    """The filled-in chain the answer rests on (coa), for the trace and ``--json``: the answer itself is prose."""
    basis: str = ""
    """What ``value`` rests on (coa): ``chain``, or ``passages`` when no chain validated and the writer's answer is
    one the passages support (an explanation needs no arithmetic)."""


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    answer: str
    seconds: float
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per agent: {"calls", "prompt_tokens", "completion_tokens"}."""
    ok: bool = True
    """The run answered: no failure, and the method produced its answer (see ``workflows.runner.answer_problem``)."""
    reason: str | None = None
    """Why the run is not ok when it did not fail (it produced no answer); a failure is its own RunFailed."""


@dataclass(frozen=True)
class RunFailed(Event):
    kind: ClassVar[str] = "run_failed"
    error: str
    hint: str | None = None


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        PlanMade,
        Retrieved,
        ChainDrafted,
        ChainRejected,
        StepStarted,
        StepFinished,
        VoteCast,
        Critique,
        ToolCalled,
        AnswerDelta,
        Usage,
        AnswerReady,
        RunFinished,
        RunFailed,
    )
}


def event_from_dict(data: dict[str, Any]) -> Event:
    """Rebuild an event from ``to_dict()`` output (sessions and run folders store them as JSON)."""
    data = dict(data)
    cls = EVENT_TYPES[data.pop("kind")]
    if cls in (Retrieved,):
        data["passages"] = [Passage(**p) for p in data["passages"]]
    if cls is AnswerReady:
        data["sources"] = [Passage(**p) for p in data.get("sources", [])]
    return cls(**data)


# ------------------------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class RunResult:
    """What a run came to, read from its events by class (:func:`collect`): the one place that picks the answer and
    the failure out of a run, for ``ask``, workflow steps and the evaluation harness."""

    answer: AnswerReady | None
    failure: RunFailed | None
    finished: RunFinished | None
    events: tuple[Event, ...]

    @property
    def ok(self) -> bool:
        """Finished, answered (the run's own verdict, ``workflows.runner.answer_problem``), and not failed."""
        return self.failure is None and self.finished is not None and self.finished.ok

    @property
    def error(self) -> str | None:
        """Why it is not ok: the failure, else the reason it produced no answer."""
        if self.failure is not None:
            return self.failure.error
        return self.finished.reason if self.finished is not None else "the run did not finish"

    @property
    def text(self) -> str:
        return self.answer.text if self.answer is not None else ""

    @property
    def value(self) -> str | None:
        return self.answer.value if self.answer is not None else None

    @property
    def sources(self) -> list[Passage]:
        return list(self.answer.sources) if self.answer is not None else []

    @property
    def seconds(self) -> float:
        return self.finished.seconds if self.finished is not None else 0.0

    @property
    def usage(self) -> dict[str, dict[str, int]]:
        return dict(self.finished.usage) if self.finished is not None else {}


def collect(events: Sequence[Event]) -> RunResult:
    """The :class:`RunResult` of a run's events: its last answer, its first failure, its end."""
    answer = next((e for e in reversed(events) if isinstance(e, AnswerReady)), None)
    failure = next((e for e in events if isinstance(e, RunFailed)), None)
    finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
    return RunResult(answer, failure, finished, tuple(events))


# ------------------------------------------------------------------------------------------------ stages

_ANSWERING = ("answer_delta", "answer", "run_finished", "run_failed")


def stage_of(event: Event, method: str = "") -> str | None:
    """What the run is doing after ``event``: None once the answer is under way or the run is over, "" when the
    event does not change the stage (usage and the like)."""
    from conclave.terminal import safe_text

    data = event.to_dict()
    kind = event.kind
    coa = method.startswith("coa")
    if kind in _ANSWERING:
        return None
    if kind == "run_started":
        return "getting ready: model, collection, plan" if coa else f"{data['method']}: model answering"
    if kind == "plan":
        needs = {str(s.get("needs")) for s in data["subquestions"]}
        return "retriever searching" if "knowledge" in needs else "reasoner writing the chain"
    if kind == "retrieval":
        return "reasoner writing the chain" if coa else "model answering"
    if kind == "chain":
        return "running the chain's tools"
    if kind == "replan":
        return "reasoner rewriting the chain"
    if kind == "step_started":
        return f"tool {safe_text(data['tool'])} running"
    if kind == "step_finished":
        return "running the chain's tools"
    if kind == "vote":
        return "writing the answer"
    if kind == "critique":
        return "reasoner revising the chain" if data["verdict"] == "revise" else "writing the answer"
    if kind == "tool_call":
        return f"model reading what {safe_text(data['tool'])} returned"
    return ""  # usage and the like: the stage goes on
