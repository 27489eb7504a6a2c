"""Several endpoints serving one model spec, as one ``ChatCompletionClient`` (``openai_base_urls`` in settings).

Each request goes to the healthy endpoint with the fewest requests in flight (ties in turn). An endpoint that cannot
be reached, or fails with a server error, is taken out for ``cooldown`` seconds and the request moves on to the next
one; when every endpoint fails, the error names each one and what it said. A stream moves on only while nothing has been yielded (a
half-streamed answer cannot be resumed elsewhere). Errors that are the caller's (bad key, unknown model, a request the
host refuses) are raised at once: another endpoint would refuse them too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage, ModelInfo, RequestUsage
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from conclave.errors import AuthenticationFailed, BackendError, ConfigError, ModelNotFound
from conclave.models.attempts import Failed, first_result, first_stream
from conclave.models.capabilities import OPENAI

__all__ = ["Endpoint", "EndpointPool", "shard"]


@dataclass
class Endpoint:
    name: str
    client: ChatCompletionClient
    in_flight: int = 0
    down_until: float = 0.0
    served: int = 0
    failures: int = 0
    home: bool = True
    """In this process's share of the pool (a distributed run's worker: ``shard``); others serve only when every
    endpoint of the share is out."""

    def healthy(self, now: float) -> bool:
        return now >= self.down_until


def _final(exc: BaseException) -> bool:
    """Errors that another endpoint would repeat: the request's or the account's, not the host's health."""
    if isinstance(exc, (AuthenticationFailed, ModelNotFound, ConfigError)):
        return True
    message = getattr(exc, "message", str(exc))
    return "HTTP 400" in message or "rejected response_format" in message


def shard(worker: int, workers: int, endpoints: int) -> list[int]:
    """The endpoints worker ``worker`` of ``workers`` sends to first: every ``workers``-th one from its own index,
    so that workers of one run, each routing on its own, do not pile onto the same endpoints (with fewer endpoints
    than workers, they share one each)."""
    if endpoints <= 0 or workers <= 0:
        return []
    if endpoints < workers:
        return [worker % endpoints]
    return list(range(worker % workers, endpoints, workers))


class EndpointPool(ChatCompletionClient):
    conclave_capabilities = OPENAI
    """Routes each call to the least-loaded healthy endpoint of one model."""

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        *,
        spec: str,
        cooldown: float = 30.0,
        clock: Any = time.monotonic,
        home: Sequence[int] | None = None,
    ):
        if not endpoints:
            raise ConfigError(f"no endpoints for {spec}", hint="list at least one URL in openai_base_urls")
        self.endpoints = list(endpoints)
        if home is not None:
            for n, endpoint in enumerate(self.endpoints):
                endpoint.home = n in home
        self.spec = spec
        self.cooldown = cooldown
        self.clock = clock
        self._turn = 0
        self.conclave_name = spec

    # ------------------------------------------------------------------ routing

    def _order(self) -> list[Endpoint]:
        """Healthy endpoints, this process's share first, least loaded first (ties in turn); the ones taken out
        after them, soonest back first."""
        now = self.clock()
        n = len(self.endpoints)
        self._turn = (self._turn + 1) % n
        turned = [self.endpoints[(self._turn + i) % n] for i in range(n)]
        healthy = sorted((e for e in turned if e.healthy(now)), key=lambda e: (not e.home, e.in_flight))
        resting = sorted((e for e in turned if not e.healthy(now)), key=lambda e: e.down_until)
        return healthy + resting

    def _take_out(self, endpoint: Endpoint) -> None:
        endpoint.failures += 1
        endpoint.down_until = self.clock() + self.cooldown

    def _all_failed(self, failures: list[tuple[Endpoint, BackendError]]) -> BackendError:
        """The error when no endpoint could serve a request: of the last failure's kind, naming every endpoint."""
        kind = type(failures[-1][1])
        each = "; ".join(f"{e.name}: {exc.message}" for e, exc in failures)
        return kind(
            f"every endpoint of {self.spec} failed ({len(failures)} of {len(self.endpoints)}): {each}",
            hint="start one of them, or remove the dead ones from openai_base_urls (each is tried again after "
            f"{self.cooldown:g} s)",
        )

    def status(self) -> list[dict[str, Any]]:
        """Per endpoint: requests served, failures, in flight, and whether it is out now."""
        now = self.clock()
        return [
            {
                "endpoint": e.name,
                "served": e.served,
                "failures": e.failures,
                "in_flight": e.in_flight,
                "healthy": e.healthy(now),
            }
            for e in self.endpoints
        ]

    # ------------------------------------------------------------------ ChatCompletionClient

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
        failures: list[tuple[Endpoint, BackendError]] = []

        async def attempt(endpoint: Endpoint) -> CreateResult:
            endpoint.in_flight += 1
            try:
                result = await endpoint.client.create(
                    messages,
                    tools=tools,
                    tool_choice=tool_choice,
                    json_output=json_output,
                    extra_create_args=extra_create_args,
                    cancellation_token=cancellation_token,
                )
            finally:
                endpoint.in_flight -= 1
            endpoint.served += 1
            return result

        return await first_result(self._order(), attempt, self._failed(failures), lambda: self._all_failed(failures))

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
        failures: list[tuple[Endpoint, BackendError]] = []

        async def attempt(endpoint: Endpoint) -> AsyncIterator[str | CreateResult]:
            endpoint.in_flight += 1
            try:
                async for item in endpoint.client.create_stream(
                    messages,
                    tools=tools,
                    tool_choice=tool_choice,
                    json_output=json_output,
                    extra_create_args=extra_create_args,
                    cancellation_token=cancellation_token,
                ):
                    yield item
            finally:
                endpoint.in_flight -= 1
            endpoint.served += 1

        async for item in first_stream(
            self._order(), attempt, self._failed(failures), lambda: self._all_failed(failures)
        ):
            yield item

    def _failed(self, failures: list[tuple[Endpoint, BackendError]]) -> Failed[Endpoint]:
        """On to the next endpoint after a backend error that is not the caller's, before anything streamed; the
        endpoint rests meanwhile."""

        async def failed(endpoint: Endpoint, exc: Exception, started: bool) -> bool:
            if not isinstance(exc, BackendError) or started or _final(exc):
                return False
            self._take_out(endpoint)
            failures.append((endpoint, exc))
            return True

        return failed

    async def close(self) -> None:
        await asyncio.gather(*(e.client.close() for e in self.endpoints), return_exceptions=True)

    def actual_usage(self) -> RequestUsage:
        usages = [e.client.actual_usage() for e in self.endpoints]
        return RequestUsage(sum(u.prompt_tokens for u in usages), sum(u.completion_tokens for u in usages))

    def total_usage(self) -> RequestUsage:
        usages = [e.client.total_usage() for e in self.endpoints]
        return RequestUsage(sum(u.prompt_tokens for u in usages), sum(u.completion_tokens for u in usages))

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.endpoints[0].client.count_tokens(messages, tools=tools)

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self.endpoints[0].client.remaining_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> Any:  # deprecated in autogen-core, still abstract
        return self.endpoints[0].client.capabilities

    @property
    def model_info(self) -> ModelInfo:
        return self.endpoints[0].client.model_info
