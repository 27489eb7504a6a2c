"""``reify``: levels run concurrently, whole-placeholder substitution, failures skip their dependents, timeouts,
live events. Each defect of the LlamaIndex CoA pack (issue 4) is a case here or in test_coa_validate.py."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from conclave.tools.calculator import evaluate
from conclave.workflows.coa import (
    InvalidChainError,
    ReifiedChain,
    chain_levels,
    parse_chain,
    reify,
    value_text,
)
from langchain_core.tools import BaseTool, StructuredTool, ToolException

from conclave.events import Event, StepFinished, StepStarted


class Recorder:
    """Tools that record every call (arguments as received, with their Python types)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def tools(self) -> dict[str, BaseTool]:
        def calculator(expression: str) -> str:
            """Evaluate arithmetic."""
            self.calls.append(("calculator", {"expression": expression}))
            return evaluate(expression).text

        def search(query: str, k: int = 4, exact: bool = False) -> str:
            """Search."""
            self.calls.append(("search", {"query": query, "k": k, "exact": exact}))
            return {"capital of Australia": "Canberra"}.get(query, f"found: {query}")

        def listing(n: int) -> list[str]:
            """List n items."""
            self.calls.append(("listing", {"n": n}))
            return [f"item{i}" for i in range(n)]

        def count(items: list[str]) -> int:
            """Count items."""
            self.calls.append(("count", {"items": items}))
            return len(items)

        def broken(query: str) -> str:
            """Always fails."""
            self.calls.append(("broken", {"query": query}))
            raise ToolException(f"the index for {query!r} is unavailable")

        async def hang(query: str) -> str:
            """Never answers."""
            self.calls.append(("hang", {"query": query}))
            await asyncio.sleep(3600)
            return "never"

        async def sleep_a(seconds: float) -> str:
            """Sleep, then answer a."""
            await asyncio.sleep(seconds)
            return "a"

        async def sleep_b(seconds: float) -> str:
            """Sleep, then answer b."""
            await asyncio.sleep(seconds)
            return "b"

        def block(seconds: float) -> str:
            """A synchronous tool that blocks its thread."""
            time.sleep(seconds)
            return "done"

        tools: list[BaseTool] = [
            StructuredTool.from_function(f) for f in (calculator, search, listing, count, broken, block)
        ]
        tools += [StructuredTool.from_function(coroutine=f) for f in (hang, sleep_a, sleep_b)]
        return {t.name: t for t in tools}


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


async def run(text: str, rec: Recorder, **kwargs: Any) -> ReifiedChain:
    return await reify(parse_chain(text), rec.tools(), **kwargs)


async def test_design_doc_example(rec: Recorder) -> None:
    result = await run("Tom pays [3 * 12 = y1] dollars for the pens, so his change is [50 - y1 = y2]. Answer: y2", rec)
    assert result.ok
    assert result.answer_value == "14"
    assert [r.text for r in result.results.values()] == ["36", "14"]
    assert result.filled_text() == (
        "Tom pays [3 * 12 = 36] dollars for the pens, so his change is [50 - 36 = 14].\nAnswer: 14"
    )
    assert result.levels == (("y1",), ("y2",))


async def test_independent_calls_overlap(rec: Recorder) -> None:
    """Two independent tools that each sleep 1 s run at the same time (recorded times, not wall clock)."""
    result = await run("[sleep_a(1.0) -> y1] [sleep_b(seconds=1.0) -> y2] [search(y1 + y2) -> y3] Answer: y3", rec)
    a, b, joined = result.results["y1"], result.results["y2"], result.results["y3"]
    assert a.ok and b.ok and joined.ok
    assert a.started < b.ended and b.started < a.ended, "the two sleeps did not overlap"
    assert a.seconds >= 1.0 and b.seconds >= 1.0
    assert joined.started >= max(a.ended, b.ended)
    assert result.levels == (("y1", "y2"), ("y3",))
    assert result.answer_value == "found: ab"


async def test_synchronous_tools_overlap_too(rec: Recorder) -> None:
    result = await run("[block(0.3) -> y1] [block(0.3) -> y2] Answer: y1", rec, timeout=10)
    a, b = result.results["y1"], result.results["y2"]
    assert a.started < b.ended and b.started < a.ended


async def test_y1_is_not_substituted_inside_y10(rec: Recorder) -> None:
    result = await run(
        '[2 = y1] [10 = y2] [1 + y2 = y10] [y10 * 100 + y1 = y11] [search("y10 then y1") -> y12] Answer: y11', rec
    )
    assert result.results["y11"].args == {"expression": "11 * 100 + 2"}
    assert result.answer_value == "1102"
    assert result.results["y12"].args["query"] == "11 then 2"


async def test_string_arguments_with_commas_reach_the_tool_whole(rec: Recorder) -> None:
    await run('[search("Smith, J. (2020), \\"On commas\\", p. 3", 2) -> y1] Answer: y1', rec)
    assert rec.calls == [("search", {"query": 'Smith, J. (2020), "On commas", p. 3', "k": 2, "exact": False})]


async def test_keyword_arguments_keep_their_json_types(rec: Recorder) -> None:
    result = await run('[search("q", k=3, exact=true) -> y1] Answer: y1', rec)
    assert result.results["y1"].args == {"query": "q", "k": 3, "exact": True}
    [(_, received)] = rec.calls
    assert type(received["k"]) is int and received["exact"] is True


async def test_concatenation_and_structured_values(rec: Recorder) -> None:
    result = await run(
        '[search("capital of Australia") -> y1] [search("population of " + y1) -> y2] '
        "[listing(3) -> y3] [count(y3) -> y4] Answer: y4",
        rec,
    )
    assert result.results["y2"].args == {"query": "population of Canberra"}
    assert rec.calls[-1] == ("count", {"items": ["item0", "item1", "item2"]})
    assert result.answer_value == "3"


async def test_a_ranked_search_result_enters_a_later_query_as_its_top_passage() -> None:
    """A two-hop chain's second query gets the first search's top passage (clipped), not the ranked list with its
    ids, sources and scores; a plain value still enters whole."""
    from conclave.tools.toolset import format_passages
    from conclave.workflows.coa.reify import GIST_CHARS

    from conclave.events import Passage

    queries: list[str] = []
    long_text = "Sir Alex Ferguson signed David Beckham as a trainee in 1991. " * 10

    def search_knowledge(query: str) -> str:
        """Search."""
        queries.append(query)
        return format_passages(
            [
                Passage("Alex Ferguson", "hotpot", long_text, 0.61, "Alex Ferguson"),
                Passage("Other", "hotpot", "Something else.", 0.2),
            ]
        )

    tools = {"search_knowledge": StructuredTool.from_function(search_knowledge)}
    result = await reify(
        parse_chain(
            '[search_knowledge("who recruited Beckham") -> y1] '
            '[search_knowledge("when did " + y1 + " manage United") -> y2] Answer: y2'
        ),
        tools,
    )
    assert result.ok
    second = queries[1]
    assert second.startswith("when did Alex Ferguson — Sir Alex Ferguson signed") and second.endswith(" manage United")
    assert "score" not in second and "[Alex Ferguson]" not in second
    assert len(second) == len("when did ") + GIST_CHARS + len(" manage United")


async def test_failed_call_skips_its_dependents_only(rec: Recorder) -> None:
    result = await run(
        '[broken("gdp") -> y1] [y1 * 2 = y2] [y2 + 1 = y3] [5 * 5 = y4] [search("x " + y1) -> y5] Answer: y3', rec
    )
    statuses = {sid: r.status for sid, r in result.results.items()}
    assert statuses == {"y1": "failed", "y2": "skipped", "y3": "skipped", "y4": "ok", "y5": "skipped"}
    assert "the index for 'gdp' is unavailable" in (result.results["y1"].error or "")
    assert result.results["y2"].error == "not run: it needs y1 (failed)"
    assert result.results["y3"].error == "not run: it needs y2 (skipped)"
    # Dependents never ran, so no tool ever saw a literal "y1".
    assert [name for name, _ in rec.calls] == ["broken", "calculator"]
    assert all("y1" not in str(args) for _, args in rec.calls[1:])
    assert result.answer_value is None and not result.ok
    assert result.failures()[0].startswith("y1 (broken): failed:")
    assert "[y1 * 2 = y2]" in result.filled_text() and "[5 * 5 = 25]" in result.filled_text()


async def test_calculator_error_is_a_failed_step(rec: Recorder) -> None:
    result = await run("[1 / 0 = y1] Answer: y1", rec)
    assert result.results["y1"].status == "failed"
    assert "division by zero" in (result.results["y1"].error or "")


async def test_hanging_tool_times_out(rec: Recorder) -> None:
    result = await run('[hang("q") -> y1] [search(y1) -> y2] [2 + 2 = y3] Answer: y2', rec, timeout=0.2)
    hung = result.results["y1"]
    assert hung.status == "timeout"
    assert hung.error == "hang did not finish within 0.2 s"
    assert 0.2 <= hung.seconds < 5
    assert result.results["y2"].status == "skipped"
    assert result.results["y3"].text == "4"


async def test_events_report_progress(rec: Recorder) -> None:
    seen: list[Event] = []
    result = await run('[broken("q") -> y1] [y1 + 1 = y2] [3 * 4 = y3] Answer: y3', rec, on_event=seen.append, sample=2)
    kinds = [(type(e).__name__, e.step_id) for e in seen]
    assert ("StepStarted", "y1") in kinds and ("StepStarted", "y3") in kinds
    assert ("StepStarted", "y2") not in kinds, "a skipped step never starts"
    finished = {e.step_id: e for e in seen if isinstance(e, StepFinished)}
    assert {sid: e.status for sid, e in finished.items()} == {"y1": "failed", "y2": "skipped", "y3": "ok"}
    assert finished["y3"].value == "12" and finished["y3"].started == result.results["y3"].started
    assert all(e.sample == 2 for e in seen if isinstance(e, (StepStarted, StepFinished)))
    for sid in ("y1", "y3"):
        assert kinds.index(("StepStarted", sid)) < kinds.index(("StepFinished", sid))
    started = next(e for e in seen if isinstance(e, StepStarted) and e.step_id == "y3")
    assert started.args == {"expression": "3 * 4"} and started.tool == "calculator"


async def test_async_event_callback(rec: Recorder) -> None:
    seen: list[str] = []

    async def on_event(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(event.kind)

    await run("[1 + 1 = y1] Answer: y1", rec, on_event=on_event)
    assert seen == ["step_started", "step_finished"]


async def test_invalid_chain_is_refused_with_the_validation_errors(rec: Recorder) -> None:
    with pytest.raises(InvalidChainError) as info:
        await run("[y2 + 1 = y1] [y1 + 1 = y2] [nope() -> y3] Answer: y3", rec)
    assert [e.code for e in info.value.errors] == ["cycle", "unknown_tool"]
    assert rec.calls == []


async def test_template_answer_and_case_drifted_tool_names(rec: Recorder) -> None:
    result = await run('[FUNC Calculator("3 * 12") = y1] [SEARCH("q") -> y2] Answer: y1 dollars', rec)
    assert result.answer_value == "36 dollars"
    assert [r.tool for r in result.results.values()] == ["calculator", "search"]
    assert result.to_dict()["steps"][0]["args"] == {"expression": "3 * 12"}


def test_levels() -> None:
    chain = parse_chain("[1 = y1] [2 = y2] [y1 + y2 = y3] [y3 + 1 = y4] [y1 + 5 = y5] Answer: y4")
    assert chain_levels(chain) == (("y1", "y2"), ("y3", "y5"), ("y4",))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (" 36 ", "36"),
        (36, "36"),
        (36.0, "36"),
        (0.5, "0.5"),
        (True, "true"),
        (Fraction(3, 1), "3"),
        (Fraction(1, 4), "0.25"),
        (Decimal("2.50"), "2.5"),
        (["a", 1], '["a", 1]'),
        ({"k": "v"}, '{"k": "v"}'),
        (evaluate("1/3"), evaluate("1/3").text),
    ],
)
def test_value_text(value: Any, text: str) -> None:
    assert value_text(value) == text


async def test_with_the_registered_tools() -> None:
    """The real tool registry: validation against its schemas, and the pens example through its calculator."""
    from conclave.tools.toolset import build_tools
    from conclave.workflows.coa import validate

    from conclave.settings import load_settings

    tools = build_tools(load_settings())
    chain = parse_chain(
        "A shop sells pens at 3 dollars each; Tom buys 12 [3 * 12 = y1] and pays with a 50 dollar bill, "
        "so his change is [50 - y1 = y2]. Answer: y2"
    )
    assert validate(chain, tools) == []
    result = await reify(chain, tools)
    assert result.answer_value == "14"
    bad = parse_chain('[search_knowledge("q", k=0) -> y1] [calculator(expression="1", digits=2) -> y2] Answer: y2')
    # k is the run's, not the model's: a chain that passes it names an argument the tool does not offer.
    assert [(e.code, e.step_id) for e in validate(bad, tools)] == [("unknown_arg", "y1"), ("unknown_arg", "y2")]


async def test_placeholder_in_prose_is_filled_but_not_a_dependency(rec: Recorder) -> None:
    result = await run("So y1 is the cost and y9 is nothing: [3 * 12 = y1]. Answer: y1 dollars", rec)
    assert result.ok and result.levels == (("y1",),)
    assert result.filled_text() == "So 36 is the cost and y9 is nothing: [3 * 12 = 36].\nAnswer: 36 dollars"
