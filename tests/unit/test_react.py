"""The react baseline with a scripted model: tool calls interleaved, events out."""

from __future__ import annotations

from autogen_core import FunctionCall
from autogen_core.models import CreateResult, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient
from conclave.workflows.runner import build_context, run_question

from conclave.settings import load_settings
from tests.unit.test_team import PENS, calculator_tool

TOOL_INFO: ModelInfo = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "structured_output": True,
    "family": "unknown",
}


def call(name: str, arguments: str) -> CreateResult:
    return CreateResult(
        finish_reason="function_calls",
        content=[FunctionCall(id=name + arguments, name=name, arguments=arguments)],
        usage=RequestUsage(prompt_tokens=10, completion_tokens=5),
        cached=False,
    )


async def test_react_calls_tools_in_turn_and_answers() -> None:
    client = ReplayChatCompletionClient(
        [
            call("calculator", '{"expression": "3 * 12"}'),
            call("calculator", '{"expression": "50 - 36"}'),
            "Tom gets 14 dollars back.\nAnswer: 14",
        ],
        model_info=TOOL_INFO,
    )
    ctx = await build_context(
        PENS,
        load_settings(),
        method="react",
        clients={r: client for r in ("planner", "reasoner", "critic", "writer")},
        tools={"calculator": calculator_tool()},
        knowledge=False,
    )
    events = [e async for e in run_question(ctx)]
    calls = [e for e in events if e.kind == "tool_call"]
    assert [(c.tool, c.result) for c in calls] == [("calculator", "36"), ("calculator", "14")]
    # Tool and model time are measured (the orchestration benchmark splits a run's wall time with them).
    usages = [e for e in events if e.kind == "usage"]
    assert usages and all(u.seconds > 0 for u in usages) and all(c.seconds > 0 for c in calls)
    assert sum(u.seconds for u in usages) + sum(c.seconds for c in calls) <= events[-1].seconds
    final = next(e for e in events if e.kind == "answer")
    assert final.value == "14"
    assert events[-1].kind == "run_finished" and events[-1].ok
