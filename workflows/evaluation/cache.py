"""The LLM response cache: autogen-ext's ``ChatCompletionCache`` over a ``DiskCacheStore``, one store per model.

The cache key autogen-ext computes covers the messages, tools, JSON schema and extra arguments but not the model, so
every model spec gets its own store folder under ``settings.cache_path``; the folder name also carries a hash of the
generation settings the key cannot see (temperature, max_tokens, context length), so changing them misses the cache.

:class:`BackendCounter` sits between the cache and the backend: it counts the calls that really reached the model
(per run, and per item through a context variable), which is how a run proves it was served from the cache.
"""

from __future__ import annotations

import contextvars
import hashlib
import re
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage, ModelCapabilities, ModelInfo, RequestUsage
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from conclave.models.delegating import DelegatingClient
from conclave.settings import Settings

__all__ = ["BackendCounter", "CacheSet", "cache_dir", "item_backend_calls"]

ClientFactory = Callable[[str, Settings], Awaitable[ChatCompletionClient]]

# The calls of the item running in the current task (asyncio tasks copy the context, so every agent the item's
# run spawns increments the same counter).
_ITEM_CALLS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("conclave_item_calls", default=None)


def item_backend_calls() -> list[int]:
    """Start counting backend calls for the current task; read ``[0]`` afterwards."""
    counter = [0]
    _ITEM_CALLS.set(counter)
    return counter


def cache_dir(settings: Settings, spec: str) -> Path:
    """The store folder for one model spec (and the generation settings the cache key does not include)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-")[:60] or "model"
    knobs = f"{spec}|t={settings.temperature}|max={settings.max_tokens}|ctx={settings.context_length}"
    return settings.cache_path / f"{slug}-{hashlib.sha256(knobs.encode()).hexdigest()[:10]}"


class BackendCounter(DelegatingClient):
    """A transparent wrapper that counts calls reaching ``client`` (the real backend)."""

    def __init__(self, client: ChatCompletionClient):
        super().__init__(client)
        self.calls = 0

    def _count(self) -> None:
        self.calls += 1
        counter = _ITEM_CALLS.get()
        if counter is not None:
            counter[0] += 1

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:
        self._count()
        return await super().create(messages, **kwargs)

    async def create_stream(self, messages: Sequence[LLMMessage], **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        self._count()
        async for item in super().create_stream(messages, **kwargs):
            yield item


async def _default_factory(spec: str, settings: Settings) -> ChatCompletionClient:
    from conclave.models import make_client

    return await make_client(spec, settings)


class CacheSet:
    """The clients of one run: one per model spec, each counted and (unless disabled) cached on disk."""

    def __init__(self, settings: Settings, *, enabled: bool = True, factory: ClientFactory | None = None):
        self.settings = settings
        self.enabled = enabled
        self.factory = factory or _default_factory
        self.counters: dict[str, BackendCounter] = {}
        self.clients: dict[str, ChatCompletionClient] = {}
        self._stores: list[Any] = []

    async def client(self, spec: str) -> ChatCompletionClient:
        """The (cached) client for ``spec``, built once per run."""
        if spec in self.clients:
            return self.clients[spec]
        counter = BackendCounter(await self.factory(spec, self.settings))
        self.counters[spec] = counter
        client: ChatCompletionClient = counter
        if self.enabled:
            import diskcache
            from autogen_ext.cache_store.diskcache import DiskCacheStore
            from autogen_ext.models.cache import CHAT_CACHE_VALUE_TYPE, ChatCompletionCache

            from conclave.errors import ConfigError

            folder = cache_dir(self.settings, spec)
            try:
                folder.mkdir(parents=True, exist_ok=True)
                disk = diskcache.Cache(str(folder))
            except OSError as exc:
                raise ConfigError(f"cannot open the response cache at {folder}: {exc.strerror or exc}",
                                  hint="check CONCLAVE_HOME's permissions and free space, or run with --no-cache") from exc
            self._stores.append(disk)
            client = ChatCompletionCache(counter, DiskCacheStore[CHAT_CACHE_VALUE_TYPE](disk))
        self.clients[spec] = client
        return client

    def backend_calls(self) -> dict[str, int]:
        """Calls that reached each backend so far (cache misses)."""
        return {spec: counter.calls for spec, counter in self.counters.items()}

    async def close(self) -> None:
        """Close the disk stores (clients are shared by the process and stay open)."""
        for disk in self._stores:
            disk.close()
        self._stores.clear()
