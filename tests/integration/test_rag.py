"""The single-agent RAG baseline (issue 15): retrieve the question's top-k passages from a real Chroma collection
(the demo notes, ingested on first use), then one model call that answers from them with citations."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

import pytest
from autogen_core.models import CreateResult
from autogen_ext.models.replay import ReplayChatCompletionClient
from conclave.workflows.runner import build_context, run_question

from conclave.settings import load_settings
from tests.unit.test_team import JSON_INFO

pytestmark = [pytest.mark.integration]

QUESTION = "What does the Adam optimiser combine?"


class Prompted(ReplayChatCompletionClient):
    """A scripted model that keeps the prompts it was sent."""

    def __init__(self, replies: list[str]):
        super().__init__(replies, model_info=JSON_INFO)
        self.prompts: list[str] = []

    async def create(self, messages: Sequence[Any], **kwargs: Any) -> CreateResult:
        self.prompts.append("\n".join(str(m.content) for m in messages))
        return await super().create(messages, **kwargs)

    async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        kwargs.pop("include_usage", None)
        result = await self.create(messages, **kwargs)
        yield str(result.content)
        yield result


async def test_rag_answers_from_the_retrieved_passages_in_one_call() -> None:
    client = Prompted(["Adam combines momentum with RMSprop-style scaling [1].\nAnswer: momentum and RMSprop"])
    ctx = await build_context(
        QUESTION,
        load_settings(),
        method="rag",
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
    )
    events = [e async for e in run_question(ctx)]
    retrieval = next(e for e in events if e.kind == "retrieval")
    assert retrieval.query == QUESTION and len(retrieval.passages) == ctx.settings.top_k
    assert any("optimisers" in p.source for p in retrieval.passages)
    # One call, and the passages were in its prompt, numbered as the citations read them.
    assert len(client.prompts) == 1
    first = " ".join(retrieval.passages[0].text.split())[:80]
    assert "[1] (" in client.prompts[0] and first in client.prompts[0]
    answer = next(e for e in events if e.kind == "answer")
    assert answer.value == "momentum and RMSprop"
    assert answer.sources == [retrieval.passages[0]], "the cited passage [1] is the answer's source"
    finished = events[-1]
    assert finished.ok and finished.usage["reasoner"]["calls"] == 1


async def test_rag_with_no_collection_says_so_in_the_prompt() -> None:
    client = Prompted(["The passages do not say.\nAnswer: unknown"])
    ctx = await build_context(
        QUESTION,
        load_settings(),
        method="rag",
        knowledge=False,
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
    )
    events = [e async for e in run_question(ctx)]
    assert not any(e.kind == "retrieval" for e in events)
    assert "Passages: (none were found)" in client.prompts[0]
    assert next(e for e in events if e.kind == "answer").sources == []
