"""The Ollama backend: capabilities and context length from ``/api/show``; ``num_ctx`` always set."""

from __future__ import annotations

from typing import Any

import httpx
from autogen_core.models import ModelInfo

from conclave.errors import BackendError, ModelNotFound
from conclave.models.resilience import ollama_unreachable

# Ollama's own default context is small (2k-4k tokens) whatever the model supports; we always ask explicitly.
DEFAULT_NUM_CTX = 4096


def model_info_from_show(show: dict[str, Any]) -> tuple[ModelInfo, int | None]:
    """Derive AutoGen's ``ModelInfo`` and the trained context length from an ``/api/show`` reply."""
    capabilities = set(show.get("capabilities") or [])
    details = show.get("details") or {}
    family = str(details.get("family") or "unknown")
    info_block = show.get("model_info") or {}
    context_length: int | None = None
    for key, value in info_block.items():
        if key.endswith(".context_length") and isinstance(value, int):
            context_length = value
            break
    completion = "completion" in capabilities or not capabilities
    info: ModelInfo = {
        "vision": "vision" in capabilities,
        "function_calling": "tools" in capabilities,
        "json_output": completion,
        "structured_output": completion,
        "family": family,
        "multiple_system_messages": True,
    }
    return info, context_length


def choose_num_ctx(context_length: int | None, wanted: int) -> int:
    """The context to request: what settings ask for, never more than the model was trained on."""
    if context_length:
        return max(512, min(wanted, context_length))
    return wanted or DEFAULT_NUM_CTX


async def show(host: str, model: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """POST /api/show; raise BackendUnavailable / ModelNotFound with the fix."""
    try:
        async with httpx.AsyncClient(base_url=host, timeout=timeout) as http:
            reply = await http.post("/api/show", json={"model": model})
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ReadTimeout) as exc:
        raise ollama_unreachable(host) from exc
    except httpx.HTTPError as exc:
        raise BackendError(f"Ollama at {host} failed: {exc}") from exc
    if reply.status_code == 404:
        raise ModelNotFound(f"Ollama at {host} has no model {model!r}", hint=f"run `ollama pull {model}`")
    if reply.status_code != 200:
        raise BackendError(f"Ollama at {host} answered HTTP {reply.status_code} to /api/show: {reply.text[:200]}")
    try:
        data = reply.json()
    except ValueError as exc:
        raise BackendError(f"{host} is not an Ollama server (non-JSON reply)", hint="check OLLAMA_HOST") from exc
    if not isinstance(data, dict):
        raise BackendError(f"{host} is not an Ollama server", hint="check OLLAMA_HOST")
    return data


async def tags(host: str, *, timeout: float = 3.0) -> list[dict[str, Any]]:
    """GET /api/tags: the pulled models."""
    try:
        async with httpx.AsyncClient(base_url=host, timeout=timeout) as http:
            reply = await http.get("/api/tags")
    except httpx.HTTPError as exc:
        raise ollama_unreachable(host) from exc
    if reply.status_code != 200:
        raise BackendError(f"Ollama at {host} answered HTTP {reply.status_code} to /api/tags")
    try:
        models = reply.json().get("models") or []
    except (ValueError, AttributeError) as exc:
        raise BackendError(f"{host} is not an Ollama server", hint="check OLLAMA_HOST") from exc
    return [m for m in models if isinstance(m, dict)]


async def build_ollama_client(
    model: str, *, host: str, num_ctx: int, temperature: float, max_tokens: int, timeout: float
) -> Any:
    """An autogen-ext Ollama client with ModelInfo read from the server."""
    from autogen_ext.models.ollama import OllamaChatCompletionClient

    info, context_length = model_info_from_show(await show(host, model, timeout=min(timeout, 30.0)))
    options = {
        "num_ctx": choose_num_ctx(context_length, num_ctx),
        "temperature": temperature,
        "num_predict": max_tokens,
    }
    client = OllamaChatCompletionClient(model=model, host=host, model_info=info, options=options)
    # autogen-ext passes only `host` to the ollama SDK; give it our timeout too (a hung server must not hang us).
    from ollama import AsyncClient

    client._client = AsyncClient(host=host, timeout=timeout)
    return client
