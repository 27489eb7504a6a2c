"""How ``conclave serve`` reads a request (issue 28, item 1): model names, the conversation, what a request may
choose, and the queue bound. The app runs in process on a scripted model that keeps its prompts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import httpx
import pytest
from autogen_core.models import CreateResult
from autogen_ext.models.replay import ReplayChatCompletionClient
from conclave.server.openai_api import ApiError, _Message, conversation, create_app, model_ids, parse_model
from conclave.server.service import Busy, Limiter, Refused, Request, Team

from conclave.settings import load_settings
from tests.unit.test_team import JSON_INFO


class Prompted(ReplayChatCompletionClient):
    """A scripted model that keeps the prompts it was sent."""

    def __init__(self, replies: list[str]):
        super().__init__(replies, model_info=JSON_INFO)
        self.prompts: list[list[tuple[str, str]]] = []

    async def create(self, messages: Sequence[Any], **kwargs: Any) -> CreateResult:
        self.prompts.append([(type(m).__name__, str(m.content)) for m in messages])
        return await super().create(messages, **kwargs)

    async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        kwargs.pop("include_usage", None)
        result = await self.create(messages, **kwargs)
        yield str(result.content)
        yield result


def _team(model: Prompted, **kwargs: Any) -> Team:
    clients = {role: model for role in ("planner", "reasoner", "critic", "writer")}
    return Team(load_settings(method="direct"), clients=clients, **kwargs)


def test_model_names_choose_method_and_model() -> None:
    assert parse_model("conclave") == (None, None)
    assert parse_model("conclave/rag") == ("rag", None)
    assert parse_model("conclave/coa:k=3@embedded:qwen") == ("coa:k=3", "embedded:qwen")
    assert parse_model("conclave@ollama/llama3") == (None, "ollama/llama3")
    for bad in ("gpt-4o", "conclave/", "conclave@", "conclaves/rag"):
        with pytest.raises(ApiError) as caught:
            parse_model(bad)
        assert caught.value.status == 404


def test_models_listed_for_every_method_and_served_spec() -> None:
    team = Team(load_settings(), models=["embedded", "ollama/qwen2.5:7b"])
    ids = model_ids(team)
    assert "conclave" in ids and "conclave/react" in ids
    assert "conclave/coa@ollama/qwen2.5:7b" in ids and "conclave@embedded" in ids


def test_the_conversation_becomes_history_system_and_question() -> None:
    messages = [
        _Message(role="system", content="Answer in French."),
        _Message(role="user", content="What is the capital of France?"),
        _Message(role="assistant", content="Paris."),
        _Message(role="user", content=[{"type": "text", "text": "And of Italy?"}]),
    ]
    question, history, system = conversation(messages)
    assert question == "And of Italy?"
    assert history == [("What is the capital of France?", "Paris.")]
    assert system == "Answer in French."


@pytest.mark.parametrize(
    ("messages", "says"),
    [
        ([], "empty"),
        ([_Message(role="assistant", content="hi")], "last message"),
        ([_Message(role="tool", content="x"), _Message(role="user", content="q")], "role 'tool'"),
        ([_Message(role="user", content=[{"type": "image_url", "image_url": {"url": "x"}}])], "only text"),
    ],
)
def test_conversations_that_cannot_be_asked_are_refused(messages: list[_Message], says: str) -> None:
    with pytest.raises(ApiError) as caught:
        conversation(messages)
    assert caught.value.status == 400 and says in str(caught.value)


def test_a_request_chooses_only_what_the_server_offers() -> None:
    team = Team(load_settings(), models=["embedded:smollm2"], collections=["demo", "notes"])
    assert team.check(Request(question="q", model="embedded:smollm2", collection="notes"))
    with pytest.raises(Refused, match="not served here"):
        team.check(Request(question="q", model="embedded:/etc/passwd"))
    with pytest.raises(Refused, match="not served here"):
        team.check(Request(question="q", collection="private"))
    with pytest.raises(Refused, match="unknown method"):
        team.check(Request(question="q", method="nonsense"))
    with pytest.raises(Refused, match="empty"):
        team.check(Request(question="  "))
    # a request's model beats the per-role settings: every role on it
    settings = team.settings_for("embedded:smollm2")
    assert {settings.role_model(r) for r in ("planner", "reasoner", "critic", "writer")} == {"embedded:smollm2"}


async def test_the_limiter_runs_its_parallel_queues_its_bound_and_refuses_the_rest() -> None:
    limiter = Limiter(parallel=1, queue=1, guess_seconds=4)
    first = await limiter.acquire()
    waiting = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert limiter.running == 1 and limiter.waiting == 1
    with pytest.raises(Busy) as caught:
        await limiter.acquire()
    assert caught.value.retry_after == 8  # two requests of about 4 s ahead, one at a time
    first()
    first()  # a second release of the same slot changes nothing
    second = await waiting
    assert limiter.running == 1 and limiter.waiting == 0
    second()
    assert limiter.running == 0


async def test_history_reaches_the_model_and_usage_is_the_teams() -> None:
    model = Prompted(["Rome.\nAnswer: Rome"])
    app = create_app(_team(model), warm_up=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
        reply = await client.post(
            "/v1/chat/completions",
            json={
                "model": "conclave",
                "messages": [
                    {"role": "user", "content": "What is the capital of France?"},
                    {"role": "assistant", "content": "Paris."},
                    {"role": "user", "content": "And of Italy?"},
                ],
                "temperature": 0.2,
                "user": "someone",
            },
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["choices"][0]["message"]["content"] == "Rome.\nAnswer: Rome"
    assert body["conclave"]["value"] == "Rome" and body["conclave"]["ok"] is True
    prompt = model.prompts[0]
    assert ("UserMessage", "What is the capital of France?") in prompt
    assert ("AssistantMessage", "Paris.") in prompt
    assert prompt[-1] == ("UserMessage", "And of Italy?")
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


async def test_a_key_is_required_when_set_and_compared_whole() -> None:
    app = create_app(_team(Prompted(["x"])), api_key="s3cret-key", warm_up=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
        assert (await client.get("/v1/models")).status_code == 401
        for wrong in ("Bearer s3cret", "Bearer s3cret-key-and-more", "Basic s3cret-key", "s3cret-key"):
            assert (await client.get("/v1/models", headers={"Authorization": wrong})).status_code == 401
        ok = await client.get("/v1/models", headers={"Authorization": "Bearer s3cret-key"})
        assert ok.status_code == 200 and ok.json()["data"][0]["id"] == "conclave"


class Broken(Prompted):
    """A model whose endpoint is down."""

    async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        from conclave.errors import BackendUnavailable

        raise BackendUnavailable("the model endpoint refused the connection", hint="start it")
        yield  # an async generator


async def test_a_run_that_fails_is_an_error_reply_streamed_or_not() -> None:
    app = create_app(_team(Broken(["x"])), warm_up=False)
    transport = httpx.ASGITransport(app=app)
    ask = {"model": "conclave", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
        reply = await client.post("/v1/chat/completions", json=ask)
        assert reply.status_code == 502
        assert "refused the connection" in reply.json()["error"]["message"]
        streamed = await client.post("/v1/chat/completions", json={**ask, "stream": True})
    lines = [line for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert '"error"' in lines[-1] and "refused the connection" in lines[-1]
    assert "[DONE]" not in streamed.text, "a failed stream does not end as if it had answered"
