"""JSON-schema-constrained output, one call for every backend.

llama.cpp compiles the schema to a grammar, Ollama takes it as ``format``, OpenAI-compatible hosts as
``response_format`` (``json_schema``, falling back to llama.cpp-server style ``json_object`` + ``schema`` for hosts that
do not know ``json_schema``). The reply is validated either way: a host that ignores the schema cannot slip bad data
through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage
from pydantic import BaseModel, ValidationError

from conclave import nesting
from conclave.errors import BackendError
from conclave.models.capabilities import capabilities_of
from conclave.models.embedded import grammar_safe

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


class StructuredOutputError(BackendError):
    """The model's reply did not match the schema."""

    def __init__(self, message: str, *, raw: str):
        super().__init__(message, hint="try again, or use a larger model")
        self.raw = raw


def schema_args(client: ChatCompletionClient, schema: dict[str, Any], name: str) -> dict[str, Any]:
    """The ``extra_create_args`` that constrain this client's output to ``schema`` (in the ``json_object`` + ``schema``
    dialect once the client's host has refused ``json_schema``, see :func:`rejects_json_schema`)."""
    dialect = capabilities_of(client).structured
    if dialect == "grammar":
        return {"json_schema": schema}
    if dialect == "format":
        return {"format": schema}
    if getattr(client, "conclave_json_object_schema", False):
        # llama-cpp-python's server compiles the schema into a grammar as the embedded backend does, and dies on the
        # same unrolled bounds: send it the same grammar-safe copy (replies are validated against the full schema).
        return {"response_format": {"type": "json_object", "schema": grammar_safe(schema)}}
    return {
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": re.sub(r"[^A-Za-z0-9_-]", "_", name)[:64] or "output",
                "schema": schema,
                "strict": False,
            },
        }
    }


def rejects_json_schema(client: ChatCompletionClient, exc: BackendError, args: dict[str, Any]) -> bool:
    """Whether ``exc`` is the host refusing a ``json_schema`` response format. Hosts that predate it (llama.cpp's
    server among them) answer 400, or 500 naming ``response_format``; if so, remember for this client that it takes
    the ``json_object`` + ``schema`` dialect, so that :func:`schema_args` uses it from now on, and return True."""
    response_format = args.get("response_format")
    if not (isinstance(response_format, dict) and response_format.get("type") == "json_schema"):
        return False
    if "HTTP 400" not in exc.message and "response_format" not in exc.message:
        return False
    client.conclave_json_object_schema = True  # type: ignore[attr-defined]
    return True


def extract_json(text: str) -> Any:
    """Parse JSON from a reply, tolerating code fences and prose around one object."""
    text = text.strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return nesting.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if start != -1 and end > start:
            return nesting.loads(text[start : end + 1])
        raise


async def with_schema(
    client: ChatCompletionClient,
    schema: dict[str, Any],
    name: str,
    extra: dict[str, Any] | None,
    call: Callable[[dict[str, Any]], Awaitable[R]],
) -> R:
    """``call(extra_create_args)`` constrained to ``schema`` in the dialect the client's host takes: a host that refuses
    ``json_schema`` is asked once more in ``json_object`` + ``schema`` (remembered per client, see
    :func:`rejects_json_schema`). The one place that owns this fallback."""
    args = {**(extra or {}), **schema_args(client, schema, name)}
    try:
        return await call(args)
    except BackendError as exc:
        if not rejects_json_schema(client, exc, args):
            raise
    return await call({**(extra or {}), **schema_args(client, schema, name)})


async def complete_json(
    client: ChatCompletionClient,
    messages: Sequence[LLMMessage],
    schema: dict[str, Any],
    *,
    name: str = "output",
    extra: dict[str, Any] | None = None,
) -> tuple[Any, CreateResult]:
    """One constrained call; returns the parsed JSON (not yet validated against ``schema``) and the raw result."""
    result = await with_schema(
        client, schema, name, extra, lambda args: client.create(messages, extra_create_args=args)
    )
    raw = result.content if isinstance(result.content, str) else str(result.content)
    try:
        return extract_json(raw), result
    except json.JSONDecodeError as exc:
        raise StructuredOutputError(f"the model's reply is not JSON: {exc.msg}", raw=raw) from exc


async def complete_structured(
    client: ChatCompletionClient,
    messages: Sequence[LLMMessage],
    schema_model: type[T],
    *,
    extra: dict[str, Any] | None = None,
) -> T:
    """One constrained call returning a validated instance of ``schema_model``."""
    data, _ = await complete_json(
        client, messages, schema_model.model_json_schema(), name=schema_model.__name__, extra=extra
    )
    try:
        return schema_model.model_validate(data)
    except ValidationError as exc:
        raise StructuredOutputError(
            f"the model's reply does not match {schema_model.__name__}: {exc.errors()[0]['msg']}", raw=json.dumps(data)
        ) from exc
