"""Model spec strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from conclave.errors import ConfigError
from conclave.models.backends import parse_spec
from conclave.models.spec import ModelSpec


@pytest.mark.parametrize(
    ("text", "provider", "name"),
    [
        ("embedded", "embedded", ""),
        (" embedded ", "embedded", ""),
        ("embedded:/models/qwen.gguf", "embedded", "/models/qwen.gguf"),
        ("ollama/llama3.2", "ollama", "llama3.2"),
        ("ollama/qwen2.5-coder:1.5b", "ollama", "qwen2.5-coder:1.5b"),
        ("openai/gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("openai/meta-llama/Llama-3.1-8B-Instruct", "openai", "meta-llama/Llama-3.1-8B-Instruct"),
    ],
)
def test_valid_specs(text: str, provider: str, name: str) -> None:
    spec = parse_spec(text)
    assert (spec.provider, spec.name) == (provider, name)
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize("text", ["", "   ", "gpt-4", "anthropic/claude", "ollama/", "openai/ ", "embedded:", "local"])
def test_invalid_specs_say_which_forms_exist(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_spec(text)
    assert "ollama/<model>" in (info.value.hint or "")


def test_gguf_path_is_expanded() -> None:
    assert ModelSpec("embedded", "~/m.gguf").gguf_path == Path.home() / "m.gguf"
    assert ModelSpec("ollama", "x").gguf_path is None
