"""The methods Conclave can answer with, all on the same models and tools so they can be compared.

``direct`` (one call), ``cot`` (chain of thought, no tools; over a collection it reads the question's passages), ``rag`` (the question's passages, one call that answers
from them with citations), ``react`` (tool calls interleaved with reasoning) and ``coa`` (the team: plan, retrieve,
abstract chain, reify, critique). Each is an async generator of events.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from conclave.agents.prompting import answer_prompt
from conclave.workflows.runner import RunContext

from conclave.errors import ConfigError
from conclave.events import AnswerDelta, AnswerReady, Event, Passage, Retrieved, Usage
from conclave.registry import Registry

if TYPE_CHECKING:
    from autogen_core.models import CreateResult, LLMMessage

    from conclave.settings import Settings

# AutoGen is imported where a method runs, not here: every command reads this module's registry at start-up (help
# strings, settings validation), and autogen_core alone would double the CLI's start-up time.

# "Answer: ..." on a line of its own, or after the last sentence of a line ("... in [1]. Answer: Coldplay").
_ANSWER_LINE = re.compile(r"(?im)(?:^|(?<=[.!?)\]])[ \t]+)\**(?:final\s+)?answer\s*[:：]\**\s*(.+?)\s*$")

# The last words of a question over passages: a small model keeps to a format it is reminded of right before it
# answers far better than to one stated only in the system prompt (Qwen2.5-Coder-1.5B left the "Answer:" line out of
# SQuAD answers when it was only there). The short answer is what exact match and F1 score.
SHORT_ANSWER = (
    "Answer in one to three sentences, citing the passages you used as [1], [2], ...; then write one last "
    'line "Answer: <the answer in a few words>".'
)


ANSWER_STYLES = ("short", "span")
"""How the "Answer:" line is written: ``short`` (a few words: what SQuAD-style scorers and a quick reader want) or
``span`` (the passages' own words in full, several values listed: TAT-QA's spans are whole clauses)."""

_SPAN_ANSWER = (
    "Answer in one to three sentences, citing the passages you used as [1], [2], ...; then write one last "
    'line "Answer: <the answer alone, in the passages\' own words, in full>" (several values asked together: all '
    'of them on that line, separated by "; ").'
)

# A table chunk opens with its context line ("Table: Inventories (in thousands)", tools/tables.py).
_TABLE_LINE = re.compile(r"^\s*Table:[^\n]*")


def answer_instruction(passages: Sequence[Passage] = (), style: str = "short") -> str:
    """The last words of a question over passages (see ``SHORT_ANSWER``), and when a passage is a table that states
    its scale, the reminder to carry it: 23,363 read from a table in thousands is 23,363 thousand, and a bare
    "23,363" is a thousand times off."""
    text = _SPAN_ANSWER if style == "span" else SHORT_ANSWER
    return f"{text} {SCALE_REMINDER}" if states_a_scale(passages) else text


SCALE_REMINDER = (
    "A number read from a table that states its scale (in thousands, in millions) is written with that scale after "
    'it: "1,250 thousand", not "1,250".'
)


def states_a_scale(passages: Sequence[Passage]) -> bool:
    """Whether one of the passages is a table chunk whose context line states a scale."""
    from conclave.tools.tables import detect_scale

    return any((line := _TABLE_LINE.match(p.text)) is not None and detect_scale(line.group(0)) for p in passages)


def passages_shot() -> list[LLMMessage]:
    """One worked exchange in the passages-answer format (what rag and the coa writer write): a 1.5B model copies a
    shown answer's shape where it ignores a stated one. Static, so it sits in the cached prompt prefix."""
    from autogen_core.models import AssistantMessage, UserMessage

    question = (
        "Passages:\n[1] (example.md) The Eiffel Tower was built for the 1889 World's Fair in Paris by the "
        "engineering company of Gustave Eiffel.\n[2] (example.md) The tower is 330 metres tall.\n\n"
        f"Question: Whose company built the Eiffel Tower?\n\n{SHORT_ANSWER}"
    )
    answer = (
        "The Eiffel Tower was built by the engineering company of Gustave Eiffel [1].\nAnswer: Gustave Eiffel's company"
    )
    return [UserMessage(content=question, source="user"), AssistantMessage(content=answer, source="assistant")]


def direct_shot() -> list[LLMMessage]:
    """The direct method's worked exchange (the same reason as :func:`passages_shot`)."""
    from autogen_core.models import AssistantMessage, UserMessage

    return [
        UserMessage(content="What is the capital of France?", source="user"),
        AssistantMessage(content="The capital of France is Paris.\nAnswer: Paris", source="assistant"),
    ]


def answer_value(text: str) -> str | None:
    """The value on the last ``Answer:`` line, if any."""
    found = _ANSWER_LINE.findall(text)
    if not found:
        return None
    return found[-1].strip().strip("*").strip().rstrip(".") or None


def history_messages(ctx: RunContext) -> list[LLMMessage]:
    from autogen_core.models import AssistantMessage, UserMessage

    out: list[LLMMessage] = []
    for question, answer in ctx.history[-4:]:
        out.append(UserMessage(content=question, source="user"))
        out.append(AssistantMessage(content=answer, source="assistant"))
    return out


class StreamedCall:
    """Stream one model call as AnswerDelta events; afterwards ``text`` and ``result`` hold the outcome."""

    def __init__(
        self,
        client: Any,
        messages: Sequence[LLMMessage],
        *,
        agent: str,
        extra: dict[str, Any] | None = None,
        emit: bool = True,
        cancellation_token: Any = None,
    ):
        self.client = client
        self.messages = list(messages)
        self.agent = agent
        self.extra = extra or {}
        self.emit = emit
        self.cancellation_token = cancellation_token
        self.text = ""
        self.result: CreateResult | None = None

    async def events(self) -> AsyncIterator[Event]:
        from autogen_core.models import CreateResult

        from conclave.models import client_name

        started = time.perf_counter()
        parts: list[str] = []
        async for item in self.client.create_stream(
            self.messages, extra_create_args=self.extra, cancellation_token=self.cancellation_token
        ):
            if isinstance(item, CreateResult):
                self.result = item
            else:
                parts.append(item)
                if self.emit:
                    yield AnswerDelta(text=item, agent=self.agent)
        self.text = "".join(parts)
        if self.result is not None and isinstance(self.result.content, str) and not self.text:
            self.text = self.result.content
            if self.emit and self.text:
                yield AnswerDelta(text=self.text, agent=self.agent)
        usage = self.result.usage if self.result is not None else None
        yield Usage(
            agent=self.agent,
            model=client_name(self.client),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            seconds=time.perf_counter() - started,
            finish_reason=str(self.result.finish_reason or "") if self.result is not None else "",
        )


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
    """Chain of thought: think step by step, no tools. Over a collection it is given the question's passages (the
    same ones ``rag`` reads), so that chain-of-thought and chain-of-abstraction are compared on the same facts."""
    if not ctx.collection:
        async for event in _one_call(ctx, "cot"):
            yield event
        return
    from autogen_core.models import SystemMessage, UserMessage
    from conclave.agents.base import cited_passages, passages_block

    passages = await question_passages(ctx)
    yield Retrieved(query=ctx.question, passages=passages)
    instruction = f"{_COT_OVER_PASSAGES} {SCALE_REMINDER}" if states_a_scale(passages) else _COT_OVER_PASSAGES
    context = f"Passages:\n{passages_block(passages)}" if passages else "Passages: (none were found)"
    messages: list[LLMMessage] = [
        SystemMessage(content=answer_prompt("cot", ctx.settings)),
        *history_messages(ctx),
        UserMessage(content=f"{context}\n\nQuestion: {ctx.question}\n\n{instruction}", source="user"),
    ]
    call = StreamedCall(ctx.clients["reasoner"], messages, agent="reasoner")
    async for event in call.events():
        yield event
    yield AnswerReady(
        text=call.text.strip(), value=answer_value(call.text), sources=cited_passages(call.text, passages)
    )


async def question_passages(ctx: RunContext) -> list[Passage]:
    """The question's own top-k passages (in its document only when ``ctx.source`` is set): what ``rag`` reads."""
    from conclave.tools.registry import source_filter
    from conclave.workflows.team import open_store

    store = ctx.store if ctx.store is not None else await open_store(ctx)
    scope = {"where": source_filter(ctx.source)} if ctx.source else {}
    return list(await store.search(ctx.question, k=ctx.settings.top_k, collection=ctx.collection, **scope))


async def run_rag(ctx: RunContext) -> AsyncIterator[Event]:
    """Retrieval-augmented generation, the single-agent baseline the team is compared against: the question's top-k
    passages, then one call that answers from them with citations."""
    from autogen_core.models import SystemMessage, UserMessage
    from conclave.agents.base import cited_passages, passages_block

    passages: list[Passage] = []
    if ctx.collection:
        passages = await question_passages(ctx)
        yield Retrieved(query=ctx.question, passages=passages)
    context = f"Passages:\n{passages_block(passages)}" if passages else "Passages: (none were found)"
    messages: list[LLMMessage] = [
        SystemMessage(content=answer_prompt("rag", ctx.settings)),
        *passages_shot(),
        *history_messages(ctx),
        UserMessage(
            content=f"{context}\n\nQuestion: {ctx.question}\n\n{answer_instruction(passages, ctx.answer_style)}",
            source="user",
        ),
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
