"""The OpenAI-compatible backend against llama.cpp's OpenAI-compatible servers (xllamacpp's, and llama-cpp-python's where
installed) with the bundled model on loopback."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from autogen_core.models import ChatCompletionClient, validate_model_info

from conclave.errors import BackendError
from conclave.models import make_client
from conclave.settings import Settings, load_settings
from tests.fixtures.models import check_chat, check_stream, check_structured, question
from tests.fixtures.servers import OPENAI_SERVER_MODEL, Behaviour, FlakyEndpoint

SPEC = f"openai/{OPENAI_SERVER_MODEL}"


# How a user describes a self-hosted model the client library does not know by name (README "Backends").
SERVER_MODEL_INFO = {OPENAI_SERVER_MODEL: {"function_calling": False, "json_output": True, "structured_output": True}}


def openai_settings(base_url: str, **extra: object) -> Settings:
    values: dict[str, object] = {
        "openai_base_url": base_url,
        "openai_model_info": SERVER_MODEL_INFO,
        "temperature": 0.0,
        "max_tokens": 48,
    }
    return load_settings(**{**values, **extra})


@pytest.fixture
async def client(llama_server: str) -> ChatCompletionClient:
    return await make_client(SPEC, openai_settings(llama_server))


@pytest.mark.integration
async def test_chat(client: ChatCompletionClient) -> None:
    await check_chat(client)


@pytest.mark.integration
async def test_stream(client: ChatCompletionClient) -> None:
    await check_stream(client)


@pytest.mark.integration
@pytest.mark.slow  # grammar-constrained decoding is slow per token in llama.cpp
async def test_structured_output(llama_server: str) -> None:
    client = await make_client(SPEC, openai_settings(llama_server, max_tokens=64))
    await check_structured(client)


@pytest.mark.integration
async def test_local_server_needs_no_key(llama_server: str) -> None:
    """A self-hosted base URL works without OPENAI_API_KEY (llama.cpp, vLLM, LM Studio accept any key)."""
    settings = openai_settings(llama_server)
    assert settings.openai_api_key is None
    result = await (await make_client(SPEC, settings)).create(question())
    assert isinstance(result.content, str) and result.content


async def test_model_info_from_settings_for_unknown_names() -> None:
    settings = load_settings(
        openai_base_url="http://127.0.0.1:9/v1",
        openai_model_info={OPENAI_SERVER_MODEL: {"vision": True, "function_calling": False, "family": "smollm"}},
    )
    client = await make_client(SPEC, settings)
    info = client.model_info
    validate_model_info(info)
    assert info["vision"] is True
    assert info["function_calling"] is False
    assert info["family"] == "smollm"


async def test_model_info_for_unknown_name_without_settings_is_valid() -> None:
    client = await make_client("openai/some-self-hosted-model", load_settings(openai_base_url="http://127.0.0.1:9/v1"))
    validate_model_info(client.model_info)


async def test_model_info_of_a_model_the_library_knows() -> None:
    client = await make_client("openai/gpt-4o", load_settings(openai_api_key="sk-test-not-real"))
    info = client.model_info
    assert info["vision"] is True
    assert info["function_calling"] is True
    assert info["family"] == "gpt-4o"


async def test_request_carries_settings_and_no_name_field(
    flaky_endpoint: Callable[[Behaviour], FlakyEndpoint],
) -> None:
    """On the wire: max_tokens and temperature from settings, no `name` on messages (some hosts reject it)."""
    endpoint = flaky_endpoint("500")
    settings = openai_settings(endpoint.base_url, max_tokens=33, max_retries=0, request_timeout=5)
    client = await make_client(SPEC, settings)
    with pytest.raises(BackendError):
        await client.create(question())
    body = endpoint.bodies[-1]
    assert isinstance(body, dict)
    assert body["model"] == OPENAI_SERVER_MODEL
    assert body.get("max_tokens") == 33 or body.get("max_completion_tokens") == 33
    assert body["temperature"] == 0.0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert all("name" not in m for m in body["messages"]), body["messages"]


@pytest.mark.integration
@pytest.mark.slow  # two grammar-constrained chains on llama.cpp's server
async def test_coa_team_through_the_llama_cpp_server(llama_server: str) -> None:
    """The reasoner streams its chain under a schema; llama.cpp's server refuses `json_schema` (HTTP 500), so the
    team must switch to the server's `json_object` + `schema` dialect instead of failing the run."""
    from conclave.workflows.runner import build_context, run_question

    settings = openai_settings(
        llama_server,
        model=SPEC,
        max_tokens=96,
        coa={"max_replans": 0, "max_critic_rounds": 0, "samples": 2, "agree": 0, "form": "json"},
    )
    ctx = await build_context("A pen costs 3 dollars. What do 4 pens cost?", settings, method="coa", knowledge=False)
    events = [e async for e in run_question(ctx)]
    failures = [e for e in events if e.kind == "run_failed"]
    assert not failures, failures
    finished = events[-1]
    # SmolLM2 may write chains that do not reify: then the run is honestly not ok, but it did not fail.
    assert finished.kind == "run_finished" and (finished.ok or finished.reason.startswith("no answer"))
    # Both concurrently drawn samples reached the server and came back as chains.
    assert sorted(e.sample for e in events if e.kind == "chain") == [0, 1]
    assert finished.usage["reasoner"]["calls"] == 2


@pytest.mark.integration
@pytest.mark.slow  # a plan and a verdict under grammars on llama.cpp's server
async def test_planner_and_critic_fall_back_to_the_servers_json_dialect(
    llama_server: str, conclave_home: object
) -> None:
    """Issue 16 §4: the planner and the critic asked only in the `json_schema` dialect, which llama.cpp's server
    refuses, so a run with a plan (a collection set, `coa.plan = always`) or a critic ended in a BackendError. Both now
    go through the one structured call helper that switches to `json_object` + `schema` as the reasoner does."""
    from conclave.workflows.runner import build_context, run_question

    settings = openai_settings(
        llama_server,
        model=SPEC,
        max_tokens=96,
        coa={"plan": "always", "use_critic": True, "max_replans": 0, "max_critic_rounds": 0, "form": "json"},
    )
    ctx = await build_context("A pen costs 3 dollars. What do 4 pens cost?", settings, method="coa", knowledge=False)
    events = [e async for e in run_question(ctx)]
    failures = [e.error for e in events if e.kind == "run_failed"]
    assert not failures, failures
    assert any(e.kind == "plan" for e in events)
    usage = events[-1].usage
    assert usage["planner"]["calls"] == 1, "the planner's call reached the server and came back"
