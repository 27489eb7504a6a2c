"""Method variants (`coa:k=5,critic=false`): parsed into coa settings, with clear errors for bad ones."""

from __future__ import annotations

import pytest
from conclave.workflows.runner import apply_method, parse_method

from conclave.errors import ConfigError
from conclave.settings import load_settings


def test_plain_names_have_no_options() -> None:
    assert parse_method("cot") == ("cot", {})
    assert parse_method(" coa ") == ("coa", {})


def test_aliases_and_settings_names() -> None:
    name, options = parse_method("coa:k=5, critic=false,agree=3,few_shot=similar")
    assert name == "coa"
    assert options == {"samples": "5", "use_critic": "false", "agree": "3", "few_shot": "similar"}


def test_options_are_validated_like_settings() -> None:
    settings = load_settings()
    name, applied = apply_method(settings, "coa:k=5,critic=false")
    assert name == "coa" and applied.coa.samples == 5 and applied.coa.use_critic is False
    assert applied.coa.max_replans == settings.coa.max_replans  # the rest is kept
    assert settings.coa.samples == 1  # the original is not changed


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("cota", "unknown method 'cota'"),
        ("cot:k=2", "takes no options"),
        ("coa:k", "bad option 'k'"),
        ("coa:temperature=2", "bad option 'temperature=2'"),
        ("coa:k=0", "bad option samples='0'"),
        ("coa:k=many", "bad option samples='many'"),
        ("coa:plan=sometimes", "bad option plan='sometimes'"),
    ],
)
def test_bad_variants_say_what_is_wrong(spec: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_method(load_settings(), spec)
    assert words in info.value.message
    assert info.value.hint
