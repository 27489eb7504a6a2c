"""Model backends: one registry entry per kind of model spec (``embedded``, ``ollama/NAME``, ``openai/NAME``, plugins).

A :class:`Backend` says everything the rest of Conclave needs to know about one provider: how to build its client,
what the client can do (:mod:`conclave.models.capabilities`), where its requests go (for the workflow access
summary), and what identifies the model behind it (for the response cache's key). ``make_client``, ``parse_spec``,
``conclave models`` and the cache ask the registry, so a new backend is this one file's entry, or a package's entry
point in the ``conclave.backends`` group (a :class:`Backend`, or a function ``build(model, settings)`` returning an
AutoGen ``ChatCompletionClient``; it is then used as ``NAME/model``).
"""

from __future__ import annotations

import inspect
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from conclave.errors import ConfigError
from conclave.models.capabilities import EMBEDDED, OLLAMA, OPENAI, Capabilities
from conclave.models.spec import SPEC_HELP, ModelSpec, closest, parse_embedded
from conclave.registry import Registry

if TYPE_CHECKING:
    from autogen_core.models import ChatCompletionClient

    from conclave.settings import Settings

__all__ = ["BACKENDS", "Backend", "capabilities_for", "endpoint_url", "parallel_requests", "parse_spec"]


@dataclass(frozen=True)
class Backend:
    name: str
    """The spec prefix (``ollama`` in ``ollama/qwen2.5``; ``embedded`` is written ``embedded[:NAME]``)."""
    summary: str
    build: Callable[[ModelSpec, Settings], Awaitable[ChatCompletionClient]]
    """The client for a spec, wrapped for retries and one error shape (``ResilientClient``)."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    endpoint: Callable[[ModelSpec, Settings], str] = lambda spec, settings: f"the {spec.provider} backend (a plugin)"
    """Where requests go, in words (what a workflow run will contact)."""
    identity: Callable[[ModelSpec, Settings], dict[str, Any]] = lambda spec, settings: {
        "provider": spec.provider,
        "model": spec.name,
    }
    """What identifies the model that answers (part of every response-cache key; plain JSON, no secrets)."""


def endpoint_url(url: str) -> str:
    """An endpoint URL as it identifies a server: without credentials written into it (``scheme://user:pw@host``)."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@", r"\1", url.strip()).rstrip("/")


# ------------------------------------------------------------------------------------------------- embedded


async def _build_embedded(spec: ModelSpec, settings: Settings) -> ChatCompletionClient:
    from conclave.models.catalog import adapter_for
    from conclave.models.embedded import EmbeddedChatCompletionClient, InProcessChatClient
    from conclave.models.resilience import ResilientClient
    from conclave.models.speed import speed_path

    common: dict[str, Any] = {
        "name": str(spec),
        "n_ctx": settings.context_length,
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "n_threads": settings.embedded_threads,
        "speed_file": speed_path(settings.home),
        "lora_path": adapter_for(spec, settings.home),  # a tuned model (conclave tune): base + LoRA adapter
    }
    path = Path(await _embedded_gguf(spec, settings))
    inner: InProcessChatClient
    if settings.embedded_engine == "xllamacpp":  # llama.cpp's server code in-process: parallel slots
        from conclave.models.xllama import XLlamaChatCompletionClient

        inner = XLlamaChatCompletionClient(path, slots=settings.embedded_parallel, **common)
    else:
        inner = EmbeddedChatCompletionClient(path, **common)
    # In-process: nothing transient to retry, but errors still get one shape.
    return ResilientClient(inner, spec=str(spec), where="the embedded model", max_retries=0, capabilities=EMBEDDED)


async def _embedded_gguf(spec: ModelSpec, settings: Settings) -> Path:
    """The GGUF file of an embedded spec, off the event loop: assembling Qwen the first time takes a minute or two."""
    import asyncio

    from conclave.models.catalog import gguf_for

    cancel = threading.Event()
    try:
        return await asyncio.to_thread(gguf_for, spec, settings.home, cancel=cancel)
    except asyncio.CancelledError:
        cancel.set()  # the assembly thread stops at its next chunk and removes its partial file
        raise


def _embedded_endpoint(spec: ModelSpec, settings: Settings) -> str:
    if spec.gguf_path is not None:
        return f"in-process llama.cpp ({spec.gguf_path})"
    if spec.tuned:
        return f"in-process llama.cpp (tuned model {spec.tuned}: its base GGUF with a LoRA adapter)"
    from conclave.models.catalog import LABELS, builtin_of

    return f"in-process llama.cpp ({LABELS[builtin_of(spec) or 'smollm2']}, built in)"


def _embedded_identity(spec: ModelSpec, settings: Settings) -> dict[str, Any]:
    identity = _embedded_model_identity(spec, settings)
    if settings.embedded_engine != "llama-cpp-python":
        # The same GGUF may answer differently on xllamacpp at temperature 0 (the server's own chat-template code and
        # batched kernels word some short answers differently), so its answers are cached apart. llama-cpp-python's
        # identity is unchanged: caches made before the engine setting existed stay valid for it.
        identity["engine"] = settings.embedded_engine
    return identity


def _embedded_model_identity(spec: ModelSpec, settings: Settings) -> dict[str, Any]:
    from conclave.models import catalog, weights
    from conclave.models.embedded import BUNDLED_FILE, bundled_model_path

    if spec.tuned:  # base + LoRA adapter: the two files' hashes are its identity (re-tuning changes it)
        from conclave.models.tuned import identity

        return identity(settings.home, spec.tuned)
    path = spec.gguf_path
    if catalog.builtin_of(spec) == catalog.QWEN:
        # The assembled file is checked against this hash before it loads: the hash is the model's identity.
        return {"provider": "embedded", "model": f"builtin:{catalog.QWEN}", "sha256": weights.QWEN.sha256}
    if path is None:
        try:
            path = bundled_model_path()
        except ConfigError:
            return {"provider": "embedded", "model": f"bundled:{BUNDLED_FILE}"}
    path = path.expanduser().resolve()
    try:
        size: int | None = path.stat().st_size  # another file at the same path is another model
    except OSError:
        size = None
    return {"provider": "embedded", "model": str(path), "size": size}


def _remote(
    inner: ChatCompletionClient,
    spec: ModelSpec,
    where: str,
    capabilities: Capabilities,
    settings: Settings,
    *,
    max_retries: int | None = None,
) -> ChatCompletionClient:
    """A remote backend's client with bounded retries within the settings' budget, and one error shape."""
    from conclave.models.resilience import ResilientClient

    return ResilientClient(
        inner,
        spec=str(spec),
        where=where,
        capabilities=capabilities,
        max_retries=settings.max_retries if max_retries is None else max_retries,
        attempt_timeout=settings.request_timeout,
        retry_budget=settings.retry_budget,
    )


# --------------------------------------------------------------------------------------------------- ollama


def _ollama_host(host: str) -> str:
    """The Ollama host without a trailing slash; ConfigError saying how to set it when it is not an http(s) URL
    (the request would fail with the HTTP library's words and no fix)."""
    parts = urlsplit(host.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in parts.netloc):
        raise ConfigError(
            f"ollama_host is not an http(s) URL: {host!r}",
            hint="set OLLAMA_HOST (or ollama_host in settings.toml) to the server's URL, e.g. http://127.0.0.1:11434",
        )
    return host.strip().rstrip("/")


async def _build_ollama(spec: ModelSpec, settings: Settings) -> ChatCompletionClient:
    from conclave.models.ollama import build_ollama_client

    host = _ollama_host(settings.ollama_host)
    inner = await build_ollama_client(
        spec.name,
        host=host,
        num_ctx=settings.context_length,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        timeout=settings.request_timeout,
    )
    return _remote(inner, spec, host, OLLAMA, settings)


# --------------------------------------------------------------------------------------------------- openai


async def _build_openai(spec: ModelSpec, settings: Settings) -> ChatCompletionClient:
    from conclave.models.openai_compat import build_openai_client

    if settings.openai_base_urls:
        await _check_pool_models(spec, settings)
        return _pool(spec, settings)
    inner, where = build_openai_client(spec.name, settings)
    return _remote(inner, spec, where, OPENAI, settings)


async def _check_pool_models(spec: ModelSpec, settings: Settings) -> None:
    """Refuse a pool whose endpoints serve different models (their ``/models`` lists disagree about ``spec``): one
    run's answers would come from different models. Endpoints that cannot be reached now, or have no model list, are
    not judged here (the pool takes a dead one out when a request fails)."""
    import asyncio

    import httpx

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    urls = list(dict.fromkeys(settings.openai_base_urls))

    async def served(client: httpx.AsyncClient, url: str) -> frozenset[str] | None:
        try:
            reply = await client.get(url.rstrip("/") + "/models", headers=headers)
            data = reply.json().get("data") if reply.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        if not isinstance(data, list):
            return None
        return frozenset(str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id"))

    async with httpx.AsyncClient(timeout=min(5.0, settings.request_timeout), follow_redirects=False) as client:
        lists = dict(zip(urls, await asyncio.gather(*(served(client, u) for u in urls)), strict=True))
    known = {url: ids for url, ids in lists.items() if ids is not None}
    with_model = [url for url, ids in known.items() if spec.name in ids]
    differ = (with_model and len(with_model) < len(known)) or (not with_model and len(set(known.values())) > 1)
    if differ:
        each = "; ".join(
            f"{endpoint_url(url)} serves {', '.join(sorted(ids)) or 'nothing'}" for url, ids in known.items()
        )
        raise ConfigError(
            f"the endpoints in openai_base_urls serve different models ({spec} asked): {each}",
            hint=f"list only endpoints that serve the same model as {spec}",
        )


def _pool(spec: ModelSpec, settings: Settings) -> ChatCompletionClient:
    """One OpenAI-compatible model over every URL of ``openai_base_urls`` (conclave/models/pool.py). Each endpoint
    retries once on its own; the pool moves a failed request on to the next endpoint."""
    from conclave.models.openai_compat import build_openai_client
    from conclave.models.pool import Endpoint, EndpointPool, shard

    endpoints = []
    for url in dict.fromkeys(settings.openai_base_urls):
        inner, where = build_openai_client(spec.name, settings, base_url=url)
        client = _remote(inner, spec, where, OPENAI, settings, max_retries=min(1, settings.max_retries))
        endpoints.append(Endpoint(where, client))
    # A worker of a distributed run (the Ray executor) sends to its share of the endpoints first.
    home = shard(*settings.pool_shard, len(endpoints)) if settings.pool_shard else None
    return EndpointPool(endpoints, spec=str(spec), cooldown=settings.endpoint_cooldown, home=home)


def _openai_endpoint(spec: ModelSpec, settings: Settings) -> str:
    where = ", ".join(settings.openai_base_urls) or settings.openai_base_url or "https://api.openai.com/v1"
    return f"{where} (OpenAI-compatible; sends your API key)"


def _openai_identity(spec: ModelSpec, settings: Settings) -> dict[str, Any]:
    from conclave.models.openai_compat import OPENAI_DEFAULT_BASE

    override = settings.openai_model_info.get(spec.name)
    return {
        "provider": "openai",
        "model": spec.name,
        "base_url": endpoint_url(settings.openai_base_url or OPENAI_DEFAULT_BASE),
        "model_info": override.model_dump(mode="json") if override is not None else None,
    }


# ------------------------------------------------------------------------------------------------- registry


def _plugin_backend(name: str, loaded: object) -> Backend:
    """What a ``conclave.backends`` entry point loads: a :class:`Backend`, or ``build(model, settings)`` (sync or
    async) returning a ``ChatCompletionClient``, which gets the standard retries and error shape."""
    if isinstance(loaded, Backend):
        return replace(loaded, name=name)
    if not callable(loaded):
        raise TypeError(f"expected a Backend or a function (model, settings) -> client, got {type(loaded).__name__}")
    factory = loaded

    async def build(spec: ModelSpec, settings: Settings) -> ChatCompletionClient:
        made = factory(spec.name, settings)
        inner = await made if inspect.isawaitable(made) else made
        return _remote(inner, spec, f"the {name} backend", Capabilities(), settings)

    doc = (getattr(loaded, "__doc__", None) or "").strip().splitlines()
    return Backend(name, doc[0] if doc else "(a plugin backend)", build)


BACKENDS: Registry[Backend] = Registry("backend", "conclave.backends", _plugin_backend)
"""Every backend by spec prefix: the three built-ins below and plugins (entry-point group ``conclave.backends``)."""

for _backend in (
    Backend(
        "embedded",
        "in-process llama.cpp: the built-in models, a GGUF path, or a tuned model (embedded[:NAME|:/path.gguf])",
        _build_embedded,
        EMBEDDED,
        _embedded_endpoint,
        _embedded_identity,
    ),
    Backend(
        "ollama",
        "a local Ollama server's native API (ollama/MODEL)",
        _build_ollama,
        OLLAMA,
        lambda spec, settings: f"{settings.ollama_host} (Ollama)",
        lambda spec, settings: {"provider": "ollama", "model": spec.name, "host": endpoint_url(settings.ollama_host)},
    ),
    Backend(
        "openai",
        "any OpenAI-compatible endpoint, or a pool of them (openai/MODEL)",
        _build_openai,
        OPENAI,
        _openai_endpoint,
        _openai_identity,
    ),
):
    BACKENDS.add(_backend.name, _backend)


def capabilities_for(spec: str) -> Capabilities:
    """The capabilities of the backend a spec string names (before any client exists, e.g. to size a limiter)."""
    return BACKENDS.get(parse_spec(spec).provider).capabilities


def parallel_requests(spec: str, settings: Settings) -> int | None:
    """How many requests the model a spec names can usefully serve at once (before any client exists): 1 on the
    embedded backend's llama-cpp-python engine (one at a time), ``embedded_parallel`` on its xllamacpp engine (its
    slots), None for a remote backend (no limit of its own: the server decides)."""
    if not capabilities_for(spec).in_process:
        return None
    if parse_spec(spec).provider == "embedded" and settings.embedded_engine == "xllamacpp":
        return settings.embedded_parallel
    return 1


def parse_spec(spec: str) -> ModelSpec:
    """Parse a spec string by its prefix, through the backend registry; raise :class:`ConfigError` naming the
    accepted forms."""
    embedded = parse_embedded(spec)
    if embedded is not None:
        return embedded
    text = spec.strip()
    prefix, sep, name = text.partition("/")
    if sep and prefix != "embedded" and prefix in BACKENDS:
        if not name.strip():
            raise ConfigError(f"model spec {spec!r} names no model", hint=SPEC_HELP)
        return ModelSpec(BACKENDS.canonical(prefix), name.strip())
    plugins = [n for n in BACKENDS.names() if n not in ("embedded", "ollama", "openai")]
    more = f" (or {', '.join(f'{n}/<model>' for n in plugins)})" if plugins else ""
    guess = closest(prefix, BACKENDS.names()) if sep else None
    mean = f": did you mean {guess}/{name.strip()}?" if guess else ""
    raise ConfigError(f"unknown model spec {spec!r}{mean}", hint=SPEC_HELP + more)
