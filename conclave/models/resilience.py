"""A wrapper that gives every backend the same failure behaviour.

Transient failures (connection refused, timeouts, HTTP 429/5xx) are retried with exponential backoff, a bounded
number of times, and only before any token has been streamed; everything else, and the last transient failure, becomes
one :class:`~conclave.errors.BackendError` whose hint says what to do. SDK exception types never leave this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    LLMMessage,
    ModelCapabilities,
    ModelInfo,
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
from conclave.models.delegating import DelegatingClient

log = logging.getLogger(__name__)


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
            return BackendError(f"{where} rejected response_format for {spec} (HTTP {exc.status_code}): {_short(exc.message)}")
        if isinstance(exc, openai.RateLimitError | openai.InternalServerError):
            return _Transient(BackendError(f"{where} answered HTTP {exc.status_code} for {spec}", hint="try again later"))
        if isinstance(exc, openai.APITimeoutError):
            return _Transient(
                BackendError(f"{where} did not answer in time for {spec}", hint="check the server, or raise request_timeout")
            )
        if isinstance(exc, openai.APIConnectionError):
            return _Transient(
                BackendUnavailable(f"cannot reach {where} for {spec}", hint="check the base URL and that the server is running")
            )
        if isinstance(exc, openai.APIStatusError):
            return BackendError(f"{where} answered HTTP {exc.status_code} for {spec}: {_short(exc.message)}")
        if isinstance(exc, openai.APIResponseValidationError):
            return BackendError(f"{where} sent a reply that is not an OpenAI-compatible response", hint="check the base URL")
    if ollama is not None and isinstance(exc, ollama.ResponseError):
        text = str(exc.error)
        if exc.status_code == 404 and "not found" in text:
            name = spec.split("/", 1)[-1]
            return ModelNotFound(f"Ollama at {where} has no model {name!r}", hint=f"run `ollama pull {name}`")
        if exc.status_code >= 500 or exc.status_code == 429:
            return _Transient(BackendError(f"Ollama at {where} failed: {_short(text)}", hint="see the Ollama server log"))
        return BackendError(f"Ollama at {where} refused the request: {_short(text)}")
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return _Transient(BackendError(f"{where} did not answer in time for {spec}", hint="check the server, or raise request_timeout"))
    if isinstance(exc, httpx.ConnectError | ConnectionError | httpx.RemoteProtocolError):
        if spec.startswith("ollama/"):
            return _Transient(ollama_unreachable(where))
        return _Transient(BackendUnavailable(f"cannot reach {where} for {spec}", hint="check the URL and that the server is running"))
    if spec.startswith("openai/") and isinstance(exc, AttributeError | json.JSONDecodeError):
        # The SDK hands back a plain string when a 200 reply is not JSON (an HTML page, a proxy's error page).
        return BackendError(f"{where} is not an OpenAI-compatible server (its reply is not JSON)",
                            hint="check OPENAI_BASE_URL: it usually ends in /v1")
    if isinstance(exc, json.JSONDecodeError | ValueError | KeyError | TypeError):
        return BackendError(f"{where} sent a reply {spec} could not understand: {_short(str(exc))}", hint="check the URL points at the right kind of server")
    return BackendError(f"{spec} failed: {type(exc).__name__}: {_short(str(exc))}")


def _mentions_response_format(exc: Any) -> bool:
    text = f"{getattr(exc, 'message', '')} {getattr(exc, 'body', '')}".lower()
    return "response_format" in text or "json_schema" in text


def ollama_unreachable(host: str) -> BackendUnavailable:
    return BackendUnavailable(
        f"Ollama is not running at {host}",
        hint="start it with `ollama serve` (or set OLLAMA_HOST), or use --model embedded",
    )


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ResilientClient(DelegatingClient):
    """Wraps a backend client: bounded retries with backoff for transient errors, one clear error otherwise."""

    def __init__(self, inner: ChatCompletionClient, *, spec: str, where: str, max_retries: int = 3, backoff: float = 0.5):
        super().__init__(inner)
        self.spec = spec
        self.where = where
        self.max_retries = max_retries
        self.backoff = backoff

    async def _sleep(self, attempt: int) -> None:
        await asyncio.sleep(min(8.0, self.backoff * (2**attempt)))

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
        for attempt in range(self.max_retries + 1):
            try:
                return await self.inner.create(
                    messages,
                    tools=tools,
                    tool_choice=tool_choice,
                    json_output=json_output,
                    extra_create_args=extra_create_args,
                    cancellation_token=cancellation_token,
                )
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                error = classify(exc, spec=self.spec, where=self.where)
                if isinstance(error, _Transient) and attempt < self.max_retries:
                    log.info("retrying %s after %s (attempt %d)", self.spec, error, attempt + 1)
                    await self._sleep(attempt)
                    continue
                raise (error.error if isinstance(error, _Transient) else error) from exc
        raise AssertionError("unreachable")

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
        if type(self.inner).__name__ == "OpenAIChatCompletionClient":
            stream_kwargs["include_usage"] = True  # hosts that honour stream_options report real usage
        for attempt in range(self.max_retries + 1):
            started = False
            chunks = 0
            try:
                async for item in self.inner.create_stream(
                    messages,
                    tools=tools,
                    tool_choice=tool_choice,
                    json_output=json_output,
                    extra_create_args=extra_create_args,
                    cancellation_token=cancellation_token,
                    **stream_kwargs,
                ):
                    started = True
                    if isinstance(item, CreateResult):
                        item = self._with_usage(item, messages, chunks)
                    else:
                        chunks += 1
                    yield item
                return
            except (asyncio.CancelledError, KeyboardInterrupt, GeneratorExit):
                raise
            except Exception as exc:
                error = classify(exc, spec=self.spec, where=self.where)
                if isinstance(error, _Transient) and not started and attempt < self.max_retries:
                    await self._sleep(attempt)
                    continue
                raise (error.error if isinstance(error, _Transient) else error) from exc

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
        if type(self.inner).__name__ == "OpenAIChatCompletionClient":
            # autogen counts with tiktoken, which fetches its tables from the internet on first use: estimate instead
            # (about four characters a token), so counting never blocks on a network that is not there.
            return sum(len(str(getattr(m, "content", ""))) for m in messages) // 4 + 4 * len(messages)
        return self.inner.count_tokens(messages, tools=tools)
