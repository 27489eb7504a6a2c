"""The embedded backend with the real bundled SmolLM2: chat, streaming, structured output, model info."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from autogen_core.models import ChatCompletionClient, CreateResult, validate_model_info

from conclave.models import make_client
from conclave.settings import Settings, load_settings
from tests.fixtures.models import check_chat, check_stream, check_structured, question

pytestmark = pytest.mark.integration


@pytest.fixture
def settings() -> Settings:
    return load_settings(temperature=0.0, max_tokens=48, context_length=2048)


@pytest.fixture
async def client(embedded_spec: str, settings: Settings) -> ChatCompletionClient:
    return await make_client(embedded_spec, settings)


def test_model_info(client: ChatCompletionClient) -> None:
    info = client.model_info
    validate_model_info(info)
    assert info["family"] == "unknown"
    assert info["json_output"] is True
    assert info["structured_output"] is True
    assert info["vision"] is False


async def test_chat(client: ChatCompletionClient) -> None:
    await check_chat(client)


async def test_stream(client: ChatCompletionClient) -> None:
    await check_stream(client)


@pytest.mark.slow  # grammar-constrained decoding is slow per token in llama.cpp
async def test_structured_output(embedded_spec: str) -> None:
    await check_structured(
        await make_client(embedded_spec, load_settings(temperature=0.0, max_tokens=64, context_length=2048))
    )


async def test_explicit_gguf_path_spec(smollm_path: Path, settings: Settings) -> None:
    client = await make_client(f"embedded:{smollm_path}", settings)
    result = await check_chat(client)
    assert result.finish_reason in ("stop", "length")


async def test_max_tokens_bounds_the_answer(embedded_spec: str) -> None:
    client = await make_client(embedded_spec, load_settings(temperature=0.0, max_tokens=16, context_length=2048))
    result = await client.create(question("Write a long story about a dragon."))
    assert result.usage.completion_tokens <= 16 + 1
    assert result.finish_reason == "length"


async def test_temperature_zero_is_deterministic(client: ChatCompletionClient) -> None:
    first = await client.create(question())
    second = await client.create(question())
    assert first.content == second.content


async def test_abandoned_stream_releases_the_model(client: ChatCompletionClient) -> None:
    """Closing a stream early (what Ctrl-C does) must not leave the shared model locked."""
    stream = client.create_stream(question("Count from 1 to 100, one number per line."))
    received = []
    async for item in stream:
        received.append(item)
        if len(received) == 2:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert all(isinstance(r, str) for r in received)
    result = await asyncio.wait_for(client.create(question()), timeout=60)
    assert isinstance(result, CreateResult) and result.content


async def test_embedded_threads_setting_reaches_llama_cpp(embedded_spec: str) -> None:
    from conclave.models.embedded import default_threads

    one = await make_client(embedded_spec, load_settings(max_tokens=16, context_length=2048, embedded_threads=1))
    await check_chat(one)
    inner = one.inner  # type: ignore[attr-defined]
    assert inner._model().llama.n_threads == 1
    default = await make_client(embedded_spec, load_settings(max_tokens=16, context_length=2048))
    await check_chat(default)
    assert default.inner._model().llama.n_threads == default_threads()  # type: ignore[attr-defined]


async def test_a_stream_stopped_early_still_caches_its_prompt_prefix(client: ChatCompletionClient) -> None:
    """llama-cpp-python saves a prompt's state only when a generation runs to its end; the reasoner stops at a
    program's closing fence, so its static prefix must still be saved, or every call evaluates it afresh."""
    shared = client.inner._model()  # type: ignore[attr-defined]
    llama = shared.llama
    llama.cache.cache_state.clear()
    stream = client.create_stream(question("List the numbers from 1 to 50, one per line, and nothing else."))
    async for _ in stream:
        break
    await stream.aclose()  # type: ignore[attr-defined]

    def wait_for_the_generation_thread() -> None:
        with shared.lock:  # held until the stopped generation has finished (and saved its state)
            pass

    await asyncio.to_thread(wait_for_the_generation_thread)
    keys = list(llama.cache.cache_state)
    assert len(keys) == 1, "the stopped generation's state was saved"
    assert len(keys[0]) > 10, "its key is the evaluated prompt and the piece decoded"
    # The next call with the same prompt starts from that state.
    assert llama.cache._find_longest_prefix_key(keys[0]) == keys[0]
