"""Bad input at the backend API: every failure is one ConclaveError with a one-line message and the fix.

Misbehaving endpoints are real loopback servers (the ``flaky_endpoint`` fixture); timeouts are kept small.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conclave.errors import (
    AuthenticationFailed,
    BackendError,
    BackendUnavailable,
    ConclaveError,
    ConfigError,
    ModelNotFound,
)
from conclave.models import make_client, parse_spec
from conclave.settings import Settings, load_settings
from tests.fixtures.models import question
from tests.fixtures.servers import OPENAI_SERVER_MODEL, Behaviour, FlakyEndpoint, free_port

FAKE_KEY = "sk-test-0123456789abcdef"
Flaky = Callable[[Behaviour], FlakyEndpoint]


def assert_one_line(error: ConclaveError) -> None:
    """The CLI prints ``message`` and ``hint`` as one line each."""
    assert error.message and "\n" not in error.message, error.message
    assert error.hint and "\n" not in error.hint, error.hint
    assert "Traceback" not in str(error)


async def build_and_call(spec: str, settings: Settings, *, stream: bool = False) -> None:
    """Make the client and use it: a backend may fail at either step."""
    client = await make_client(spec, settings)
    if stream:
        async for _ in client.create_stream(question()):
            pass
    else:
        await client.create(question())


def openai_settings(endpoint: FlakyEndpoint, **extra: object) -> Settings:
    values: dict[str, object] = {
        "openai_base_url": endpoint.base_url,
        "openai_api_key": FAKE_KEY,
        "openai_model_info": {OPENAI_SERVER_MODEL: {}},
        "max_retries": 1,
        "request_timeout": 2,
        "max_tokens": 16,
    }
    return load_settings(**{**values, **extra})


# -- spec strings and files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["foo/bar", "gpt-4o", "llama/llama3", "ollama:llama3", ""])
async def test_unknown_spec_prefix(spec: str) -> None:
    with pytest.raises(ConfigError) as info:
        await make_client(spec, load_settings())
    assert "embedded" in (info.value.hint or "") and "ollama/" in (info.value.hint or "")
    with pytest.raises(ConfigError):
        parse_spec(spec)


async def test_gguf_path_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ConfigError) as info:
        await build_and_call(f"embedded:{missing}", load_settings())
    assert str(missing) in info.value.message
    assert_one_line(info.value)


async def test_gguf_path_that_is_not_gguf(tmp_path: Path) -> None:
    fake = tmp_path / "model.gguf"
    fake.write_text("this is a text file, not model weights\n")
    with pytest.raises(ConfigError) as info:
        await build_and_call(f"embedded:{fake}", load_settings())
    assert "GGUF" in info.value.message
    assert_one_line(info.value)


async def test_gguf_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        await build_and_call(f"embedded:{tmp_path}", load_settings())
    assert_one_line(info.value)


# -- Ollama --------------------------------------------------------------------------------------------------


async def test_ollama_unreachable() -> None:
    host = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        await build_and_call("ollama/llama3.2", load_settings(ollama_host=host, max_retries=1, request_timeout=2))
    assert host in info.value.message
    assert "ollama serve" in (info.value.hint or "")
    assert "--model embedded" in (info.value.hint or "")
    assert_one_line(info.value)
    assert time.monotonic() - started < 15


@pytest.mark.integration
async def test_ollama_model_not_pulled(ollama_stub: str) -> None:
    with pytest.raises(ModelNotFound) as info:
        await build_and_call("ollama/llama3.2", load_settings(ollama_host=ollama_stub, max_retries=1))
    assert "llama3.2" in info.value.message
    assert "ollama pull llama3.2" in (info.value.hint or "")
    assert_one_line(info.value)


@pytest.mark.parametrize("behaviour", ["500", "garbage", "garbage_json", "close"])
async def test_ollama_host_that_misbehaves(flaky_endpoint: Flaky, behaviour: Behaviour) -> None:
    endpoint = flaky_endpoint(behaviour)
    settings = load_settings(ollama_host=endpoint.root, max_retries=1, request_timeout=2)
    with pytest.raises(BackendError) as info:
        await build_and_call("ollama/llama3.2", settings)
    assert endpoint.root in info.value.message
    assert endpoint.total_hits >= 1


@pytest.mark.slow
async def test_ollama_host_that_never_answers(flaky_endpoint: Flaky) -> None:
    endpoint = flaky_endpoint("hang")
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        await build_and_call(
            "ollama/llama3.2", load_settings(ollama_host=endpoint.root, max_retries=1, request_timeout=2)
        )
    assert time.monotonic() - started < 20
    assert endpoint.root in info.value.message


# -- OpenAI-compatible ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("base_url", [None, "https://api.openai.com/v1"])
async def test_openai_key_missing(base_url: str | None) -> None:
    """No key for the real OpenAI: a clear error before any traffic (the loopback guard would fail it)."""
    with pytest.raises((AuthenticationFailed, ConfigError)) as info:
        await build_and_call("openai/gpt-4o-mini", load_settings(openai_base_url=base_url))
    assert "OPENAI_API_KEY" in f"{info.value.message} {info.value.hint}"
    assert_one_line(info.value)


async def test_openai_401(flaky_endpoint: Flaky) -> None:
    endpoint = flaky_endpoint("401")
    with pytest.raises(AuthenticationFailed) as info:
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint, max_retries=3))
    assert endpoint.chat_hits == 1, "a rejected key is not transient: no retries"
    assert FAKE_KEY not in str(info.value), "the key must not appear in the message"
    assert FAKE_KEY[-6:] not in str(info.value)
    assert_one_line(info.value)


@pytest.mark.parametrize("max_retries", [0, 2])
async def test_openai_500_is_retried_then_fails(flaky_endpoint: Flaky, max_retries: int) -> None:
    endpoint = flaky_endpoint("500")
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint, max_retries=max_retries))
    assert endpoint.chat_hits == max_retries + 1
    assert "500" in info.value.message
    assert_one_line(info.value)
    assert time.monotonic() - started < 15


async def test_openai_500_is_retried_when_streaming(flaky_endpoint: Flaky) -> None:
    endpoint = flaky_endpoint("500")
    with pytest.raises(BackendError):
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint, max_retries=2), stream=True)
    assert endpoint.chat_hits == 3


async def test_retries_back_off(flaky_endpoint: Flaky) -> None:
    """Two retries wait between attempts (exponential backoff), rather than hammering the host."""
    endpoint = flaky_endpoint("500")
    started = time.monotonic()
    with pytest.raises(BackendError):
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint, max_retries=2))
    assert time.monotonic() - started >= 0.5


@pytest.mark.parametrize("behaviour", ["garbage", "garbage_json"])
async def test_openai_garbage_reply(flaky_endpoint: Flaky, behaviour: Behaviour) -> None:
    endpoint = flaky_endpoint(behaviour)
    with pytest.raises(BackendError) as info:
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint))
    assert endpoint.chat_hits >= 1
    assert endpoint.base_url in info.value.message
    assert_one_line(info.value)


async def test_openai_connection_dropped(flaky_endpoint: Flaky) -> None:
    endpoint = flaky_endpoint("close")
    with pytest.raises(BackendError) as info:
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint, max_retries=1))
    assert endpoint.chat_hits == 2, "a dropped connection is transient: retried once"
    assert_one_line(info.value)


async def test_openai_unreachable() -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    settings = load_settings(openai_base_url=base, openai_model_info={OPENAI_SERVER_MODEL: {}}, max_retries=1)
    with pytest.raises(BackendUnavailable) as info:
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", settings)
    assert base in info.value.message
    assert_one_line(info.value)


@pytest.mark.slow
async def test_openai_never_answers(flaky_endpoint: Flaky) -> None:
    endpoint = flaky_endpoint("hang")
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        await build_and_call(
            f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint, max_retries=1, request_timeout=2)
        )
    elapsed = time.monotonic() - started
    assert 2 <= elapsed < 20, elapsed
    assert endpoint.chat_hits == 2
    assert "time" in info.value.message or "answer" in info.value.message
    assert_one_line(info.value)


# -- issue 13: secrets, empty replies, bounded and visible retries ----------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_server_echoing_the_key_never_puts_it_in_the_error(flaky_endpoint: Flaky, stream: bool) -> None:
    """Class 3: the key a careless server echoes back is redacted where the error is made."""
    endpoint = flaky_endpoint("echo_key")
    with pytest.raises(BackendError) as info:
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint), stream=stream)
    text = f"{info.value.message} {info.value.hint} {info.value!s} {info.value.args}"
    assert endpoint.chat_hits >= 1
    assert "Authorization" in text and "[redacted]" in text  # the server's message is kept, the key is not
    assert FAKE_KEY not in text and FAKE_KEY[3:15] not in text


@pytest.mark.parametrize("behaviour", ["garbage", "garbage_json"])
async def test_openai_garbage_reply_when_streaming_is_an_error(flaky_endpoint: Flaky, behaviour: Behaviour) -> None:
    """Class 5: an HTML page or broken JSON read as a stream is a failure, never an empty answer."""
    endpoint = flaky_endpoint(behaviour)
    with pytest.raises(BackendError) as info:
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint), stream=True)
    assert endpoint.chat_hits >= 1
    assert endpoint.base_url in info.value.message
    assert_one_line(info.value)


async def test_retries_are_announced(flaky_endpoint: Flaky, caplog: pytest.LogCaptureFixture) -> None:
    """Class 6: each retry is shown as it happens (a WARNING the CLI prints), with the attempt number."""
    endpoint = flaky_endpoint("500")
    with caplog.at_level("WARNING", logger="conclave.models.resilience"), pytest.raises(BackendError):
        await build_and_call(f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint, max_retries=2))
    retries = [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]
    assert len(retries) == 2 and "attempt 2 of 3" in retries[0] and "attempt 3 of 3" in retries[1], retries


@pytest.mark.slow
async def test_a_hung_endpoint_is_bounded_by_the_retry_budget(flaky_endpoint: Flaky) -> None:
    """Class 6: with retries left, the total wait is still bounded (retry_budget), and the error says so."""
    endpoint = flaky_endpoint("hang")
    started = time.monotonic()
    with pytest.raises(BackendError) as info:
        await build_and_call(
            f"openai/{OPENAI_SERVER_MODEL}", openai_settings(endpoint, max_retries=5, request_timeout=2, retry_budget=5)
        )
    elapsed = time.monotonic() - started
    assert endpoint.chat_hits == 2, "attempt 1 (2 s) + attempt 2 (2 s) fit in 5 s; a third could not"
    assert elapsed < 8, elapsed
    assert "retry_budget" in info.value.message
    assert_one_line(info.value)
