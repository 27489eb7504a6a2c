"""The LLM response cache: a client that answers a repeated request from JSON files on disk, one store per model.

The cache folder (``settings.cache_path``) is untrusted input: ``CONCLAVE_HOME`` may come from a ``.env`` file in
the working folder, so a cloned project can carry a prepared cache. Entries are therefore JSON text, parsed and then
validated into autogen's pydantic ``CreateResult``; nothing read from disk is unpickled or otherwise run. An entry that
cannot be read, parsed or validated is a miss (logged at debug) and the fresh answer overwrites it.

The key is the SHA-256 of one JSON document holding everything that changes the answer: the backend (provider, model,
and where it runs: the OpenAI-compatible base URL, the Ollama host, or the GGUF file), the generation settings
(temperature, max_tokens, context length, seed) and the whole request (messages, tools, tool choice, JSON output or
schema, extra create arguments). Secrets never go in: the API key is not read, and credentials written into an
endpoint URL are dropped. A request that is not plain data (an opaque object among the extra arguments) is not cached.
Each model spec still gets its own folder (:func:`cache_dir`), named after the spec and a hash of the same identity.

:class:`BackendCounter` sits between the cache and the backend: it counts the calls that really reached the model
(per run, and per item through a context variable), which is how a run proves it was served from the cache.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from autogen_core import CacheStore, CancellationToken
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel, ValidationError

from conclave import nesting
from conclave.errors import ConfigError
from conclave.models.backends import parse_spec
from conclave.models.delegating import DelegatingClient
from conclave.settings import Settings

__all__ = [
    "BackendCounter",
    "CacheSet",
    "CacheValue",
    "ClientFactory",
    "JsonResponseStore",
    "ResponseCache",
    "cache_dir",
    "cache_identity",
    "item_backend_calls",
]

log = logging.getLogger(__name__)

ClientFactory = Callable[[str, Settings], Awaitable[ChatCompletionClient]]

CacheValue = CreateResult | list[str | CreateResult]
"""What one entry holds: a ``create`` result, or a stream's items (text chunks, then the final result)."""

# The calls of the item running in the current task (asyncio tasks copy the context, so every agent the item's
# run spawns increments the same counter).
_ITEM_CALLS: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("conclave_item_calls", default=None)

_FORMAT = 1  # the entry format; bump to ignore every entry written before
_KEY = re.compile(r"[0-9a-f]{64}")


def item_backend_calls() -> list[int]:
    """Start counting backend calls for the current task; read ``[0]`` afterwards."""
    counter = [0]
    _ITEM_CALLS.set(counter)
    return counter


# --- the key ------------------------------------------------------------------------------------------------------


def _backend_identity(settings: Settings, spec: str) -> dict[str, Any]:
    """Which model answers, and where: the part of the key a request cannot show."""
    try:
        parsed = parse_spec(spec)
    except ConfigError:
        return {"spec": spec}  # a factory's own spec (tests): the spec is all there is
    from conclave.models.backends import BACKENDS

    return BACKENDS.get(parsed.provider).identity(parsed, settings)


def cache_identity(settings: Settings, spec: str) -> dict[str, Any]:
    """The backend and generation settings every key of ``spec``'s store includes (plain JSON data, no secrets)."""
    return {
        "backend": _backend_identity(settings, spec),
        "generation": {
            "temperature": settings.temperature,
            "max_tokens": settings.max_tokens,
            "context_length": settings.context_length,
            "seed": getattr(settings, "seed", None),
        },
    }


def _digest(document: Any) -> str:
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_dir(settings: Settings, spec: str) -> Path:
    """The store folder for one model spec: its name, and a hash of the backend and generation settings."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", spec).strip("-")[:60] or "model"
    return settings.cache_path / f"{slug}-{_digest({'format': _FORMAT, **cache_identity(settings, spec)})[:12]}"


class _Unkeyable(TypeError):
    """A request argument that is not plain data, so no key can stand for it."""


def _plain(value: Any) -> Any:
    """``value`` as JSON data, exactly (no ``str()`` fallbacks that could make two requests look alike)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise _Unkeyable("a mapping with non-string keys")
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, BaseModel):
        return {"model": type(value).__name__, "data": value.model_dump(mode="json")}
    if isinstance(value, type) and issubclass(value, BaseModel):
        return {"schema": value.model_json_schema()}
    raise _Unkeyable(f"a {type(value).__name__}")


def _request(
    messages: Sequence[LLMMessage],
    tools: Sequence[Tool | ToolSchema],
    tool_choice: Tool | str,
    json_output: bool | type[BaseModel] | None,
    extra_create_args: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "messages": [message.model_dump(mode="json") for message in messages],
        "tools": [_plain(tool.schema if isinstance(tool, Tool) else tool) for tool in tools],
        "tool_choice": tool_choice if isinstance(tool_choice, str) else {"tool": _plain(tool_choice.schema)},
        "json_output": _plain(json_output),
        "extra_create_args": _plain(extra_create_args),
    }


# --- the store ----------------------------------------------------------------------------------------------------


class _BadEntry(ValueError):
    pass


def _encode(value: CacheValue) -> str:
    if isinstance(value, CreateResult):
        document: dict[str, Any] = {"v": _FORMAT, "result": value.model_dump(mode="json")}
    elif isinstance(value, list) and all(isinstance(item, (str, CreateResult)) for item in value):
        document = {
            "v": _FORMAT,
            "stream": [item if isinstance(item, str) else item.model_dump(mode="json") for item in value],
        }
    else:
        raise TypeError(f"not a response: {type(value).__name__}")
    return json.dumps(document, ensure_ascii=False, allow_nan=False)


def _decode(raw: bytes) -> CacheValue:
    """Parse one entry; raise :class:`_BadEntry` (or a ``ValueError``) for anything but a well-formed response."""
    document = nesting.loads(raw.decode("utf-8"))
    if not isinstance(document, dict) or document.get("v") != _FORMAT or len(document) != 2:
        raise _BadEntry("not a response entry")
    if isinstance(document.get("result"), dict):
        return CreateResult.model_validate(document["result"])
    items = document.get("stream")
    if not isinstance(items, list) or not items:
        raise _BadEntry("neither a result nor a stream")
    stream: list[str | CreateResult] = []
    for index, item in enumerate(items):
        last = index == len(items) - 1
        if isinstance(item, str) and not last:
            stream.append(item)
        elif isinstance(item, dict) and last:
            stream.append(CreateResult.model_validate(item))
        else:
            raise _BadEntry("a stream is text chunks and one final result")
    return stream


class JsonResponseStore(CacheStore[CacheValue]):
    """One JSON file per key (``<folder>/<key[:2]>/<key>.json``), written atomically; never anything but JSON."""

    MAX_BYTES = 16 * 1024 * 1024

    def __init__(self, folder: Path):
        self.folder = folder
        self._warned = False

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str, default: CacheValue | None = None) -> CacheValue | None:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            return default
        path = self.path(key)
        raw = self._read(path)
        if raw is None:
            return default
        try:
            return _decode(raw)
        except (ValueError, ValidationError, RecursionError) as exc:  # JSON, UTF-8 and shape errors are ValueErrors
            log.debug("response cache: ignoring unreadable entry %s (%s)", path, type(exc).__name__)
            return default

    def _read(self, path: Path) -> bytes | None:
        """The file's bytes if it is a regular file of sane size (not a link, FIFO or device), else ``None``."""
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.debug("response cache: cannot open %s (%s)", path, exc)
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode) or info.st_size > self.MAX_BYTES:
                log.debug("response cache: ignoring %s (not a regular file of at most %d bytes)", path, self.MAX_BYTES)
                return None
            chunks: list[bytes] = []
            size = 0
            while size <= self.MAX_BYTES:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            return b"".join(chunks) if size <= self.MAX_BYTES else None
        except OSError as exc:
            log.debug("response cache: cannot read %s (%s)", path, exc)
            return None
        finally:
            os.close(fd)

    def set(self, key: str, value: CacheValue) -> None:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            return  # an unkeyable request (see ResponseCache.cache_key)
        text = _encode(value)
        path = self.path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                os.replace(temp, path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            if not self._warned:
                log.warning(
                    "response cache: cannot write under %s (%s); answers are not being cached",
                    self.folder,
                    exc.strerror or exc,
                )
                self._warned = True


# --- the clients --------------------------------------------------------------------------------------------------


def _final(value: CacheValue | None) -> CreateResult | None:
    if isinstance(value, CreateResult):
        return value
    if isinstance(value, list) and value and isinstance(value[-1], CreateResult):
        return value[-1]
    return None


class ResponseCache(DelegatingClient):
    """Answers a request seen before from ``store`` (the result marked ``cached``), else asks ``client`` and stores.

    ``identity`` (see :func:`cache_identity`) goes into every key, so one store could even serve several backends.
    ``_check_cache`` and ``store`` keep the names of autogen-ext's ``ChatCompletionCache``, which
    ``agents.reasoner.remember_stopped_stream`` uses to store a stream it stopped early.
    """

    def __init__(self, client: ChatCompletionClient, store: CacheStore[CacheValue], identity: Mapping[str, Any]):
        super().__init__(client)
        self.store = store
        self.identity = dict(identity)

    def cache_key(
        self,
        messages: Sequence[LLMMessage],
        tools: Sequence[Tool | ToolSchema] = (),
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] | None = None,
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
    ) -> str | None:
        """The request's key, or ``None`` when an argument is not plain data (such a request is not cached)."""
        try:
            request = _request(messages, tools, tool_choice, json_output, extra_create_args or {})
            return _digest({"format": _FORMAT, **self.identity, "request": request})
        except (TypeError, ValueError, RecursionError) as exc:  # _Unkeyable, pydantic serialisation, NaN
            log.debug("response cache: not caching a request (%s)", exc)
            return None

    def _check_cache(
        self,
        messages: Sequence[LLMMessage],
        tools: Sequence[Tool | ToolSchema],
        json_output: bool | type[BaseModel] | None,
        extra_create_args: Mapping[str, Any],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
    ) -> tuple[CacheValue | None, str | None]:
        key = self.cache_key(messages, tools, json_output, extra_create_args, tool_choice)
        return (self.store.get(key) if key is not None else None), key

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
        hit, key = self._check_cache(messages, tools, json_output, extra_create_args, tool_choice)
        final = _final(hit)
        if final is not None:
            final.cached = True
            return final
        result = await super().create(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            json_output=json_output,
            extra_create_args=extra_create_args,
            cancellation_token=cancellation_token,
        )
        if key is not None:
            self.store.set(key, result)
        return result

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
        hit, key = self._check_cache(messages, tools, json_output, extra_create_args, tool_choice)
        final = _final(hit)
        if final is not None:
            final.cached = True
            if isinstance(hit, list):
                for item in hit:
                    yield item
            else:  # stored by `create`: its text as one chunk, then the result
                if isinstance(final.content, str) and final.content:
                    yield final.content
                yield final
            return
        items: list[str | CreateResult] = []
        async for item in super().create_stream(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            json_output=json_output,
            extra_create_args=extra_create_args,
            cancellation_token=cancellation_token,
        ):
            items.append(item)
            yield item
        # Stored only once the stream has ended with its result (a stream the caller stopped is not an answer).
        if key is not None and items and isinstance(items[-1], CreateResult):
            self.store.set(key, items)


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

    async def create_stream(
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
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
        self._building: dict[str, asyncio.Lock] = {}
        self._stores: list[JsonResponseStore] = []

    async def client(self, spec: str) -> ChatCompletionClient:
        """The (cached) client for ``spec``, built once per run: units that start together wait for the first one's
        build (built once each, an endpoint pool would count each copy's requests apart and route them onto the
        same endpoint)."""
        if spec in self.clients:
            return self.clients[spec]
        async with self._building.setdefault(spec, asyncio.Lock()):
            if spec not in self.clients:
                self.clients[spec] = await self._build(spec)
        return self.clients[spec]

    async def _build(self, spec: str) -> ChatCompletionClient:
        counter = BackendCounter(await self.factory(spec, self.settings))
        self.counters[spec] = counter
        client: ChatCompletionClient = counter
        if self.enabled:
            folder = cache_dir(self.settings, spec)
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"cannot open the response cache at {folder}: {exc.strerror or exc}",
                    hint="check CONCLAVE_HOME's permissions and free space, or run with --no-cache",
                ) from exc
            store = JsonResponseStore(folder)
            self._stores.append(store)
            client = ResponseCache(counter, store, cache_identity(self.settings, spec))
        return client

    def backend_calls(self) -> dict[str, int]:
        """Calls that reached each backend so far (cache misses)."""
        return {spec: counter.calls for spec, counter in self.counters.items()}

    async def close(self) -> None:
        """Release the stores (they hold no open files; clients are shared by the process and stay open)."""
        self._stores.clear()
