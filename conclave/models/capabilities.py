"""What a model backend can do, as a property of its client rather than a guess from a spec prefix or a class name.

Every client :func:`conclave.models.make_client` returns carries one :class:`Capabilities` (the backend decides it
once, in ``models/registry.py``); code that has to treat backends differently asks :func:`capabilities_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["EMBEDDED", "OLLAMA", "OPENAI", "Capabilities", "capabilities_of", "capabilities_for"]


@dataclass(frozen=True)
class Capabilities:
    in_process: bool = False
    """The model runs inside this process: one request at a time (parallel requests only queue), nothing transient
    to retry, no network."""
    structured: Literal["grammar", "format", "response_format"] = "response_format"
    """How output is constrained to a JSON schema: a llama.cpp grammar (``json_schema``), Ollama's ``format``, or
    OpenAI's ``response_format`` (falling back to ``json_object`` where a host refuses ``json_schema``)."""
    stream_usage: bool = False
    """Streams report token usage when asked (``stream_options.include_usage``)."""
    local_token_count: bool = True
    """``count_tokens`` runs locally; where it would fetch tokenizer tables from the internet it is estimated."""


EMBEDDED = Capabilities(in_process=True, structured="grammar")
OLLAMA = Capabilities(structured="format")
OPENAI = Capabilities(structured="response_format", stream_usage=True, local_token_count=False)


def capabilities_for(spec: str) -> Capabilities:
    """The capabilities of the backend a spec string names (before any client exists, e.g. to size a limiter)."""
    from conclave.models.backends import BACKENDS
    from conclave.models.spec import parse_spec

    return BACKENDS.get(parse_spec(spec).provider).capabilities


def capabilities_of(client: Any) -> Capabilities:
    """The capabilities a client carries, looked up through wrappers (retries, response cache, usage recorders)."""
    seen = 0
    while client is not None and seen < 16:
        found = getattr(type(client), "conclave_capabilities", None) or getattr(client, "conclave_capabilities", None)
        if isinstance(found, Capabilities):
            return found
        client = getattr(client, "inner", None) or getattr(client, "client", None) or getattr(client, "_client", None)
        seen += 1
    return Capabilities()
