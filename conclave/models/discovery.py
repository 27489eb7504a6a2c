"""What models are usable right now (``conclave models``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from conclave.errors import BackendError, ConclaveError
from conclave.models.embedded import bundled_model_path
from conclave.settings import Settings


@dataclass(frozen=True)
class ModelEntry:
    spec: str
    provider: str
    available: bool
    detail: str


def _embedded(settings: Settings) -> list[ModelEntry]:
    entries = []
    try:
        path = bundled_model_path()
        size = path.stat().st_size / 1e6
        entries.append(ModelEntry("embedded", "embedded", True, f"SmolLM2-135M-Instruct ({size:.0f} MB, {path})"))
    except ConclaveError as exc:
        entries.append(ModelEntry("embedded", "embedded", False, str(exc)))
    for spec in {settings.model, *settings.roles.model_dump().values()}:
        if spec and spec.startswith("embedded:"):
            from pathlib import Path

            from conclave.models.embedded import check_gguf

            try:
                path = check_gguf(Path(spec.split(":", 1)[1]))
                entries.append(ModelEntry(spec, "embedded", True, f"{path.stat().st_size / 1e6:.0f} MB"))
            except ConclaveError as exc:
                entries.append(ModelEntry(spec, "embedded", False, exc.message))
    return entries


async def _ollama(settings: Settings) -> list[ModelEntry]:
    from conclave.models.ollama import model_info_from_show, show, tags

    host = settings.ollama_host.rstrip("/")
    try:
        models = await tags(host, timeout=2.0)
    except BackendError as exc:
        return [ModelEntry("ollama/*", "ollama", False, f"{exc.message} — {exc.hint}")]
    if not models:
        return [ModelEntry("ollama/*", "ollama", False, f"Ollama at {host} has no models (run `ollama pull <model>`)")]
    entries = []
    for entry in models:
        name = str(entry.get("name") or entry.get("model"))
        detail = f"at {host}"
        try:
            info, ctx = model_info_from_show(await show(host, name, timeout=5.0))
            caps = [k for k in ("function_calling", "vision") if info.get(k)]
            detail += f", context {ctx or '?'}" + (f", {' '.join(caps)}" if caps else "")
        except BackendError as exc:
            detail += f" ({exc.message})"
        entries.append(ModelEntry(f"ollama/{name}", "ollama", True, detail))
    return entries


async def _openai(settings: Settings) -> list[ModelEntry]:
    from conclave.models.openai_compat import OPENAI_DEFAULT_BASE, is_official_openai

    base = settings.openai_base_url
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not base and not key:
        return []
    base = (base or OPENAI_DEFAULT_BASE).rstrip("/")
    if not key and is_official_openai(base):
        return [ModelEntry("openai/*", "openai", False, f"{base}: no API key (set OPENAI_API_KEY)")]
    headers = {"Authorization": f"Bearer {key or 'not-needed'}"}
    try:
        async with httpx.AsyncClient(timeout=5.0) as http:
            reply = await http.get(f"{base}/models", headers=headers)
    except httpx.HTTPError as exc:
        return [ModelEntry("openai/*", "openai", False, f"{base} unreachable ({type(exc).__name__})")]
    if reply.status_code in (401, 403):
        return [ModelEntry("openai/*", "openai", False, f"{base} rejected the API key (HTTP {reply.status_code})")]
    if reply.status_code != 200:
        return [ModelEntry("openai/*", "openai", False, f"{base} answered HTTP {reply.status_code}")]
    try:
        ids = [str(m["id"]) for m in reply.json().get("data", [])]
    except (ValueError, KeyError, TypeError, AttributeError):
        return [ModelEntry("openai/*", "openai", False, f"{base} is not an OpenAI-compatible server")]
    return [ModelEntry(f"openai/{i}", "openai", True, f"at {base}") for i in ids] or [
        ModelEntry("openai/*", "openai", False, f"{base} lists no models")
    ]


async def list_models(settings: Settings) -> list[ModelEntry]:
    """Embedded models, Ollama's models when it answers, configured OpenAI-compatible endpoints."""
    ollama, openai = await asyncio.gather(_ollama(settings), _openai(settings))
    return [*_embedded(settings), *ollama, *openai]
