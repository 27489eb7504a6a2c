"""Prompts shipped as package data (``*.md`` files in a package folder): loaded and checked once, hashed for run
manifests. The agents' prompts and the evaluation's (judge, synthetic data) are two folders of this one kind."""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.resources.abc import Traversable

from conclave.errors import ConfigError

__all__ = ["PromptFolder"]


class PromptFolder:
    def __init__(self, package: str, folder: str = ""):
        self.package = package
        self.folder = folder
        self._texts: dict[str, str] = {}

    def _root(self) -> Traversable:
        root = resources.files(self.package)
        return root.joinpath(self.folder) if self.folder else root

    def load(self, name: str) -> str:
        """The text of ``<name>.md`` (stripped); ConfigError when it is missing or empty (a broken installation)."""
        if name not in self._texts:
            try:
                text = self._root().joinpath(f"{name}.md").read_text(encoding="utf-8")
            except FileNotFoundError as exc:
                raise ConfigError(
                    f"prompt {name!r} is missing from the installation", hint="reinstall conclave"
                ) from exc
            if not text.strip():
                raise ConfigError(f"prompt {name!r} is empty", hint="reinstall conclave")
            self._texts[name] = text.strip()
        return self._texts[name]

    def hashes(self) -> dict[str, str]:
        """sha256 (12 hex digits) of every prompt in the folder, by name."""
        return {
            entry.name[:-3]: hashlib.sha256(entry.read_bytes()).hexdigest()[:12]
            for entry in sorted(self._root().iterdir(), key=lambda e: e.name)
            if entry.name.endswith(".md")
        }
