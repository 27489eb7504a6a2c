"""Issue 13, classes 3 and 5 end to end: a broken endpoint is a failed run, never a silent 0%, and a key the server
echoes reaches no file, report or terminal line. The CLI runs as a real subprocess against loopback servers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.servers import OPENAI_SERVER_MODEL, Behaviour, FlakyEndpoint
from tests.integration.test_cli_errors import FAKE_KEY, assert_clean_error, run_cli
from tests.unit.test_harness import write_gsm8k

pytestmark = pytest.mark.integration

Flaky = Callable[[Behaviour], FlakyEndpoint]


def _endpoint_env(endpoint: FlakyEndpoint) -> dict[str, str]:
    return {
        "CONCLAVE_OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_KEY": FAKE_KEY,
        "CONCLAVE_OPENAI_MODEL_INFO": json.dumps({OPENAI_SERVER_MODEL: {}}),
        "CONCLAVE_MAX_RETRIES": "0",
        "CONCLAVE_REQUEST_TIMEOUT": "5",
    }


def test_an_html_endpoint_fails_ask_instead_of_answering_nothing(flaky_endpoint: Flaky, conclave_home: Path) -> None:
    endpoint = flaky_endpoint("garbage")
    proc = run_cli(
        "ask",
        "--method",
        "direct",
        "--model",
        f"openai/{OPENAI_SERVER_MODEL}",
        "What is 2+2?",
        **_endpoint_env(endpoint),
    )
    error, fix = assert_clean_error(proc)
    assert endpoint.base_url in error and "/v1" in fix


@pytest.mark.parametrize("behaviour", ["garbage", "echo_key"])
def test_an_eval_where_every_item_failed_says_so(
    flaky_endpoint: Flaky, conclave_home: Path, tmp_path: Path, behaviour: Behaviour
) -> None:
    endpoint = flaky_endpoint(behaviour)
    data = write_gsm8k(tmp_path / "dev.jsonl")
    proc = run_cli(
        "eval",
        "--dataset",
        f"gsm8k:{data}",
        "--method",
        "direct",
        "--model",
        f"openai/{OPENAI_SERVER_MODEL}",
        "--limit",
        "2",
        "--concurrency",
        "1",
        **_endpoint_env(endpoint),
    )
    error, _ = assert_clean_error(proc)
    assert "every item failed" in error
    run_dir = next((conclave_home / "runs").iterdir())
    records = [json.loads(line) for line in (run_dir / "items.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(not r["ok"] and r["error"] for r in records)
    everything = (
        proc.stdout + proc.stderr + "".join(p.read_text(errors="replace") for p in run_dir.rglob("*") if p.is_file())
    )
    assert FAKE_KEY not in everything and FAKE_KEY[3:15] not in everything
    if behaviour == "echo_key":
        assert "[redacted]" in records[0]["error"]
