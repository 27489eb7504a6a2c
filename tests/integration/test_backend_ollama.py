"""The Ollama backend against the Ollama-API stub (tests/servers/ollama_stub.py), and a real Ollama when
``CONCLAVE_TEST_OLLAMA_HOST`` is set (that variant skips with the reason otherwise)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest
from autogen_core.models import ChatCompletionClient, validate_model_info

from conclave.models import make_client
from conclave.models.discovery import list_models
from conclave.settings import Settings, load_settings
from tests.fixtures.models import check_chat, check_stream, check_structured, question
from tests.fixtures.servers import OLLAMA_STUB_MODEL

pytestmark = pytest.mark.integration


def ollama_settings(host: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "ollama_host": host,
        "temperature": 0.0,
        "max_tokens": 48,
        "context_length": 2048,
    }
    return load_settings(**{**values, **extra})


def stub_requests(stub: str, path: str = "/api/chat") -> list[dict[str, Any]]:
    """What the stub received (request bodies without the messages)."""
    with urllib.request.urlopen(f"{stub}/_stub/requests", timeout=5) as reply:
        return [r for r in json.load(reply) if r["path"] == path]


@pytest.fixture
async def client(ollama_host: str, ollama_model: str) -> ChatCompletionClient:
    return await make_client(f"ollama/{ollama_model}", ollama_settings(ollama_host))


async def test_chat(client: ChatCompletionClient) -> None:
    await check_chat(client)


async def test_stream(client: ChatCompletionClient) -> None:
    await check_stream(client)


@pytest.mark.slow  # grammar-constrained decoding is slow per token in llama.cpp
async def test_structured_output(ollama_host: str, ollama_model: str, request: pytest.FixtureRequest) -> None:
    stub = str(request.getfixturevalue("ollama_stub"))
    before = len(stub_requests(stub))
    client = await make_client(f"ollama/{ollama_model}", ollama_settings(ollama_host, max_tokens=64))
    await check_structured(client)
    if ollama_host == stub:  # the schema must travel as Ollama's `format`, not as prompt text
        sent = stub_requests(stub)[before:]
        assert sent, "no chat request reached the stub"
        fmt = sent[-1]["format"]
        assert isinstance(fmt, dict), f"format should be the JSON schema, got {fmt!r}"
        assert set(fmt["properties"]) == {"answer", "confidence"}


def test_model_info_is_valid(client: ChatCompletionClient) -> None:
    validate_model_info(client.model_info)


async def test_model_info_comes_from_api_show(ollama_stub: str) -> None:
    """The stub declares capabilities ["completion", "tools"] and family llama: the client must say so."""
    client = await make_client(f"ollama/{OLLAMA_STUB_MODEL}", ollama_settings(ollama_stub))
    info = client.model_info
    assert info["function_calling"] is True
    assert info["vision"] is False
    assert info["json_output"] is True
    assert info["structured_output"] is True
    assert info["family"] in ("llama", "unknown")
    shows = stub_requests(ollama_stub, "/api/show")
    assert any((r.get("model") or r.get("name")) == OLLAMA_STUB_MODEL for r in shows)


@pytest.mark.parametrize(("wanted", "expected"), [(2048, 2048), (32768, 8192)])
async def test_num_ctx_always_set_and_capped_by_the_model(ollama_stub: str, wanted: int, expected: int) -> None:
    """Ollama's default context is small: every request carries num_ctx, never above the trained 8192."""
    before = len(stub_requests(ollama_stub))
    client = await make_client(f"ollama/{OLLAMA_STUB_MODEL}", ollama_settings(ollama_stub, context_length=wanted))
    await client.create(question())
    chunks = [c async for c in client.create_stream(question())]
    assert chunks
    sent = stub_requests(ollama_stub)[before:]
    assert len(sent) == 2
    for request in sent:
        assert request["options"]["num_ctx"] == expected, request
        assert request["options"]["temperature"] == 0.0
        assert request["options"]["num_predict"] == 48
    assert [r["stream"] for r in sent] == [False, True]


async def test_list_models_shows_ollama_models(ollama_stub: str) -> None:
    entries = await list_models(ollama_settings(ollama_stub))
    by_spec = {e.spec: e for e in entries}
    assert by_spec["embedded"].available is True
    entry = by_spec[f"ollama/{OLLAMA_STUB_MODEL}"]
    assert entry.available is True
    assert ollama_stub in entry.detail


async def test_list_models_when_ollama_is_down(unused_tcp_port: int) -> None:
    host = f"http://127.0.0.1:{unused_tcp_port}"
    entries = await list_models(ollama_settings(host))
    assert any(e.spec == "embedded" and e.available for e in entries)
    ollama = [e for e in entries if e.spec.startswith("ollama/")]
    assert ollama and not any(e.available for e in ollama)
    assert host in ollama[0].detail and "ollama serve" in ollama[0].detail


async def test_abandoned_stream_leaves_the_server_usable(ollama_stub: str) -> None:
    """Closing a stream early (Ctrl-C in the CLI) must not wedge the server for the next request."""
    client = await make_client(f"ollama/{OLLAMA_STUB_MODEL}", ollama_settings(ollama_stub, max_tokens=200))
    stream = client.create_stream(question("Count from 1 to 100, one number per line."))
    received = []
    async for item in stream:
        received.append(item)
        if len(received) == 2:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert all(isinstance(r, str) for r in received)
    result = await asyncio.wait_for(client.create(question()), timeout=60)
    assert isinstance(result.content, str) and result.content
