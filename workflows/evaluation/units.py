"""One unit of an evaluation (an item x method x model): what it runs with (``UnitPlan``), where it runs
(``UnitRunner``: ``LocalUnits`` here, ``distributed.RayUnits`` on Ray workers), and its scored sample. Both
executors and the harness that drives them build on this module."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from conclave.workflows.evaluation.cache import CacheSet, item_backend_calls
from conclave.workflows.evaluation.datasets import Item
from conclave.workflows.evaluation.judge import Judge
from conclave.workflows.evaluation.records import EvalSample
from conclave.workflows.evaluation.scorers import SCORERS, Outcome, Score, ScoreInput

from conclave.errors import ConclaveError
from conclave.events import Event
from conclave.models.backends import parallel_requests
from conclave.settings import AGENT_ROLES, Settings

__all__ = [
    "LocalUnits",
    "UnitPlan",
    "UnitRunner",
    "build_sample",
    "model_parallel",
    "outcome_from_events",
    "run_unit",
    "unit_key",
]


def unit_key(item_id: str, method: str, model: str) -> str:
    """The identity of one result (item x method x model)."""
    return f"{item_id}|{method}|{model}"


def outcome_from_events(events: Sequence[Event], k: int | None = None) -> tuple[Outcome, dict[str, Any]]:
    """What the scorers need and the per-item statistics, read from a run's events only.

    Retrieved ids are the top ``k`` passages of every search the run made (a multi-hop question searches more
    than once), so recall@k asks: did any search put the gold context in its top k?
    """
    from conclave.tools.toolset import parse_passages

    from conclave.events import ChainRejected, Critique, Retrieved, StepFinished, ToolCalled, collect

    run = collect(events)
    ids: list[str] = []
    passages: dict[str, str] = {}
    retrieved = False
    stats: dict[str, Any] = {
        "llm_calls": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "tool_calls": 0,
        "replans": 0,
        "critic_rounds": 0,
    }
    for event in events:
        if isinstance(event, Retrieved):
            retrieved = True
            for p in event.passages[:k]:
                ids.extend([p.id, p.source] if p.source else [p.id])
                passages.setdefault(p.id, p.text)
        elif isinstance(event, ToolCalled):
            stats["tool_calls"] += 1
            if event.tool == "search_knowledge" and not event.is_error:
                retrieved = True
                for p in parse_passages(event.result)[:k]:
                    ids.extend([p.id, p.source] if p.source else [p.id])
        elif isinstance(event, StepFinished):
            if event.status != "skipped":
                stats["tool_calls"] += 1
        elif isinstance(event, ChainRejected):
            stats["replans"] += 1
        elif isinstance(event, Critique):
            stats["critic_rounds"] += 1
    for p in run.sources:
        passages.setdefault(p.id, p.text)
    # A failure is an error; a run that finished without an answer is "no answer" (workflows.runner.answer_problem).
    outcome_kind = "error" if run.failure is not None else "answered" if run.ok else "no answer"
    stats.update(
        ok=run.ok,
        error=None if run.ok else (run.error or "no answer"),
        outcome=outcome_kind,
        usage=run.usage,
        latency=round(run.finished.seconds, 4) if run.finished is not None else None,
    )
    for slot in run.usage.values():
        stats["llm_calls"] += slot.get("calls", 0)
        stats["prompt_tokens"] += slot.get("prompt_tokens", 0)
        stats["completion_tokens"] += slot.get("completion_tokens", 0)
    text, value = run.text, run.value
    outcome = Outcome(
        text=text,
        value=value,
        retrieved_ids=tuple(dict.fromkeys(i for i in ids if i)),
        passages=tuple(passages.values()),
        retrieved=retrieved,
    )
    return outcome, stats


@dataclass(frozen=True)
class UnitPlan:
    """What running one unit needs beyond its item, method and model: small and picklable, so a Ray worker gets it
    once (``distributed.py``) rather than the whole data set."""

    collection: str | None
    k: int
    scorers: tuple[str, ...]
    use_roles: bool
    scoped: bool = False
    """Each item's searches see only the passages of its own document (``Item.scope``)."""
    answer_style: str = "short"
    """How the data set asks for answers (``Dataset.answer_style``)."""


async def _clients_for(caches: CacheSet, model: str, settings: Settings, use_roles: bool) -> dict[str, Any]:
    if not use_roles:
        client = await caches.client(model)
        return {role: client for role in AGENT_ROLES}
    from conclave.models import role_clients

    return await role_clients(settings, caches.client, AGENT_ROLES)


def model_parallel(spec: str, concurrency: int, settings: Settings) -> int:
    """Units of one model in flight at once: the run's concurrency, capped by what the model can serve at once
    (``backends.parallel_requests``: one on the embedded llama-cpp-python engine, where parallel items would only
    queue and distort each other's latency; its slots on xllamacpp; no cap of its own for a remote backend)."""
    own = parallel_requests(spec, settings)
    return concurrency if own is None else max(1, min(concurrency, own))


class UnitRunner:
    """Runs one unit and returns its sample (never raises for the unit's own failure: the sample records it)."""

    async def __call__(self, item: Item, method: str, model: str) -> EvalSample:
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the runner holds (workers, connections)."""


class LocalUnits(UnitRunner):
    """Units in this process, on the run's clients (``CacheSet``), at most ``model_parallel`` per model at once."""

    def __init__(self, plan: UnitPlan, settings: Settings, caches: CacheSet, concurrency: int) -> None:
        self.plan = plan
        self.settings = settings
        self.caches = caches
        self.concurrency = concurrency
        self.limits: dict[str, asyncio.Semaphore] = {}
        self.judge: Judge | None = None

    @classmethod
    async def start(
        cls, plan: UnitPlan, settings: Settings, caches: CacheSet, judge_spec: str | None, concurrency: int
    ) -> LocalUnits:
        units = cls(plan, settings, caches, concurrency)
        if judge_spec is not None:
            units.judge = Judge(await caches.client(judge_spec), limit=units.limit(judge_spec))
        return units

    def limit(self, spec: str) -> asyncio.Semaphore:
        if spec not in self.limits:
            self.limits[spec] = asyncio.Semaphore(model_parallel(spec, self.concurrency, self.settings))
        return self.limits[spec]

    async def __call__(self, item: Item, method: str, model: str) -> EvalSample:
        return await run_unit(self.plan, self.settings, self.caches, item, method, model, self.judge, self.limit(model))


async def run_unit(
    plan: UnitPlan,
    settings: Settings,
    caches: CacheSet,
    item: Item,
    method: str,
    model: str,
    judge: Judge | None,
    limit: asyncio.Semaphore,
) -> EvalSample:
    from conclave.workflows.runner import build_context, run_question

    calls = item_backend_calls()
    events: list[Event] = []
    crash: str | None = None
    async with limit:
        try:
            # Data sets without contexts get no knowledge at all (not the default collection).
            ctx = await build_context(
                item.question,
                settings,
                method=method,
                collection=plan.collection,
                source=item.scope if plan.scoped else None,
                answer_style=plan.answer_style,
                knowledge=plan.collection is not None,
                clients=await _clients_for(caches, model, settings, plan.use_roles),
            )
            ctx.trace_attributes = {"conclave.eval.item_id": item.id, "conclave.eval.model": model}
            async for event in run_question(ctx):
                if event.kind != "answer_delta":
                    events.append(event)
        except ConclaveError as exc:
            crash = exc.message
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug in a method must not end a long run; the item records it
            from conclave.redact import redact

            crash = redact(f"{type(exc).__name__}: {exc}")
    return await build_sample(plan, item, method, model, events, crash, calls[0], judge)


async def build_sample(
    plan: UnitPlan,
    item: Item,
    method: str,
    model: str,
    events: Sequence[Event],
    crash: str | None,
    backend_calls: int,
    judge: Judge | None,
) -> EvalSample:
    """A unit's sample from its events, scored; ``crash``: why it did not run through (the unit is an error)."""
    outcome, stats = outcome_from_events(events, plan.k)
    if crash is not None:
        stats["ok"], stats["error"], stats["outcome"] = False, crash, "error"
    answer_text, answer_value = outcome.text, outcome.value
    if not stats["ok"]:
        # No answer is scored as no answer: a notice that no chain worked may still hold a number or the gold words.
        outcome = dataclasses.replace(outcome, text="", value=None)
    scores: dict[str, Score] = {}
    seen = ScoreInput(item.question, outcome, item.answers, item.gold_ids, plan.k, item.labels)
    for name in plan.scorers:
        scorer = SCORERS.get(name)
        if not scorer.judge:
            scores[name] = scorer.score(seen)
        elif judge is None:
            scores[name] = Score(None, None, "no judge", missing=True)
        elif not stats["ok"]:
            scores[name] = scorer.unanswered
        else:
            scores[name] = await scorer.score(seen, judge)
    primary = scores[plan.scorers[0]]
    return EvalSample(
        key=unit_key(item.id, method, model),
        item_id=item.id,
        method=method,
        model=model,
        question=item.question,
        gold=list(item.answers),
        gold_ids=list(item.gold_ids),
        labels=dict(item.labels),
        answer=answer_text,
        value=answer_value,
        correct=primary.passed,
        scores={name: s.to_dict() for name, s in scores.items()},
        latency=stats["latency"],
        llm_calls=stats["llm_calls"],
        prompt_tokens=stats["prompt_tokens"],
        completion_tokens=stats["completion_tokens"],
        usage=stats["usage"],
        tool_calls=stats["tool_calls"],
        replans=stats["replans"],
        critic_rounds=stats["critic_rounds"],
        retrieved_ids=list(outcome.retrieved_ids),
        backend_calls=backend_calls,
        cached=backend_calls == 0 and stats["llm_calls"] > 0,
        ok=stats["ok"],
        outcome=stats["outcome"],
        error=stats["error"],
        trace=[e.to_dict() for e in events],
    )
