"""Model spec strings: ``embedded[:<name>]``, ``embedded:/path.gguf``, ``ollama/<model>``, ``openai/<model>``.

``embedded:qwen`` and ``embedded:smollm2`` name the built-in embedded models (``conclave/models/catalog.py``); plain
``embedded`` is Qwen when its parts are installed, else SmolLM2. A GGUF file literally named ``qwen`` in the
current folder is ``embedded:./qwen``. A plain name (letters, digits, ``-``, ``_``) that is not built in names a
tuned model (``conclave tune``, ``CONCLAVE_HOME/tuned/NAME``); a GGUF file so named is ``embedded:./NAME``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from conclave.errors import ConfigError

Provider = str
"""A backend's name in the backend registry (``conclave/models/backends.py``): embedded, ollama, openai, plugins."""

EMBEDDED_NAMES = ("qwen", "smollm2")
"""The built-in embedded models, by the name ``embedded:<name>`` gives them."""

TUNED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
"""``embedded:<name>`` of a tuned model (conclave/models/tuned.py): no dot or slash, so never a file's path."""

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
    def tuned(self) -> str | None:
        """The tuned model this spec names (``embedded:NAME``, see ``conclave tune``); ``None`` otherwise."""
        if self.provider != "embedded" or not self.name or self.builtin:
            return None
        return self.name if TUNED_NAME.match(self.name) else None

    @property
    def gguf_path(self) -> Path | None:
        """The GGUF file an ``embedded:/path.gguf`` spec names; ``None`` for built-in and tuned models and other
        providers."""
        if self.provider != "embedded" or not self.name or self.builtin or self.tuned:
            return None
        return Path(self.name).expanduser()


def parse_embedded(spec: str) -> ModelSpec | None:
    """An ``embedded[:NAME|:PATH]`` spec parsed (no backend registry needed); ``None`` for any other prefix."""
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
    return None


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` is most likely a typo of (as ``conclave aks`` suggests ``ask``), or ``None``."""
    found = difflib.get_close_matches(word.lower(), list(choices), n=1, cutoff=0.6)
    return found[0] if found else None
