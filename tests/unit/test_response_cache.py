"""The response cache (workflows/evaluation/cache.py): JSON on disk, never code; keyed on everything that changes
the answer; a hit is served without the backend and marked ``cached``.

The backend is a scripted client that answers with its own label (so a test can tell which server an answer came
from) and counts the calls reaching it. The store's files are never addressed by name: tests that tamper with the
store overwrite every file under the cache folder, whatever its layout.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import pytest
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, LLMMessage, RequestUsage, SystemMessage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient
from conclave.workflows.evaluation.cache import CacheSet, cache_dir

from conclave.settings import Settings, load_settings

SPEC = "openai/scripted"
MESSAGES: list[LLMMessage] = [
    SystemMessage(content="Answer briefly."),
    UserMessage(content="What is 2 + 2?", source="user"),
]
ADD_TOOL = {
    "name": "add",
    "description": "Add two numbers.",
    "parameters": {
        "type": "object",
        "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
        "required": ["a", "b"],
    },
}


class Backend(ReplayChatCompletionClient):
    """Answers ``<label>: <last user message>`` and counts the calls that reach it."""

    def __init__(self, label: str):
        super().__init__([])
        self.label = label
        self.conclave_name = SPEC
        self.calls = 0

    def answer(self, messages: Sequence[LLMMessage]) -> str:
        return f"{self.label}: {messages[-1].content}"

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:  # type: ignore[override]
        self.calls += 1
        return CreateResult(
            finish_reason="stop",
            content=self.answer(messages),
            cached=False,
            usage=RequestUsage(prompt_tokens=3, completion_tokens=2),
        )

    async def create_stream(  # type: ignore[override]
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        self.calls += 1
        text = self.answer(messages)
        half = len(text) // 2
        yield text[:half]
        yield text[half:]
        yield CreateResult(
            finish_reason="stop", content=text, cached=False, usage=RequestUsage(prompt_tokens=3, completion_tokens=2)
        )


class Factory:
    """A ``ClientFactory`` handing out one labelled backend."""

    def __init__(self, label: str = "server"):
        self.backend = Backend(label)

    async def __call__(self, spec: str, settings: Settings) -> Backend:
        return self.backend

    @property
    def calls(self) -> int:
        return self.backend.calls


class TouchOnLoad:
    """Unpickling this creates ``marker``: stands in for an attacker's payload (no shell involved)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.fixture
def settings(conclave_home: Path) -> Settings:
    return load_settings(model=SPEC, openai_base_url="http://127.0.0.1:8001/v1")


async def ask(
    settings: Settings, factory: Factory, *, stream: bool = False, spec: str = SPEC, **kwargs: Any
) -> tuple[CreateResult, list[str]]:
    """One call through a fresh CacheSet (as a new run would make it): the final result and any streamed text."""
    caches = CacheSet(settings, factory=factory)
    try:
        client = await caches.client(spec)
        if not stream:
            return await client.create(MESSAGES, **kwargs), []
        parts: list[str] = []
        final: CreateResult | None = None
        async for item in client.create_stream(MESSAGES, **kwargs):
            if isinstance(item, CreateResult):
                final = item
            else:
                parts.append(item)
        assert final is not None, "a stream ends with a CreateResult"
        return final, parts
    finally:
        await caches.close()


def store_files(settings: Settings) -> list[Path]:
    return [p for p in settings.cache_path.rglob("*") if p.is_file()]


def overwrite_store(settings: Settings, payload: bytes) -> int:
    files = store_files(settings)
    for path in files:
        path.write_bytes(payload)
    return len(files)


# --- 1. a pickle on disk is never loaded --------------------------------------------------------------------------


async def test_a_planted_diskcache_pickle_is_not_loaded(settings: Settings, tmp_path: Path) -> None:
    """The old store (diskcache, pickles) at the folder and key the cache would read: nothing is unpickled."""
    diskcache = pytest.importorskip("diskcache")
    from autogen_ext.models.cache import ChatCompletionCache

    marker = tmp_path / "pwned"
    key = ChatCompletionCache(Backend("x"))._check_cache(MESSAGES, [], None, {})[1]
    folder = cache_dir(settings, SPEC)
    folder.mkdir(parents=True, exist_ok=True)
    with diskcache.Cache(str(folder)) as disk:
        disk.set(key, TouchOnLoad(marker))
    assert not marker.exists()

    factory = Factory()
    result, _ = await ask(settings, factory)
    assert not marker.exists(), "data in the cache folder was run as code"
    assert factory.calls == 1, "the planted entry must not be served"
    assert result.content == "server: What is 2 + 2?" and not result.cached

    result, parts = await ask(settings, factory, stream=True)
    assert not marker.exists()
    assert result.content == "server: What is 2 + 2?"


async def test_a_pickle_in_place_of_a_stored_answer_is_a_miss(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    await ask(settings, Factory())
    assert overwrite_store(settings, pickle.dumps(TouchOnLoad(marker))) > 0

    factory = Factory()
    with caplog.at_level(logging.DEBUG, logger="conclave.workflows.evaluation.cache"):
        result, _ = await ask(settings, factory)
    assert not marker.exists(), "data in the cache folder was run as code"
    assert "unreadable entry" in caplog.text, "a bad entry is logged at debug"
    assert factory.calls == 1 and not result.cached and result.content == "server: What is 2 + 2?"

    again = Factory()  # the bad entry was overwritten by the fresh answer
    result, _ = await ask(settings, again)
    assert again.calls == 0 and result.cached and result.content == "server: What is 2 + 2?"
    assert not marker.exists()


# --- 2. a corrupt entry is a miss, not a crash --------------------------------------------------------------------

BAD_ENTRIES = {
    "not-json": b"{not json",
    "empty": b"",
    "not-utf8": b"\xff\xfe\x00\x81garbage",
    "json-scalar": b'"just a string"',
    "json-list-of-numbers": b"[1, 2, 3]",
    "unknown-object": b'{"unexpected": true}',
    "result-wrong-shape": b'{"result": {"content": 5}}',
    "stream-wrong-item": b'{"stream": ["a", {"bad": 1}]}',
    "deep-nesting": b"[" * 100000 + b"]" * 100000,
}


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("payload", list(BAD_ENTRIES.values()), ids=list(BAD_ENTRIES))
async def test_a_corrupt_entry_is_a_miss_and_is_overwritten(settings: Settings, payload: bytes, stream: bool) -> None:
    await ask(settings, Factory(), stream=stream)
    assert overwrite_store(settings, payload) > 0

    factory = Factory()
    result, parts = await ask(settings, factory, stream=stream)
    assert factory.calls == 1 and not result.cached and result.content == "server: What is 2 + 2?"
    if stream:
        assert "".join(parts) == "server: What is 2 + 2?"

    again = Factory()
    result, _ = await ask(settings, again, stream=stream)
    assert again.calls == 0 and result.cached and result.content == "server: What is 2 + 2?"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
async def test_an_entry_that_is_not_a_regular_file_is_a_miss(settings: Settings, tmp_path: Path) -> None:
    """A FIFO would block a plain read and a link could point anywhere: neither is read."""
    await ask(settings, Factory())
    for path in store_files(settings):
        path.unlink()
        os.mkfifo(path)
    factory = Factory()
    result, _ = await ask(settings, factory)
    assert factory.calls == 1 and not result.cached

    elsewhere = tmp_path / "elsewhere.json"
    for path in store_files(settings):
        elsewhere.write_bytes(path.read_bytes())  # a valid entry, reached through a link
        path.unlink()
        path.symlink_to(elsewhere)
    factory = Factory()
    result, _ = await ask(settings, factory)
    assert factory.calls == 1 and not result.cached


async def test_the_store_round_trips_tool_calls_and_streams_as_json(tmp_path: Path) -> None:
    from conclave.workflows.evaluation.cache import JsonResponseStore

    store = JsonResponseStore(tmp_path / "store")
    key = "ab" * 32
    result = CreateResult(
        finish_reason="function_calls",
        cached=False,
        thought="add them",
        content=[FunctionCall(id="call-1", name="add", arguments='{"a": 2, "b": 2}')],
        usage=RequestUsage(prompt_tokens=5, completion_tokens=7),
    )
    store.set(key, result)
    assert store.get(key) == result
    assert json.loads(store.path(key).read_text(encoding="utf-8"))["result"]["content"][0]["name"] == "add"
    store.set(key, ["2 + ", "2", result])
    assert store.get(key) == ["2 + ", "2", result]
    assert store.get("cd" * 32) is None and store.get("../../etc/passwd") is None


async def test_a_request_that_cannot_be_keyed_goes_to_the_backend(settings: Settings) -> None:
    """Arguments that are not plain data cannot be keyed reliably: no cache, but no crash either."""
    factory = Factory()
    for _ in range(2):
        result, _ = await ask(settings, factory, extra_create_args={"opaque": object()})
        assert not result.cached
    assert factory.calls == 2


# --- 3. the key covers everything that changes the answer ---------------------------------------------------------


async def test_servers_differing_only_in_base_url_do_not_share_answers(settings: Settings) -> None:
    other = load_settings(model=SPEC, openai_base_url="http://127.0.0.1:8002/v1")
    assert settings.model_copy(update={"openai_base_url": other.openai_base_url}) == other

    first = Factory("server-1")
    result, _ = await ask(settings, first)
    assert first.calls == 1 and result.content == "server-1: What is 2 + 2?"

    second = Factory("server-2")
    result, _ = await ask(other, second)
    assert second.calls == 1, "server 1's answer was served for server 2"
    assert result.content == "server-2: What is 2 + 2?" and not result.cached

    for where, label in ((settings, "server-1"), (other, "server-2")):
        fresh = Factory("unused")
        result, _ = await ask(where, fresh)
        assert fresh.calls == 0 and result.cached and result.content == f"{label}: What is 2 + 2?"


async def test_ollama_hosts_do_not_share_answers(settings: Settings) -> None:
    spec = "ollama/scripted"
    one = load_settings(model=spec, ollama_host="http://127.0.0.1:11001")
    two = load_settings(model=spec, ollama_host="http://127.0.0.1:11002")
    await ask(one, Factory("host-1"), spec=spec)
    second = Factory("host-2")
    result, _ = await ask(two, second, spec=spec)
    assert second.calls == 1 and result.content == "host-2: What is 2 + 2?"


@pytest.mark.parametrize(
    "change",
    [{"temperature": 0.7}, {"max_tokens": 100}, {"context_length": 8192}],
    ids=["temperature", "max_tokens", "context_length"],
)
async def test_generation_settings_are_part_of_the_key(settings: Settings, change: dict[str, Any]) -> None:
    await ask(settings, Factory())
    factory = Factory()
    await ask(settings.model_copy(update=change), factory)
    assert factory.calls == 1


REQUESTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "json-output": {"json_output": True},
    "extra-args": {"extra_create_args": {"temperature": 0.9, "seed": 7}},
    "other-seed": {"extra_create_args": {"temperature": 0.9, "seed": 8}},
    "schema": {"extra_create_args": {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}},
    "tools": {"tools": [ADD_TOOL]},
    "tools-required": {"tools": [ADD_TOOL], "tool_choice": "required"},
    "tools-none": {"tools": [ADD_TOOL], "tool_choice": "none"},
}


async def test_every_request_argument_is_part_of_the_key(settings: Settings) -> None:
    factory = Factory()
    for expected, (name, kwargs) in enumerate(REQUESTS.items(), start=1):
        await ask(settings, factory, **kwargs)
        assert factory.calls == expected, f"request {name!r} was served another request's answer"
    for name, kwargs in REQUESTS.items():
        result, _ = await ask(settings, factory, **kwargs)
        assert result.cached, f"request {name!r} missed its own entry"
    assert factory.calls == len(REQUESTS)


async def test_no_secret_reaches_the_cache_folder(conclave_home: Path) -> None:
    secret = "sk-test-VERYSECRET-0123456789"
    settings = load_settings(model=SPEC, openai_base_url="http://127.0.0.1:8001/v1", openai_api_key=secret)
    await ask(settings, Factory())
    await ask(settings, Factory(), stream=True)
    assert store_files(settings)
    for path in settings.cache_path.rglob("*"):
        assert "VERYSECRET" not in str(path)
        if path.is_file():
            assert b"VERYSECRET" not in path.read_bytes()


# --- 4. a hit is served from the cache ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first_stream,then_stream",
    [(False, False), (True, True), (True, False), (False, True)],
    ids=["create-create", "stream-stream", "stream-create", "create-stream"],
)
async def test_a_hit_is_served_from_the_cache(settings: Settings, first_stream: bool, then_stream: bool) -> None:
    cold = Factory()
    result, _ = await ask(settings, cold, stream=first_stream)
    assert cold.calls == 1 and not result.cached

    warm = Factory("unused")
    result, parts = await ask(settings, warm, stream=then_stream)
    assert warm.calls == 0, "a repeated request reached the backend"
    assert result.cached and result.content == "server: What is 2 + 2?"
    assert result.usage.prompt_tokens == 3 and result.usage.completion_tokens == 2
    if then_stream:
        assert "".join(parts) == "server: What is 2 + 2?"


async def test_hits_within_one_run_and_the_backend_count(settings: Settings) -> None:
    factory = Factory()
    caches = CacheSet(settings, factory=factory)
    client = await caches.client(SPEC)
    assert await caches.client(SPEC) is client
    first = await client.create(MESSAGES)
    second = await client.create(MESSAGES)
    assert not first.cached and second.cached and second.content == first.content
    assert caches.backend_calls() == {SPEC: 1}
    await caches.close()


async def test_units_that_start_together_share_one_client(settings: Settings) -> None:
    """The harness starts its units at once; each asks for the model's client. One must be built: an endpoint pool
    built four times counts its requests four times apart and sends the four first requests to one endpoint."""
    import asyncio

    built: list[str] = []
    factory = Factory()

    async def slow_factory(spec: str, s: Settings) -> Any:
        built.append(spec)
        await asyncio.sleep(0.05)  # building a client awaits (a pool checks its endpoints' /models)
        return await factory(spec, s)

    caches = CacheSet(settings, factory=slow_factory)
    clients = await asyncio.gather(*(caches.client(SPEC) for _ in range(4)))
    assert built == [SPEC] and all(c is clients[0] for c in clients)
    await caches.close()


async def test_disabled_cache_always_reaches_the_backend(settings: Settings) -> None:
    factory = Factory()
    caches = CacheSet(settings, enabled=False, factory=factory)
    client = await caches.client(SPEC)
    await client.create(MESSAGES)
    result = await client.create(MESSAGES)
    assert not result.cached and factory.calls == 2
    assert not store_files(settings)
    await caches.close()


async def test_a_stopped_stream_remembered_by_the_reasoner_is_replayed(settings: Settings) -> None:
    """agents/reasoner.py stores a stream it stopped early, so a repeated run stops at the same place."""
    from conclave.agents.reasoner import remember_stopped_stream

    extra = {"temperature": 0.0}
    caches = CacheSet(settings, factory=Factory())
    client = await caches.client(SPEC)
    remember_stopped_stream(client, MESSAGES, extra, ["step 1\n", "step 2\n"])
    await caches.close()

    warm = Factory("unused")
    result, parts = await ask(settings, warm, stream=True, extra_create_args=extra)
    assert warm.calls == 0 and result.cached
    assert parts == ["step 1\n", "step 2\n"] and result.content == "step 1\nstep 2\n"
