"""Model spec strings: ``embedded[:<name>]``, ``embedded:/path.gguf``, ``ollama/<model>``, ``openai/<model>``.

``embedded:qwen`` and ``embedded:smollm2`` name the built-in embedded models (``conclave/models/catalog.py``); plain
``embedded`` is Qwen when its parts are installed, else SmolLM2. A GGUF file literally named ``qwen`` in the
current folder is ``embedded:./qwen``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from conclave.errors import ConfigError

Provider = Literal["embedded", "ollama", "openai"]

EMBEDDED_NAMES = ("qwen", "smollm2")
"""The built-in embedded models, by the name ``embedded:<name>`` gives them."""

SPEC_HELP = (
    "use `embedded` (or `embedded:qwen`, `embedded:smollm2`), `embedded:/path/to/model.gguf`, `ollama/<model>` "
    "or `openai/<model>`"
)


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec. ``name`` is the model name (for embedded: a built-in name, a GGUF path, or empty = the
    default built-in model)."""

    provider: Provider
    name: str = ""

    def __str__(self) -> str:
        if self.provider == "embedded":
            return f"embedded:{self.name}" if self.name else "embedded"
        return f"{self.provider}/{self.name}"

    @property
    def builtin(self) -> str | None:
        """The built-in embedded model this spec names (``qwen``, ``smollm2``); ``None`` for a path or the default."""
        return self.name if self.provider == "embedded" and self.name in EMBEDDED_NAMES else None

    @property
    def gguf_path(self) -> Path | None:
        """The GGUF file an ``embedded:/path.gguf`` spec names; ``None`` for built-in models and other providers."""
        if self.provider != "embedded" or not self.name or self.builtin:
            return None
        return Path(self.name).expanduser()


def parse_spec(spec: str) -> ModelSpec:
    """Parse a spec string; raise :class:`ConfigError` naming the accepted forms."""
    text = (spec or "").strip()
    if not text:
        raise ConfigError("empty model spec", hint=SPEC_HELP)
    if text == "embedded":
        return ModelSpec("embedded")
    if text.startswith("embedded:"):
        path = text[len("embedded:") :].strip()
        if not path:
            raise ConfigError(f"model spec {spec!r} names no GGUF file", hint=SPEC_HELP)
        if path.lower() in EMBEDDED_NAMES:
            path = path.lower()
        return ModelSpec("embedded", path)
    prefix, sep, name = text.partition("/")
    if sep and prefix in ("ollama", "openai"):
        if not name.strip():
            raise ConfigError(f"model spec {spec!r} names no model", hint=SPEC_HELP)
        return ModelSpec(prefix, name.strip())  # type: ignore[arg-type]
    raise ConfigError(f"unknown model spec {spec!r}", hint=SPEC_HELP)
