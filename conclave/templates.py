"""Saved ``ask`` set-ups (``ask --save NAME``, ``ask --template NAME``): a system prompt, model, method, collection and
model options under a name, one JSON file each in ``CONCLAVE_HOME/templates``.

Files under ``CONCLAVE_HOME`` are untrusted input: a template is read as data against a closed schema, and it can hold
only what the command line could say (no endpoints, no keys, no paths).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from conclave import nesting
from conclave.errors import ConfigError

__all__ = [
    "MODEL_OPTIONS",
    "Template",
    "delete_template",
    "list_templates",
    "load_template",
    "parse_options",
    "save_template",
]

MODEL_OPTIONS: dict[str, type] = {"temperature": float, "max_tokens": int, "context_length": int}
"""What ``-o KEY=VALUE`` may set: the settings of the same names."""

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str | None = Field(None, max_length=4000)
    model: str | None = Field(None, max_length=300)
    method: str | None = Field(None, max_length=200)
    collection: str | None = Field(None, max_length=200)
    options: dict[str, float | int] = Field(default_factory=dict)

    def settings_overrides(self) -> dict[str, Any]:
        """What the template sets, as ``load_settings`` keywords (a method variant stays for build_context)."""
        out: dict[str, Any] = {
            "system": self.system,
            "model": self.model,
            "collection": self.collection,
            **parse_options([f"{k}={v}" for k, v in self.options.items()]),
        }
        return {k: v for k, v in out.items() if v is not None}


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["temperature=0.7", "max_tokens=300"]`` -> typed settings keywords; unknown keys and bad values raise."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in MODEL_OPTIONS:
            raise ConfigError(
                f"unknown model option {pair!r}",
                hint="use -o KEY=VALUE with KEY one of " + ", ".join(MODEL_OPTIONS) + ", e.g. -o temperature=0.7",
            )
        try:
            value = MODEL_OPTIONS[key](raw.strip())
        except ValueError:
            raise ConfigError(
                f"model option {key} needs a {MODEL_OPTIONS[key].__name__}, got {raw.strip()!r}",
                hint=f"e.g. -o {key}={'0.7' if MODEL_OPTIONS[key] is float else '512'}",
            ) from None
        out[key] = value
    return out


def _folder(home: Path) -> Path:
    return home / "templates"


def _path(home: Path, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"template name {name!r} is not allowed",
            hint="use letters, digits, - and _ (up to 40), starting with a letter or digit",
        )
    return _folder(home) / f"{name}.json"


def save_template(home: Path, name: str, template: Template) -> Path:
    path = _path(home, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.model_dump_json(indent=2, exclude_none=True) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot save template {name!r}: {exc.strerror or exc}", hint=f"check that {path.parent} is writable"
        ) from exc
    return path


def load_template(home: Path, name: str) -> Template:
    path = _path(home, name)
    if not path.is_file():
        known = ", ".join(n for n, _ in list_templates(home)) or "none saved yet"
        raise ConfigError(f"no template {name!r} ({known})", hint="save one with: conclave ask --save NAME ...")
    try:
        return Template.model_validate(nesting.loads(path.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as exc:
        detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        raise ConfigError(
            f"template {name!r} ({path}) is not a valid template: {detail}",
            hint=f"fix or delete it: conclave templates rm {name}",
        ) from None


def list_templates(home: Path) -> list[tuple[str, Template | None]]:
    """(name, template) for every saved template; None for a file that does not read as one."""
    out: list[tuple[str, Template | None]] = []
    folder = _folder(home)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            out.append((path.stem, load_template(home, path.stem)))
        except ConfigError:
            out.append((path.stem, None))
    return out


def delete_template(home: Path, name: str) -> None:
    path = _path(home, name)
    if not path.is_file():
        raise ConfigError(f"no template {name!r}", hint="see them with: conclave templates")
    path.unlink()
