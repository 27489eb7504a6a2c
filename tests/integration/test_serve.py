"""``conclave serve`` (issue 28, item 1) against the official ``openai`` client: a real server process on loopback.

The answers come from the real embedded model (SmolLM2, the ``rag`` method over the demo notes); the queue bound and
a client that leaves mid-stream use the same server code on a slow scripted model (``tests/servers/scripted_team.py``),
since they need long or many generations.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.fixtures.servers import REPO_ROOT, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KEY = "test-serve-key-3f9a"
QUESTION = "What does the Adam optimiser combine?"


def _conclave() -> str:
    return str(Path(sys.executable).parent / "conclave")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env.update(
        CONCLAVE_HOME=str(home),
        CONCLAVE_EMBEDDED_THREADS="1",
        CONCLAVE_MAX_TOKENS="48",
        CONCLAVE_OLLAMA_HOST="http://127.0.0.1:9",
    )
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``conclave serve`` with an API key on the embedded model; yields its base URL."""
    folder = tmp_path_factory.mktemp("serve")
    home = folder / "home"
    home.mkdir()
    port = free_port()
    cmd = [_conclave(), "serve", "--port", str(port), "--model", "embedded:smollm2", "--api-key", KEY]
    # /v1/models answers once the model is loaded and the demo notes are ingested (the app's start-up).
    server = start_server(cmd, f"http://127.0.0.1:{port}/v1/models", folder / "serve.log", 240, _env(home))
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.stop()


@pytest.fixture
def client(served: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=served, api_key=KEY, max_retries=0, timeout=300)


def _ask() -> list[dict[str, str]]:
    return [{"role": "user", "content": QUESTION}]


def test_models_list_methods_and_served_models(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"conclave", "conclave/coa", "conclave/rag", "conclave/rag@embedded:smollm2"} <= ids


def test_plain_answer_with_sources_and_team_usage(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="conclave/rag@embedded:smollm2", messages=_ask())
    content = reply.choices[0].message.content
    assert content and content.strip()
    assert reply.choices[0].finish_reason == "stop"
    extension = (reply.model_extra or {})["conclave"]
    assert extension["ok"] is True
    # usage is the team's total, and it is the sum of the per-agent usage in the extension field
    per_agent = extension["usage"]
    assert reply.usage is not None and reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.prompt_tokens == sum(a["prompt_tokens"] for a in per_agent.values())
    assert isinstance(extension["sources"], list)


def test_streaming_sends_the_answer_in_pieces_then_the_extension_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="conclave/rag", messages=_ask(), stream=True, stream_options={"include_usage": True}
    )
    pieces, extras, usage, finish = [], [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        elif chunk.usage is not None:
            usage = chunk.usage
        else:
            extras.append((chunk.model_extra or {}).get("conclave"))
    assert sum(1 for p in pieces if p) >= 2, "the answer streams in several pieces"
    assert "".join(pieces).strip() and finish == "stop"
    assert extras and extras[0]["ok"] is True
    assert usage is not None and usage.completion_tokens > 0


def test_two_concurrent_clients_both_answered(served: str) -> None:
    answers: dict[int, str] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            c = openai.OpenAI(base_url=served, api_key=KEY, max_retries=0, timeout=300)
            reply = c.chat.completions.create(
                model="conclave/rag", messages=[{"role": "user", "content": f"{QUESTION} ({i})"}]
            )
            answers[i] = reply.choices[0].message.content or ""
        except BaseException as exc:  # handed to the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert set(answers) == {1, 2} and all(a.strip() for a in answers.values())


def test_bad_key_is_refused(served: str) -> None:
    bad = openai.OpenAI(base_url=served, api_key="wrong-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        bad.chat.completions.create(model="conclave/rag", messages=_ask())
    assert "API key" in str(caught.value)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_bad_model_name_is_404_naming_the_models(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=_ask())
    assert "/v1/models" in str(caught.value)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="conclave/rag@embedded:/etc/passwd", messages=_ask())
    assert "not served here" in str(caught.value)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="conclave/nonsense", messages=_ask())
    assert "unknown method" in str(caught.value)


def test_unknown_field_and_collection_outside_the_server_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="conclave/rag", messages=_ask(), extra_body={"colection": "demo"})
    assert "colection" in str(caught.value)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="conclave/rag", messages=_ask(), extra_body={"collection": "private"})
    assert "not served here" in str(caught.value)


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **(headers or {})}
    return httpx.post(url + "/chat/completions", content=body, headers=headers, timeout=60)


def test_malformed_json_is_a_400_that_says_so(served: str) -> None:
    reply = _post(served, b'{"model": "conclave", "messages": [')
    assert reply.status_code == 400
    assert "not valid JSON" in reply.json()["error"]["message"]
    reply = _post(served, b"[" * 5000 + b"]" * 5000)
    assert reply.status_code == 400 and "nested" in reply.json()["error"]["message"]
    reply = _post(served, json.dumps({"model": "conclave", "messages": "hello"}).encode())
    assert reply.status_code == 400 and "messages" in reply.json()["error"]["message"]


def test_a_ten_megabyte_message_is_refused_with_413(client: openai.OpenAI, served: str) -> None:
    huge = "word " * (2 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="conclave/rag", messages=[{"role": "user", "content": huge}])
    assert caught.value.status_code == 413
    assert "larger than" in str(caught.value)
    # the server is still there and answers the next request
    assert any(m.id == "conclave" for m in client.models.list())


# ------------------------------------------------------------------------------------------------ scripted model


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The serve app on a slow scripted model, queue bound 1; yields (base URL, marker file)."""
    port = free_port()
    marker = tmp_path / "marker.json"
    cmd = [sys.executable, "-m", "tests.servers.scripted_team", "serve", str(port), str(marker), "1"]
    server = start_server(cmd, f"http://127.0.0.1:{port}/v1/models", tmp_path / "scripted.log")
    try:
        yield f"http://127.0.0.1:{port}/v1", marker
    finally:
        server.stop()


def _wait_for(marker: Path, seconds: float = 10) -> dict[str, object]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker.exists():
            return dict(json.loads(marker.read_text()))
        time.sleep(0.05)
    raise AssertionError("the model never reported how far it got")


def test_a_client_that_leaves_mid_stream_stops_the_generation(scripted: tuple[str, Path]) -> None:
    url, marker = scripted
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    stream = client.chat.completions.create(model="conclave", messages=_ask(), stream=True)
    seen = 0
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen += 1
            if seen == 3:
                break
    stream.close()
    report = _wait_for(marker)
    assert report["finished"] is False
    assert int(str(report["produced"])) < 100, report  # 200 words at 20 ms: it stopped within about a second
    # the slot is free again: a new request runs at once (the queue bound is 1)
    marker.unlink()
    reply = client.chat.completions.create(model="conclave", messages=_ask())
    assert (reply.choices[0].message.content or "").startswith("word0")


def test_a_client_that_times_out_before_a_plain_answer_stops_the_generation(scripted: tuple[str, Path]) -> None:
    url, marker = scripted
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=1.0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="conclave", messages=_ask())
    report = _wait_for(marker)
    assert report["finished"] is False and int(str(report["produced"])) < 150, report


def test_past_the_queue_bound_a_request_gets_429_with_retry_after(scripted: tuple[str, Path]) -> None:
    url, _ = scripted
    results: list[int] = []

    def slow() -> None:
        request = urllib.request.Request(
            url + "/chat/completions",
            data=json.dumps({"model": "conclave", "messages": _ask()}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            results.append(reply.status)

    # one runs and one waits (queue bound 1): both are answered
    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.3)
    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="conclave", messages=_ask())
    retry_after = caught.value.response.headers.get("retry-after")
    assert retry_after is not None and int(retry_after) >= 1
    assert "busy" in str(caught.value)
    for t in threads:
        t.join(timeout=60)
    assert results == [200, 200]


def test_binding_beyond_loopback_without_a_key_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [_conclave(), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert done.returncode != 0
    assert "without a key" in done.stderr and "CONCLAVE_SERVE_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr
