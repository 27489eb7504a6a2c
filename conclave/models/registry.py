"""Spec string -> ``ChatCompletionClient``: a registry keyed by the spec's prefix, SDKs imported lazily."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

from autogen_core.models import ChatCompletionClient

from conclave.errors import BackendError
from conclave.models.capabilities import EMBEDDED, OLLAMA, OPENAI
from conclave.models.catalog import adapter_for
from conclave.models.embedded import EmbeddedChatCompletionClient
from conclave.models.resilience import ResilientClient
from conclave.models.spec import ModelSpec, parse_spec
from conclave.models.speed import speed_path
from conclave.settings import Role, Settings

log = logging.getLogger(__name__)


async def make_client(spec: str | ModelSpec | None, settings: Settings) -> ChatCompletionClient:
    """Build the client a spec names (``None``: the automatic default, see :func:`default_spec`)."""
    if spec is None:
        spec = await default_spec(settings)
    parsed = spec if isinstance(spec, ModelSpec) else parse_spec(spec)
    if parsed.provider == "embedded":
        path = await _embedded_gguf(parsed, settings)
        inner: ChatCompletionClient = EmbeddedChatCompletionClient(
            Path(path),
            name=str(parsed),
            n_ctx=settings.context_length,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            n_threads=settings.embedded_threads,
            speed_file=speed_path(settings.home),
            lora_path=adapter_for(parsed, settings.home),  # a tuned model (conclave tune): base + LoRA adapter
        )
        # In-process: nothing transient to retry, but errors still get one shape.
        return ResilientClient(
            inner, spec=str(parsed), where="the embedded model", max_retries=0, capabilities=EMBEDDED
        )
    if parsed.provider == "ollama":
        from conclave.models.ollama import build_ollama_client

        host = settings.ollama_host.rstrip("/")
        inner = await build_ollama_client(
            parsed.name,
            host=host,
            num_ctx=settings.context_length,
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            timeout=settings.request_timeout,
        )
        return ResilientClient(
            inner,
            spec=str(parsed),
            where=host,
            capabilities=OLLAMA,
            max_retries=settings.max_retries,
            attempt_timeout=settings.request_timeout,
            retry_budget=settings.retry_budget,
        )
    from conclave.models.openai_compat import build_openai_client

    if settings.openai_base_urls:
        return _pool(parsed, settings)
    inner, where = build_openai_client(parsed.name, settings)
    return ResilientClient(
        inner,
        spec=str(parsed),
        where=where,
        capabilities=OPENAI,
        max_retries=settings.max_retries,
        attempt_timeout=settings.request_timeout,
        retry_budget=settings.retry_budget,
    )


def _pool(parsed: ModelSpec, settings: Settings) -> ChatCompletionClient:
    """One OpenAI-compatible model over every URL of ``openai_base_urls`` (conclave/models/pool.py). Each endpoint
    retries once on its own; the pool moves a failed request on to the next endpoint."""
    from conclave.models.openai_compat import build_openai_client
    from conclave.models.pool import Endpoint, EndpointPool

    endpoints = []
    for url in dict.fromkeys(settings.openai_base_urls):
        inner, where = build_openai_client(parsed.name, settings, base_url=url)
        client = ResilientClient(
            inner,
            spec=str(parsed),
            where=where,
            capabilities=OPENAI,
            max_retries=min(1, settings.max_retries),
            attempt_timeout=settings.request_timeout,
            retry_budget=settings.retry_budget,
        )
        endpoints.append(Endpoint(where, client))
    return EndpointPool(endpoints, spec=str(parsed), cooldown=settings.endpoint_cooldown)


async def _embedded_gguf(spec: ModelSpec, settings: Settings) -> Path:
    """The GGUF file of an embedded spec, off the event loop: assembling Qwen the first time takes a minute or two."""
    from conclave.models.catalog import gguf_for

    cancel = threading.Event()
    try:
        return await asyncio.to_thread(gguf_for, spec, settings.home, cancel=cancel)
    except asyncio.CancelledError:
        cancel.set()  # the worker thread stops at its next chunk and removes its partial file
        raise


_DEFAULT_CACHE: dict[str, str] = {}


async def default_spec(settings: Settings) -> str:
    """An Ollama model if Ollama answers and has one (a chat model), else ``embedded``."""
    host = settings.ollama_host.rstrip("/")
    if host in _DEFAULT_CACHE:
        return _DEFAULT_CACHE[host]
    from conclave.models.ollama import tags

    choice = "embedded"
    try:
        models = await tags(host, timeout=1.5)
    except BackendError:
        models = []
    for entry in models:
        name = str(entry.get("name") or entry.get("model") or "")
        if name and "embed" not in name:
            choice = f"ollama/{name}"
            break
    log.debug("default model: %s", choice)
    _DEFAULT_CACHE[host] = choice
    return choice


async def role_spec(settings: Settings, role: Role) -> str:
    """The spec a role runs on: its own setting, else ``model``, else the automatic default."""
    return settings.role_model(role) or await default_spec(settings)


async def role_clients(
    settings: Settings,
    make: Callable[[str], Awaitable[ChatCompletionClient]],
    roles: Sequence[Role],
    given: Mapping[str, ChatCompletionClient] | None = None,
) -> dict[str, ChatCompletionClient]:
    """A client per role: ``given`` ones kept, the others made once per distinct spec (roles naming the same spec
    share one client, and so one loaded model)."""
    out: dict[str, ChatCompletionClient] = dict(given or {})
    by_spec = {client_name(c): c for c in out.values()}
    for role in roles:
        if role in out:
            continue
        spec = await role_spec(settings, role)
        if spec not in by_spec:
            by_spec[spec] = await make(spec)
        out[role] = by_spec[spec]
    return out


def client_name(client: ChatCompletionClient) -> str:
    """The spec string a client was built from."""
    if isinstance(client, ResilientClient):
        return client.spec
    inner = getattr(client, "client", None)  # autogen-ext's ChatCompletionCache and similar wrappers
    if isinstance(inner, ChatCompletionClient):
        return client_name(inner)
    return str(getattr(client, "conclave_name", None) or getattr(client, "name", None) or type(client).__name__)
