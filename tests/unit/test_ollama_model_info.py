"""ModelInfo and context length derived from recorded Ollama ``/api/show`` replies (tests/data/ollama/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import validate_model_info

from conclave.models.ollama import choose_num_ctx, model_info_from_show

DATA = Path(__file__).resolve().parents[1] / "data" / "ollama"


def load_show(name: str) -> dict[str, Any]:
    return json.loads((DATA / f"show-{name}.json").read_text(encoding="utf-8"))


# name -> (vision, function_calling, json_output, structured_output, context_length)
EXPECTED: dict[str, tuple[bool, bool, bool, bool, int]] = {
    "llama3.2": (False, True, True, True, 131072),
    "qwen2.5": (False, True, True, True, 32768),
    "qwen3": (False, True, True, True, 40960),  # "thinking" is a capability ModelInfo has no field for
    "llava": (True, False, True, True, 32768),
    "nomic-embed-text": (False, False, False, False, 2048),  # embedding-only: it cannot complete at all
    "llama3.2-ollama-0.5": (
        False,
        False,
        True,
        True,
        131072,
    ),  # no "capabilities" field: assume completion only
}


def test_every_recorded_reply_is_covered() -> None:
    recorded = {p.name.removeprefix("show-").removesuffix(".json") for p in DATA.glob("show-*.json")}
    assert recorded == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_model_info_from_recorded_show(name: str) -> None:
    vision, tools, json_output, structured, context = EXPECTED[name]
    info, context_length = model_info_from_show(load_show(name))
    validate_model_info(info)  # AutoGen's own check: every required key present
    assert info["vision"] is vision
    assert info["function_calling"] is tools
    assert info["json_output"] is json_output
    assert info["structured_output"] is structured
    assert context_length == context


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_family_comes_from_details(name: str) -> None:
    show = load_show(name)
    info, _ = model_info_from_show(show)
    assert isinstance(info["family"], str) and info["family"]
    assert info["family"] in (show["details"]["family"], "unknown")


def test_context_length_is_read_from_the_architecture_key_not_another_model() -> None:
    """llava's reply also carries a CLIP projector block; only ``<arch>.context_length`` counts."""
    show = load_show("llava")
    show["projector_info"]["clip.context_length"] = 77
    _, context_length = model_info_from_show(show)
    assert context_length == 32768


def test_missing_model_info_gives_unknown_context() -> None:
    show = load_show("llama3.2")
    show.pop("model_info")
    info, context_length = model_info_from_show(show)
    assert context_length is None
    assert info["function_calling"] is True


def test_empty_reply_is_conservative() -> None:
    info, context_length = model_info_from_show({})
    validate_model_info(info)
    assert info["vision"] is False and info["function_calling"] is False
    assert info["family"] == "unknown"
    assert context_length is None


@pytest.mark.parametrize(
    ("trained", "wanted", "expected"),
    [
        (131072, 4096, 4096),  # ask for what settings want ...
        (2048, 4096, 2048),  # ... never more than the model was trained on
        (None, 8192, 8192),  # unknown training context: trust the settings
    ],
)
def test_num_ctx_choice(trained: int | None, wanted: int, expected: int) -> None:
    assert choose_num_ctx(trained, wanted) == expected


def test_num_ctx_for_recorded_models_never_exceeds_training_context() -> None:
    for name in EXPECTED:
        _, trained = model_info_from_show(load_show(name))
        assert trained is not None
        assert choose_num_ctx(trained, 100_000) <= trained
