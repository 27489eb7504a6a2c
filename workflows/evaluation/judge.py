"""The model-graded scorers: correctness (1-5 against the gold answer) and faithfulness (claims vs. passages).

Both run on the ``judge`` model role under JSON-schema-constrained decoding. A reply that is not valid JSON for the
schema is retried with a different seed (the response cache would otherwise hand back the same bad reply); when every
attempt fails the score is *missing* — reported as such, never counted as a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, TypeVar

from autogen_core.models import ChatCompletionClient, LLMMessage, SystemMessage, UserMessage
from conclave.workflows.evaluation import prompts
from conclave.workflows.evaluation.scorers import JUDGE_PASS, CorrectnessVerdict, FaithfulnessVerdict, Outcome, Score
from pydantic import BaseModel

from conclave.errors import BackendError

__all__ = ["Judge"]

T = TypeVar("T", bound=BaseModel)
_PASSAGE_CHARS = 1200


class Judge:
    """Grades outcomes with one client; ``retries`` extra attempts after an invalid reply."""

    def __init__(self, client: ChatCompletionClient, *, retries: int = 2, limit: asyncio.Semaphore | None = None):
        self.client = client
        self.retries = retries
        self.limit = limit

    async def _ask(self, system: str, user: str, schema: type[T]) -> tuple[T | None, str]:
        from conclave.models import StructuredOutputError, complete_structured

        messages: list[LLMMessage] = [SystemMessage(content=system), UserMessage(content=user, source="user")]
        last = ""
        for attempt in range(self.retries + 1):
            extra: dict[str, Any] = {"max_tokens": 300}
            if attempt:
                extra.update({"temperature": 0.7, "seed": attempt})
            guard = self.limit if self.limit is not None else contextlib.nullcontext()
            try:
                async with guard:
                    return await complete_structured(self.client, messages, schema, extra=extra), ""
            except StructuredOutputError as exc:
                last = exc.message
            except BackendError as exc:
                return None, f"judge failed: {exc.message}"
        return None, f"judge gave no valid verdict after {self.retries + 1} attempts ({last})"

    async def correctness(self, question: str, golds: Sequence[str], outcome: Outcome) -> Score:
        """1-5: does the answer mean the same as a gold answer? (pass at 4 or more)."""
        user = (
            f"Question: {question}\n\nGold answer: {' | '.join(golds)}\n\n"
            f"Candidate answer: {outcome.text.strip() or '(no answer)'}"
        )
        verdict, error = await self._ask(prompts.load("judge_correctness"), user, CorrectnessVerdict)
        if verdict is None:
            return Score(None, None, error, missing=True)
        return Score(float(verdict.score), verdict.score >= JUDGE_PASS, verdict.reasoning[:300])

    async def faithfulness(self, outcome: Outcome) -> Score:
        """1-5: is every claim of the answer supported by the retrieved passages? (n/a without passages)."""
        if not outcome.passages:
            return Score(None, None, "no passages retrieved")
        block = "\n\n".join(f"[{i}] {p[:_PASSAGE_CHARS]}" for i, p in enumerate(outcome.passages[:6], start=1))
        user = f"Passages:\n{block}\n\nAnswer: {outcome.text.strip() or '(no answer)'}"
        verdict, error = await self._ask(prompts.load("judge_faithfulness"), user, FaithfulnessVerdict)
        if verdict is None:
            return Score(None, None, error, missing=True)
        detail = "; ".join(verdict.unsupported_claims)[:300]
        return Score(float(verdict.score), verdict.score >= JUDGE_PASS, detail)
