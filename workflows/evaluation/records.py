"""One evaluation result (item x method x model) as a typed record: what ``items.jsonl`` holds, one per line.

The harness builds an :class:`EvalSample` per unit and appends its JSON; resume, summaries, comparisons and exports
read the lines back through :func:`samples_from`, so a damaged or foreign line is found by validation rather than by a
``KeyError`` somewhere downstream. Records written by earlier versions (without ``outcome``, ``backend_calls``,
``usage`` ...) still load: those fields have defaults.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["EvalSample", "Outcome", "as_samples", "latest_samples", "samples_from"]

Outcome = Literal["answered", "no answer", "error"]


class EvalSample(BaseModel):
    """A unit's result. ``correct`` is the primary scorer's pass (``None``: it could not score the item)."""

    model_config = ConfigDict(extra="ignore")

    key: str
    item_id: str
    method: str
    model: str
    question: str = ""
    gold: list[str] = Field(default_factory=list)
    gold_ids: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    """The item's labels (TAT-QA: answer_type, answer_from, scale): the report breaks its scores down by them."""
    answer: str = ""
    value: str | None = None
    correct: bool | None = None
    scores: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Scorer name -> ``{"value", "passed", "detail"?, "missing"?}`` (``scorers.Score.to_dict``)."""
    latency: float | None = None
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage: dict[str, dict[str, int]] = Field(default_factory=dict)
    """Per agent: calls, prompt and completion tokens."""
    tool_calls: int = 0
    replans: int = 0
    critic_rounds: int = 0
    retrieved_ids: list[str] = Field(default_factory=list)
    backend_calls: int = 0
    """Model calls that reached a backend (0 when every call came from the response cache)."""
    cached: bool = False
    ok: bool = True
    outcome: Outcome | None = None
    error: str | None = None
    finished_at: float = Field(default_factory=time.time)
    trace: list[dict[str, Any]] = Field(default_factory=list)
    """The run's events (``Event.to_dict``), for the report's drill-down and for exporting chains."""

    @property
    def status(self) -> Outcome:
        """``answered``, ``no answer`` (the run went through and produced none) or ``error`` (backend down, a crash);
        records written before ``outcome`` existed read it from ``ok``."""
        if self.outcome is not None:
            return self.outcome
        return "answered" if self.ok else "error"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def score_of(self, scorer: str) -> dict[str, Any]:
        return self.scores.get(scorer, {})

    def to_record(self) -> dict[str, Any]:
        """The JSON object written to ``items.jsonl``."""
        return self.model_dump(mode="json")


def samples_from(records: Iterable[Mapping[str, Any]]) -> tuple[list[EvalSample], list[str]]:
    """The records that are valid samples, and one line per record that is not (what is wrong with it)."""
    samples: list[EvalSample] = []
    problems: list[str] = []
    for n, record in enumerate(records, 1):
        try:
            samples.append(EvalSample.model_validate(record))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "record"
            problems.append(f"record {n}: {where}: {first['msg']}")
    return samples, problems


def as_samples(records: Sequence[EvalSample | Mapping[str, Any]]) -> list[EvalSample]:
    """Samples from samples or raw records (raw ones must be valid: ``ValidationError`` otherwise)."""
    return [r if isinstance(r, EvalSample) else EvalSample.model_validate(r) for r in records]


def latest_samples(path: Path) -> list[EvalSample]:
    """A run's ``items.jsonl`` as samples: the latest record per unit (a resumed unit's newest), lines that are not
    results left out (a torn or damaged line is skipped by the reader, see ``runs.read_jsonl``)."""
    from conclave.workflows.evaluation.runs import read_jsonl

    records, _ = read_jsonl(path)
    samples, _problems = samples_from(r for r in records if isinstance(r, Mapping))
    return list({s.key: s for s in samples}.values())
