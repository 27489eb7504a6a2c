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
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator
from itertools import zip_longest
from pathlib import Path
from typing import Any

from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import DiGraphBuilder, GraphFlow
from autogen_core import CancellationToken
from autogen_core.models import CreateResult, SystemMessage, UserMessage
from conclave.agents.base import RoleAgent, TeamState, cited_passages, passages_block
from conclave.agents.critic import build_critic
from conclave.agents.planner import build_planner
from conclave.agents.prompting import answer_prompt
from conclave.agents.reasoner import ChainKit, build_reasoner
from conclave.agents.retriever import build_retriever
from conclave.workflows.methods import SHORT_ANSWER, answer_value, passages_shot
from conclave.workflows.runner import RunContext

from conclave.errors import BackendError, ConclaveError, ConfigError
from conclave.events import AnswerDelta, AnswerReady, Event, Passage, StepFinished, StepStarted, Usage, VoteCast
from conclave.models import client_name

_BANKS: dict[tuple[str, int, str], Any] = {}


def example_picker(settings: Any) -> Any:
    """``coa.few_shot = "similar"``: a function question -> similar converted training chains."""
    coa = settings.coa
    if coa.few_shot != "similar":
        return None
    if coa.examples_file is None:
        raise ConfigError(
            "coa.few_shot is 'similar' but coa.examples_file is not set",
            hint="set CONCLAVE_COA__EXAMPLES_FILE to a GSM8K-format train.jsonl",
        )
    from conclave.workflows.coa.examples import ExampleBank

    from conclave.embeddings import get_embedder

    key = (str(coa.examples_file), coa.examples_limit, settings.embedder)
    if key not in _BANKS:
        _BANKS[key] = ExampleBank.build(
            Path(coa.examples_file),
            get_embedder(settings.embedder, settings),
            settings.cache_path,
            limit=coa.examples_limit,
        )
    bank = _BANKS[key]
    return lambda question: [(e.question, e.chain_json, e.chain_text) for e in bank.nearest(question, coa.examples_k)]


def chain_kit(tools: dict[str, Any], max_steps: int, settings: Any = None) -> ChainKit:
    """The chain engine, packaged for the reasoner."""
    from conclave.workflows.coa import chain_json_schema, parse_chain, render, validate
    from conclave.workflows.coa.program import (
        ProgramStream,
        looks_like_program,
        parse_program,
        render_program,
        salvage_lookups,
    )
    from conclave.workflows.coa.reify import EagerRun

    def parse(text: str) -> Any:
        return parse_program(text, tools) if looks_like_program(text) else parse_chain(text)

    def to_program(chain_json: str) -> str:
        return render_program(parse_chain(chain_json))

    timeout = settings.coa.tool_timeout if settings is not None else 30.0

    def check(chain: Any) -> list[str]:
        return [str(getattr(e, "message", e)) for e in validate(chain, tools, max_steps=max_steps)]

    # Bounds in the schema are fine for validation; the embedded backend strips them from its grammar
    # (conclave.models.embedded.grammar_safe) and the step budget is enforced by validation and the token budget.
    schema = chain_json_schema(tools, max_steps=max_steps)
    examples = example_picker(settings) if settings is not None else None

    def placeholders(program: str) -> str:
        chain = parse_program(program, tools)
        return render_program(dataclasses.replace(chain, names={}))

    return ChainKit(
        parse=parse,
        validate=check,
        render=render,
        schema=schema,
        examples=examples,
        to_program=to_program,
        placeholders=placeholders,
        stream=lambda: ProgramStream(tools),
        salvage=lambda text: salvage_lookups(text, tools) if looks_like_program(text) else None,
        eager=lambda on_event, sample: EagerRun(tools, timeout=timeout, on_event=on_event, sample=sample),
    )


def normalise_value(value: Any) -> str | None:
    """Answers that mean the same number vote together (``14``, ``14.0``, ``14.000``)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        from decimal import Decimal, InvalidOperation

        number = Decimal(text.replace(",", ""))
        return format(number.normalize(), "f") if number == number.to_integral_value() else str(number.normalize())
    except (InvalidOperation, ValueError):
        return " ".join(text.lower().split())


class Reifier(RoleAgent):
    """Fills every valid chain in with tool results (concurrently), then votes on the answers."""

    def __init__(self, state: TeamState):
        super().__init__("reifier", "Runs the chain's tool calls and fills in the placeholders.", state)

    async def act(self, cancellation_token: CancellationToken) -> str:
        from conclave.workflows.coa import reify

        state = self.state

        async def run(candidate: Any) -> None:
            async def forward(event: Event) -> None:
                if isinstance(event, StepStarted | StepFinished):
                    event = dataclasses.replace(event, sample=candidate.sample)
                await state.publish(event)

            candidate.reified = await reify(
                candidate.chain,
                state.tools,
                timeout=state.settings.coa.tool_timeout,
                on_event=forward,
                eager=candidate.eager,
            )

        valid = [c for c in state.candidates if c.chain is not None]
        # Earlier samples were reified in an earlier turn; only the new chains run their tools.
        await asyncio.gather(*(run(c) for c in valid if c.reified is None))
        values = [normalise_value(c.answer_value) for c in valid]
        counts = Counter(v for v in values if v is not None)
        # The vote: sample 0 (drawn at the configured temperature) may weigh more than a warm sample.
        weights = {c.sample: state.settings.coa.greedy_weight if c.sample == 0 else 1.0 for c in valid}
        tally: dict[str, float] = {}
        for c, v in zip(valid, values, strict=True):
            if v is not None:
                tally[v] = tally.get(v, 0.0) + weights[c.sample]
        if state.sampling:
            ranked = counts.most_common(2)
            settled = (
                bool(ranked)
                and ranked[0][1] >= state.settings.coa.agree
                and (len(ranked) == 1 or ranked[1][1] < ranked[0][1])
            )
            if not settled and len(state.candidates) < state.settings.coa.samples:
                return f"reified: more samples ({len(state.candidates)} drawn, no agreement yet)"
            state.sampling = False
        state.tied = []
        if not valid:
            state.chosen = None
            return "reified: nothing (no valid chain)"
        if tally:
            top = max(tally.values())
            # Ties go to the earliest sample (sample 0 is drawn at the configured temperature).
            winner = next(v for v in values if v is not None and tally[v] == top)
            state.chosen = next(c for c, v in zip(valid, values, strict=True) if v == winner)
            leaders = [v for v, n in tally.items() if n == top]
            if len(leaders) > 1:
                state.tied = [next(c for c, v in zip(valid, values, strict=True) if v == lead) for lead in leaders]
        else:
            winner = None
            state.chosen = valid[0]
        state.vote_counts = dict(counts)
        if len(state.candidates) > 1:
            await state.publish(
                VoteCast(
                    answers=[normalise_value(c.answer_value) for c in state.candidates],
                    winner=winner,
                    counts=dict(counts),
                )
            )
        return f"reified: answer {state.chosen.answer_value}"


class Writer(RoleAgent):
    """Composes the final answer from the reified chain, citing sources; streams it when a model writes it."""

    def __init__(self, state: TeamState, client: Any):
        super().__init__("writer", "Writes the final answer from the reified chain.", state)
        self.client = client

    def used_knowledge(self) -> bool:
        """Whether the answer is written from passages: the chain searched the collection (or used no tool at all).
        A chain of calculations (or other tools) gets the templated answer: the retriever's passages for its question
        were not used, and citing them would claim sources the answer does not rest on."""
        chosen = self.state.chosen
        tools_used = {s.tool for s in chosen.chain.steps} if chosen and chosen.chain else set()
        return bool(self.state.passages) and ("search_knowledge" in tools_used or not tools_used)

    async def act(self, cancellation_token: CancellationToken) -> str:
        state = self.state
        chosen = state.chosen
        if chosen is None or chosen.reified is None or state.verdict == "reject":
            if state.verdict == "reject":
                errors = state.reasons or ["the chain was rejected"]
            else:
                errors = state.candidates[0].errors if state.candidates else ["no chain"]
            failure = "I could not build a valid chain for this question. Last errors:\n" + "\n".join(
                f"- {e}" for e in errors
            )
            if state.passages:
                # The passages were still found: answer from them, and say plainly that no chain checked it.
                await self.compose(cancellation_token, worked=None)
                note = "\n\n_" + failure.replace("\n", " ") + "_"
                state.answer_text += note
                await state.publish(AnswerDelta(text=note, agent="writer"))
            else:
                state.answer_text = failure
                await state.publish(AnswerDelta(text=state.answer_text, agent="writer"))
            return "answer: no chain"
        reified = chosen.reified
        state.answer_value = None if reified.answer_value is None else str(reified.answer_value)
        if self.used_knowledge():
            await self.compose(cancellation_token)
            if self.answer_is_lookup():
                # The chain's value is the passages its last search found; what they answer is the writer's
                # reading of them: its "Answer:" line, else its whole answer (never the raw passages).
                state.answer_value = answer_value(state.answer_text) or state.answer_text or None
        else:
            filled = reified.filled_text().strip()
            # The filled chain ends with its own "Answer: value" line; the bold line is added only when it does not.
            last = filled.splitlines()[-1] if filled else ""
            state.answer_text = (
                filled
                if last.lower().startswith("answer") and (state.answer_value or "") in last
                else f"{filled}\n\n**Answer: {state.answer_value}**"
            )
            await state.publish(AnswerDelta(text=state.answer_text, agent="writer"))
        return "answer: written"

    def reading(self) -> list[Passage]:
        """The passages the writer reads: the retriever's (its search for the question: what ``rag`` reads) and what
        each of the chosen chain's searches found, interleaved by rank, without repeats, ``top_k`` + 2 in all. The
        chain's lookups add evidence (a two-hop chain's second search finds what the question alone does not) without
        crowding out the question's own passages: on HotpotQA, reading the chain's searches alone lost 3.7 F1 to
        ``rag`` (docs/QUALITY.md)."""
        from conclave.tools.registry import parse_passages

        state = self.state
        chosen = state.chosen
        found: list[list[Passage]] = [list(state.passages)]
        if chosen is not None and chosen.chain is not None and chosen.reified is not None:
            values = chosen.reified.values
            found += [parse_passages(values.get(s.id, "")) for s in chosen.chain.steps if s.tool == "search_knowledge"]
        by_id: dict[str, Passage] = {}
        for rank in zip_longest(*found):
            for p in rank:
                if p is not None:
                    by_id.setdefault(p.id, p)
        return list(by_id.values())[: max(state.settings.top_k, 1) + 2]

    def answer_is_lookup(self) -> bool:
        chosen = self.state.chosen
        if chosen is None or chosen.chain is None:
            return False
        last = chosen.chain.answer_step
        return last is not None and last.tool == "search_knowledge"

    async def compose(self, cancellation_token: CancellationToken, worked: str | None = "chain") -> None:
        state = self.state
        chosen = state.chosen
        work = ""
        if (
            worked
            and chosen is not None
            and chosen.reified is not None
            and chosen.chain is not None
            and any(s.tool != "search_knowledge" for s in chosen.chain.steps)
        ):
            # A chain of lookups only is not shown: its values are the passages, which the writer reads anyway.
            work = f"Worked chain:\n{chosen.reified.filled_text(limit=300)}\n\n"
        passages = self.reading()
        user = f"Passages:\n{passages_block(passages)}\n\n{work}Question: {state.question}\n\n{SHORT_ANSWER}"
        messages = [
            SystemMessage(content=answer_prompt("writer", state.settings)),
            *passages_shot(),
            UserMessage(content=user, source="user"),
        ]
        started = time.perf_counter()
        parts: list[str] = []
        result: CreateResult | None = None
        async for item in self.client.create_stream(
            messages, extra_create_args={"max_tokens": 256}, cancellation_token=cancellation_token
        ):
            if isinstance(item, CreateResult):
                result = item
            else:
                parts.append(item)
                await state.publish(AnswerDelta(text=item, agent="writer"))
        text = "".join(parts) or (result.content if result and isinstance(result.content, str) else "")
        if not parts and text:
            await state.publish(AnswerDelta(text=text, agent="writer"))
        state.answer_text = text.strip()
        state.sources = cited_passages(text, passages) or list(passages[:3])
        if result is not None:
            await state.publish(
                Usage(
                    agent="writer",
                    model=client_name(self.client),
                    prompt_tokens=result.usage.prompt_tokens,
                    completion_tokens=result.usage.completion_tokens,
                    seconds=time.perf_counter() - started,
                )
            )


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
        builder.add_node(agent)
    builder.add_edge(planner, retriever)
    builder.add_edge(retriever, reasoner, activation_group="first_draft")
    builder.add_edge(reasoner, reifier)
    # The loops route on the team state the agents have just set, not on the words of their summaries: the reifier
    # keeps `sampling` on while early-stopping self-consistency wants another chain, and the critic's verdict is
    # `state.verdict`.
    builder.add_edge(reifier, reasoner, condition=lambda _: state.sampling, activation_group="sampling")
    builder.add_edge(reifier, critic, condition=lambda _: not state.sampling)
    builder.add_edge(critic, reasoner, condition=lambda _: state.verdict == "revise", activation_group="revision")
    builder.add_edge(critic, writer, condition=lambda _: state.verdict != "revise")
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


def available_tools(settings: Any, store: Any, collection: str | None = None) -> dict[str, Any]:
    """The registered tools, without knowledge search when there is no collection to search; the search is bound
    to ``collection`` (the run's) and ``settings.top_k``."""
    from conclave.tools.registry import build_tools

    tools = build_tools(settings, store=store, collection=collection)
    if store is None:
        # Offering a search that can only fail invites the model to "look up" what it should compute.
        tools.pop("search_knowledge", None)
    return tools


async def run_coa(ctx: RunContext) -> AsyncIterator[Event]:
    """Answer with the team, yielding its events as they happen."""
    store = ctx.store if ctx.store is not None else (await open_store(ctx) if ctx.collection else None)
    tools = ctx.tools if ctx.tools is not None else available_tools(ctx.settings, store, ctx.collection)
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
    yield AnswerReady(text=state.answer_text, sources=list(state.sources), value=state.answer_value)


__all__ = ["Passage", "build_team", "run_coa"]
