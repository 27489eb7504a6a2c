"""The embedded backend with the real bundled SmolLM2: chat, streaming, structured output, tool calls, model info;
on both engines (llama-cpp-python and xllamacpp, ``embedded_engine``), and what only one of them does."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from autogen_core import FunctionCall
from autogen_core.models import ChatCompletionClient, CreateResult, validate_model_info
from autogen_core.tools import FunctionTool

from conclave.models import make_client
from conclave.settings import Settings, load_settings
from tests.fixtures.models import (
    ENGINES,
    Answer,
    check_chat,
    check_stream,
    check_structured,
    embedded_settings,
    needs_llama_cpp_python,
    question,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(engine: str) -> Settings:
    return embedded_settings(engine, max_tokens=48)


@pytest.fixture
async def client(embedded_spec: str, settings: Settings) -> ChatCompletionClient:
    return await make_client(embedded_spec, settings)


async def test_a_damaged_gguf_is_a_config_error(tmp_path: Path, settings: Settings) -> None:
    """A file with the GGUF magic but no model behind it: refused with the fix, on either engine (no crash)."""
    from conclave.errors import ConfigError

    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64)
    client = await make_client(f"embedded:{damaged}", settings)
    with pytest.raises(ConfigError) as refused:
        await client.create(question())
    assert "could not load" in refused.value.message and refused.value.hint


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
async def test_structured_output(embedded_spec: str, engine: str) -> None:
    await check_structured(await make_client(embedded_spec, embedded_settings(engine, max_tokens=64)))


async def test_json_output_follows_the_schema(embedded_spec: str, engine: str) -> None:
    """``json_output=<model>`` constrains the reply by the schema's grammar: it parses as that model."""
    client = await make_client(embedded_spec, embedded_settings(engine, max_tokens=40))
    result = await client.create(
        question("Capital of France? Reply as JSON with answer and confidence."), json_output=Answer
    )
    assert isinstance(result.content, str)
    Answer.model_validate_json(result.content)


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def test_tool_calls_are_grammar_constrained(embedded_spec: str, engine: str) -> None:
    """A required tool call is one call of that tool with arguments of its schema, whatever the tiny model thinks."""
    client = await make_client(embedded_spec, embedded_settings(engine, max_tokens=40))
    tool = FunctionTool(add, description="Add two integers.")
    result = await client.create(question("What is 2 plus 3? Use the tool."), tools=[tool], tool_choice="required")
    assert result.finish_reason == "function_calls"
    assert isinstance(result.content, list) and len(result.content) == 1
    call = result.content[0]
    assert isinstance(call, FunctionCall) and call.name == "add"
    arguments = json.loads(call.arguments)
    assert set(arguments) == {"a", "b"} and all(isinstance(v, int) for v in arguments.values())


async def test_explicit_gguf_path_spec(smollm_path: Path, settings: Settings) -> None:
    client = await make_client(f"embedded:{smollm_path}", settings)
    result = await check_chat(client)
    assert result.finish_reason in ("stop", "length")


async def test_max_tokens_bounds_the_answer(embedded_spec: str, engine: str) -> None:
    client = await make_client(embedded_spec, embedded_settings(engine, max_tokens=16))
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


@needs_llama_cpp_python
async def test_embedded_threads_setting_reaches_llama_cpp(embedded_spec: str) -> None:  # llama-cpp-python
    from conclave.models.embedded import default_threads

    engine = {"embedded_engine": "llama-cpp-python", "max_tokens": 16, "context_length": 2048}
    one = await make_client(embedded_spec, load_settings(embedded_threads=1, **engine))
    await check_chat(one)
    inner = one.inner  # type: ignore[attr-defined]
    assert inner._model().llama.n_threads == 1
    default = await make_client(embedded_spec, load_settings(**engine))
    await check_chat(default)
    assert default.inner._model().llama.n_threads == default_threads()  # type: ignore[attr-defined]


@needs_llama_cpp_python
async def test_a_stream_stopped_early_still_caches_its_prompt_prefix(embedded_spec: str) -> None:
    """llama-cpp-python saves a prompt's state only when a generation runs to its end; the reasoner stops at a
    program's closing fence, so its static prefix must still be saved, or every call evaluates it afresh."""
    client = await make_client(embedded_spec, embedded_settings("llama-cpp-python"))
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


# -- the xllamacpp engine: parallel slots, its prompt cache, shutdown ------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
async def test_two_requests_overlap_only_on_the_xllamacpp_engine(embedded_spec: str, engine: str) -> None:
    """Two streams started together: on xllamacpp (two slots) both have decoded tokens before either finishes; on
    llama-cpp-python the second waits for the model's lock until the first is done. Order, not speed, is checked."""
    client = await make_client(embedded_spec, embedded_settings(engine, max_tokens=32))
    await client.create(question("Hi"))  # load the model first: its start-up is not part of either request
    times: dict[int, dict[str, float]] = {}

    async def one(i: int) -> str:
        seen: dict[str, float] = {}
        text = ""
        async for item in client.create_stream(question(f"Count from {i} to {i + 40}, separated by spaces.")):
            if isinstance(item, str):
                seen.setdefault("first", time.perf_counter())
            else:
                text = str(item.content)
        seen["end"] = time.perf_counter()
        times[i] = seen
        return text

    texts = await asyncio.gather(one(1), one(2))
    assert all(texts), texts
    overlapped = max(t["first"] for t in times.values()) < min(t["end"] for t in times.values())
    assert overlapped is (engine == "xllamacpp"), times


async def test_xllamacpp_reuses_a_cached_prompt_prefix(embedded_spec: str) -> None:
    """The same prompt again is found in the slot's cache (``cache_prompt``): its tokens are not evaluated again."""
    client = await make_client(embedded_spec, embedded_settings("xllamacpp", max_tokens=16))
    inner: Any = client.inner  # type: ignore[attr-defined]
    messages = question("Name a large animal that lives in the sea.")
    await client.create(messages)
    second = await client.create(messages)
    assert second.usage.prompt_tokens > 10
    assert inner.cached_tokens >= second.usage.prompt_tokens // 2, (inner.cached_tokens, second.usage)


def test_xllamacpp_parallel_setting_reaches_the_server(tmp_path: Path) -> None:
    """``embedded_parallel`` slots, each of ``context_length`` tokens, as the server reports them."""
    from conclave.models.backends import parallel_requests
    from conclave.models.capabilities import parallel_of

    settings = embedded_settings("xllamacpp", embedded_parallel=3)
    assert parallel_requests("embedded", settings) == 3
    assert parallel_requests("embedded", embedded_settings("llama-cpp-python")) == 1

    async def build() -> Any:
        return await make_client("embedded", settings)

    client = asyncio.run(build())
    assert parallel_of(client) == 3
    metrics = client.inner._server().server.handle_metrics()  # type: ignore[attr-defined]
    assert metrics  # the server answers directly, without HTTP
    slots = client.inner._server().slots  # type: ignore[attr-defined]
    assert slots == 3


def test_xllamacpp_shuts_down_cleanly_with_a_generation_running(tmp_path: Path) -> None:
    """Exiting while a stream is still decoding (in a daemon thread's event loop): the exit handler stops the
    generation and frees the server; the process ends at once with status 0 and nothing on stderr."""
    script = textwrap.dedent(
        """
        import asyncio, atexit, sys, threading
        from conclave.models import make_client
        from conclave.settings import load_settings
        from autogen_core.models import SystemMessage, UserMessage

        shared = []
        decoding = threading.Event()

        def after():  # registered before the engine's exit handler, so it runs after it
            print("freed" if shared and shared[0].server is None else "NOT FREED", flush=True)

        atexit.register(after)

        async def consume():
            settings = load_settings(embedded_engine="xllamacpp", embedded_parallel=2, max_tokens=2000,
                                     context_length=4096, embedded_threads=1)
            client = await make_client("embedded:smollm2", settings)
            shared.append(client.inner._server())
            messages = [SystemMessage(content="Be verbose."),
                        UserMessage(content="Count from 1 to 900, one number per line.", source="user")]
            async for _ in client.create_stream(messages):
                decoding.set()

        def before():  # registered after the engine's exit handler, so it runs before it
            print("decoding" if shared[0].active else "idle", flush=True)

        def background():
            try:
                asyncio.run(consume())
            except Exception as exc:  # the stream stopped by the exit: its consumer is told why
                assert "shut down" in str(exc), exc

        threading.Thread(target=background, daemon=True).start()
        decoding.wait(60)
        atexit.register(before)
        print("exiting", flush=True)
        sys.exit(0)
        """
    )
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["exiting", "decoding", "freed"], (done.stdout, done.stderr)
    assert done.stderr.strip() == "", done.stderr
    assert time.perf_counter() - started < 60
