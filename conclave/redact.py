"""Secrets never leave in error texts: one redaction function, applied where errors are made.

A server may echo the request's ``Authorization`` header (or the key itself) in an error message; that text then
travels into CLI errors, traces, ``items.jsonl`` and reports. :func:`redact` removes every configured secret value
(registered with :func:`register_secret` when settings are loaded, plus the API-key variables of the environment)
and anything shaped like a credential (``Bearer …``, ``sk-…``, ``api_key=…``, ``Authorization: …``).
:class:`conclave.errors.ConclaveError` redacts its message and hint on construction, so every error Conclave
makes, including the one the backend boundary (``conclave.models.resilience.classify``) makes from an SDK
exception, is clean before anything prints, traces, stores or reports it.
"""

from __future__ import annotations

import os
import re

__all__ = ["REDACTED", "redact", "register_secret"]

REDACTED = "[redacted]"
_MIN_SECRET = 6  # shorter values would redact ordinary words
_SECRETS: set[str] = set()
# Environment variables whose values are credentials, whatever Conclave's settings say.
_SECRET_VARIABLE = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)

_SHAPES = [
    # Authorization: Bearer xyz / Authorization: Basic xyz / "authorization": "..."
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+|token\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)((?:api[_-]?key|access[_-]?token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+"),
    re.compile(r"\b()sk-[A-Za-z0-9_-]{8,}"),
]


def register_secret(value: str | None) -> None:
    """Remember a secret value (an API key) so that :func:`redact` removes it from any text."""
    if value and len(value) >= _MIN_SECRET:
        _SECRETS.add(value)


def _environment_secrets() -> set[str]:
    return {v for k, v in os.environ.items() if _SECRET_VARIABLE.search(k) and v and len(v) >= _MIN_SECRET}


def redact(text: str) -> str:
    """``text`` with every known secret value and every credential-shaped substring replaced by ``[redacted]``."""
    if not text:
        return text
    for secret in sorted(_SECRETS | _environment_secrets(), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    for shape in _SHAPES:
        text = shape.sub(lambda m: m.group(1) + REDACTED, text)
    return text
