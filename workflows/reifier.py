"""The reifier: not a model. It runs each valid sampled chain's tool calls level by level and votes across samples
(answers that mean the same number vote together)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

from autogen_core import CancellationToken
from conclave.agents.base import RoleAgent, TeamState

from conclave.events import Event, StepFinished, StepStarted, VoteCast


def normalise_value(value: Any) -> str | None:
    """Answers that mean the same number vote together (``14``, ``14.0``, ``14.000``)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        from decimal import Decimal, InvalidOperation

        number = Decimal(text.replace(",", ""))
        return format(number.normalize(), "f") if number == number.to_integral_value() else str(number.normalize())
    except (InvalidOperation, ValueError):
        return " ".join(text.lower().split())


class Reifier(RoleAgent):
    """Fills every valid chain in with tool results (concurrently), then votes on the answers."""

    def __init__(self, state: TeamState):
        super().__init__("reifier", "Runs the chain's tool calls and fills in the placeholders.", state)

    async def act(self, cancellation_token: CancellationToken) -> str:
        from conclave.workflows.coa import reify

        state = self.state

        async def run(candidate: Any) -> None:
            async def forward(event: Event) -> None:
                if isinstance(event, StepStarted | StepFinished):
                    event = dataclasses.replace(event, sample=candidate.sample)
                await state.publish(event)

            candidate.reified = await reify(
                candidate.chain,
                state.tools,
                timeout=state.settings.coa.tool_timeout,
                on_event=forward,
                eager=candidate.eager,
            )

        valid = [c for c in state.candidates if c.chain is not None]
        # Earlier samples were reified in an earlier turn; only the new chains run their tools.
        await asyncio.gather(*(run(c) for c in valid if c.reified is None))
        values = [normalise_value(c.answer_value) for c in valid]
        counts = Counter(v for v in values if v is not None)
        # The vote: sample 0 (drawn at the configured temperature) may weigh more than a warm sample.
        weights = {c.sample: state.settings.coa.greedy_weight if c.sample == 0 else 1.0 for c in valid}
        tally: dict[str, float] = {}
        for c, v in zip(valid, values, strict=True):
            if v is not None:
                tally[v] = tally.get(v, 0.0) + weights[c.sample]
        if state.sampling:
            ranked = counts.most_common(2)
            settled = (
                bool(ranked)
                and ranked[0][1] >= state.settings.coa.agree
                and (len(ranked) == 1 or ranked[1][1] < ranked[0][1])
            )
            if not settled and len(state.candidates) < state.settings.coa.samples:
                return f"reified: more samples ({len(state.candidates)} drawn, no agreement yet)"
            state.sampling = False
        state.tied = []
        if not valid:
            state.chosen = None
            return "reified: nothing (no valid chain)"
        if tally:
            top = max(tally.values())
            # Ties go to the earliest sample (sample 0 is drawn at the configured temperature).
            winner = next(v for v in values if v is not None and tally[v] == top)
            state.chosen = next(c for c, v in zip(valid, values, strict=True) if v == winner)
            leaders = [v for v, n in tally.items() if n == top]
            if len(leaders) > 1:
                state.tied = [next(c for c, v in zip(valid, values, strict=True) if v == lead) for lead in leaders]
        else:
            winner = None
            state.chosen = valid[0]
        state.vote_counts = dict(counts)
        if len(state.candidates) > 1:
            await state.publish(
                VoteCast(
                    answers=[normalise_value(c.answer_value) for c in state.candidates],
                    winner=winner,
                    counts=dict(counts),
                )
            )
        return f"reified: answer {state.chosen.answer_value}"
