"""The OpenAI-compatible backend: OpenAI itself, vLLM, LM Studio, llama.cpp's server, Groq, ..."""

from __future__ import annotations

import warnings
from typing import Any

from autogen_core.models import ModelInfo

from conclave.errors import AuthenticationFailed
from conclave.settings import Settings

OPENAI_DEFAULT_BASE = "https://api.openai.com/v1"

# AutoGen warns when a stream held nothing (an HTML page or cut-off JSON read as a stream); ResilientClient turns that
# reply into an error with its fix, so the warning would only repeat it as a Python traceback line on the terminal.
warnings.filterwarnings("ignore", message="No text content or tool calls are available", category=UserWarning)


def is_official_openai(base_url: str | None) -> bool:
    return not base_url or "api.openai.com" in base_url


def resolve_model_info(model: str, settings: Settings) -> ModelInfo:
    """ModelInfo from settings for names the library does not know, else the library's own table."""
    override = settings.openai_model_info.get(model)
    if override is not None:
        return {
            "vision": override.vision,
            "function_calling": override.function_calling,
            "json_output": override.json_output,
            "structured_output": override.structured_output,
            "family": override.family,
            "multiple_system_messages": True,
        }
    try:
        from autogen_ext.models.openai._model_info import get_info

        return get_info(model)
    except (KeyError, ValueError, ImportError):
        # A self-hosted model we know nothing about: assume the common OpenAI-compatible feature set.
        return {
            "vision": False,
            "function_calling": True,
            "json_output": True,
            "structured_output": True,
            "family": "unknown",
            "multiple_system_messages": True,
        }


def build_openai_client(model: str, settings: Settings, base_url: str | None = None) -> tuple[Any, str]:
    """An autogen-ext OpenAI client for any compatible endpoint (``base_url``, default ``settings.openai_base_url``),
    and a printable name of the endpoint."""
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    base_url = base_url or settings.openai_base_url
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if not key:
        if is_official_openai(base_url):
            raise AuthenticationFailed(
                f"no API key for openai/{model}",
                hint="set OPENAI_API_KEY (or openai_api_key in settings.toml), or point OPENAI_BASE_URL at a local server",
            )
        key = "not-needed"  # local servers accept any key; the SDK insists on one
    client = OpenAIChatCompletionClient(
        model=model,
        base_url=base_url or OPENAI_DEFAULT_BASE,
        api_key=key,
        model_info=resolve_model_info(model, settings),
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        timeout=settings.request_timeout,
        max_retries=0,  # ResilientClient owns retries, so the count is ours and observable
        # Many OpenAI-compatible hosts (Groq, some vLLM builds, Mistral) reject the `name` field on messages.
        include_name_in_message=False,
    )
    return client, base_url or OPENAI_DEFAULT_BASE
