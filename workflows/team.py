"""The CoA team: an AgentChat ``GraphFlow`` with deterministic edges.

    planner -> retriever -> reasoner -> reifier -> critic -> writer
                              ^                      |
                              +------ revise --------+

No model chooses who speaks next (small local models cannot do it reliably). Reification is not an LLM: it parses
nothing, it runs the validated chains' tool calls level by level and votes across samples. Every agent publishes
typed events onto one queue, which :func:`run_coa` yields while the flow runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import DiGraphBuilder, GraphFlow
from autogen_core import CancellationToken
from conclave.agents.base import RoleAgent, TeamState
from conclave.agents.critic import build_critic
from conclave.agents.planner import build_planner
from conclave.agents.reasoner import build_reasoner
from conclave.agents.retriever import build_retriever
from conclave.workflows.context import RunContext
from conclave.workflows.kit import chain_kit
from conclave.workflows.reifier import Reifier
from conclave.workflows.writer import Writer

from conclave.errors import BackendError, ConclaveError
from conclave.events import AnswerReady, Event, Passage


class _AgentFailed(Exception):
    pass


def _guard(agent: RoleAgent, errors: list[BaseException]) -> RoleAgent:
    """Keep a user-facing error's type across AgentChat's runtime (which would wrap it in a RuntimeError)."""
    act = agent.act

    async def guarded(cancellation_token: CancellationToken) -> str:
        try:
            return await act(cancellation_token)
        except ConclaveError as exc:
            errors.append(exc)
            raise _AgentFailed(exc.message) from exc

    agent.act = guarded  # type: ignore[method-assign]
    return agent


def _timed(agent: RoleAgent, turns: list[Any]) -> RoleAgent:
    """Record each turn of ``agent`` (name, start, end) in ``turns``: the question's trace has a span per turn."""
    from conclave.tracing import AgentTurn

    act = agent.act

    async def timed(cancellation_token: CancellationToken) -> str:
        started = time.time()
        try:
            return await act(cancellation_token)
        finally:
            turns.append(AgentTurn(agent.name, started, time.time()))

    agent.act = timed  # type: ignore[method-assign]
    return agent


async def open_store(ctx: RunContext) -> Any:
    """The knowledge store, with the demo collection ingested on first use."""
    from conclave.tools.demo import ensure_demo_collection
    from conclave.tools.store import KnowledgeStore

    store = await asyncio.to_thread(KnowledgeStore.open, ctx.settings)
    if ctx.collection == "demo":
        await ensure_demo_collection(ctx.settings, store)
    return store


async def build_team(
    ctx: RunContext, emit: Any, store: Any, tools: dict[str, Any]
) -> tuple[GraphFlow, TeamState, list[BaseException]]:
    """The GraphFlow for one question, and its shared state."""
    state = TeamState(
        settings=ctx.settings,
        question=ctx.question,
        tools=tools,
        collection=ctx.collection if store else None,
        source=ctx.source,
        answer_style=ctx.answer_style,
        emit=emit,
        history=ctx.history,
    )
    errors: list[BaseException] = []
    kit = await asyncio.to_thread(chain_kit, tools, ctx.settings.coa.max_steps, ctx.settings)
    planner = _guard(build_planner(state, ctx.clients["planner"]), errors)
    retriever = _guard(build_retriever(state, store), errors)
    reasoner = _guard(build_reasoner(state, ctx.clients["reasoner"], kit), errors)
    reifier = _guard(Reifier(state), errors)
    critic = _guard(build_critic(state, ctx.clients["critic"]), errors)
    writer = _guard(Writer(state, ctx.clients["writer"]), errors)
    builder = DiGraphBuilder()
    for agent in (planner, retriever, reasoner, reifier, critic, writer):
        builder.add_node(_timed(agent, ctx.turns))
    builder.add_edge(planner, retriever)
    builder.add_edge(retriever, reasoner, condition=lambda _: not state.no_plan, activation_group="first_draft")
    # An explanation needs no chain (the planner set ``no_plan``): the writer answers from the passages. The writer
    # has two ways in, so either one starts it.
    builder.add_edge(retriever, writer, condition=lambda _: bool(state.no_plan), activation_condition="any")
    builder.add_edge(reasoner, reifier)
    # The loops route on the team state the agents have just set, not on the words of their summaries: the reifier
    # keeps `sampling` on while early-stopping self-consistency wants another chain, and the critic's verdict is
    # `state.verdict`.
    builder.add_edge(reifier, reasoner, condition=lambda _: state.sampling, activation_group="sampling")
    builder.add_edge(reifier, critic, condition=lambda _: not state.sampling)
    builder.add_edge(critic, reasoner, condition=lambda _: state.verdict == "revise", activation_group="revision")
    builder.add_edge(critic, writer, condition=lambda _: state.verdict != "revise", activation_condition="any")
    builder.set_entry_point(planner)
    # One pass is 6 messages plus the task; each revision adds 3, each extra sampling round 2. The bound is a
    # backstop: the critic and the reifier enforce theirs first.
    limit = 1 + 6 + 3 * (ctx.settings.coa.max_critic_rounds + 1) + 2 * ctx.settings.coa.samples
    flow = GraphFlow(
        participants=builder.get_participants(),
        graph=builder.build(),
        termination_condition=MaxMessageTermination(limit),
    )
    return flow, state, errors


def available_tools(
    settings: Any, store: Any, collection: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """The registered tools, without knowledge search when there is no collection to search; the search is bound
    to ``collection`` (the run's), ``settings.top_k`` and, when given, one document (``source``)."""
    from conclave.tools.toolset import build_tools

    tools = build_tools(settings, store=store, collection=collection, source=source)
    if store is None:
        # Offering a search that can only fail invites the model to "look up" what it should compute.
        tools.pop("search_knowledge", None)
        tools.pop("read_value", None)
    return tools


async def run_coa(ctx: RunContext) -> AsyncIterator[Event]:
    """Answer with the team, yielding its events as they happen."""
    store = ctx.store if ctx.store is not None else (await open_store(ctx) if ctx.collection else None)
    tools = ctx.tools if ctx.tools is not None else available_tools(ctx.settings, store, ctx.collection, ctx.source)
    queue: asyncio.Queue[Event | None] = asyncio.Queue()
    flow, state, errors = await build_team(ctx, queue.put, store, tools)
    token = CancellationToken()

    crashed: list[BaseException] = []

    async def drive() -> None:
        try:
            async for _ in flow.run_stream(task=ctx.question, cancellation_token=token):
                pass
        except Exception as exc:  # agent errors arrive wrapped by AgentChat; the original is in `errors`
            crashed.append(exc)
        finally:
            await queue.put(None)

    task = asyncio.create_task(drive())
    try:
        while (event := await queue.get()) is not None:
            yield event
        await task
    except BaseException:
        token.cancel()
        task.cancel()
        raise
    finally:
        if not task.done():
            token.cancel()
            task.cancel()
    if errors:
        raise errors[0]
    if crashed:
        raise BackendError(f"the team stopped: {crashed[0]}", hint="run again with --debug for details")
    chosen = state.chosen
    filled = chosen.reified.filled_text() if chosen is not None and chosen.reified is not None else ""
    yield AnswerReady(
        text=state.answer_text,
        sources=list(state.sources),
        value=state.answer_value,
        chain=filled,
        basis=state.answer_basis,
    )


__all__ = ["Passage", "build_team", "run_coa"]
