"""``conclave serve``: the team behind an OpenAI-compatible API (FastAPI on uvicorn).

``POST /v1/chat/completions`` (streamed or not) and ``GET /v1/models``. The model name picks the method and the model:
``conclave`` (the server's defaults), ``conclave/METHOD`` (``conclave/rag``, ``conclave/coa:k=3``), ``conclave@SPEC``
and ``conclave/METHOD@SPEC`` for a served model spec (``conclave/rag@embedded``). ``messages`` is the conversation:
system messages become the answer's instructions (``ask --system``), earlier user/assistant turns the run's history
(a follow-up is read against them, as in the chat), and the last user message is the question. A ``collection``
field (with the openai client: ``extra_body={"collection": ...}``) chooses among the server's collections.

The answer is the message content; what it rests on travels in the ``conclave`` field of the reply (sources, value,
chain, per-agent usage, whether the run answered), and, streamed, in one last chunk with no choices, which a plain
client skips. ``usage`` is the whole team's.

Request bodies are untrusted: bounded before they are read whole (:data:`MAX_BODY_BYTES`, 413), nesting-checked,
parsed as data, checked against a closed set of fields (an unknown one is a 400 that names it: a misspelt
``colection`` must not silently search the default collection) and against what the server offers (``service.Team``).
With an API key, every request must bring it (``Authorization: Bearer KEY``, compared in constant time).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from conclave.server.service import Busy, Refused, Request, Team
from fastapi import Request as HttpRequest  # resolved by FastAPI from the annotations at run time
from pydantic import BaseModel, ConfigDict, ValidationError

from conclave.errors import ConclaveError
from conclave.events import AnswerDelta, AnswerReady, Event, RunFailed, RunFinished

__all__ = ["MAX_BODY_BYTES", "MAX_MESSAGE_BYTES", "create_app", "model_ids", "parse_model"]


MAX_BODY_BYTES = 1024 * 1024
"""The largest request body read (bytes): a conversation is a few questions and answers, not a document."""
MAX_MESSAGE_BYTES = 32 * 1024
"""The longest question (UTF-8 bytes), as ``ask`` takes: a long text is something to ingest and search."""
PREFIX = "conclave"
DISCONNECT_POLL_S = 0.5
"""How often a non-streamed request checks that its client is still there."""

# Fields of OpenAI's chat completion request that a front-end may send: accepted, and ignored where the team decides
# for itself (sampling, logprobs, the store, ...). Anything else is refused by name.
_ACCEPTED_OPENAI_FIELDS = (
    "audio frequency_penalty function_call functions logit_bias logprobs max_completion_tokens max_tokens metadata "
    "modalities parallel_tool_calls prediction presence_penalty prompt_cache_key reasoning_effort response_format "
    "safety_identifier seed service_tier stop store stream_options temperature tool_choice top_logprobs top_p user "
    "verbosity web_search_options"
).split()


class _Message(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool_calls, refusal, ...: other clients' message fields

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The fields this server reads; the accepted OpenAI fields are checked separately (:func:`_check_fields`)."""

    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[_Message]
    stream: bool = False
    n: int | None = None
    tools: list[Any] | None = None
    collection: str | None = None
    """Conclave's own: the collection to search (one the server was started with)."""


class ApiError(Exception):
    """An error reply in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        self.headers = headers or {}


# ------------------------------------------------------------------------------------------------ model names


def model_ids(team: Team) -> list[str]:
    """Every model name ``/v1/models`` lists: ``conclave``, ``conclave/METHOD``, and both with ``@SPEC``."""
    from conclave.workflows.methods import METHODS

    methods = list(METHODS.names())
    ids = [PREFIX, *(f"{PREFIX}/{m}" for m in methods)]
    for spec in team.models:
        ids += [f"{PREFIX}@{spec}", *(f"{PREFIX}/{m}@{spec}" for m in methods)]
    return ids


def parse_model(name: str) -> tuple[str | None, str | None]:
    """``conclave[/METHOD][@SPEC]`` -> (method, spec); ApiError 404 for any other name."""
    head, at, spec = name.strip().partition("@")
    prefix, slash, method = head.partition("/")
    if prefix != PREFIX or (slash and not method.strip()) or (at and not spec.strip()):
        raise ApiError(
            404,
            f"model {name!r} does not exist: this server's models are named conclave, conclave/METHOD, "
            "conclave/METHOD@MODEL (GET /v1/models lists them)",
            code="model_not_found",
            param="model",
        )
    return (method.strip() or None), (spec.strip() or None)


# ------------------------------------------------------------------------------------------------ requests


def _text_of(message: _Message, index: int) -> str:
    """A message's text: a string, or the text parts of a list of parts (images and audio are refused)."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ApiError(400, f"messages[{index}]: only text content is supported", param=f"messages[{index}]")
        parts.append(part["text"])
    return "\n".join(parts)


def conversation(messages: list[_Message]) -> tuple[str, list[tuple[str, str]], str | None]:
    """(question, history, system) from OpenAI messages: system and developer messages are the instructions, earlier
    user/assistant turns the history (pairs), and the last message, a user's, the question."""
    if not messages:
        raise ApiError(400, "messages is empty: send at least one user message", param="messages")
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        text = _text_of(message, index)
        if len(text.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
            raise ApiError(
                413,
                f"messages[{index}] is longer than {MAX_MESSAGE_BYTES:,} bytes: ask in fewer words, or ingest a "
                "long text (conclave ingest) and ask about it",
                code="message_too_long",
                param=f"messages[{index}]",
            )
        if message.role in ("system", "developer"):
            system.append(text)
        elif message.role in ("user", "assistant"):
            turns.append((message.role, text))
        else:
            raise ApiError(
                400,
                f"messages[{index}]: role {message.role!r} is not supported (use system, user and assistant)",
                param=f"messages[{index}].role",
            )
    if not turns or turns[-1][0] != "user":
        raise ApiError(400, "the last message must be the user's question", param="messages")
    history: list[tuple[str, str]] = []
    pending: list[str] = []
    for role, text in turns[:-1]:
        if role == "user":
            pending.append(text)
        else:
            history.append(("\n".join(pending), text))
            pending = []
    question = "\n".join([*pending, turns[-1][1]])
    return question, history, ("\n\n".join(system) or None)


def _check_fields(body: ChatRequest) -> None:
    unknown = sorted(set(body.model_extra or {}) - set(_ACCEPTED_OPENAI_FIELDS))
    if unknown:
        raise ApiError(
            400,
            f"unknown field {unknown[0]!r}: this server reads model, messages, stream and collection (and accepts "
            "OpenAI's other chat completion fields)",
            code="unknown_field",
            param=unknown[0],
        )
    if body.n not in (None, 1):
        raise ApiError(400, "n must be 1: the team writes one answer per request", param="n")
    if body.tools:
        raise ApiError(400, "tools are not supported: the team calls its own tools", param="tools")


async def _read_body(request: Any) -> ChatRequest:
    """The request body, bounded, parsed and validated (ApiError with what to fix otherwise)."""
    from conclave.nesting import loads

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = loads(raw)
    except (ValueError, RecursionError) as exc:
        detail = getattr(exc, "msg", None) or str(exc)
        raise ApiError(400, f"the request body is not valid JSON: {detail}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    try:
        body = ChatRequest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        raise ApiError(400, f"{where}: {err['msg']}", param=where) from None
    _check_fields(body)
    return body


def _too_large() -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than {MAX_BODY_BYTES // 1024:,} KiB: send a conversation, not a document "
        "(ingest long texts with conclave ingest)",
        code="request_too_large",
    )


def _request_of(team: Team, body: ChatRequest) -> Request:
    method, spec = parse_model(body.model)
    question, history, system = conversation(body.messages)
    request = Request(
        question=question,
        method=method,
        model=spec,
        collection=body.collection,
        history=history,
        system=system,
    )
    try:
        return team.check(request)
    except Refused as exc:
        code = "model_not_found" if exc.param == "model" else None
        message = exc.message + (f": {exc.hint}" if exc.hint else "")
        raise ApiError(exc.status, message, code=code, param=exc.param) from None


# ------------------------------------------------------------------------------------------------ replies


@dataclass
class _Reply:
    """What a run came to, in the shape the reply needs."""

    id: str
    model: str
    created: int
    text: str = ""
    answer: AnswerReady | None = None
    failure: RunFailed | None = None
    finished: RunFinished | None = None

    def usage(self) -> dict[str, int]:
        from conclave.workflows.runner import total_usage

        total = total_usage(self.finished.usage if self.finished else {})
        return {
            "prompt_tokens": total["prompt_tokens"],
            "completion_tokens": total["completion_tokens"],
            "total_tokens": total["prompt_tokens"] + total["completion_tokens"],
        }

    def extension(self) -> dict[str, Any]:
        """The ``conclave`` field: what the answer rests on."""
        answer, finished = self.answer, self.finished
        ok = finished is not None and finished.ok and self.failure is None
        return {
            "ok": ok,
            "error": None if ok else (self.failure.error if self.failure else (finished.reason if finished else None)),
            "value": answer.value if answer else None,
            "sources": [source.__dict__ for source in answer.sources] if answer else [],
            "chain": answer.chain if answer else "",
            "usage": finished.usage if finished else {},
            "seconds": round(finished.seconds, 3) if finished else None,
        }

    def completion(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": self.usage(),
            "conclave": self.extension(),
        }

    def chunk(self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        data = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }
        return _sse(data)

    def take(self, event: Event) -> str | None:
        """Record ``event``; the text it adds to the answer, if any."""
        if isinstance(event, AnswerDelta):
            self.text += event.text
            return event.text
        if isinstance(event, AnswerReady):
            self.answer = event
            rest = _remainder(self.text, event.text)
            self.text = event.text if not self.text else self.text + rest
            return rest or None
        if isinstance(event, RunFailed):
            self.failure = event
        elif isinstance(event, RunFinished):
            self.finished = event
        return None


def _remainder(streamed: str, final: str) -> str:
    """What of the final answer the streamed pieces have not said yet (a computed answer streams nothing)."""
    said = streamed.lstrip()
    if not said:
        return final
    return final[len(said) :] if final.startswith(said) else ""


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False, default=str)}\n\n"


def _failure_error(reply: _Reply) -> ApiError | None:
    """A run that failed (a model down, a store damaged) is an error reply; one that ran but found no answer is
    an answer whose ``conclave.ok`` is false."""
    if reply.failure is None:
        return None
    message = reply.failure.error + (f" ({reply.failure.hint})" if reply.failure.hint else "")
    return ApiError(502, message, kind="server_error", code="run_failed")


# ------------------------------------------------------------------------------------------------ the app


def create_app(team: Team, *, api_key: str | None = None, warm_up: bool = True) -> Any:
    """The FastAPI app serving ``team``; with ``api_key``, every request must bring it."""
    from contextlib import asynccontextmanager

    from fastapi import Depends, FastAPI
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.background import BackgroundTask

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        if warm_up:
            await team.warm_up()
        yield

    expected = api_key.encode() if api_key else None

    async def authorized(http: HttpRequest) -> None:
        if expected is None:
            return
        scheme, _, token = http.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise ApiError(
                401,
                "invalid or missing API key: send Authorization: Bearer KEY with the key the server was started with",
                kind="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    app = FastAPI(
        title="Conclave",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        dependencies=[Depends(authorized)],
    )

    @app.exception_handler(ApiError)
    async def _api_error(_: Any, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.get("/v1/models")
    async def _models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": i, "object": "model", "created": 0, "owned_by": "conclave"} for i in model_ids(team)],
        }

    @app.post("/v1/chat/completions")
    async def _chat(http: HttpRequest) -> Any:
        body = await _read_body(http)
        request = _request_of(team, body)
        reply = _Reply(id=f"chatcmpl-{uuid.uuid4().hex}", model=body.model, created=int(time.time()))
        try:
            release = await team.limiter(request.model).acquire()
        except Busy as exc:
            raise ApiError(
                429,
                f"{exc.message}: {exc.hint}",
                kind="rate_limit_error",
                code="server_busy",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None
        if body.stream:
            options = (body.model_extra or {}).get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            return StreamingResponse(
                _stream(team, request, reply, release, include_usage),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
                background=BackgroundTask(release),  # also when the client left before the stream began
            )
        try:
            if not await _answer_while_connected(http, team, request, reply):
                return Response(status_code=499)  # nobody reads it: the client closed the connection
        finally:
            release()
        error = _failure_error(reply)
        if error is not None:
            raise error
        return reply.completion()

    return app


async def _answer_while_connected(http: HttpRequest, team: Team, request: Request, reply: _Reply) -> bool:
    """Run ``request`` into ``reply`` unless the client goes away first (then the run is cancelled, which stops the
    model, and the result is False): a client that timed out must not keep a model slot busy."""
    answering = asyncio.ensure_future(_answer(team, request, reply))

    async def disconnected() -> None:
        while not await http.is_disconnected():
            await asyncio.sleep(DISCONNECT_POLL_S)

    watching = asyncio.ensure_future(disconnected())
    try:
        done, _ = await asyncio.wait({answering, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (answering, watching):
            task.cancel()
        await asyncio.gather(answering, watching, return_exceptions=True)
    if answering in done and answering.exception() is not None:
        raise answering.exception()  # type: ignore[misc]
    return answering in done


async def _answer(team: Team, request: Request, reply: _Reply) -> None:
    """Run ``request`` to its end into ``reply``; a failure to start the run (a model that cannot load) becomes the
    reply's failure."""
    events = team.run(request)
    try:
        async for event in events:
            reply.take(event)
    except ConclaveError as exc:
        reply.failure = RunFailed(error=exc.message, hint=exc.hint)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


async def _stream(
    team: Team, request: Request, reply: _Reply, release: Callable[[], None], include_usage: bool
) -> AsyncIterator[str]:
    """The reply as server-sent events. A client that goes away cancels this generator, which closes the run (the
    model stops generating at its next token) and frees the slot."""
    events = team.run(request)
    try:
        yield reply.chunk({"role": "assistant", "content": ""})
        try:
            async for event in events:
                text = reply.take(event)
                if text:
                    yield reply.chunk({"content": text})
        except ConclaveError as exc:
            reply.failure = RunFailed(error=exc.message, hint=exc.hint)
        error = _failure_error(reply)
        if error is not None:
            yield _sse(error.body)
            return
        yield reply.chunk({}, "stop")
        yield reply.chunk(None, conclave=reply.extension())
        if include_usage:
            yield reply.chunk(None, usage=reply.usage())
        yield "data: [DONE]\n\n"
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        release()


def run_server(team: Team, *, host: str, port: int, api_key: str | None = None) -> None:
    """Serve ``team`` on ``host:port`` until interrupted (uvicorn; its own logs at warning level)."""
    import uvicorn

    uvicorn.run(create_app(team, api_key=api_key), host=host, port=port, log_level="warning", access_log=False)
