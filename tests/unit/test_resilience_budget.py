"""The default settings bound the wait on a hung endpoint (issue 13, class 6), on a simulated clock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from conclave.errors import BackendError
from conclave.models import resilience
from conclave.models.resilience import ResilientClient
from conclave.settings import load_settings
from tests.fixtures.models import question


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


class _Hangs:
    """A backend whose every request times out after ``timeout`` seconds of the simulated clock."""

    def __init__(self, clock: _Clock, timeout: float):
        self.clock = clock
        self.timeout = timeout
        self.calls = 0

    async def create(self, *_a: Any, **_k: Any) -> Any:
        self.calls += 1
        self.clock.now += self.timeout
        raise httpx.ReadTimeout("timed out")


async def test_default_settings_give_up_on_a_hung_endpoint_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    clock = _Clock()
    monkeypatch.setattr(resilience.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(resilience.asyncio, "sleep", clock.sleep)
    inner = _Hangs(clock, settings.request_timeout)
    client = ResilientClient(
        inner,
        spec="openai/m",
        where="http://127.0.0.1:9/v1",  # type: ignore[arg-type]
        max_retries=settings.max_retries,
        attempt_timeout=settings.request_timeout,
        retry_budget=settings.retry_budget,
    )
    with pytest.raises(BackendError, match="retry_budget"):
        await client.create(question())
    waited = clock.now - 1000.0
    assert inner.calls == 2, inner.calls  # the third would end past the budget
    assert waited <= settings.retry_budget, waited
