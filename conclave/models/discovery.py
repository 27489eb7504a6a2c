"""What models are usable right now (``conclave models``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from conclave.errors import BackendError, ConclaveError
from conclave.models import weights
from conclave.models.backends import parse_spec
from conclave.models.catalog import LABELS, QWEN, SMOLLM2, default_builtin, qwen_target
from conclave.models.embedded import bundled_model_path, check_gguf
from conclave.models.speed import measured, speed_path
from conclave.settings import Settings


@dataclass(frozen=True)
class ModelEntry:
    spec: str
    provider: str
    available: bool
    detail: str
    size_bytes: int | None = None
    status: str = ""
    """For the built-in embedded models: bundled, assembled, checked on first use, not installed."""
    default: bool = False
    """Whether plain ``embedded`` runs this model."""
    tokens_per_s: float | None = None
    """Decoding speed last measured on this machine (None until a generation was long enough to measure)."""


def _speed_note(settings: Settings, model_file: str) -> tuple[float | None, str]:
    found = measured(speed_path(settings.home), model_file)
    if found is None:
        return None, "speed here: not measured yet"
    return found.tokens_per_s, f"{found.tokens_per_s:.1f} tokens/s here ({found.threads} threads, last run)"


def _smollm2(settings: Settings, default: bool) -> ModelEntry:
    label = LABELS[SMOLLM2]
    try:
        path = bundled_model_path()
    except ConclaveError as exc:
        return ModelEntry(
            "embedded:smollm2", "embedded", False, f"{label}: {exc}", status="not installed", default=default
        )
    size = path.stat().st_size
    rate, note = _speed_note(settings, path.name)
    return ModelEntry(
        "embedded:smollm2",
        "embedded",
        True,
        f"{label}, {size / 1e6:.0f} MB, bundled ({path}); {note}",
        size_bytes=size,
        status="bundled",
        default=default,
        tokens_per_s=rate,
    )


def _qwen(settings: Settings, default: bool) -> ModelEntry:
    label = LABELS[QWEN]
    target = qwen_target(settings.home)
    size = weights.QWEN.size
    rate, note = _speed_note(settings, target.name)
    where = f"{size / 1e9:.1f} GB"
    if target.exists():
        # No hashing here: `models` must stay quick. A file the sidecar does not vouch for is checked when loaded.
        if weights.sidecar_vouches(weights.QWEN, target):
            status, detail = "assembled", f"{label}, {where}, assembled and checked ({target})"
        else:
            status, detail = "assembled, unchecked", f"{label}, {where} at {target}: checked (SHA-256) when next used"
        return ModelEntry(
            "embedded:qwen",
            "embedded",
            True,
            f"{detail}; {note}",
            size_bytes=size,
            status=status,
            default=default,
            tokens_per_s=rate,
        )
    if weights.installed(weights.QWEN):
        detail = f"{label}, {where}: parts installed; assembled into {target.parent} and checked on first use"
        return ModelEntry(
            "embedded:qwen",
            "embedded",
            True,
            f"{detail}; {note}",
            size_bytes=size,
            status="parts installed",
            default=default,
            tokens_per_s=rate,
        )
    detail = f"{label}, {where}: not installed ({weights.QWEN.install_hint})"
    return ModelEntry(
        "embedded:qwen", "embedded", False, detail, size_bytes=size, status="not installed", default=default
    )


def _embedded(settings: Settings) -> list[ModelEntry]:
    chosen = default_builtin()
    builtins = [_qwen(settings, chosen == QWEN), _smollm2(settings, chosen == SMOLLM2)]
    target = next(e for e in builtins if e.default)
    entries = [
        ModelEntry(
            "embedded",
            "embedded",
            target.available,
            f"= {target.spec} ({LABELS[chosen]})",
            size_bytes=target.size_bytes,
            status=target.status,
            default=True,
            tokens_per_s=target.tokens_per_s,
        ),
        *builtins,
    ]
    for spec in {settings.model, *settings.roles.model_dump().values()}:
        if spec and spec.startswith("embedded:"):
            try:
                parsed = parse_spec(spec)
            except ConclaveError:
                continue
            if parsed.gguf_path is None:
                continue  # a built-in model, listed above
            try:
                path = check_gguf(parsed.gguf_path)
                size = path.stat().st_size
                rate, note = _speed_note(settings, path.name)
                entries.append(
                    ModelEntry(
                        spec, "embedded", True, f"{size / 1e6:.0f} MB; {note}", size_bytes=size, tokens_per_s=rate
                    )
                )
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


def _tuned(settings: Settings) -> list[ModelEntry]:
    """The models ``conclave tune`` registered: a base GGUF with a LoRA adapter each."""
    from conclave.models.tuned import list_tuned

    out = []
    for found in list_tuned(settings.home):
        loss = (found.get("result") or {}).get("final_loss")
        steps = (found.get("config") or {}).get("steps")
        detail = (
            f"tuned from {found.get('base_spec')} on {found.get('form')} chat data"
            + (f", {steps} steps" if steps else "")
            + (f", final loss {loss:.3f}" if isinstance(loss, (int, float)) else "")
        )
        out.append(ModelEntry(f"embedded:{found['name']}", "embedded", True, detail, status="tuned"))
    return out


async def list_models(settings: Settings) -> list[ModelEntry]:
    """Embedded models (built in and tuned), Ollama's models when it answers, configured OpenAI-compatible
    endpoints."""
    ollama, openai = await asyncio.gather(_ollama(settings), _openai(settings))
    return [*_embedded(settings), *_tuned(settings), *ollama, *openai]
