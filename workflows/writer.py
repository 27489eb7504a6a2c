"""The writer: the last agent of the team, which writes the answer from the reified chain (and the passages it
read), streaming it, with the chain's value as the answer's value."""

from __future__ import annotations

import re
from itertools import zip_longest
from typing import Any

from autogen_core import CancellationToken
from autogen_core.models import SystemMessage, UserMessage
from conclave.agents.base import RoleAgent, TeamState, cited_passages, passages_block
from conclave.agents.prompting import answer_prompt
from conclave.workflows.answers import StreamedCall, answer_instruction, answer_value, passages_shot
from conclave.workflows.coa.scale import answer_scale

from conclave.events import AnswerDelta, Passage

READING_TOOLS = frozenset({"search_knowledge", "read_value"})
"""The tools whose results come from the user's documents."""


class Writer(RoleAgent):
    """Composes the final answer from the reified chain, citing sources; streams it when a model writes it."""

    def __init__(self, state: TeamState, client: Any):
        super().__init__("writer", "Writes the final answer from the reified chain.", state)
        self.client = client

    def used_knowledge(self) -> bool:
        """Whether the answer is written from passages: the chain searched the collection (or used no tool at all).
        A chain of calculations (or other tools) gets the templated answer: the retriever's passages for its question
        were not used, and citing them would claim sources the answer does not rest on."""
        chosen = self.state.chosen
        tools_used = {s.tool for s in chosen.chain.steps} if chosen and chosen.chain else set()
        return bool(self.state.passages) and ("search_knowledge" in tools_used or not tools_used)

    async def act(self, cancellation_token: CancellationToken) -> str:
        state = self.state
        chosen = state.chosen
        if state.no_plan:
            return await self.from_passages(cancellation_token, "The passages found do not support this answer.")
        if chosen is None or chosen.reified is None or state.verdict == "reject":
            if state.verdict == "reject":
                errors = state.reasons or ["the chain was rejected"]
            else:
                errors = state.candidates[0].errors if state.candidates else ["no chain"]
            failure = "I could not build a valid chain for this question. Last errors:\n" + "\n".join(
                f"- {e}" for e in errors
            )
            if state.passages:
                # The passages were still found: answer from them. An answer whose words and numbers the passages hold
                # is an answer (an explanation needs no chain); otherwise say plainly that no chain checked it.
                await self.compose(cancellation_token, worked=None)
                # A computation that ran and was judged wrong leaves no answer: the passages cannot check a number
                # the question asks to work out. A lookup's failed chain (a value not read, a step that broke) does
                # not make the passages wrong: what they support is still the answer.
                rejected = state.verdict == "reject" and chosen is not None and not self.is_lookup()
                supported = None if rejected else supported_value(state.answer_text, self.reading(), state.question)
                if supported is not None:
                    state.answer_value, state.answer_basis = supported, "passages"
                    return "answer: from the passages"
                note = "\n\n_" + failure.replace("\n", " ") + "_"
                state.answer_text += note
                await state.publish(AnswerDelta(text=note, agent="writer"))
            else:
                state.answer_text = failure
                await state.publish(AnswerDelta(text=state.answer_text, agent="writer"))
            return "answer: no chain"
        if self.looked_up_nothing():
            # A question that needs no computation, answered by a chain that read nothing from the documents: its
            # numbers came from nowhere. The passages answer it, or nothing does.
            return await self.from_passages(
                cancellation_token, "The chain computed without looking anything up; nothing checked this answer."
            )
        reified = chosen.reified
        state.answer_value = None if reified.answer_value is None else str(reified.answer_value)
        state.answer_basis = "chain"
        if self.used_knowledge():
            await self.compose(cancellation_token)
            if self.answer_is_lookup():
                # The chain's value is the passages its last search found; what they answer is the writer's
                # reading of them: its "Answer:" line, else its whole answer (never the raw passages).
                state.answer_value = answer_value(state.answer_text) or state.answer_text or None
        else:
            # A computed answer is read by a person: one sentence with the value and where its values were read; the
            # filled-in chain is in the trace.
            reads = values_read(chosen.chain, reified)
            scale = answer_scale(chosen.chain, reified.results, state.question)
            if scale is not None and state.answer_value is not None:
                # The value in the scale its inputs were counted in ("1729 million", "5.42%"), never a bare number
                # a thousand or a million times off.
                state.answer_value += "%" if scale == "percent" else f" {scale}"
            state.answer_text = computed_sentence(chosen.chain, state.answer_value, reads)
            state.sources = [source for _, _, source in reads]
            await state.publish(AnswerDelta(text=state.answer_text, agent="writer"))
        return "answer: written"

    async def from_passages(self, cancellation_token: CancellationToken, unsupported: str) -> str:
        """An answer written from the passages with no chain behind it (an explanation, by design: ``no_plan``; a
        lookup whose chain read nothing): an answer when they support it (its words and numbers are theirs);
        otherwise it carries the ``unsupported`` notice and has no value."""
        state = self.state
        await self.compose(cancellation_token, worked=None)
        supported = supported_value(state.answer_text, self.reading(), state.question) if state.passages else None
        if supported is not None:
            state.answer_value, state.answer_basis = supported, "passages"
            return "answer: from the passages"
        note = f"\n\n_{unsupported}_"
        state.answer_text += note
        await state.publish(AnswerDelta(text=note, agent="writer"))
        return "answer: unsupported"

    def is_lookup(self) -> bool:
        """Whether the question needs no computation (``agents.reasoner.is_lookup_question``)."""
        from conclave.agents.reasoner import is_lookup_question

        return is_lookup_question(self.state.question, self.state.tools)

    def looked_up_nothing(self) -> bool:
        """Whether a lookup question (one that needs no computation: ``agents.reasoner.is_lookup_question``) got a
        chain that read nothing from the documents, while the retriever found passages for it."""
        chosen = self.state.chosen
        if chosen is None or chosen.chain is None or not self.state.passages or not self.is_lookup():
            return False
        return not any(s.tool in READING_TOOLS for s in chosen.chain.steps)

    def reading(self) -> list[Passage]:
        """The passages the writer reads: the retriever's (its search for the question: what ``rag`` reads) and what
        each of the chosen chain's searches found, interleaved by rank, without repeats, ``top_k`` + 2 in all. The
        chain's lookups add evidence (a two-hop chain's second search finds what the question alone does not) without
        crowding out the question's own passages: on HotpotQA, reading the chain's searches alone lost to ``rag``
        (docs/QUALITY.md, 'Knowledge answers')."""
        from conclave.tools.toolset import parse_passages

        state = self.state
        chosen = state.chosen
        found: list[list[Passage]] = [list(state.passages)]
        if chosen is not None and chosen.chain is not None and chosen.reified is not None:
            values = chosen.reified.values
            found += [parse_passages(values.get(s.id, "")) for s in chosen.chain.steps if s.tool == "search_knowledge"]
        by_id: dict[str, Passage] = {}
        for rank in zip_longest(*found):
            for p in rank:
                if p is not None:
                    by_id.setdefault(p.id, p)
        return list(by_id.values())[: max(state.settings.top_k, 1) + 2]

    def answer_is_lookup(self) -> bool:
        chosen = self.state.chosen
        if chosen is None or chosen.chain is None:
            return False
        last = chosen.chain.answer_step
        return last is not None and last.tool == "search_knowledge"

    async def compose(self, cancellation_token: CancellationToken, worked: str | None = "chain") -> None:
        state = self.state
        chosen = state.chosen
        work = ""
        if (
            worked
            and chosen is not None
            and chosen.reified is not None
            and chosen.chain is not None
            and any(s.tool != "search_knowledge" for s in chosen.chain.steps)
        ):
            # A chain of lookups only is not shown: its values are the passages, which the writer reads anyway.
            work = f"Worked chain:\n{chosen.reified.filled_text(limit=300)}\n\n"
        passages = self.reading()
        instruction = answer_instruction(passages, state.answer_style)
        user = f"Passages:\n{passages_block(passages)}\n\n{work}Question: {state.question}\n\n{instruction}"
        messages = [
            SystemMessage(content=answer_prompt("writer", state.settings)),
            *passages_shot(),
            UserMessage(content=user, source="user"),
        ]
        call = StreamedCall(
            self.client, messages, agent="writer", extra={"max_tokens": 256}, cancellation_token=cancellation_token
        )
        async for event in call.events():  # the answer's pieces as they come, then the call's usage
            await state.publish(event)
        text = call.text
        state.answer_text = text.strip()
        state.sources = cited_passages(text, passages) or list(passages[:3])


_NOT_FOUND = re.compile(
    r"\b(not (?:stated|given|mentioned|found|say|said|contain\w*|provided|specified|known)|no (?:information|mention)|"
    r"unknown|cannot (?:be )?(?:determine|answer|tell)\w*|do(?:es)? not (?:say|state|contain|mention|give))\b",
    re.I,
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_CITATION = re.compile(r"\s*\[\d+\](?:,\s*\[\d+\])*")
_WORD = re.compile(r"[a-z][a-z-]{3,}")


# What joins a restated question to its answer: "Tax fees are comprised of <answer>", "EPS is <answer>". Longer forms
# first, so "are comprised of" is not read as "are".
_LINKING = (
    r"(?:(?:is|are|was|were) (?:comprised|made up) of|consists? of|comprises?(?: of)?|includes?|represents?|"
    r"refers? to|means?|stands? for|is|are|was|were)"
)
_RESTATED = re.compile(rf"^(?P<subject>.+?)\s+{_LINKING}\s+(?P<rest>\S.*)$", re.I | re.S)
_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'])")
_TERM = re.compile(r"[a-z0-9]+")


def answer_phrase(sentence: str, question: str) -> str:
    """The part of an answer sentence that answers: without the question it restates first ("Purchase obligations
    consist of <what they consist of>" -> what they consist of). A sentence whose opening is not the question's own
    words is returned whole."""
    found = _RESTATED.match(sentence.strip())
    if not found or not question:
        return sentence
    asked = _TERM.findall(question.lower())

    def in_question(word: str) -> bool:  # "earnings" for "Earning", "comprised" for "comprise"
        return word in {"the", "a", "an"} or any(
            word == q or (min(len(word), len(q)) >= 4 and (word.startswith(q) or q.startswith(word))) for q in asked
        )

    subject = _TERM.findall(found.group("subject").lower())
    return found.group("rest").strip() if subject and all(map(in_question, subject)) else sentence


def supported_value(text: str, passages: list[Passage], question: str = "") -> str | None:
    """The value of an answer written from ``passages`` when they support it, else None: an answer that says the
    passages do not hold it is none, every number in it must appear in them (a number the writer worked out itself
    is what a chain is for), and most of its words must be theirs."""
    value = answer_value(text)
    if value is None:
        # A small model sometimes leaves out the "Answer:" line: its first sentence, without citations and without
        # the question it restates, stands in.
        lines = _CITATION.sub("", text).strip().splitlines()
        first = _FIRST_SENTENCE.split(lines[0].strip())[0] if lines else ""
        value = answer_phrase(first, question).strip().rstrip(".") or None
    if not value or _NOT_FOUND.search(value):
        return None
    source = " ".join(p.text for p in passages).lower().replace(",", "")
    if any(n not in _NUMBER.findall(source) for n in _NUMBER.findall(value.replace(",", ""))):
        return None
    words = set(_WORD.findall(value.lower()))
    if words and sum(w in source for w in words) * 2 < len(words):
        return None
    return value


def values_read(chain: Any, reified: Any) -> list[tuple[str, Any, Passage]]:
    """The values a chain read from the documents (``read_value``), in order: (name, result, its source as a
    passage for the answer's citations)."""
    out = []
    for step in chain.steps:
        result = reified.results.get(step.id)
        found = getattr(result, "value", None) if result is not None and result.ok else None
        source = getattr(found, "source", None)
        if source is None:
            continue
        name = chain.names.get(step.id, step.id).replace("_", " ")
        text = source.sentence or f"{source.row} | {source.column}: {source.cell}"
        passage = Passage(source.chunk_id or f"{source.document}#{step.id}", source.document, text, 1.0, source.table)
        out.append((name, found, passage))
    return out


def computed_sentence(chain: Any, value: str | None, reads: list[tuple[str, Any, Passage]] | None = None) -> str:
    """The answer to a chain of calculations as a sentence: what the chain's answer names, and its value (``the
    change is **14**.``; a placeholder name such as ``y3`` reads as "the answer"), then the values it read from the
    documents with their unit, scale and source, cited as [1], [2], ..."""
    step = chain.answer_step if chain is not None else None
    name = chain.names.get(step.id, "") if step is not None else ""
    plain = name.replace("_", " ").strip()
    subject = "the answer" if not plain or re.fullmatch(r"[yY]\d+|answer|result", name) else f"the {plain}"
    thought = " ".join(step.thought.split()) if step is not None and step.thought else ""
    sentence = f"{subject[0].upper()}{subject[1:]} is **{value}**" + (f" ({thought})." if thought else ".")
    if not reads:
        return sentence
    parts = []
    for index, (name, found, passage) in enumerate(reads, 1):
        extra = " ".join(p for p in (found.unit, f"in {found.scale}s" if found.scale else "") if p)
        parts.append(f"{name} = {found.text}{f' ({extra})' if extra else ''} from {passage.source} [{index}]")
    return f"{sentence} Values read: " + "; ".join(parts) + "."
