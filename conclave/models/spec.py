"""Model spec strings: ``embedded``, ``embedded:/path.gguf``, ``ollama/<model>``, ``openai/<model>``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from conclave.errors import ConfigError

Provider = Literal["embedded", "ollama", "openai"]

SPEC_HELP = "use `embedded`, `embedded:/path/to/model.gguf`, `ollama/<model>` or `openai/<model>`"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec. ``name`` is the model name (or GGUF path for embedded; empty = the bundled model)."""

    provider: Provider
    name: str = ""

    def __str__(self) -> str:
        if self.provider == "embedded":
            return f"embedded:{self.name}" if self.name else "embedded"
        return f"{self.provider}/{self.name}"

    @property
    def gguf_path(self) -> Path | None:
        return Path(self.name).expanduser() if self.provider == "embedded" and self.name else None


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
        return ModelSpec("embedded", path)
    prefix, sep, name = text.partition("/")
    if sep and prefix in ("ollama", "openai"):
        if not name.strip():
            raise ConfigError(f"model spec {spec!r} names no model", hint=SPEC_HELP)
        return ModelSpec(prefix, name.strip())  # type: ignore[arg-type]
    raise ConfigError(f"unknown model spec {spec!r}", hint=SPEC_HELP)
