"""The writer: the last agent of the team, which writes the answer from the reified chain (and the passages it
read), streaming it, with the chain's value as the answer's value."""

from __future__ import annotations

from itertools import zip_longest
from typing import Any

from autogen_core import CancellationToken
from autogen_core.models import SystemMessage, UserMessage
from conclave.agents.base import RoleAgent, TeamState, cited_passages, passages_block
from conclave.agents.prompting import answer_prompt
from conclave.workflows.methods import SHORT_ANSWER, StreamedCall, answer_value, passages_shot

from conclave.events import AnswerDelta, Passage


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
        if chosen is None or chosen.reified is None or state.verdict == "reject":
            if state.verdict == "reject":
                errors = state.reasons or ["the chain was rejected"]
            else:
                errors = state.candidates[0].errors if state.candidates else ["no chain"]
            failure = "I could not build a valid chain for this question. Last errors:\n" + "\n".join(
                f"- {e}" for e in errors
            )
            if state.passages:
                # The passages were still found: answer from them, and say plainly that no chain checked it.
                await self.compose(cancellation_token, worked=None)
                note = "\n\n_" + failure.replace("\n", " ") + "_"
                state.answer_text += note
                await state.publish(AnswerDelta(text=note, agent="writer"))
            else:
                state.answer_text = failure
                await state.publish(AnswerDelta(text=state.answer_text, agent="writer"))
            return "answer: no chain"
        reified = chosen.reified
        state.answer_value = None if reified.answer_value is None else str(reified.answer_value)
        if self.used_knowledge():
            await self.compose(cancellation_token)
            if self.answer_is_lookup():
                # The chain's value is the passages its last search found; what they answer is the writer's
                # reading of them: its "Answer:" line, else its whole answer (never the raw passages).
                state.answer_value = answer_value(state.answer_text) or state.answer_text or None
        else:
            filled = reified.filled_text().strip()
            # The filled chain ends with its own "Answer: value" line; the bold line is added only when it does not.
            last = filled.splitlines()[-1] if filled else ""
            state.answer_text = (
                filled
                if last.lower().startswith("answer") and (state.answer_value or "") in last
                else f"{filled}\n\n**Answer: {state.answer_value}**"
            )
            await state.publish(AnswerDelta(text=state.answer_text, agent="writer"))
        return "answer: written"

    def reading(self) -> list[Passage]:
        """The passages the writer reads: the retriever's (its search for the question: what ``rag`` reads) and what
        each of the chosen chain's searches found, interleaved by rank, without repeats, ``top_k`` + 2 in all. The
        chain's lookups add evidence (a two-hop chain's second search finds what the question alone does not) without
        crowding out the question's own passages: on HotpotQA, reading the chain's searches alone lost 3.7 F1 to
        ``rag`` (docs/QUALITY.md)."""
        from conclave.tools.registry import parse_passages

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
        user = f"Passages:\n{passages_block(passages)}\n\n{work}Question: {state.question}\n\n{SHORT_ANSWER}"
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
