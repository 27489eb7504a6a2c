"""A wrapper that gives every backend the same failure behaviour.

Transient failures (connection refused, timeouts, HTTP 429/5xx) are retried with exponential backoff, a bounded
number of times, and only before any token has been streamed; everything else, and the last transient failure, becomes
one :class:`~conclave.errors.BackendError` whose hint says what to do. SDK exception types never leave this module.

Each retry is announced (a WARNING log line, which the CLI shows on stderr) and the whole wait is bounded: no retry
starts that could not finish within ``retry_budget`` seconds of the first attempt (a hung endpoint with the default
settings gives up after two timed-out attempts, not four). A remote reply with no content and no finish reason (an
HTML page or a cut-off stream that the SDK reads as nothing) is an error, never an empty answer.

Every reply leaves with the configured secrets removed (:func:`without_secrets`; a stream through
:class:`conclave.redact.SecretStream`): this is the one door model output passes through, and the response cache sits
outside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any, Literal

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from conclave.errors import (
    AuthenticationFailed,
    BackendError,
    BackendUnavailable,
    ConclaveError,
    ModelNotFound,
)
from conclave.models.attempts import Failed, first_result, first_stream
from conclave.models.capabilities import Capabilities
from conclave.models.delegating import DelegatingClient
from conclave.redact import SecretStream, redact_secrets
from conclave.terminal import clip

log = logging.getLogger(__name__)


class _EmptyReply(Exception):
    """A stream that ended with nothing in it (see ``ResilientClient._is_empty``)."""


def _unreachable() -> BaseException:
    return AssertionError("unreachable: the last failed attempt raises its error")


class _Transient(Exception):
    def __init__(self, error: ConclaveError):
        super().__init__(error.message)
        self.error = error


def classify(exc: BaseException, *, spec: str, where: str) -> ConclaveError | _Transient:
    """Map an SDK/network exception to our error; wrap retryable ones in ``_Transient``."""
    if isinstance(exc, ConclaveError):
        return exc
    try:
        import openai
    except ImportError:  # pragma: no cover
        openai = None  # type: ignore[assignment]
    try:
        import ollama
    except ImportError:  # pragma: no cover
        ollama = None  # type: ignore[assignment]
    import httpx

    if openai is not None:
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            return AuthenticationFailed(
                f"{where} rejected the API key for {spec} (HTTP {exc.status_code})",
                hint="set a valid key in OPENAI_API_KEY or `openai_api_key` in settings.toml",
            )
        if isinstance(exc, openai.NotFoundError):
            return ModelNotFound(
                f"{where} does not serve model {spec.split('/', 1)[-1]!r} (HTTP 404)",
                hint="check the model name with `conclave models` or the provider's model list",
            )
        if isinstance(exc, openai.APIStatusError) and _mentions_response_format(exc):
            # A host that does not know a response_format dialect (llama.cpp's server answers 500): not transient.
            return BackendError(
                f"{where} rejected response_format for {spec} (HTTP {exc.status_code}): {clip(exc.message, 200)}"
            )
        if isinstance(exc, openai.RateLimitError | openai.InternalServerError):
            return _Transient(
                BackendError(f"{where} answered HTTP {exc.status_code} for {spec}", hint="try again later")
            )
        if isinstance(exc, openai.APITimeoutError):
            return _Transient(
                BackendError(
                    f"{where} did not answer in time for {spec}", hint="check the server, or raise request_timeout"
                )
            )
        if isinstance(exc, openai.APIConnectionError):
            return _Transient(
                BackendUnavailable(
                    f"cannot reach {where} for {spec}", hint="check the base URL and that the server is running"
                )
            )
        if isinstance(exc, openai.APIStatusError):
            return BackendError(f"{where} answered HTTP {exc.status_code} for {spec}: {clip(exc.message, 200)}")
        if isinstance(exc, openai.APIResponseValidationError):
            return BackendError(
                f"{where} sent a reply that is not an OpenAI-compatible response", hint="check the base URL"
            )
    if ollama is not None and isinstance(exc, ollama.ResponseError):
        text = str(exc.error)
        if exc.status_code == 404 and "not found" in text:
            name = spec.split("/", 1)[-1]
            return ModelNotFound(f"Ollama at {where} has no model {name!r}", hint=f"run `ollama pull {name}`")
        if exc.status_code >= 500 or exc.status_code == 429:
            return _Transient(
                BackendError(f"Ollama at {where} failed: {clip(text, 200)}", hint="see the Ollama server log")
            )
        return BackendError(f"Ollama at {where} refused the request: {clip(text, 200)}")
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return _Transient(
            BackendError(
                f"{where} did not answer in time for {spec}", hint="check the server, or raise request_timeout"
            )
        )
    if isinstance(exc, httpx.ConnectError | ConnectionError | httpx.RemoteProtocolError):
        if spec.startswith("ollama/"):
            return _Transient(ollama_unreachable(where))
        return _Transient(
            BackendUnavailable(f"cannot reach {where} for {spec}", hint="check the URL and that the server is running")
        )
    if spec.startswith("openai/") and isinstance(exc, AttributeError | json.JSONDecodeError):
        # The SDK hands back a plain string when a 200 reply is not JSON (an HTML page, a proxy's error page).
        return BackendError(
            f"{where} is not an OpenAI-compatible server (its reply is not JSON)",
            hint="check OPENAI_BASE_URL: it usually ends in /v1",
        )
    if isinstance(exc, json.JSONDecodeError | ValueError | KeyError | TypeError):
        return BackendError(
            f"{where} sent a reply {spec} could not understand: {clip(str(exc), 200)}",
            hint="check the URL points at the right kind of server",
        )
    return BackendError(f"{spec} failed: {type(exc).__name__}: {clip(str(exc), 200)}")


def without_secrets(result: CreateResult) -> CreateResult:
    """``result`` with every configured secret (the API key, URL credentials) removed from its text, its tool-call
    arguments and its thought: a server that echoes the key in its answer must not put it into answers, items,
    sessions, reports or the response cache (which wraps this client, so it stores what this returns)."""
    content = result.content
    if isinstance(content, str):
        clean: str | list[FunctionCall] = redact_secrets(content)
    else:
        clean = [dataclasses.replace(call, arguments=redact_secrets(call.arguments)) for call in content]
    thought = redact_secrets(result.thought) if result.thought else result.thought
    if clean == content and thought == result.thought:
        return result
    return result.model_copy(update={"content": clean, "thought": thought})


def _mentions_response_format(exc: Any) -> bool:
    text = f"{getattr(exc, 'message', '')} {getattr(exc, 'body', '')}".lower()
    return "response_format" in text or "json_schema" in text


def ollama_unreachable(host: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"Ollama is not running at {host}",
        hint="start it with `ollama serve` (or set OLLAMA_HOST), or use --model embedded",
    )


class ResilientClient(DelegatingClient):
    """Wraps a backend client: bounded retries with backoff for transient errors, one clear error otherwise."""

    def __init__(
        self,
        inner: ChatCompletionClient,
        *,
        spec: str,
        where: str,
        max_retries: int = 3,
        capabilities: Capabilities | None = None,
        backoff: float = 0.5,
        attempt_timeout: float | None = None,
        retry_budget: float | None = None,
    ):
        super().__init__(inner)
        self.spec = spec
        self.where = where
        self.max_retries = max_retries
        self.backoff = backoff
        self.attempt_timeout = attempt_timeout
        """How long one attempt may take at most (the backend's request timeout), for the retry budget."""
        self.retry_budget = retry_budget
        """No retry starts unless it could end within this many seconds of the first attempt's start."""
        self.conclave_capabilities = capabilities or Capabilities()
        """What the backend can do (``models/capabilities.py``): each backend names its own; unnamed, a remote one."""
        self.remote = not self.conclave_capabilities.in_process

    def _delay(self, attempt: int) -> float:
        return min(8.0, self.backoff * (2**attempt))

    async def _retry_or_raise(
        self, error: ConclaveError | _Transient, attempt: int, started: float, streamed: bool, exc: BaseException | None
    ) -> None:
        """Sleep before the next attempt when a retry is allowed; raise the error otherwise."""
        final = error.error if isinstance(error, _Transient) else error
        if not isinstance(error, _Transient) or streamed or attempt >= self.max_retries:
            raise final from exc
        delay = self._delay(attempt)
        if self.retry_budget is not None:
            worst = time.monotonic() - started + delay + (self.attempt_timeout or 0.0)
            if worst > self.retry_budget:
                raise type(final)(
                    f"{final.message} (gave up after {time.monotonic() - started:.0f} s and {attempt + 1} "
                    f"attempt(s): retry_budget is {self.retry_budget:g} s)",
                    hint=final.hint,
                ) from exc
        log.warning(
            "%s — retrying in %.1f s (attempt %d of %d)", final.message, delay, attempt + 2, self.max_retries + 1
        )
        await asyncio.sleep(delay)

    def _is_empty(self, result: CreateResult, chunks: int) -> bool:
        """A remote reply with nothing in it and no finish reason is a failure (an HTML page or broken JSON that the
        SDK read as a stream of no events, a stream the server dropped), not an empty answer. A model that really
        stopped at once says why (``stop``/``length``) and is left to the method to judge."""
        return self.remote and not chunks and not result.content and result.finish_reason == "unknown"

    def _empty_reply(self, attempt: int) -> ConclaveError | _Transient:
        """Tried once more, never more: llama.cpp's server cuts off a stream it is too busy to serve (two samples
        sent at once), which the next attempt gets; an HTML page or broken JSON answers the same way again, so a
        second empty reply is the error, whatever ``max_retries`` allows."""
        error = BackendError(
            f"{self.where} sent an empty reply for {self.spec} (no text and no tool call): it is probably not an "
            "OpenAI-compatible/Ollama endpoint, or the reply was cut off",
            hint="check the base URL (OpenAI-compatible ones usually end in /v1) and the server's log",
        )
        return _Transient(error) if attempt == 0 else error

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        began = time.monotonic()

        async def attempt(number: int) -> CreateResult:
            result = await self.inner.create(
                messages,
                tools=tools,
                tool_choice=tool_choice,
                json_output=json_output,
                extra_create_args=extra_create_args,
                cancellation_token=cancellation_token,
            )
            if self._is_empty(result, 0):
                raise _EmptyReply
            return without_secrets(result)

        return await first_result(range(self.max_retries + 1), attempt, self._failed(began), _unreachable)

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        stream_kwargs: dict[str, Any] = {}
        if self.conclave_capabilities.stream_usage:
            stream_kwargs["include_usage"] = True  # hosts that honour stream_options report real usage

        async def attempt(number: int) -> AsyncIterator[str | CreateResult]:
            chunks = 0
            secrets = SecretStream()  # what is held back is dropped with a failed attempt: it never reached anyone
            async for item in self.inner.create_stream(
                messages,
                tools=tools,
                tool_choice=tool_choice,
                json_output=json_output,
                extra_create_args=extra_create_args,
                cancellation_token=cancellation_token,
                **stream_kwargs,
            ):
                if isinstance(item, CreateResult):
                    if self._is_empty(item, chunks):
                        raise _EmptyReply
                    held = secrets.flush()
                    if held:
                        yield held
                    item = without_secrets(self._with_usage(item, messages, chunks))
                else:
                    chunks += 1
                    passed = secrets.feed(item)
                    if item and not passed:
                        continue  # all of it may be the start of a secret: the next piece decides
                    item = passed
                yield item

        began = time.monotonic()
        async for item in first_stream(range(self.max_retries + 1), attempt, self._failed(began), _unreachable):
            yield item

    def _failed(self, began: float) -> Failed[int]:
        """After a failed attempt: wait and go on while a retry is allowed (transient, nothing streamed, within
        ``max_retries`` and ``retry_budget``); otherwise raise the error in Conclave's words."""

        async def failed(number: int, exc: Exception, started: bool) -> bool:
            empty = isinstance(exc, _EmptyReply)
            error = self._empty_reply(number) if empty else classify(exc, spec=self.spec, where=self.where)
            await self._retry_or_raise(error, number, began, started, exc)
            return True

        return failed

    def _with_usage(self, result: CreateResult, messages: Sequence[LLMMessage], chunks: int) -> CreateResult:
        """Hosts that send no usage with a stream (llama.cpp's server among them) get an estimate, not zeros."""
        if result.usage.prompt_tokens or result.usage.completion_tokens:
            return result
        try:
            prompt = self.count_tokens(messages)
        except Exception:  # counting is best effort (unknown tokenizers)
            prompt = 0
        return result.model_copy(update={"usage": RequestUsage(prompt_tokens=prompt, completion_tokens=chunks)})

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        if not self.conclave_capabilities.local_token_count:
            # autogen counts with tiktoken, which fetches its tables from the internet on first use: estimate instead
            # (about four characters a token), so counting never blocks on a network that is not there.
            return sum(len(str(getattr(m, "content", ""))) for m in messages) // 4 + 4 * len(messages)
        return self.inner.count_tokens(messages, tools=tools)
