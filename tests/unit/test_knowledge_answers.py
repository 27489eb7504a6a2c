"""Knowledge answers (issue 15): a short "Answer:" line that exact match and F1 score, lookup questions that the
reasoner keeps abstract, and a writer that reads what the chain's searches found. Scripted models: orchestration
only (the answers' quality is measured in docs/QUALITY.md)."""

from __future__ import annotations

from typing import Any

from autogen_core.models import CreateResult
from conclave.tools.toolset import format_passages, parse_passages
from conclave.workflows.answers import answer_value
from conclave.workflows.runner import build_context, run_question
from langchain_core.tools import StructuredTool

from conclave.events import Event, Passage
from conclave.settings import load_settings
from tests.unit.test_team import JSON_INFO, WholeStream, answer, calculator_tool

PASSAGES = {
    "Adam": [
        Passage("opt#1", "notes/optimisers.md", "Adam combines momentum with RMSprop scaling.", 0.8, "Optimisers")
    ],
    "RMSprop": [
        Passage("opt#2", "notes/optimisers.md", "RMSprop divides the gradient by a running RMS.", 0.7),
        Passage("opt#1", "notes/optimisers.md", "Adam combines momentum with RMSprop scaling.", 0.5),
    ],
}


class Recording(WholeStream):
    """A scripted client that keeps the messages of every call."""

    def __init__(self, script: list[str]) -> None:
        super().__init__(script, model_info=JSON_INFO)
        self.calls: list[list[Any]] = []

    async def create(self, messages: Any, **kwargs: Any) -> CreateResult:
        self.calls.append(list(messages))
        return await super().create(messages, **kwargs)


class WordStore:
    """Finds the passages of the first key word in the query (the real store has its own tests)."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def search(self, query: str, k: int = 5, collection: str | None = None) -> list[Passage]:
        self.queries.append(query)
        key = next((w for w in PASSAGES if w.lower() in query.lower()), "Adam")
        return PASSAGES[key][:k]


def search_tool(store: WordStore) -> StructuredTool:
    async def search_knowledge(query: str) -> str:
        """Search the collection."""
        return format_passages(await store.search(query))

    return StructuredTool.from_function(coroutine=search_knowledge, name="search_knowledge")


async def run(method: str, script: list[str], question: str) -> tuple[list[Event], Recording, WordStore]:
    client = Recording(script)
    store = WordStore()
    ctx = await build_context(
        question,
        load_settings(coa={"plan": "auto", "form": "program", "use_critic": "auto"}),
        method=method,
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
        tools={"calculator": calculator_tool(), "search_knowledge": search_tool(store)},
    )
    ctx.store = store
    return [e async for e in run_question(ctx)], client, store


def text_of(messages: list[Any]) -> str:
    return "\n".join(str(m.content) for m in messages)


def test_parse_passages_reads_what_format_passages_writes() -> None:
    found = parse_passages(format_passages(PASSAGES["RMSprop"] + PASSAGES["Adam"]))
    assert [p.id for p in found] == ["opt#2", "opt#1", "opt#1"]
    assert found[0].text == "RMSprop divides the gradient by a running RMS." and found[0].score == 0.7
    assert found[2].text == "Optimisers — Adam combines momentum with RMSprop scaling.", "the title stays with the text"
    assert parse_passages("No passages found.") == [] and parse_passages("") == []


def test_the_answer_line_is_read_on_its_own_line_or_after_the_last_sentence() -> None:
    assert answer_value("Coldplay led it [1].\nAnswer: Coldplay.") == "Coldplay"
    assert answer_value("This is stated in [1] and [2]. Answer: Coldplay") == "Coldplay"
    assert answer_value("**Answer: Super Bowl XLVII**") == "Super Bowl XLVII"
    assert answer_value("The answer: it depends on the passages.") is None
    assert answer_value("Answer: **") is None


def test_lookup_questions_are_told_apart_from_arithmetic() -> None:
    from conclave.agents.reasoner import is_lookup_question

    tools = {"calculator": object(), "search_knowledge": object()}
    assert is_lookup_question("Which NFL team represented the AFC at Super Bowl 50?", tools)
    assert not is_lookup_question("Tom buys 12 pens at 3 dollars each. What does he pay?", tools)
    assert not is_lookup_question("Which NFL team represented the AFC at Super Bowl 50?", {"calculator": object()})


async def test_a_lookup_chain_is_written_without_passages_and_read_by_the_writer() -> None:
    program = (
        '```python\n# which optimiser Adam takes its scaling from\nscaling = search_knowledge("Adam scaling")\n'
        '# what that optimiser divides by\ndivides = search_knowledge("what RMSprop divides by")\nanswer = divides\n```'
    )
    reply = "RMSprop divides the gradient by a running RMS [2].\nAnswer: a running RMS of the gradient"
    events, client, store = await run("coa", [program, reply], "What does the optimiser Adam borrows from divide by?")
    reasoner, writer = client.calls
    # The reasoner sees the lookup examples only, and no passages: its chain stays abstract.
    assert "Natalia" not in text_of(reasoner) and "water damage" in text_of(reasoner)
    assert "Passages:" not in text_of(reasoner)
    # The writer reads the question's own passages (the retriever's: what rag reads) and what the chain's searches
    # found, interleaved by rank and without repeats: the question's top passage, then the second search's.
    written = str(writer[-1].content)
    assert "[1] (notes/optimisers.md) Adam combines" in written
    assert "[2] (notes/optimisers.md) RMSprop divides the gradient" in written and "[3]" not in written
    assert "Answer:" in written and "Eiffel" in text_of(writer), "the format is shown and reminded"
    final = answer(events)
    assert final.value == "a running RMS of the gradient", "the short answer is the writer's Answer line"
    assert [s.id for s in final.sources] == ["opt#2"]
    assert store.queries[1:] == ["Adam scaling", "what RMSprop divides by"]
    assert events[-1].ok and set(events[-1].usage) == {"reasoner", "writer"}


async def test_an_arithmetic_question_over_a_collection_keeps_its_examples_and_passages() -> None:
    program = "```python\ncost = 3 * 12\nchange = 50 - cost\nanswer = change\n```"
    events, client, _ = await run(
        "coa", [program], "Tom buys 12 pens at 3 dollars each and pays with 50 dollars. What is his change?"
    )
    assert "Natalia" in text_of(client.calls[0]) and "Passages:" in text_of(client.calls[0])
    final = answer(events)
    assert final.value == "14" and final.text == "The change is **14**."
    # A chain of calculations is answered from its own values: no writer call, and no passages cited that the
    # answer does not rest on (the retriever's passages for this question are about something else).
    assert len(client.calls) == 1 and final.sources == []


async def test_rag_and_direct_show_the_answer_format_and_score_the_answer_line() -> None:
    events, client, _ = await run(
        "rag",
        ["Adam combines momentum with RMSprop scaling [1].\nAnswer: momentum and RMSprop"],
        "What does Adam combine?",
    )
    assert "Eiffel" in text_of(client.calls[0]) and str(client.calls[0][-1].content).endswith('in a few words>".')
    assert answer(events).value == "momentum and RMSprop"
    events, client, _ = await run("direct", ["Paris is the capital.\nAnswer: Paris"], "What is the capital of France?")
    assert "Answer: Paris" in text_of(client.calls[0][:-1]) and answer(events).value == "Paris"


async def test_rag_cot_reads_the_same_passages_as_rag() -> None:
    """Chain-of-thought compared with the team on documents (``rag-cot``) gets the question's passages, as ``rag``
    does; plain ``cot`` reads none."""
    reply = "Adam combines momentum with RMSprop scaling [1].\nAnswer: momentum and RMSprop"
    rag_events, _, _ = await run("rag", [reply], "What does Adam combine?")
    events, client, store = await run("rag-cot", [reply], "What does Adam combine?")
    assert store.queries == ["What does Adam combine?"]
    retrieved = [e for e in events if e.kind == "retrieval"]
    rag_retrieved = [e for e in rag_events if e.kind == "retrieval"]
    assert [p.id for p in retrieved[0].passages] == [p.id for p in rag_retrieved[0].passages]
    prompt = str(client.calls[0][-1].content)
    assert "Adam combines momentum with RMSprop scaling." in prompt and "Think step by step" in prompt
    final = answer(events)
    assert final.value == "momentum and RMSprop" and [p.id for p in final.sources] == ["opt#1"]
    events, client, store = await run("cot", [reply], "What does Adam combine?")
    assert store.queries == [] and "retrieval" not in [e.kind for e in events]


async def test_a_lookup_program_that_cannot_run_keeps_its_searches_without_a_replan() -> None:
    # Qwen2.5-Coder wrote this for a HotpotQA question; three re-plans repeated the subscript.
    program = (
        '```python\n# search for the optimiser Adam borrows from\nborrowed = search_knowledge("RMSprop in Adam")\n'
        "# take its second word\nword = borrowed.split()[1]\nanswer = word\n```"
    )
    reply = "RMSprop divides the gradient by a running RMS [1].\nAnswer: a running RMS"
    events, client, store = await run("coa", [program, reply], "What does the optimiser Adam borrows from divide by?")
    assert len(client.calls) == 2, "no re-plan: the reasoner's draft and the writer"
    assert [e.kind for e in events].count("replan") == 0
    kept = [e for e in events if e.kind == "chain"][-1]
    assert kept.text.startswith("(kept the chain's searches; the rest could not run: line 4: ")
    assert store.queries[1:] == ["RMSprop in Adam"]
    final = answer(events)
    assert final.value == "a running RMS" and events[-1].ok


async def test_an_arithmetic_program_that_cannot_run_is_still_sent_back() -> None:
    broken = "```python\ncost = 3 * 12\nchange = cost.real - 1\nanswer = change\n```"
    fixed = "```python\ncost = 3 * 12\nchange = 50 - cost\nanswer = change\n```"
    events, client, _ = await run(
        "coa",
        [broken, fixed, "He gets 14 back.\nAnswer: 14"],
        "Tom buys 12 pens at 3 dollars each and pays with 50 dollars. What is his change?",
    )
    assert [e.kind for e in events].count("replan") == 1 and answer(events).value == "14"
