"""The critic: checks the reified chain and draft answer against the passages and the question."""

from __future__ import annotations

from typing import Literal

from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient, LLMMessage, SystemMessage, UserMessage
from conclave.agents.base import RoleAgent, TeamState, passages_block, structured_reply
from conclave.agents.prompting import load_prompt
from pydantic import BaseModel, Field

from conclave.events import Critique


class Verdict(BaseModel):
    verdict: Literal["accept", "revise"]
    reasons: list[str] = Field(default_factory=list, max_length=5)  # no string maxLength: see agents/planner.py


# The critic's three outcomes. The model is only ever asked for accept or revise (``Verdict``); ``reject`` is the
# critic's own: the chain did not reify (no chain, failed steps, no value) and no revision is left, so there is no
# answer. A chain that did not reify is never accepted.
ACCEPT, REVISE, REJECT = "accept", "revise", "reject"


class Critic(RoleAgent):
    def __init__(self, state: TeamState, client: ChatCompletionClient):
        super().__init__("critic", "Checks the worked chain against the question and passages.", state)
        self.client = client

    def mechanical_problems(self) -> list[str]:
        """Problems that need no model to see: failed steps, no answer value."""
        chosen = self.state.chosen
        if chosen is None or chosen.chain is None:
            errors = self.state.candidates[0].errors if self.state.candidates else []
            return ["no valid chain could be built: " + "; ".join(errors[:3])]
        reified = chosen.reified
        if reified is None:
            return ["the chain's tools were not run"]
        problems = [
            f"step {r.step_id} {r.status}: {r.error}"
            for r in reified.results.values()
            if r.status in ("failed", "timeout")
        ]
        if reified.answer_value is None and not problems:
            problems.append("the chain's answer placeholder has no value")
        return problems

    async def act(self, cancellation_token: CancellationToken) -> str:
        state = self.state
        budget_left = state.critic_rounds < state.settings.coa.max_critic_rounds
        problems = self.mechanical_problems()
        if state.tied and state.settings.coa.use_critic:
            verdict = await self.break_tie(cancellation_token)
        elif problems:
            verdict = Verdict(verdict="revise", reasons=problems)
        elif (agreed := self.agreement()) is not None:
            verdict = Verdict(verdict="accept", reasons=[agreed])
        elif not state.settings.coa.use_critic:
            verdict = Verdict(verdict="accept", reasons=["critic disabled (coa.use_critic = false)"])
        elif state.settings.coa.use_critic == "auto" and (evident := self.self_evident()) is not None:
            verdict = Verdict(verdict="accept", reasons=[f"critic not asked (coa.use_critic = auto): {evident}"])
        else:
            verdict = await self.judge(cancellation_token)
        outcome: str = verdict.verdict
        reasons = list(verdict.reasons)
        stop = None
        if outcome == REVISE and state.stalled:
            stop = "the revision repeated the same chain"
        elif outcome == REVISE and not budget_left:
            stop = "revision budget spent"
        if outcome == REVISE and state.chosen is None:
            stop = "nothing to revise"
        if stop is not None:
            # No revision left. A chain that reified cleanly is kept (the critic only doubted it); one that did not
            # is no answer, whatever the revisions were.
            if self.mechanical_problems():
                outcome, reasons = REJECT, reasons + [f"{stop}: no answer"]
            else:
                outcome, reasons = ACCEPT, reasons + [f"{stop}: keeping this answer"]
        state.verdict = outcome
        state.reasons = reasons
        await state.publish(Critique(verdict=outcome, reasons=reasons, round=state.critic_rounds))
        if outcome == REVISE:
            state.critic_rounds += 1
        # The graph routes on state.verdict (workflows/team.py): revise back to the reasoner, anything else on to the
        # writer, which reports that there is no answer when the chain was rejected. The message is for the transcript.
        return f"verdict: {outcome}"

    def self_evident(self) -> str | None:
        """Why the chosen chain needs no model judgement, or None. It reified cleanly (``mechanical_problems`` came
        first) and either computes with the calculator alone, or answers with retrieved text."""
        chosen = self.state.chosen
        if chosen is None or chosen.chain is None:
            return None
        tools = {step.tool for step in chosen.chain.steps}
        if tools <= {"calculator"}:
            return "an arithmetic chain that reified cleanly"
        answer_step = chosen.chain.answer_step
        if (
            tools <= {"calculator", "search_knowledge"}
            and answer_step is not None
            and answer_step.tool == "search_knowledge"
        ):
            return "the answer is retrieved text, which the writer cites"
        return None

    def agreement(self) -> str | None:
        """Independent samples that agree on the answer are stronger evidence than one more model judgement."""
        state = self.state
        counts = state.vote_counts
        if len(state.candidates) < 2 or not counts or state.tied:
            return None
        top = max(counts.values())
        if top < 2:
            return None
        winner = max(counts, key=counts.__getitem__)
        return f"{top} of {len(state.candidates)} sampled chains agree on {winner}"

    async def break_tie(self, cancellation_token: CancellationToken) -> Verdict:
        """Samples tied in the vote: the first tied chain the critic accepts wins."""
        state = self.state
        tied, state.tied = state.tied, []
        verdict = Verdict(verdict="revise", reasons=["no tied chain was accepted"])
        for candidate in tied:
            state.chosen = candidate
            problems = self.mechanical_problems()
            verdict = Verdict(verdict="revise", reasons=problems) if problems else await self.judge(cancellation_token)
            if verdict.verdict == "accept":
                verdict = Verdict(
                    verdict="accept",
                    reasons=[f"tie broken in favour of {candidate.answer_value}", *verdict.reasons],
                )
                break
        return verdict

    async def judge(self, cancellation_token: CancellationToken) -> Verdict:
        state = self.state
        chosen = state.chosen
        assert chosen is not None and chosen.reified is not None
        parts = []
        if state.passages:
            parts.append("Passages:\n" + passages_block(state.passages, limit=300))
        parts.append(f"Question: {state.question}")
        parts.append("Worked chain (tool values filled in):\n" + chosen.reified.filled_text(limit=300))
        parts.append(f"Final value: {chosen.answer_value}")
        messages: list[LLMMessage] = [
            SystemMessage(content=load_prompt("critic")),
            UserMessage(content="\n\n".join(parts), source="user"),
        ]
        verdict, _ = await structured_reply(
            state,
            "critic",
            self.client,
            messages,
            Verdict,
            "verdict",
            max_tokens=160,
            cancellation_token=cancellation_token,
        )
        # An unreadable verdict is not a reason to throw away a chain that reified cleanly.
        return verdict or Verdict(verdict="accept", reasons=["the critic's reply was not a valid verdict"])


def build_critic(state: TeamState, client: ChatCompletionClient) -> Critic:
    """The critic agent for one question."""
    return Critic(state, client)
