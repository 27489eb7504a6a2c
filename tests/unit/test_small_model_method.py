"""A model known not to write chains fails loudly, not slowly (issue 29, item 7): ``ask`` on SmolLM2 answers with
``rag`` unless ``coa`` was chosen (then it warns first), and any streamed answer stops at a sentence written for the
third time. The decision and the stop with scripted clients; tests/integration/test_small_model_ask.py runs the real
SmolLM2 through the CLI."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

import pytest
from autogen_core.models import CreateResult, RequestUsage, UserMessage
from conclave.workflows.answers import StreamedCall
from conclave.workflows.runner import FALLBACK_METHOD, method_for_model

from conclave.models.catalog import chain_shortfall


def test_smollm2_is_known_not_to_write_chains_and_qwen_is_not() -> None:
    assert chain_shortfall("embedded:qwen") is None
    assert "SmolLM2-135M" in (chain_shortfall("embedded:smollm2") or "")
    assert chain_shortfall("ollama/qwen2.5:7b") is None and chain_shortfall("openai/gpt-4o") is None
    assert chain_shortfall("embedded:/models/some.gguf") is None  # a file of unknown ability: not refused
    assert chain_shortfall("embedded") is None, "plain embedded depends on the installation: not judged"


@pytest.mark.parametrize(
    ("method", "spec", "chosen", "expected", "note"),
    [
        (None, "embedded:smollm2", False, FALLBACK_METHOD, "answering with --method rag"),
        ("coa", "embedded:smollm2", False, FALLBACK_METHOD, "answering with --method rag"),
        ("coa", "embedded:smollm2", True, "coa", "most likely end without an answer"),
        ("coa:k=3", "embedded:smollm2", True, "coa:k=3", "most likely end without an answer"),
        ("cot", "embedded:smollm2", True, "cot", None),
        (None, "embedded:qwen", False, None, None),
        ("coa", "ollama/qwen2.5:7b", False, "coa", None),
    ],
)
def test_the_method_for_a_model(
    method: str | None, spec: str, chosen: bool, expected: str | None, note: str | None
) -> None:
    fitted, said = method_for_model(method, spec, chosen=chosen)
    assert fitted == expected
    if note is None:
        assert said is None
    else:
        assert said is not None and note in said and "\n" not in said


class LoopingClient:
    """Streams one sentence forever (what SmolLM2 does over the demo notes); counts what it was asked for."""

    def __init__(self, sentence: str, copies: int = 200):
        self.pieces = [word + " " for _ in range(copies) for word in sentence.split()]
        self.sent = 0
        self.closed = False

    async def create_stream(
        self, messages: Sequence[Any], *, extra_create_args: Mapping[str, Any] = {}, cancellation_token: Any = None
    ) -> AsyncGenerator[str | CreateResult, None]:
        try:
            for piece in self.pieces:
                self.sent += 1
                yield piece
            yield CreateResult(
                finish_reason="length",
                content="".join(self.pieces),
                usage=RequestUsage(prompt_tokens=10, completion_tokens=len(self.pieces)),
                cached=False,
            )
        finally:
            self.closed = True

    def count_tokens(self, messages: Sequence[Any], **kwargs: Any) -> int:
        return 42


async def test_a_streamed_answer_stops_at_a_sentence_written_three_times() -> None:
    sentence = "The Adam optimiser is a variant of Adam, which is a variant of AdamW."
    client = LoopingClient(sentence)
    call = StreamedCall(client, [UserMessage(content="What does Adam combine?", source="user")], agent="reasoner")
    events = [event async for event in call.events()]
    assert call.looping and client.closed
    assert client.sent == 3 * len(sentence.split()), "stopped at the third copy, not at the token limit"
    assert call.text == sentence, "the answer is the sentence once"
    usage = events[-1]
    assert usage.kind == "usage" and usage.prompt_tokens == 42 and usage.completion_tokens == client.sent


async def test_an_answer_that_does_not_loop_is_streamed_whole() -> None:
    client = LoopingClient("Adam combines momentum with RMSprop scaling [1].", copies=2)
    call = StreamedCall(client, [UserMessage(content="What does Adam combine?", source="user")], agent="reasoner")
    _ = [event async for event in call.events()]
    assert not call.looping and client.sent == len(client.pieces)
    assert call.text == "".join(client.pieces)
