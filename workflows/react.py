"""The ``react`` baseline: an AutoGen ``AssistantAgent`` calling the same tools interleaved with its reasoning.

Decoding waits on every tool call here — the cost chain-of-abstraction avoids — so this is the comparison that
matters for the paper's claim. Iterations are bounded.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import (
    ModelClientStreamingChunkEvent,
    TextMessage,
    ToolCallExecutionEvent,
    ToolCallRequestEvent,
    ToolCallSummaryMessage,
)
from conclave.agents.prompting import answer_prompt
from conclave.workflows.answers import answer_value
from conclave.workflows.context import RunContext

from conclave import nesting
from conclave.events import AnswerDelta, AnswerReady, Event, ToolCalled, Usage
from conclave.models import client_name

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

MAX_TOOL_ITERATIONS = 6


async def run_react(ctx: RunContext) -> AsyncIterator[Event]:
    """Answer with a tool-calling assistant; yields tool calls, usage and the streamed answer."""
    from conclave.workflows.team import available_tools

    store = ctx.store
    if store is None and ctx.collection:
        from conclave.workflows.team import open_store

        store = await open_store(ctx)
    tools = ctx.tools if ctx.tools is not None else available_tools(ctx.settings, store, ctx.collection, ctx.source)
    client = ctx.clients["reasoner"]
    agent = AssistantAgent(
        "reasoner",
        model_client=client,
        tools=to_autogen_tools(tools),
        system_message=answer_prompt("react", ctx.settings),
        max_tool_iterations=MAX_TOOL_ITERATIONS,
        reflect_on_tool_use=True,
        model_client_stream=True,
    )
    pending: dict[str, tuple[str, dict]] = {}
    final = ""
    streamed = False
    model = client_name(client)
    # Model time: from the last boundary (start, or a tool's result) to the message carrying the call's usage;
    # tool time: from the tool call request to its result.
    mark = time.perf_counter()
    async for item in agent.run_stream(task=ctx.question):
        if isinstance(item, TaskResult):
            continue  # let the stream end by itself: closing it early trips AutoGen's telemetry context
        usage = getattr(item, "models_usage", None)
        if usage is not None and (usage.prompt_tokens or usage.completion_tokens):
            now = time.perf_counter()
            yield Usage(
                agent="reasoner",
                model=model,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                seconds=now - mark,
            )
            mark = now
        if isinstance(item, ModelClientStreamingChunkEvent):
            streamed = True
            yield AnswerDelta(text=item.content, agent="reasoner")
        elif isinstance(item, ToolCallRequestEvent):
            for call in item.content:
                try:
                    args = nesting.loads(call.arguments or "{}")
                except json.JSONDecodeError:
                    args = {"raw": call.arguments}
                pending[call.id] = (call.name, args)
            mark = time.perf_counter()
        elif isinstance(item, ToolCallExecutionEvent):
            now = time.perf_counter()
            for res in item.content:
                name, args = pending.pop(res.call_id, (res.name, {}))
                yield ToolCalled(
                    tool=name, args=args, result=res.content, is_error=bool(res.is_error), seconds=now - mark
                )
            mark = now
        elif isinstance(item, TextMessage | ToolCallSummaryMessage) and item.source == "reasoner":
            final = item.content
    if final and not streamed:
        yield AnswerDelta(text=final, agent="reasoner")
    yield AnswerReady(text=final.strip(), value=answer_value(final))


def to_autogen_tools(tools: Mapping[str, BaseTool] | Iterable[BaseTool]) -> list[Any]:
    """The tools wrapped for AutoGen agents (autogen-ext's LangChainToolAdapter); AutoGen stays out of ``tools/``."""
    from autogen_ext.tools.langchain import LangChainToolAdapter

    items = tools.values() if isinstance(tools, Mapping) else tools
    return [LangChainToolAdapter(t) for t in items]
