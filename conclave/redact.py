"""Secrets never leave in error texts: one redaction function, applied where errors are made.

A server may echo the request's ``Authorization`` header (or the key itself) in an error message; that text then
travels into CLI errors, traces, ``items.jsonl`` and reports. :func:`redact` removes every configured secret value
(registered with :func:`register_secret` when settings are loaded, plus the API-key variables of the environment)
and anything shaped like a credential (``Bearer …``, ``sk-…``, ``api_key=…``, ``Authorization: …``, the password in
``scheme://user:password@host`` and secret-named query parameters such as ``?api-key=…``).
:class:`conclave.errors.ConclaveError` redacts its message and hint on construction, so every error Conclave
makes, including the one the backend boundary (``conclave.models.resilience.classify``) makes from an SDK
exception, is clean before anything prints, traces, stores or reports it.

Model output is a different case: an answer may legitimately show ``Authorization: Bearer <token>`` as an example,
so answers lose only the configured secret values (:func:`redact_secrets`, :class:`SecretStream` for a stream).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

__all__ = [
    "REDACTED",
    "SecretStream",
    "is_secret_variable",
    "redact",
    "redact_command",
    "redact_secrets",
    "redact_url",
    "redactor",
    "register_secret",
    "register_url_secrets",
]

REDACTED = "[redacted]"
_MIN_SECRET = 6  # shorter values would redact ordinary words
_SECRETS: set[str] = set()
# Environment variables whose values are credentials, whatever Conclave's settings say.
_SECRET_VARIABLE = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)$", re.IGNORECASE)
# Query parameters whose values are credentials (api-key, api_key, key, token, access_token, sig, ...).
_SECRET_PARAMETER = re.compile(
    r"(?i)^(?:[\w.]*[-_])?(?:api[-_]?key|apikey|key|token|secret|password|passwd|pwd|sig|signature|credential|auth)$"
)
_PARAMETER_NAME = (
    r"(?:[\w.]*[-_])?(?:api[-_]?key|apikey|key|token|secret|password|passwd|pwd|sig|signature|credential|auth)"
)

_SHAPES = [
    # Authorization: Bearer xyz / Authorization: Basic xyz / "authorization": "..."
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+|token\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"),
    re.compile(r"(?i)((?:api[_-]?key|access[_-]?token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}&]+"),
    re.compile(r"\b()sk-[A-Za-z0-9_-]{8,}"),
    # scheme://user:password@host: the password (the user name stays, to recognise the account)
    re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s:\"']*:)[^/?#@\s\"']+(?=@)"),
    # ?api-key=... / &token=... in a URL
    re.compile(rf"(?i)([?&]{_PARAMETER_NAME}=)[^&#\s\"']+"),
]


def register_secret(value: str | None) -> None:
    """Remember a secret value (an API key) so that :func:`redact` removes it from any text."""
    if value and len(value) >= _MIN_SECRET:
        _SECRETS.add(value)


def url_secrets(url: str) -> list[str]:
    """The credentials written into a URL: the userinfo's password (or a lone token as user name) and the values of
    secret-named query parameters, as written and decoded."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return []
    found: list[str] = []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if userinfo:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
    for pair in parts.query.split("&"):
        name, equals, value = pair.partition("=")
        if equals and value and _SECRET_PARAMETER.match(unquote(name)):
            found.append(value)
    return [v for secret in found for v in dict.fromkeys((secret, unquote(secret))) if v]


def register_url_secrets(url: str | None) -> None:
    """Register the credentials written into ``url`` (see :func:`url_secrets`), so errors that echo it are clean."""
    for secret in url_secrets(url or ""):
        register_secret(secret)


def redact_url(url: str) -> str:
    """``url`` as it may be shown or stored: the userinfo's password (a lone user name too, which is then usually a
    token) and secret-named query parameters replaced by ``[redacted]``; everything else as written."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"
    query = "&".join(
        f"{name}={REDACTED}" if equals and value and _SECRET_PARAMETER.match(unquote(name)) else pair
        for pair in parts.query.split("&")
        for name, equals, value in [pair.partition("=")]
    )
    shown = parts._replace(netloc=netloc, query=query).geturl() if parts.scheme else url
    return redact(shown)


def redact_command(argv: list[str]) -> list[str]:
    """A command line as it may be recorded (a run's manifest): every argument redacted, URL credentials included."""
    return [redact(arg) for arg in argv]


def is_secret_variable(name: str) -> bool:
    """Whether an environment variable's name says its value is a credential (``GITHUB_TOKEN``, ``X_API_KEY``)."""
    return bool(_SECRET_VARIABLE.search(name))


def _environment_secrets() -> set[str]:
    return {v for k, v in os.environ.items() if is_secret_variable(k) and v and len(v) >= _MIN_SECRET}


def _known_secrets() -> list[str]:
    """Every configured secret, longest first (a key that contains another is replaced whole)."""
    return sorted(_SECRETS | _environment_secrets(), key=len, reverse=True)


def _replace(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_secrets(text: str) -> str:
    """``text`` with every configured secret value replaced by ``[redacted]`` (no shapes: for model output)."""
    return _replace(text, _known_secrets()) if text else text


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every known secret value and every credential-shaped substring replaced by ``[redacted]``.
    ``secrets``: the known secrets read once by :func:`redactor`, for many texts in a row."""
    if not text:
        return text
    text = _replace(text, _known_secrets() if secrets is None else secrets)
    for shape in _SHAPES:
        text = shape.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def redactor() -> Callable[[str], str]:
    """:func:`redact` for many texts at once (a trace's attributes): the known secrets, the environment's included,
    are read once, not per text."""
    secrets = _known_secrets()
    return lambda text: redact(text, secrets)


class SecretStream:
    """Redacts configured secrets from text that arrives in pieces (a streamed answer).

    A secret may be split across pieces, so the end of the text that could be the start of a secret is held back
    until the next piece shows whether it is one; :meth:`flush` hands over what is held when the stream ends.
    Only a possible secret's start waits: ordinary text passes at once."""

    def __init__(self) -> None:
        self._secrets = _known_secrets()
        self._held = ""

    def feed(self, piece: str) -> str:
        """The redacted text that is safe to pass on now (may be empty)."""
        if not self._secrets:
            return piece
        text = _replace(self._held + piece, self._secrets)
        hold = self._partial_tail(text)
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What is still held: the stream ended with it, so it is no whole secret."""
        held, self._held = self._held, ""
        return held

    def _partial_tail(self, text: str) -> int:
        """Length of the longest end of ``text`` that a secret starts with (but that is not the whole secret)."""
        longest = 0
        for secret in self._secrets:
            for size in range(min(len(secret) - 1, len(text)), longest, -1):
                if text.endswith(secret[:size]):
                    longest = size
                    break
        return longest
