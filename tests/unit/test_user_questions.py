"""The questions users bring (issue 27): no question loops (decoding stops at a repeating pattern, a re-plan is sent
only with something new to say), an answer the passages support is an answer even when no chain validated, and a
computed answer reads as a sentence. Scripted models: orchestration only (quality is measured in docs/QUALITY.md)."""

from __future__ import annotations

from typing import Any

import pytest
from conclave.workflows.coa.program import ProgramStream, repeated_sentence, repetition
from conclave.workflows.writer import answer_phrase, computed_sentence, supported_value

from conclave.events import Passage
from tests.unit.test_knowledge_answers import answer, run

LOOP = "```python\n" + "# the reason is stated in the notes about the optimiser\n" * 40 + "answer = reason\n```"
"""What a small model wrote for an explanation question: one comment line, over and over, until its token limit."""


def test_repetition_names_a_reassigned_name_and_a_line_written_three_times() -> None:
    assert repetition("a = 1\nb = a + 1\n") is None
    assert repetition("a = 1\nb = a + 1\na = 2\n") == "'a' is assigned again"
    assert repetition("# look it up\nx = 1\n# look it up\n") is None
    assert "written 3 times" in (repetition("# look it up\n# look it up\n#  look  it up\n") or "")
    # Lines without a word (closing brackets) repeat legitimately.
    assert repetition(")\n)\n)\n)\n") is None


def test_the_stream_flags_a_loop_as_soon_as_the_repeating_line_is_complete() -> None:
    stream = ProgramStream()
    text = "```python\nrate = 3\nrate = 4\n"
    seen = []
    for ch in text:
        stream.feed(ch)
        seen.append(stream.looping)
    assert seen[-1] == "'rate' is assigned again"
    assert seen.index("'rate' is assigned again") == len(text) - 1, "flagged at the end of the repeating line"


SMOLLM2_PROSE = (
    "The Adam optimizer is a type of optimization algorithm that combines steps with their own new name. "
    "The Adam optimizer is a type of optimization algorithm that combines steps with their own new name. "
)
"""What SmolLM2-135M wrote as its second draft for the README's question: one sentence, on one line, over and over
(no line ever completes, so the line rule never saw it; it ran to the 768-token limit)."""


def test_the_stream_flags_a_sentence_repeated_within_one_line() -> None:
    stream = ProgramStream()
    for ch in SMOLLM2_PROSE:
        stream.feed(ch)
    assert stream.looping is None, "two copies are not a loop"
    for ch in SMOLLM2_PROSE[: SMOLLM2_PROSE.index(". ") + 2]:
        stream.feed(ch)
    assert stream.looping is not None and "is written 3 times" in stream.looping, stream.looping
    # A program whose lines share words is not a loop, nor are short sentences repeated (``Done.``).
    program = ProgramStream()
    for (
        ch
    ) in '```python\nx = search_knowledge("What is Adam? Explain it.")\ny = search_knowledge("What is RMSprop?")\n':
        program.feed(ch)
    assert program.looping is None
    assert repeated_sentence("Done. Done. Done. Done.") is None


async def test_a_chain_that_loops_is_stopped_and_answered_from_the_passages() -> None:
    # A "why" question no longer reaches the reasoner (coa.explain_from_passages); this one still asks for a chain.
    reply = "Adam combines momentum with RMSprop scaling [1].\nAnswer: momentum with RMSprop scaling"
    events, client, _ = await run("coa", [LOOP, LOOP, reply], "What makes Adam work well?")
    rejected = [e for e in events if e.kind == "replan"]
    # The first draft is stopped at the third copy of the line; the second repeats the same fault, so no third draft.
    assert len(rejected) == 2, [e.to_dict() for e in rejected]
    assert "repeating itself" in " ".join(rejected[0].errors)
    assert len(client.calls) == 3, "two drafts and the writer, not a third draft"
    final = answer(events)
    assert final.value == "momentum with RMSprop scaling"
    assert "could not build a valid chain" not in final.text
    assert events[-1].ok, events[-1].to_dict()


async def test_an_answer_the_passages_do_not_hold_is_still_a_failure() -> None:
    # The writer worked a number out itself: nothing in the passages says 42.
    reply = "Adam needs about 42 steps [1].\nAnswer: 42"
    events, _, _ = await run("coa", [LOOP, LOOP, reply], "What makes Adam converge quickly?")
    assert not events[-1].ok
    assert "could not build a valid chain" in answer(events).text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("It combines them [1].\nAnswer: momentum and RMSprop scaling", "momentum and RMSprop scaling"),
        ("The passages do not say.\nAnswer: not stated in the passages", None),
        ("Answer: unknown", None),
        ("Answer: 42", None),
        ("Answer: 0.9 and 0.999", "0.9 and 0.999"),
        ("No answer line at all", None),
        # Without an Answer line, the first sentence (citations dropped) is what the passages must hold.
        ("Adam combines momentum with RMSprop scaling [1], [2]", "Adam combines momentum with RMSprop scaling"),
        ("Answer: gradient clipping of transformers", None),
    ],
)
def test_supported_value(text: str, value: str | None) -> None:
    passages = [Passage("p#1", "notes.md", "Adam combines momentum with RMSprop scaling; betas 0.9 and 0.999.", 0.9)]
    assert supported_value(text, passages) == value


@pytest.mark.parametrize(
    ("sentence", "question", "phrase"),
    [
        # TAT-QA spans the writer answered without an Answer line, restating the question first.
        ("Tax fees are comprised of fees for tax returns", "What do the tax fees comprise of?", "fees for tax returns"),
        ("Purchase obligations consist of contractual obligations", "What do purchase obligations consist of?",
         "contractual obligations"),
        ("Earnings Per Share (EPS) is calculated using the two-class method", "How is Earning Per Share (EPS) calculated?",
         "calculated using the two-class method"),
        ("The capital of France is Paris", "What is the capital of France?", "Paris"),
        # An opening that is not the question's words is the answer itself.
        ("Paris is the capital of France", "What is the capital of France?", "Paris is the capital of France"),
        ("Adam combines momentum and RMSprop", "What does Adam combine?", "Adam combines momentum and RMSprop"),
    ],
)  # fmt: skip
def test_the_answer_phrase_leaves_out_the_question_a_sentence_restates(
    sentence: str, question: str, phrase: str
) -> None:
    assert answer_phrase(sentence, question) == phrase


def test_without_an_answer_line_the_value_is_the_first_sentences_answer_phrase() -> None:
    passages = [Passage("p#1", "r.md", "Tax fees are fees for tax returns. Audit fees are fees for the audit.", 0.9)]
    text = "Tax fees are fees for tax returns [1]. Audit fees are fees for the audit [1]."
    assert supported_value(text, passages, "What are tax fees?") == "fees for tax returns"
    assert supported_value(text, passages) == "Tax fees are fees for tax returns"


async def test_a_computed_answer_is_a_sentence_and_the_chain_stays_in_the_trace() -> None:
    program = "```python\ncost = 3 * 12\n# what is left of the 50 dollars\nchange = 50 - cost\nanswer = change\n```"
    events, _, _ = await run(
        "coa", [program], "Tom buys 12 pens at 3 dollars each and pays with 50 dollars. What is his change?"
    )
    final = answer(events)
    assert final.value == "14"
    assert final.text == "The change is **14** (what is left of the 50 dollars)."
    assert "[" not in final.text and "50 - 36" not in final.text
    assert "50 - 36" in final.chain and "50 - 36" in str(final.to_dict()), "the filled-in chain is in the trace"


def test_a_placeholder_name_reads_as_the_answer() -> None:
    from conclave.workflows.coa.model import Chain, Step

    chain = Chain(steps=(Step(id="y1", tool="calculator"),), answer="y1", names={"y1": "y1"})
    assert computed_sentence(chain, "7") == "The answer is **7**."


@pytest.mark.parametrize(
    ("question", "computes"),
    [
        # One number that is an operand: a formula or value from the notes, then a computation.
        ("What variance does He initialisation give a layer with 512 inputs?", True),
        # A change between two years is a computation, whatever the digits.
        ("What is the increase/ (decrease) in rent from 2018 to 2019?", True),
        ("What was the percentage of staff in sales?", True),
        ("By how much did costs fall?", True),
        # Numbers that are names, dates or a single year are not operands.
        ("Which team won Super Bowl 50?", False),
        ("What degree did he receive on 19 October, 1512?", False),
        ("What was the revenue in 2019?", False),
        # Explanations read, unless they give two numbers to compute with.
        ("Why does the learning rate decrease over time?", False),
        ("How does dropout change the network?", False),
        ("Tom buys 12 pens at 3 dollars each. What does he pay?", True),
    ],
)
def test_routing_follows_what_the_question_needs(question: str, computes: bool) -> None:
    from conclave.agents.reasoner import is_lookup_question, needs_arithmetic

    assert needs_arithmetic(question) is computes
    assert is_lookup_question(question, {"search_knowledge": object()}) is (not computes)


async def test_a_lookup_question_is_told_to_search_and_an_arithmetic_one_is_not() -> None:
    program = '```python\nfound = search_knowledge("what Adam combines")\nanswer = found\n```'
    _, client, _ = await run(
        "coa", [program, "It combines momentum with RMSprop scaling [1].\nAnswer: both"], "What does Adam combine?"
    )
    assert "find each one with `name = search_knowledge" in str(client.calls[0][0].content)
    arithmetic = "```python\ncost = 3 * 12\nanswer = cost\n```"
    _, client, _ = await run("coa", [arithmetic], "Tom buys 12 pens at 3 dollars each. What does he pay?")
    assert "find each one with" not in str(client.calls[0][0].content)


def test_numbers_in_a_chain_over_documents_come_from_somewhere() -> None:
    from conclave.agents.reasoner import unsourced_numbers
    from conclave.workflows.coa.model import Chain, Lit, Step

    def calc(*expressions: str) -> Chain:
        steps = tuple(
            Step(id=f"y{i}", tool="calculator", args={"expression": Lit(e)}) for i, e in enumerate(expressions, 1)
        )
        return Chain(
            steps=steps, answer=f"y{len(expressions)}", names={f"y{i}": f"v{i}" for i in range(1, len(expressions) + 1)}
        )

    question = "What is the change in rent from 2018 to 2019, for 3 offices?"
    # Tool results (placeholders), the question's numbers, and common constants beside them are fine.
    assert unsourced_numbers(calc("(y1 - y2) / y2 * 100", "y3 * 3"), question) == []
    assert unsourced_numbers(calc("2019 - 2018"), question) == []
    # A value the documents hold, written from memory, is not.
    recalled = unsourced_numbers(calc("4500 - y1"), question)
    assert len(recalled) == 1 and "4500" in recalled[0] and "read_value" in recalled[0]
    # Constants alone compute from nothing (a lookup question answered with 12 + 100 + 1000).
    assert "constants alone" in unsourced_numbers(calc("12 + 100 + 1000"), "What do the tax fees comprise?")[0]


async def test_the_provenance_rule_sends_a_recalled_number_back(tmp_path: Any, conclave_home: Any) -> None:
    """Over documents (read_value offered) a chain with a number from nowhere is sent back with the rule; without
    documents (GSM8K) the same chain stands."""
    from conclave.tools.store import KnowledgeStore
    from conclave.tools.toolset import build_tools
    from conclave.workflows.runner import build_context, run_question

    from conclave.settings import load_settings
    from tests.integration.test_store import FakeEmbedder
    from tests.unit.test_knowledge_answers import Recording

    recalled = "```python\n# rent from memory\nrent = 4500\nafter = rent - 300\nanswer = after\n```"
    fixed = '```python\nrent = read_value("rent 2020")\nafter = rent - 300\nanswer = after\n```'
    settings = load_settings(coa={"form": "program", "use_critic": False, "plan": "never"})
    store = KnowledgeStore.open(settings, embedder=FakeEmbedder())
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "rent.md").write_text("# Rent\n\n| Cost | 2020 |\n|---|---|\n| Rent | 4,200 |\n")
    from conclave.tools.ingest import ingest

    ingest([notes], "empty", settings, store=store)
    client = Recording([recalled, fixed])
    ctx = await build_context(
        "What is the rent after a discount of 300?", settings, method="coa", collection="empty",
        clients={r: client for r in ("planner", "reasoner", "critic", "writer")},
        tools=build_tools(settings, store, collection="empty"),
    )  # fmt: skip
    ctx.store = store
    events = [e async for e in run_question(ctx)]
    replans = [e for e in events if e.kind == "replan"]
    assert replans and "4500" in replans[0].errors[0], [
        e.to_dict() for e in events if e.kind in ("replan", "run_failed")
    ]
    finals = [e for e in events if e.kind == "answer"]
    assert finals and finals[0].value == "3900", [e.to_dict() for e in events if e.kind != "answer_delta"]
