"""What the four roles share: the team's working state and a small AgentChat agent base.

The agents pass a short text message along the GraphFlow (that is what drives its edges and what AutoGen's
transcript shows); the structured work products (plan, passages, chains, reified chains, verdicts) live on one
``TeamState`` so no agent has to re-parse another's prose.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseChatMessage, TextMessage
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage
from pydantic import BaseModel

from conclave.events import Event, Passage, Usage
from conclave.models import client_name
from conclave.settings import Settings

M = TypeVar("M", bound=BaseModel)

Emit = Callable[[Event], Awaitable[None] | None]


@dataclass
class SubQuestion:
    question: str
    needs: str = "none"
    query: str = ""


@dataclass
class Candidate:
    """One sampled chain: its final form after repairs, and what reification made of it."""

    sample: int
    form: str = "json"
    """The form the chain is written in (``program``, ``program-y``, ``json``, ``text``)."""
    chain: Any | None = None
    errors: list[str] = field(default_factory=list)
    reified: Any | None = None
    raw: str = ""
    messages: list[LLMMessage] = field(default_factory=list)
    """The reasoner's conversation for this sample (only the broken chain goes back on re-plan)."""
    eager: Any | None = None
    """Program form: the tool runs started while the chain streamed (``workflows.coa.reify.EagerRun``)."""

    @property
    def answer_value(self) -> Any:
        """The value reification gave the chain's answer placeholder; ``None`` before it ran or without one."""
        return self.reified.answer_value if self.reified is not None else None


@dataclass
class TeamState:
    """The team's blackboard for one question."""

    settings: Settings
    question: str
    tools: dict[str, Any]
    collection: str | None
    emit: Emit
    source: str | None = None
    """Search only this document's passages (``RunContext.source``)."""
    answer_style: str = "short"
    """How the writer's "Answer:" line is written (``RunContext.answer_style``)."""
    no_plan: str = ""
    """Why no chain is written for this question (an explanation answered from its passages), or empty."""
    history: list[tuple[str, str]] = field(default_factory=list)
    subquestions: list[SubQuestion] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    chosen: Candidate | None = None
    tied: list[Candidate] = field(default_factory=list)
    """Candidates whose answers tied for the most votes; the critic breaks the tie."""
    critic_rounds: int = 0
    stalled: bool = False
    """The reasoner answered a revision request with the same chain."""
    verdict: str | None = None
    reasons: list[str] = field(default_factory=list)
    vote_counts: dict[str, int] = field(default_factory=dict)
    sampling: bool = False
    """Self-consistency with early stopping is under way: the reifier asks for more chains until enough agree."""
    answer_text: str = ""
    answer_value: str | None = None
    answer_basis: str = ""
    """What the answer value rests on: ``chain`` (a reified chain) or ``passages`` (no chain validated; the writer's
    answer, which the passages support)."""
    sources: list[Passage] = field(default_factory=list)
    failure: str | None = None

    async def publish(self, event: Event) -> None:
        result = self.emit(event)
        if asyncio.iscoroutine(result):
            await result


async def tracked_create(
    state: TeamState,
    agent: str,
    client: ChatCompletionClient,
    messages: Sequence[LLMMessage],
    *,
    extra: dict[str, Any] | None = None,
    cancellation_token: CancellationToken | None = None,
) -> CreateResult:
    """One model call whose token usage is published as a Usage event for ``agent``."""
    started = time.perf_counter()
    result = await client.create(messages, extra_create_args=extra or {}, cancellation_token=cancellation_token)
    await state.publish(
        Usage(
            agent=agent,
            model=client_name(client),
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            seconds=time.perf_counter() - started,
            finish_reason=str(result.finish_reason or ""),
        )
    )
    return result


async def tracked_structured(
    state: TeamState,
    agent: str,
    client: ChatCompletionClient,
    messages: Sequence[LLMMessage],
    schema: dict[str, Any],
    name: str,
    *,
    extra: dict[str, Any] | None = None,
    cancellation_token: CancellationToken | None = None,
) -> CreateResult:
    """:func:`tracked_create` constrained to ``schema``, in the dialect the client's host takes: a host that refuses
    ``json_schema`` (llama-cpp-python's server) is asked once more in ``json_object`` + ``schema``, and the client
    remembers it (:func:`conclave.models.structured.rejects_json_schema`)."""
    from conclave.models.structured import with_schema

    return await with_schema(
        client,
        schema,
        name,
        extra,
        lambda args: tracked_create(state, agent, client, messages, extra=args, cancellation_token=cancellation_token),
    )


async def structured_reply(
    state: TeamState,
    agent: str,
    client: ChatCompletionClient,
    messages: Sequence[LLMMessage],
    model: type[M],
    name: str,
    *,
    max_tokens: int,
    cancellation_token: CancellationToken | None = None,
) -> tuple[M | None, str]:
    """The agent's reply read as ``model`` (:func:`tracked_structured` with its schema), and the reply's text;
    ``None`` when the host refused the schema or the reply is not a valid one, so the caller takes its fallback."""
    from conclave.models import StructuredOutputError
    from conclave.models.structured import extract_json

    raw = ""
    try:
        result = await tracked_structured(
            state,
            agent,
            client,
            messages,
            model.model_json_schema(),
            name,
            extra={"max_tokens": max_tokens},
            cancellation_token=cancellation_token,
        )
        raw = result.content if isinstance(result.content, str) else ""
        return model.model_validate(extract_json(raw)), raw
    except (StructuredOutputError, ValueError):
        return None, raw


class RoleAgent(BaseChatAgent):
    """An AgentChat agent whose turn is one async ``act`` on the team state, returning a short summary."""

    def __init__(self, name: str, description: str, state: TeamState):
        super().__init__(name=name, description=description)
        self.state = state

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def act(self, cancellation_token: CancellationToken) -> str:
        raise NotImplementedError

    async def on_messages(self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken) -> Response:
        summary = await self.act(cancellation_token)
        return Response(chat_message=TextMessage(content=summary, source=self.name))

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        """State belongs to one question; a new question gets a new team."""


_CITATION = re.compile(r"\[(\d{1,2})\]")


def cited_passages(text: str, passages: Sequence[Passage]) -> list[Passage]:
    """The passages ``text`` cites as [1], [2], ... (numbered as :func:`passages_block` numbers them), in order."""
    cited = sorted({int(n) for n in _CITATION.findall(text) if 0 < int(n) <= len(passages)})
    return [passages[n - 1] for n in cited]


def passages_block(passages: Sequence[Passage], *, limit: int = 600) -> str:
    """Numbered passages for a prompt, each clipped to ``limit`` characters."""
    lines = []
    for i, p in enumerate(passages, 1):
        text = " ".join(p.text.split())
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        lines.append(f"[{i}] ({p.source}) {text}")
    return "\n".join(lines)
