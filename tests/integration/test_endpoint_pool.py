"""One model over several OpenAI-compatible endpoints (issue 19 §2, the pool): least-loaded routing, a failing endpoint
taken out and the request moved on, errors that are the caller's raised at once. Real loopback servers: the stub
endpoint (tests/servers/openai_stub.py) and the misbehaving ones of tests/fixtures/servers.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from autogen_core.models import UserMessage

from conclave.errors import AuthenticationFailed, BackendUnavailable, ConfigError
from conclave.models import make_client
from conclave.models.pool import EndpointPool
from conclave.settings import load_settings
from tests.fixtures.servers import Behaviour, FlakyEndpoint
from tests.servers.openai_stub import StubEndpoint

pytestmark = pytest.mark.integration
QUESTION = [UserMessage(content="What is six times seven?", source="user")]
INFO = {"stub": {"function_calling": False, "json_output": True, "structured_output": True}}


@pytest.fixture
def stubs() -> Iterator[Callable[..., StubEndpoint]]:
    started: list[StubEndpoint] = []

    def start(delay: float = 0.0, model: str = "stub") -> StubEndpoint:
        started.append(StubEndpoint(delay=delay, model=model).start())
        return started[-1]

    yield start
    for stub in started:
        stub.stop()


def pool_settings(*urls: str, **extra: object) -> object:
    return load_settings(
        openai_base_urls=list(urls), openai_model_info=INFO, request_timeout=5, max_retries=1, retry_budget=20, **extra
    )


async def test_requests_spread_over_the_endpoints(stubs: Callable[..., StubEndpoint]) -> None:
    a, b = stubs(0.3), stubs(0.3)
    client = await make_client("openai/stub", pool_settings(a.base_url, b.base_url))
    assert isinstance(client, EndpointPool)
    results = await asyncio.gather(*(client.create(QUESTION) for _ in range(6)))
    assert all(r.content == "Answer: 42" for r in results)
    assert (a.served, b.served) == (3, 3), "six concurrent requests, three on each endpoint"
    assert a.peak <= 3 and b.peak <= 3
    streamed = [item async for item in client.create_stream(QUESTION)]
    assert streamed[0] == "Answer: 42"


async def test_a_dead_endpoint_is_taken_out_and_the_request_moves_on(
    stubs: Callable[..., StubEndpoint], flaky_endpoint: Callable[[Behaviour], FlakyEndpoint]
) -> None:
    dead = flaky_endpoint("close")
    alive = stubs()
    client = await make_client("openai/stub", pool_settings(dead.base_url, alive.base_url, endpoint_cooldown=60))
    for _ in range(4):
        assert (await client.create(QUESTION)).content == "Answer: 42"
    assert alive.served == 4
    hits_after_first = dead.chat_hits
    assert 1 <= hits_after_first <= 2, "tried (and retried once), then taken out"
    status = {s["endpoint"]: s for s in client.status()}  # type: ignore[attr-defined]
    assert status[dead.base_url]["healthy"] is False and status[dead.base_url]["failures"] == 1
    assert status[alive.base_url]["served"] == 4


async def test_when_every_endpoint_fails_the_error_names_each_of_them(
    flaky_endpoint: Callable[[Behaviour], FlakyEndpoint],
) -> None:
    first, second = flaky_endpoint("close"), flaky_endpoint("close")
    client = await make_client("openai/stub", pool_settings(first.base_url, second.base_url))
    with pytest.raises(BackendUnavailable) as caught:
        await client.create(QUESTION)
    assert first.chat_hits >= 1 and second.chat_hits >= 1
    message = caught.value.message
    assert message.startswith("every endpoint of openai/stub failed (2 of 2): ")
    assert first.base_url.rstrip("/") in message and second.base_url.rstrip("/") in message
    assert "openai_base_urls" in (caught.value.hint or "")
    with pytest.raises(BackendUnavailable, match="every endpoint"):  # streams say the same
        async for _ in client.create_stream(QUESTION):
            pass


async def test_endpoints_serving_different_models_are_refused_at_start(
    stubs: Callable[..., StubEndpoint],
) -> None:
    one, other = stubs(model="stub"), stubs(model="qwen2.5-coder")
    with pytest.raises(ConfigError) as caught:
        await make_client("openai/stub", pool_settings(one.base_url, other.base_url))
    assert "serve different models" in caught.value.message and "serves qwen2.5-coder" in caught.value.message
    assert one.served == 0 and other.served == 0, "refused before any request"
    same = await make_client("openai/stub", pool_settings(one.base_url, stubs(model="stub").base_url))
    assert (await same.create(QUESTION)).content == "Answer: 42"


async def test_a_callers_error_is_not_retried_elsewhere(
    stubs: Callable[..., StubEndpoint], flaky_endpoint: Callable[[Behaviour], FlakyEndpoint]
) -> None:
    refusing = flaky_endpoint("401")
    alive = stubs()
    client = await make_client("openai/stub", pool_settings(refusing.base_url, alive.base_url))
    client._turn = len(client.endpoints) - 1  # type: ignore[attr-defined]  # the refusing endpoint first
    with pytest.raises(AuthenticationFailed):
        await client.create(QUESTION)
    assert alive.served == 0, "a bad key is bad everywhere: not moved on"


def test_a_workflow_cannot_set_the_pool_and_a_dotenv_that_does_is_withheld(tmp_path: object, capsys: object) -> None:
    from pathlib import Path

    from conclave.workflows.files.run import workflow_settings
    from conclave.workflows.files.schema import load_workflow

    from conclave.errors import WorkflowError
    from conclave.settings import load_settings_with_origins

    folder = Path(str(tmp_path))
    path = folder / "wf.yaml"
    path.write_text(
        "version: 1\nname: w\nsettings:\n  openai_base_urls: [http://attacker.example/v1]\n"
        "steps:\n  - ask:\n      question: hi\n",
        encoding="utf-8",
    )
    with pytest.raises(WorkflowError, match="openai_base_urls"):
        workflow_settings(load_workflow(path), load_settings())
    dotenv = folder / ".env"
    dotenv.write_text('CONCLAVE_OPENAI_BASE_URLS=["http://127.0.0.1:9/v1"]\n', encoding="utf-8")
    loaded = load_settings_with_origins(dotenv_path=dotenv, env={"CONCLAVE_HOME": str(folder / "home")})
    assert loaded.settings.openai_base_urls == [], "withheld until `conclave trust` allows the file"
    assert [w.key for w in loaded.withheld] == ["openai_base_urls"]
    assert any(n.startswith("openai_base_urls = ") for n in loaded.notices)
