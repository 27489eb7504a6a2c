"""`embedded:smollm2` with the real bundled model: it answers, `embedded` (SmolLM2 in the suite) shares its loaded
model, and the decoding speed is recorded for `conclave models`."""

from __future__ import annotations

from pathlib import Path

import pytest
from autogen_core.models import SystemMessage, UserMessage

from conclave.models import make_client, speed
from conclave.models.embedded import bundled_model_path
from conclave.settings import load_settings
from tests.fixtures.models import check_chat

pytestmark = pytest.mark.integration


async def test_smollm2_by_name_answers_and_shares_one_model(conclave_home: Path) -> None:
    settings = load_settings(temperature=0.0, max_tokens=64, context_length=2048, embedded_threads=1)
    named = await make_client("embedded:smollm2", settings)
    plain = await make_client("embedded", settings)
    await check_chat(named)
    assert named.inner.path == plain.inner.path == bundled_model_path().resolve()  # type: ignore[attr-defined]
    assert named.inner._server() is plain.inner._server()  # type: ignore[attr-defined]

    counting = [
        SystemMessage(content="You are a helpful assistant."),
        UserMessage(content="Write the numbers from 1 to 40, separated by commas.", source="user"),
    ]
    result = await named.create(counting)
    assert result.usage.completion_tokens > speed.MIN_TOKENS, result
    found = speed.measured(speed.speed_path(conclave_home), bundled_model_path().name)
    assert found is not None and found.threads == 1 and found.tokens_per_s > 0
