"""What a model backend can do, as a property of its client rather than a guess from a spec prefix or a class name.

Every client :func:`conclave.models.make_client` returns carries one :class:`Capabilities` (the backend decides it
once, in ``models/backends.py``, which also answers for a spec before any client exists: ``capabilities_for``,
``parallel_requests``); code that has to treat backends differently asks :func:`capabilities_of`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "EMBEDDED",
    "OLLAMA",
    "OPENAI",
    "Capabilities",
    "capabilities_of",
    "parallel_of",
]


@dataclass(frozen=True)
class Capabilities:
    in_process: bool = False
    """The model runs inside this process: nothing transient to retry, no network, and a bounded number of requests
    at once (``backends.parallel_requests``: one on llama-cpp-python, where parallel requests only queue)."""
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


def parallel_of(client: Any) -> int | None:
    """How many requests a client can usefully serve at once: its own ``conclave_parallel`` (looked up through
    wrappers), else 1 for an in-process model and None (no limit of its own) for a remote one."""
    seen, inner = 0, client
    while inner is not None and seen < 16:
        found = getattr(inner, "conclave_parallel", None)
        if isinstance(found, int) and not isinstance(found, bool) and found > 0:
            return found
        inner = getattr(inner, "inner", None) or getattr(inner, "client", None) or getattr(inner, "_client", None)
        seen += 1
    return 1 if capabilities_of(client).in_process else None
