"""The reasoner in the program form (issue 14): free decoding parsed line by line, and a slow tool that starts before
the scripted model has finished writing the chain. Orchestration only: the model is scripted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from autogen_core.models import CreateResult
from autogen_ext.models.replay import ReplayChatCompletionClient
from conclave.workflows.runner import build_context, run_question
from langchain_core.tools import StructuredTool

from conclave.settings import load_settings
from tests.unit.test_team import JSON_INFO, PENS, calculator_tool

LOOKUPS = """```python
# the unit price of a pen
price = slow_lookup("price of one pen")
# twelve pens at that price
cost = price * 12
# change from a 50 dollar bill
change = 50 - cost
answer = change
```
The program is done."""


class SlowStream(ReplayChatCompletionClient):
    """Streams its scripted replies one character at a time, ``delay`` seconds apart (a model decoding)."""

    def __init__(self, replies: list[str], delay: float):
        super().__init__(replies, model_info=JSON_INFO)
        self.delay = delay
        self.sent = 0  # characters streamed so far

    async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        kwargs.pop("include_usage", None)
        result = await self.create(messages, **kwargs)  # the next reply, whole (newlines kept)
        for ch in str(result.content):
            await asyncio.sleep(self.delay)
            self.sent += 1
            yield ch
        yield result


def slow_lookup_tool(calls: list[int], client: SlowStream) -> StructuredTool:
    async def slow_lookup(query: str) -> str:
        """Look up a fact (takes a second)."""
        calls.append(client.sent)  # how much of the chain the model had written when the tool started
        await asyncio.sleep(1.0)
        return "3"

    def sync(query: str) -> str:
        """Look up a fact (the async path is the one used)."""
        raise AssertionError("the async path is used")

    return StructuredTool.from_function(func=sync, coroutine=slow_lookup, name="slow_lookup")


async def test_a_slow_tool_starts_while_the_chain_is_still_being_written() -> None:
    calls: list[int] = []
    # ~290 characters at 5 ms: about 1.4 s of decoding after the first line, which the 1 s lookup overlaps.
    client = SlowStream([LOOKUPS], delay=0.005)
    settings = load_settings(coa={"form": "program", "use_critic": False, "plan": "never"})
    ctx = await build_context(
        PENS,
        settings,
        method="coa",
        knowledge=False,
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
        tools={"calculator": calculator_tool(), "slow_lookup": slow_lookup_tool(calls, client)},
    )
    events = [e async for e in run_question(ctx)]
    answer = next(e for e in events if e.kind == "answer")
    assert answer.value == "14", [e.to_dict() for e in events if e.kind in ("replan", "answer")]
    assert len(calls) == 1, "the eager run is reused: the tool runs once"
    chain = next(e for e in events if e.kind == "chain")
    lookup_started = next(e for e in events if e.kind == "step_started" and e.tool == "slow_lookup")
    # The tool started before the model had finished writing the chain (an order of events, not a timing: how much
    # time that saves is measured in bench/program_overlap.py).
    assert lookup_started.at < chain.at
    program_end = LOOKUPS.index("```", 3) + 3
    assert calls[0] < LOOKUPS.index("change = 50"), (calls, program_end)
    assert client.sent <= program_end + 1, "decoding stopped at the closing fence"
    # Decoding stopped at the closing fence: the prose after it was never read.
    assert "The program is done" not in chain.text


async def test_a_rejected_program_goes_back_with_its_errors() -> None:
    bad = "```python\nimport math\ncost = math.sqrt(36) * 12\nanswer = cost\n```"
    good = "```python\ncost = 3 * 12\nchange = 50 - cost\nanswer = change\n```"
    client = SlowStream([bad, good], delay=0)
    settings = load_settings(coa={"form": "program", "use_critic": False, "plan": "never"})
    ctx = await build_context(
        PENS,
        settings,
        method="coa",
        knowledge=False,
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
        tools={"calculator": calculator_tool()},
    )
    events = [e async for e in run_question(ctx)]
    replans = [e for e in events if e.kind == "replan"]
    assert len(replans) == 1 and any("imports are not allowed" in err for err in replans[0].errors)
    assert any("not math.sqrt" in err for err in replans[0].errors)
    assert next(e for e in events if e.kind == "answer").value == "14"
    chains = [e for e in events if e.kind == "chain"]
    assert [c.form for c in chains] == ["program", "program"]


class Recording(SlowStream):
    """Records the messages and the sampling arguments of every request."""

    def __init__(self, replies: list[str]):
        super().__init__(replies, delay=0)
        self.requests: list[tuple[list[Any], dict[str, Any]]] = []

    async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        self.requests.append((list(messages), dict(kwargs.get("extra_create_args") or {})))
        async for item in super().create_stream(messages, **kwargs):
            yield item


def program(total: str) -> str:
    return f"```python\ncost = 3 * 12\nchange = {total} - cost\nanswer = change\n```"


async def _run(client: Recording, **coa: Any) -> list[Any]:
    settings = load_settings(coa={"form": "program", "use_critic": False, "plan": "never", **coa})
    ctx = await build_context(
        PENS,
        settings,
        method="coa",
        knowledge=False,
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
        tools={"calculator": calculator_tool()},
    )
    return [e async for e in run_question(ctx)]


async def test_candidates_of_different_forms_each_forms_first_is_greedy() -> None:
    client = Recording([program("50"), program("50"), program("51")])
    events = await _run(client, samples=3, agree=0, forms="program+program-y+program")
    assert [c.form for c in events if c.kind == "chain"] == ["program", "program-y", "program"]
    (first, greedy), (second, greedy_y), (_, warm) = client.requests
    assert "temperature" not in greedy and "temperature" not in greedy_y, "each form's first sample is greedy"
    assert warm["temperature"] == 0.7, "a form's second sample is warm"
    assert "y1 = 48 / 2" in second[0].content and "name the quantities y1, y2" in second[0].content
    assert "may_clips = 48 / 2" in first[0].content and "y1 = 48 / 2" not in first[0].content
    vote = next(e for e in events if e.kind == "vote")
    assert vote.answers == ["14", "14", "15"] and vote.winner == "14"


async def test_the_greedy_samples_vote_can_weigh_more() -> None:
    # Sample 0 says 14; two warm samples agree on 15.
    plain = await _run(Recording([program("50"), program("51"), program("51")]), samples=3, agree=0)
    assert next(e for e in plain if e.kind == "answer").value == "15"
    weighted = await _run(Recording([program("50"), program("51"), program("51")]), samples=3, agree=0, greedy_weight=2)
    assert next(e for e in weighted if e.kind == "answer").value == "14", "2 against 2: the tie goes to sample 0"


async def test_a_replan_is_drawn_warm_so_it_does_not_repeat_the_rejected_program() -> None:
    bad = "```python\ntotal = 3 * 12\ntotal += 1\nanswer = total\n```"
    client = Recording([bad, program("50")])
    events = await _run(client)
    replan = next(e for e in events if e.kind == "replan")
    assert any("total_2 = total + 1" in err for err in replan.errors), replan.errors
    (_, first), (_, second) = client.requests
    assert "temperature" not in first and second["temperature"] == 0.7
    assert next(e for e in events if e.kind == "answer").value == "14"
