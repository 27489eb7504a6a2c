"""The methods Conclave can answer with, all on the same models and tools so they can be compared.

``direct`` (one call), ``cot`` (chain of thought, no tools), ``rag-cot`` (chain of thought over the question's passages), ``rag`` (the question's passages, one call that answers
from them with citations), ``react`` (tool calls interleaved with reasoning) and ``coa`` (the team: plan, retrieve,
abstract chain, reify, critique). Each is an async generator of events. A method plugin builds on the same parts:
``StreamedCall`` and ``answer_value`` (from ``answers.py``) are importable from here for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from conclave.agents.prompting import answer_prompt
from conclave.workflows.answers import (
    SCALE_REMINDER,
    StreamedCall,
    answer_instruction,
    answer_value,
    direct_shot,
    history_messages,
    passages_shot,
    states_a_scale,
)
from conclave.workflows.context import RunContext

from conclave.errors import ConfigError
from conclave.events import AnswerReady, Event, Passage, Retrieved
from conclave.registry import Registry

if TYPE_CHECKING:
    from autogen_core.models import LLMMessage

    from conclave.settings import Settings

__all__ = [
    "METHODS",
    "Method",
    "StreamedCall",
    "answer_value",
    "check_method_setting",
    "method_help",
    "searches_knowledge",
]

# AutoGen is imported where a method runs, not here: every command reads this module's registry at start-up (help
# strings, settings validation), and autogen_core alone would double the CLI's start-up time.


async def _one_call(ctx: RunContext, prompt: str, shot: Sequence[LLMMessage] = ()) -> AsyncIterator[Event]:
    """One streamed call with the prompt ``prompt`` (``agents/prompts``), no tools; the answer line is the value."""
    from autogen_core.models import SystemMessage, UserMessage

    messages: list[LLMMessage] = [
        SystemMessage(content=answer_prompt(prompt, ctx.settings)),
        *shot,
        *history_messages(ctx),
        UserMessage(content=ctx.question, source="user"),
    ]
    call = StreamedCall(ctx.clients["reasoner"], messages, agent="reasoner")
    async for event in call.events():
        yield event
    yield AnswerReady(text=call.text.strip(), value=answer_value(call.text))


async def run_direct(ctx: RunContext) -> AsyncIterator[Event]:
    """One call, no tools."""
    async for event in _one_call(ctx, "direct", direct_shot()):
        yield event


_COT_OVER_PASSAGES = (
    "Use only the passages. Think step by step, writing out each value you take from them (cite it as [1], [2], "
    '...) and each calculation; then write one last line "Answer: <the answer>".'
)


async def run_cot(ctx: RunContext) -> AsyncIterator[Event]:
    """Chain of thought: think step by step, no tools."""
    async for event in _one_call(ctx, "cot"):
        yield event


async def run_rag_cot(ctx: RunContext) -> AsyncIterator[Event]:
    """Chain of thought over the question's passages (the same ones ``rag`` reads): the comparison of
    chain-of-thought with chain-of-abstraction on the same facts. Without a collection it is ``cot``."""
    if not ctx.collection:
        async for event in run_cot(ctx):
            yield event
        return
    async for event in _over_passages(ctx, "cot", _cot_instruction, shot=False):
        yield event


def _cot_instruction(passages: Sequence[Passage]) -> str:
    return f"{_COT_OVER_PASSAGES} {SCALE_REMINDER}" if states_a_scale(passages) else _COT_OVER_PASSAGES


async def question_passages(ctx: RunContext) -> list[Passage]:
    """The question's own top-k passages (in its document only when ``ctx.source`` is set): what ``rag`` reads."""
    from conclave.tools.toolset import source_filter
    from conclave.workflows.team import open_store

    store = ctx.store if ctx.store is not None else await open_store(ctx)
    scope = {"where": source_filter(ctx.source)} if ctx.source else {}
    return list(await store.search(ctx.question, k=ctx.settings.top_k, collection=ctx.collection, **scope))


async def run_rag(ctx: RunContext) -> AsyncIterator[Event]:
    """Retrieval-augmented generation, the single-agent baseline the team is compared against: the question's top-k
    passages, then one call that answers from them with citations."""
    async for event in _over_passages(
        ctx, "rag", lambda passages: answer_instruction(passages, ctx.answer_style), shot=True
    ):
        yield event


async def _over_passages(
    ctx: RunContext, prompt: str, instruction: Callable[[Sequence[Passage]], str], *, shot: bool
) -> AsyncIterator[Event]:
    """One streamed call over the question's passages (none without a collection) with the system prompt ``prompt``,
    the passages-answer example when ``shot``, and ``instruction(passages)`` after the question."""
    from autogen_core.models import SystemMessage, UserMessage
    from conclave.agents.base import cited_passages, passages_block

    passages: list[Passage] = []
    if ctx.collection:
        passages = await question_passages(ctx)
        yield Retrieved(query=ctx.question, passages=passages)
    context = f"Passages:\n{passages_block(passages)}" if passages else "Passages: (none were found)"
    messages: list[LLMMessage] = [
        SystemMessage(content=answer_prompt(prompt, ctx.settings)),
        *(passages_shot() if shot else []),
        *history_messages(ctx),
        UserMessage(content=f"{context}\n\nQuestion: {ctx.question}\n\n{instruction(passages)}", source="user"),
    ]
    call = StreamedCall(ctx.clients["reasoner"], messages, agent="reasoner")
    async for event in call.events():
        yield event
    yield AnswerReady(
        text=call.text.strip(), value=answer_value(call.text), sources=cited_passages(call.text, passages)
    )


async def run_react(ctx: RunContext) -> AsyncIterator[Event]:
    from conclave.workflows.react import run_react as _run

    async for event in _run(ctx):
        yield event


async def run_coa(ctx: RunContext) -> AsyncIterator[Event]:
    from conclave.workflows.team import run_coa as _run

    async for event in _run(ctx):
        yield event


# ------------------------------------------------------------------------------------------------ registry

Runner = Callable[[RunContext], AsyncIterator[Event]]


@dataclass(frozen=True)
class Method:
    """A way to answer a question: ``run(ctx)`` yields the run's events and ends with one ``AnswerReady``."""

    name: str
    run: Runner
    summary: str
    knowledge: bool = False
    """It searches the knowledge collection (the CLI and chat say which collection it read)."""
    value: bool = False
    """Its answer is a value (coa: the reified chain's); a run without one is no answer. Prose methods answer when
    they wrote something, and their value is the ``Answer:`` line when there is one."""
    options: bool = False
    """It takes ``NAME:key=value`` variants (coa: its ``coa.*`` settings)."""


def _plugin_method(name: str, loaded: object) -> Method:
    """What a ``conclave.methods`` entry point loads: a :class:`Method`, or an async generator function
    ``run(ctx)`` (a prose method; its docstring's first line is the summary)."""
    if isinstance(loaded, Method):
        return replace(loaded, name=name)
    if callable(loaded):
        summary = (getattr(loaded, "__doc__", None) or "").strip().splitlines()
        return Method(name=name, run=loaded, summary=summary[0] if summary else "(a plugin method)")
    raise TypeError(f"expected a Method or an async generator function, got {type(loaded).__name__}")


METHODS: Registry[Method] = Registry("method", "conclave.methods", _plugin_method)
"""Every method, by name: the built-ins below and plugins (entry-point group ``conclave.methods``)."""

for _method in (
    Method("coa", run_coa, "chain of abstraction: plan, retrieve, abstract chain, tools, critic", True, True, True),
    Method("cot", run_cot, "chain of thought: step by step, no tools"),
    Method("rag", run_rag, "the question's passages, one cited answer (the single-agent baseline)", knowledge=True),
    Method("react", run_react, "tool calls interleaved with reasoning", knowledge=True),
    Method("direct", run_direct, "one call, no tools"),
    Method("rag-cot", run_rag_cot, "chain of thought over the question's passages (rag's search)", knowledge=True),
):
    METHODS.add(_method.name, _method)


def searches_knowledge(name: str) -> bool:
    """Whether the method ``name`` (a variant such as ``coa:k=3`` included) reads the knowledge collection."""
    base = name.partition(":")[0].strip()
    return base in METHODS and METHODS.get(base).knowledge


def method_help() -> str:
    """``coa (default), cot, rag, react or direct`` (and any plugin methods)."""
    names = [f"{n} (default)" if n == "coa" else n for n in METHODS.names()]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


def check_method_setting(settings: Settings, origin: str = "command line") -> Settings:
    """``settings`` if its method is registered, else the registry's line as a ConfigError. Settings load without
    the method registry (the core does not import this layer), so every interface checks here before it runs
    anything. ``origin`` is where the method came from (``LoadedSettings.origins``), named unless it was a flag."""
    name = settings.method
    if name in METHODS:
        return settings
    problem = f"unknown method {name!r}: use {method_help()} (conclave methods lists them)"
    if origin == "command line":
        raise ConfigError(problem, hint="correct the option (each command's --help lists its options)")
    raise ConfigError(
        f"invalid settings: method ({origin}): {problem}", hint="see `conclave config show` and README 'Configuration'"
    )
