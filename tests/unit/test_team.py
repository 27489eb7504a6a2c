"""The CoA team with scripted models (ReplayChatCompletionClient): orchestration logic only, no model quality."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from autogen_core.models import CreateResult, ModelInfo
from autogen_ext.models.replay import ReplayChatCompletionClient
from conclave.workflows.runner import build_context, run_question
from langchain_core.tools import StructuredTool

from conclave.events import Event
from conclave.settings import load_settings

JSON_INFO: ModelInfo = {
    "vision": False,
    "function_calling": False,
    "json_output": True,
    "structured_output": True,
    "family": "unknown",
}
PENS = (
    "A shop sells pens at 3 dollars each. Tom buys 12 pens and pays with a 50 dollar bill. How much change does he get?"
)
PLAN = json.dumps(
    {
        "subquestions": [
            {"question": "What do 12 pens cost?", "needs": "calculation", "query": ""},
            {"question": "What is the change from 50 dollars?", "needs": "calculation", "query": ""},
        ]
    }
)


class WholeStream(ReplayChatCompletionClient):
    """Streams each scripted reply as one chunk: the replay client's own stream splits on whitespace and would join
    a program's lines into one."""

    async def create_stream(self, messages: Any, **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        kwargs.pop("include_usage", None)
        result = await self.create(messages, **kwargs)
        yield str(result.content)
        yield result


def chain(*steps: tuple[str, str, str, dict[str, Any]], answer: str) -> str:
    return json.dumps(
        {"steps": [{"thought": t, "id": i, "tool": tool, "args": a} for t, i, tool, a in steps], "answer": answer}
    )


GOOD_CHAIN = chain(
    ("12 pens at 3 dollars each", "y1", "calculator", {"expression": "3 * 12"}),
    ("change from the 50 dollar bill", "y2", "calculator", {"expression": "50 - y1"}),
    answer="y2",
)
ACCEPT = json.dumps({"verdict": "accept", "reasons": ["the steps match the question"]})


def calculator_tool() -> StructuredTool:
    from conclave.tools.calculator import evaluate

    def calculator(expression: str) -> str:
        """Evaluate an arithmetic expression exactly."""
        return evaluate(expression).text

    return StructuredTool.from_function(calculator, name="calculator")


def failing_tool() -> StructuredTool:
    def lookup(query: str) -> str:
        """Look something up (always fails)."""
        raise RuntimeError("lookup service is down")

    return StructuredTool.from_function(lookup, name="lookup")


async def run(
    script: list[str],
    *,
    question: str = PENS,
    tools: dict[str, Any] | None = None,
    info: ModelInfo = JSON_INFO,
    method_spec: str = "coa",
    **settings: Any,
) -> tuple[list[Event], ReplayChatCompletionClient]:
    client = WholeStream(script, model_info=info)
    # These scripts open with a plan, write JSON chains and script the critic's verdicts: the defaults (plan auto,
    # program form, critic auto) would skip the planner and the critic and expect a program.
    settings["coa"] = {"plan": "always", "form": "auto", "use_critic": True, **settings.get("coa", {})}
    ctx = await build_context(
        question,
        load_settings(**settings),
        method=method_spec,
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
        tools=tools if tools is not None else {"calculator": calculator_tool()},
        knowledge=False,  # these scenarios need no knowledge store
    )
    events = [e async for e in run_question(ctx)]
    return events, client


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


def answer(events: list[Event]) -> Any:
    return next(e for e in events if e.kind == "answer")


async def test_accept_on_first_try_answers_14() -> None:
    events, _ = await run([PLAN, GOOD_CHAIN, ACCEPT])
    k = kinds(events)
    assert k[0] == "run_started" and k[-1] == "run_finished"
    assert k.index("plan") < k.index("chain") < k.index("step_started") < k.index("critique") < k.index("answer")
    assert answer(events).value == "14"
    # The answer is a sentence with the value; the filled-in chain travels beside it, for the trace.
    assert "**14**" in answer(events).text and "[" not in answer(events).text
    assert "[50 - 36 = 14]" in answer(events).chain
    steps = [e for e in events if e.kind == "step_finished"]
    assert [(s.step_id, s.value, s.status) for s in steps] == [("y1", "36", "ok"), ("y2", "14", "ok")]
    finished = events[-1]
    assert finished.ok and set(finished.usage) == {"planner", "reasoner", "critic"}


async def test_revise_then_accept() -> None:
    wrong = chain(
        ("pens", "y1", "calculator", {"expression": "3 + 12"}),
        ("change", "y2", "calculator", {"expression": "50 - y1"}),
        answer="y2",
    )
    revise = json.dumps({"verdict": "revise", "reasons": ["step y1 adds the price and the count; multiply them"]})
    events, _ = await run([PLAN, wrong, revise, GOOD_CHAIN, ACCEPT])
    critiques = [e for e in events if e.kind == "critique"]
    assert [c.verdict for c in critiques] == ["revise", "accept"]
    assert answer(events).value == "14"
    assert len([e for e in events if e.kind == "chain"]) == 2


async def test_invalid_chain_is_sent_back_and_replanned() -> None:
    broken = chain(
        ("change first", "y1", "calculator", {"expression": "50 - y2"}),
        ("pens", "y2", "calculator", {"expression": "3 * 12"}),
        answer="y1",
    )
    events, client = await run([PLAN, broken, GOOD_CHAIN, ACCEPT])
    rejected = [e for e in events if e.kind == "replan"]
    assert len(rejected) == 1 and any("y2" in err for err in rejected[0].errors)
    assert answer(events).value == "14"


async def test_prose_instead_of_json_ends_with_could_not_build_a_chain() -> None:
    prose = "The answer is fourteen dollars because pens are cheap."
    events, _ = await run([PLAN, prose, prose, prose], max_tokens=512)
    # The first try and one re-plan: the re-plan repeated the same faults, so a second would have nothing new to say.
    assert len([e for e in events if e.kind == "replan"]) == 2
    final = answer(events)
    assert final.value is None
    assert "could not build a valid chain" in final.text


async def test_tool_failure_skips_dependents_and_critic_asks_for_revision() -> None:
    bad = chain(
        ("look up the price", "y1", "lookup", {"query": "pen price"}),
        ("cost of 12 pens", "y2", "calculator", {"expression": "y1 * 12"}),
        answer="y2",
    )
    tools = {"calculator": calculator_tool(), "lookup": failing_tool()}
    events, _ = await run([PLAN, bad, GOOD_CHAIN, ACCEPT], tools=tools)
    first_round = [e for e in events if e.kind == "step_finished"][:2]
    assert [(s.step_id, s.status) for s in first_round] == [("y1", "failed"), ("y2", "skipped")]
    critiques = [e for e in events if e.kind == "critique"]
    assert critiques[0].verdict == "revise" and "y1" in critiques[0].reasons[0]
    assert answer(events).value == "14"


async def test_critic_rounds_are_bounded() -> None:
    revise = json.dumps({"verdict": "revise", "reasons": ["not sure"]})
    variant = GOOD_CHAIN.replace("12 pens at 3 dollars each", "twelve pens, three dollars apiece")
    script = [PLAN, GOOD_CHAIN, revise, variant, revise, GOOD_CHAIN, revise, variant]
    events, _ = await run(script)
    critiques = [e for e in events if e.kind == "critique"]
    assert [c.verdict for c in critiques] == ["revise", "revise", "accept"]
    assert "revision budget spent" in critiques[-1].reasons[-1]
    assert answer(events).value == "14"


async def test_text_form_when_the_backend_has_no_structured_output() -> None:
    info: ModelInfo = {**JSON_INFO, "json_output": False, "structured_output": False}
    text_chain = "Tom pays [3 * 12 = y1] dollars, so his change is [50 - y1 = y2]. Answer: y2"
    events, _ = await run([PLAN, text_chain, ACCEPT], info=info)
    assert next(e for e in events if e.kind == "chain").form == "text"
    assert answer(events).value == "14"


async def test_self_consistency_votes_on_reified_answers() -> None:
    wrong = chain(
        ("pens", "y1", "calculator", {"expression": "3 + 12"}),
        ("change", "y2", "calculator", {"expression": "50 - y1"}),
        answer="y2",
    )
    events, _ = await run([PLAN, wrong, GOOD_CHAIN, GOOD_CHAIN, ACCEPT], coa={"samples": 3})
    vote = next(e for e in events if e.kind == "vote")
    assert vote.winner == "14" and vote.counts == {"35": 1, "14": 2}
    assert answer(events).value == "14"
    samples = {e.sample for e in events if e.kind == "step_finished"}
    assert samples == {0, 1, 2}


async def test_empty_question_is_a_clear_error() -> None:
    from conclave.errors import ConfigError

    with pytest.raises(ConfigError, match="empty"):
        await build_context("   ", load_settings(), clients={"planner": ReplayChatCompletionClient([])})


async def test_backend_failure_becomes_run_failed() -> None:
    from autogen_core.models import ChatCompletionClient

    from conclave.errors import BackendUnavailable

    class Down(ReplayChatCompletionClient):
        async def create(self, *args: Any, **kwargs: Any) -> Any:
            raise BackendUnavailable("Ollama is not running at http://127.0.0.1:9", hint="start it with `ollama serve`")

        async def create_stream(self, *args: Any, **kwargs: Any) -> Any:  # the reasoner streams (no planner call here)
            raise BackendUnavailable("Ollama is not running at http://127.0.0.1:9", hint="start it with `ollama serve`")
            yield

    client: ChatCompletionClient = Down([], model_info=JSON_INFO)
    ctx = await build_context(
        PENS,
        load_settings(),
        method="coa",
        clients={r: client for r in ("planner", "reasoner", "critic", "writer")},
        tools={"calculator": calculator_tool()},
        knowledge=False,
    )
    events = [e async for e in run_question(ctx)]
    failed = next(e for e in events if e.kind == "run_failed")
    assert "not running" in failed.error and "ollama serve" in (failed.hint or "")
    assert events[-1].kind == "run_finished" and not events[-1].ok


async def test_cancelling_a_run_stops_it() -> None:
    slow_events: list[str] = []

    async def consume() -> None:
        events, _ = await run([PLAN, GOOD_CHAIN, ACCEPT])
        slow_events.extend(kinds(events))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "answer" not in slow_events


async def test_a_looping_chain_is_stopped_by_the_step_budget() -> None:
    looping = chain(
        *[(f"add one more pen {i}", f"y{i}", "calculator", {"expression": f"{i} + 1"}) for i in range(1, 9)],
        answer="y8",
    )
    # The replay client serves a reply again when its stream is closed early, so every attempt loops here.
    events, _ = await run([PLAN, looping, looping, looping], coa={"max_steps": 3})
    rejected = [e for e in events if e.kind == "replan"]
    assert len(rejected) == 2  # the second draft looped the same way: no third
    assert all(any("ran past 3 steps" in err for err in r.errors) for r in rejected)
    drafted = [e for e in events if e.kind == "chain"]
    assert all(d.text.count('"id"') <= 4 for d in drafted)  # stopped at the budget, not at the token limit
    assert answer(events).value is None


def test_step_budget_notices_repetition() -> None:
    from conclave.agents.reasoner import StepBudget

    budget = StepBudget(12, json_form=True)
    step = '{"thought": "add the pens", "id": "y%d", "tool": "calculator", "args": {"expression": "1+1"}}, '
    assert not budget.exceeded('{"steps": [' + step % 1 + step % 2)
    assert budget.exceeded('{"steps": [' + step % 1 + step % 2 + step % 3)
    text_budget = StepBudget(2, json_form=False)
    assert not text_budget.exceeded("a [1 + 1 = y1] b [y1 * 2 = y2]")
    assert text_budget.exceeded("a [1 + 1 = y1] b [y1 * 2 = y2] c [y2 - 1 = y3]")


async def test_a_tied_vote_is_broken_by_the_critic() -> None:
    wrong = chain(
        ("pens", "y1", "calculator", {"expression": "3 + 12"}),
        ("change", "y2", "calculator", {"expression": "50 - y1"}),
        answer="y2",
    )
    reject = json.dumps({"verdict": "revise", "reasons": ["y1 should multiply"]})
    events, _ = await run([PLAN, wrong, GOOD_CHAIN, reject, ACCEPT], coa={"samples": 2})
    vote = next(e for e in events if e.kind == "vote")
    assert vote.counts == {"35": 1, "14": 1}
    critique = next(e for e in events if e.kind == "critique")
    assert critique.verdict == "accept" and "tie broken in favour of 14" in critique.reasons[0]
    assert answer(events).value == "14"


class FixedStore:
    """A knowledge store that always finds the same passages (orchestration only; the real store has its tests)."""

    def __init__(self) -> None:
        from conclave.events import Passage

        self.queries: list[str] = []
        self.passages = [
            Passage(
                id="c1", source="notes/optimisers.md", text="Adam combines momentum with RMSprop scaling.", score=0.9
            ),
            Passage(id="c2", source="notes/sgd.md", text="SGD updates weights against the gradient.", score=0.4),
        ]

    async def search(self, query: str, k: int = 5, collection: str | None = None) -> list[Any]:
        self.queries.append(query)
        return self.passages[:k]


KNOWLEDGE_PLAN = json.dumps(
    {
        "subquestions": [
            {"question": "What does Adam combine?", "needs": "knowledge", "query": "Adam optimiser combines"}
        ]
    }
)


async def run_with_store(script: list[str], question: str, **coa: Any) -> tuple[list[Event], FixedStore]:
    client = WholeStream(script, model_info=JSON_INFO)
    store = FixedStore()
    # Scripted as plan, JSON chain, verdict, answer unless ``coa`` says otherwise (the defaults skip two of them).
    coa = {"plan": "always", "form": "auto", "use_critic": True, **coa}
    ctx = await build_context(
        question,
        load_settings(coa=coa),
        method="coa",
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
        tools={"calculator": calculator_tool(), "search_knowledge": search_tool(store)},
    )
    ctx.store = store
    return [e async for e in run_question(ctx)], store


def search_tool(store: FixedStore) -> StructuredTool:
    async def search_knowledge(query: str) -> str:
        """Search the collection."""
        found = await store.search(query)
        return " ".join(p.text for p in found[:1])

    return StructuredTool.from_function(coroutine=search_knowledge, name="search_knowledge")


async def test_retrieval_with_citations() -> None:
    knowledge_chain = chain(
        ("find what Adam combines", "y1", "search_knowledge", {"query": "Adam combines"}), answer="y1"
    )
    events, store = await run_with_store(
        [KNOWLEDGE_PLAN, knowledge_chain, ACCEPT, "Adam combines momentum with RMSprop-style scaling [1]."],
        "What does Adam combine?",
    )
    assert store.queries[:2] == ["Adam optimiser combines", "What does Adam combine?"]
    retrieved = [e for e in events if e.kind == "retrieval"]
    assert [p.id for p in retrieved[0].passages] == ["c1", "c2"]
    final = answer(events)
    assert "[1]" in final.text and [s.id for s in final.sources] == ["c1"]
    deltas = "".join(e.text for e in events if e.kind == "answer_delta")
    assert deltas.strip() == final.text
    assert "writer" in events[-1].usage


async def test_by_default_a_knowledge_question_takes_two_model_calls() -> None:
    """No planner call (the chain writes its own lookup), no critic call (the answer is retrieved text, which the
    writer cites): the reasoner's program and the writer's answer."""
    program = '```python\n# what Adam combines\nadam = search_knowledge("Adam combines")\nanswer = adam\n```'
    events, store = await run_with_store(
        [program, "Adam combines momentum with RMSprop-style scaling [1]."],
        "What does Adam combine?",
        plan="auto",
        form="program",
        use_critic="auto",
    )
    assert store.queries[0] == "What does Adam combine?", "the retriever searched the question itself"
    assert set(events[-1].usage) == {"reasoner", "writer"}
    assert all(events[-1].usage[role]["calls"] == 1 for role in ("reasoner", "writer"))
    critique = next(e for e in events if e.kind == "critique")
    assert critique.verdict == "accept" and "critic not asked" in critique.reasons[0]
    final = answer(events)
    assert final.text.startswith("Adam combines momentum") and [s.id for s in final.sources] == ["c1"]
    assert events[-1].ok


async def test_by_default_an_arithmetic_question_takes_one_model_call() -> None:
    program = "```python\ncost = 3 * 12\nchange = 50 - cost\nanswer = change\n```"
    events, _ = await run([program], coa={"plan": "auto", "form": "program", "use_critic": "auto"})
    assert answer(events).value == "14" and set(events[-1].usage) == {"reasoner"}
    critique = next(e for e in events if e.kind == "critique")
    assert "an arithmetic chain that reified cleanly" in critique.reasons[0]
    # Asked explicitly, the critic's model still judges it.
    events, _ = await run([program, ACCEPT], coa={"plan": "auto", "form": "program", "use_critic": True})
    assert set(events[-1].usage) == {"reasoner", "critic"}


async def test_no_valid_chain_still_answers_from_the_passages_that_support_it() -> None:
    prose = "Adam is great."
    events, _ = await run_with_store(
        [KNOWLEDGE_PLAN, prose, prose, "Adam combines momentum and RMSprop [1]."], "What does Adam combine?"
    )
    final = answer(events)
    # No Answer line: the first sentence stands in, and the passages hold its words.
    assert final.text == "Adam combines momentum and RMSprop [1]."
    assert (final.value, final.basis) == ("Adam combines momentum and RMSprop", "passages") and events[-1].ok
    # One whose words the passages do not hold still says that no chain worked, and is no answer.
    events, _ = await run_with_store(
        [KNOWLEDGE_PLAN, prose, prose, "Adam was invented on Mars [1]."], "What does Adam combine?"
    )
    final = answer(events)
    assert "could not build a valid chain" in final.text and final.value is None and not events[-1].ok


async def test_a_lookup_answered_by_a_chain_that_read_nothing_is_answered_from_the_passages() -> None:
    """A question that needs no computation, given a chain of calculations over numbers from nowhere: the writer
    answers from the passages, or the answer says that nothing checked it."""
    program = "```python\nfees = 12 + 100\nanswer = fees\n```"
    defaults = {"plan": "auto", "form": "program", "use_critic": "auto"}
    events, _ = await run_with_store(
        [program, "Adam combines momentum and RMSprop-style scaling [1].\nAnswer: momentum and RMSprop"],
        "What does Adam combine?",
        **defaults,
    )
    final = answer(events)
    assert (final.value, final.basis) == ("momentum and RMSprop", "passages") and events[-1].ok
    assert "112" not in final.text
    events, _ = await run_with_store([program, "Adam combines 112 things [1]."], "What does Adam combine?", **defaults)
    final = answer(events)
    assert "nothing checked this answer" in final.text and final.value is None and not events[-1].ok


async def test_a_lookups_failed_chain_does_not_unmake_what_the_passages_support() -> None:
    """A lookup question whose chain ran, failed and was rejected: the writer's answer from the passages stands when
    they support it (TAT-QA: "What do the tax fees comprise of?" answered rightly, then marked failed)."""
    broken = '```python\nadam = search_knowledge("Adam")\nratio = 1 / 0\nanswer = ratio\n```'
    reply = "Adam combines momentum and RMSprop-style scaling [1].\nAnswer: momentum and RMSprop"
    events, _ = await run_with_store(
        [broken, broken, reply], "What does Adam combine?", plan="auto", form="program", use_critic="auto"
    )
    assert [e.verdict for e in events if e.kind == "critique"][-1] == "reject"
    final = answer(events)
    assert (final.value, final.basis) == ("momentum and RMSprop", "passages") and events[-1].ok


async def test_an_explanation_is_answered_from_its_passages_without_a_chain() -> None:
    """Why / how does / compare over a collection: no reasoner call, the writer answers from the passages, and the
    plan event says why no chain was written."""
    defaults = {"plan": "auto", "form": "program", "use_critic": "auto"}
    events, _ = await run_with_store(
        ["Adam combines momentum with RMSprop scaling, so steps adapt per weight [1]."],
        "Why does Adam adapt its steps?",
        **defaults,
    )
    plan = next(e for e in events if e.kind == "plan")
    assert plan.route.startswith("no plan: an explanation")
    assert "chain" not in kinds(events) and set(events[-1].usage) == {"writer"}
    final = answer(events)
    assert final.basis == "passages" and final.value and events[-1].ok
    # Switched off, the reasoner writes its chain of lookups as before.
    program = '```python\nadam = search_knowledge("Adam steps")\nanswer = adam\n```'
    events, _ = await run_with_store(
        [program, "Adam scales each weight's step [1]."],
        "Why does Adam adapt its steps?",
        **defaults,
        explain_from_passages=False,
    )
    assert "chain" in kinds(events) and set(events[-1].usage) == {"reasoner", "writer"}
    assert next(e for e in events if e.kind == "plan").route == ""
    # A question that computes is not an explanation to answer from passages.
    events, _ = await run_with_store(
        ["```python\nanswer = 3 * 4\n```"], "How does 3 times 4 compare with 10?", **defaults
    )
    assert next(e for e in events if e.kind == "plan").route == ""


async def test_a_revision_that_repeats_the_chain_ends_the_loop() -> None:
    revise = json.dumps({"verdict": "revise", "reasons": ["check y1"]})
    events, _ = await run([PLAN, GOOD_CHAIN, revise, GOOD_CHAIN, revise, GOOD_CHAIN])
    critiques = [e for e in events if e.kind == "critique"]
    assert [c.verdict for c in critiques] == ["revise", "accept"]
    assert "repeated the same chain" in critiques[-1].reasons[-1]
    assert len([e for e in events if e.kind == "chain"]) == 2


async def test_without_a_collection_the_planner_makes_no_model_call() -> None:
    events, client = await run([GOOD_CHAIN, ACCEPT], coa={"plan": "auto"})
    plan = next(e for e in events if e.kind == "plan")
    assert plan.raw == "" and [s["question"] for s in plan.subquestions] == [PENS]
    assert answer(events).value == "14"
    assert set(events[-1].usage) == {"reasoner", "critic"}


async def test_sampling_stops_early_once_two_chains_agree() -> None:
    # Five chains allowed; the first two agree, so no third chain is drawn and no critic call is needed.
    events, client = await run(
        [GOOD_CHAIN, GOOD_CHAIN, "never used", "never used", "never used"],
        coa={"samples": 5, "agree": 2, "plan": "auto"},
    )
    assert len([e for e in events if e.kind == "chain"]) == 2
    vote = next(e for e in events if e.kind == "vote")
    assert vote.counts == {"14": 2} and vote.answers == ["14", "14"]
    critique = next(e for e in events if e.kind == "critique")
    assert critique.verdict == "accept" and critique.reasons == ["2 of 2 sampled chains agree on 14"]
    assert set(events[-1].usage) == {"reasoner"}
    assert answer(events).value == "14"


async def test_sampling_draws_more_until_an_answer_leads() -> None:
    wrong = chain(
        ("pens", "y1", "calculator", {"expression": "3 + 12"}),
        ("change", "y2", "calculator", {"expression": "50 - y1"}),
        answer="y2",
    )
    other = chain(
        ("pens", "y1", "calculator", {"expression": "3 * 10"}),
        ("change", "y2", "calculator", {"expression": "50 - y1"}),
        answer="y2",
    )
    events, _ = await run(
        [wrong, other, GOOD_CHAIN, GOOD_CHAIN, "never used"], coa={"samples": 5, "agree": 2, "plan": "auto"}
    )
    vote = next(e for e in events if e.kind == "vote")
    assert vote.answers == ["35", "20", "14", "14"] and vote.winner == "14"
    # Each sample's steps ran exactly once, although the reifier ran after every new chain.
    finished = [(e.sample, e.step_id) for e in events if e.kind == "step_finished"]
    assert sorted(finished) == [(i, y) for i in range(4) for y in ("y1", "y2")]
    assert answer(events).value == "14"


async def test_agree_zero_draws_every_sample() -> None:
    events, _ = await run([GOOD_CHAIN, GOOD_CHAIN, GOOD_CHAIN, ACCEPT], coa={"samples": 3, "agree": 0, "plan": "auto"})
    vote = next(e for e in events if e.kind == "vote")
    assert vote.answers == ["14", "14", "14"]


async def test_a_method_variant_sets_coa_options() -> None:
    events, _ = await run([GOOD_CHAIN, GOOD_CHAIN], method_spec="coa:k=3,critic=false,plan=auto")
    assert len([e for e in events if e.kind == "chain"]) == 2
    assert answer(events).value == "14"


def test_examples_of_tools_not_offered_are_left_out_of_the_prompt() -> None:
    from conclave.agents.prompting import load_prompt
    from conclave.agents.reasoner import examples_for_tools

    prompt = load_prompt("reasoner")
    assert "search_knowledge" in prompt
    math_only = examples_for_tools(prompt, {"calculator": object()})
    assert "search_knowledge" not in math_only and "Natalia" in math_only and "Weng" in math_only
    assert examples_for_tools(prompt, {"calculator": object(), "search_knowledge": object()}) == prompt
