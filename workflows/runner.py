"""Run one question with a method; every interface consumes the events this yields."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

from conclave.workflows.context import RunContext

from conclave.errors import ConclaveError, ConfigError
from conclave.events import AnswerReady, Critique, Event, RunFailed, RunFinished, RunStarted, Usage
from conclave.settings import Settings
from conclave.terminal import REASON_CHARS, clip

__all__ = [
    "FALLBACK_METHOD",
    "answer_problem",
    "apply_method",
    "build_context",
    "method_for_model",
    "parse_method",
    "run_question",
    "total_usage",
]
# Short names for chain-of-abstraction options in a method variant (``coa:k=5``).
_COA_ALIASES = {"k": "samples", "critic": "use_critic"}


def parse_method(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:key=value,...`` -> (name, options). Only ``coa`` takes options: its ``coa.*`` settings
    (``samples``/``k``, ``agree``, ``use_critic``/``critic``, ``plan``, ``few_shot``, ...), so one evaluation can
    compare variants such as ``coa:k=1`` and ``coa:k=5``."""
    from conclave.workflows.methods import METHODS

    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if name not in METHODS:
        raise ConfigError(
            f"unknown method {name!r}",
            hint=f"use one of: {', '.join(METHODS.names())} (options after a colon, e.g. coa:k=5)",
        )
    options: dict[str, Any] = {}
    if not rest.strip():
        return name, options
    if not METHODS.get(name).options:
        raise ConfigError(
            f"method {name!r} takes no options (got {spec!r})", hint="only coa has variants, e.g. coa:k=5,critic=false"
        )
    from conclave.settings import CoASettings

    for part in rest.split(","):
        key, eq, value = (x.strip() for x in part.partition("="))
        key = _COA_ALIASES.get(key, key)
        if not eq or key not in CoASettings.model_fields:
            raise ConfigError(
                f"bad option {part.strip()!r} in method {spec!r}",
                hint="write key=value with a coa setting, e.g. coa:k=5,agree=2,critic=false "
                f"(settings: {', '.join(CoASettings.model_fields)})",
            )
        options[key] = value
    return name, options


FALLBACK_METHOD = "rag"
"""What ``ask`` answers with on a model known not to write chains (``models/catalog.py``: ``NO_CHAINS``) when no
method was chosen: one call over the question's passages."""


def method_for_model(method: str | None, spec: str, *, chosen: bool) -> tuple[str | None, str | None]:
    """The method ``ask`` runs on model ``spec`` and a one-line note for the user (or None). On a model that writes
    no chains, the default ``coa`` would spend minutes on drafts that never validate: unless the user chose ``coa``,
    the fallback method answers instead; when they did, they are told before it starts."""

    from conclave.models.catalog import chain_shortfall

    name = parse_method(method or "coa")[0]
    why = chain_shortfall(spec) if name == "coa" else None
    if why is None:
        return method, None
    if chosen:
        return method, f"{why}: coa will most likely end without an answer (--method {FALLBACK_METHOD} answers)"
    return FALLBACK_METHOD, f"{why}: answering with --method {FALLBACK_METHOD} (--method coa to try anyway)"


def apply_method(settings: Settings, spec: str) -> tuple[str, Settings]:
    """The method's name and the settings its options give (validated like any coa setting)."""
    from pydantic import ValidationError

    from conclave.settings import CoASettings

    name, options = parse_method(spec)
    if not options:
        return name, settings
    try:
        coa = CoASettings.model_validate({**settings.coa.model_dump(), **options})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(
            f"bad option {err['loc'][0]}={options.get(str(err['loc'][0]))!r} in method {spec!r}: {err['msg']}",
            hint="see `conclave config show` for the coa settings and their values",
        ) from exc
    return name, settings.model_copy(update={"coa": coa})


async def build_context(
    question: str,
    settings: Settings,
    *,
    method: str | None = None,
    collection: str | None = None,
    history: list[tuple[str, str]] | None = None,
    clients: dict[str, Any] | None = None,
    tools: dict[str, Any] | None = None,
    knowledge: bool = True,
    source: str | None = None,
    answer_style: str = "short",
) -> RunContext:
    """Resolve roles to clients (shared when roles name the same spec). ``collection`` defaults to the configured
    one; ``knowledge=False`` answers with no collection at all (arithmetic data sets); ``source`` limits every
    search to that document's passages."""
    from conclave.models import client_name, make_client, role_clients
    from conclave.settings import AGENT_ROLES

    method, settings = apply_method(settings, method or settings.method)
    if not question or not question.strip():
        raise ConfigError("the question is empty", hint='ask something, e.g. conclave ask "What does Adam combine?"')
    if knowledge and collection is not None:
        from conclave.tools.store import validate_collection_name

        validate_collection_name(collection)  # '' is an error, never a stand-in for the default collection
    from conclave.tracing import tracing_for

    tracing_for(settings)  # a bad OTEL_* variable is one line now, before a model loads
    resolved = await role_clients(settings, lambda spec: make_client(spec, settings), AGENT_ROLES, clients)
    models: dict[str, str] = {role: client_name(resolved[role]) for role in AGENT_ROLES}
    return RunContext(
        settings=settings,
        question=question.strip(),
        method=method,
        models=models,
        clients=resolved,
        collection=(settings.collection if collection is None else collection) if knowledge else None,
        history=list(history or []),
        tools=tools,
        source=source if knowledge else None,
        answer_style=answer_style,
    )


def answer_problem(method: str, answer: AnswerReady | None, critique: Critique | None = None) -> str | None:
    """Why a run that did not fail still produced no answer, or None when it answered.

    This is the one place that decides: ``RunFinished.ok`` carries it to the CLI (``ask``'s exit status), the chat,
    workflows and the evaluation harness (a failed item). A coa run answers with its chain's reified value: its text
    without one says that no chain worked (even when it still cites passages), and a chain the critic rejected is no
    answer either. The prose methods answer when they wrote something."""
    if answer is None:
        return "no answer: the method gave none"
    # A reject with no chain at all is the critic saying that no chain validated; an answer the passages support
    # still stands then (the writer's reading, ``basis == "passages"``). A chain that ran and was rejected does not.
    rejected = critique is not None and critique.verdict == "reject" and answer.basis != "passages"
    from conclave.workflows.methods import METHODS

    if METHODS.get(method).value:
        if rejected or answer.value is None or not str(answer.value).strip():
            why = (
                critique.reasons[0]
                if critique is not None and critique.verdict != "accept" and critique.reasons
                else "no chain produced a value"
            )
            return "no answer: " + clip(why, REASON_CHARS)
        return None
    if not answer.text.strip() and not (answer.value or "").strip():
        return "no answer: the model's reply was empty"
    return None


async def run_question(ctx: RunContext) -> AsyncIterator[Event]:
    """Run ``ctx.method`` and yield its events, framed by RunStarted and RunFinished/RunFailed. The run is ok when
    it did not fail and produced an answer (:func:`answer_problem`). Every entry point (ask, chat, workflows,
    evaluation units, servers) runs a question here, so this is where its trace is made (``conclave/tracing.py``:
    one per question when tracing is on, exported when the question ends, however it ends)."""
    from conclave.tracing import question_trace

    trace = question_trace(ctx)
    if trace is None:
        async with aclosing(_run_question(ctx)) as events:
            async for event in events:
                yield event
        return
    try:
        async with aclosing(_run_question(ctx)) as events:
            async for event in events:
                trace.add(event)
                yield event
    finally:
        trace.finish()


async def _run_question(ctx: RunContext) -> AsyncGenerator[Event, None]:
    from conclave.workflows import methods

    started = time.perf_counter()
    yield RunStarted(question=ctx.question, method=ctx.method, models=ctx.models, collection=ctx.collection)
    usage: dict[str, dict[str, int]] = {}
    answer: AnswerReady | None = None
    critique: Critique | None = None
    try:
        async for event in methods.METHODS.get(ctx.method).run(ctx):
            if isinstance(event, Usage):
                slot = usage.setdefault(event.agent, {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0})
                slot["calls"] += event.calls
                slot["prompt_tokens"] += event.prompt_tokens
                slot["completion_tokens"] += event.completion_tokens
            elif isinstance(event, AnswerReady):
                answer = event
            elif isinstance(event, Critique):
                critique = event
            yield event
    except ConclaveError as exc:
        yield RunFailed(error=exc.message, hint=exc.hint)
        yield RunFinished(
            answer=answer.text if answer else "", seconds=time.perf_counter() - started, usage=usage, ok=False
        )
        return
    problem = answer_problem(ctx.method, answer, critique)
    yield RunFinished(
        answer=answer.text if answer else "",
        seconds=time.perf_counter() - started,
        usage=usage,
        ok=problem is None,
        reason=problem,
    )


def total_usage(usage: dict[str, dict[str, int]]) -> dict[str, int]:
    """Sum per-agent usage."""
    out = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for slot in usage.values():
        for key in out:
            out[key] += slot.get(key, 0)
    return out
