"""Secrets in what Conclave stores and shows (issue 26): credentials written into endpoint URLs (item 5), and a key
that a server echoes inside its answer (W2), must reach no manifest, command record, ``config show``, items.jsonl,
report, cache, session or log."""

from __future__ import annotations

import json
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conclave.cli.main import app
from typer.testing import CliRunner

from conclave import redact as redaction
from conclave.settings import load_settings
from tests.servers.openai_stub import StubEndpoint
from tests.unit.test_harness import write_gsm8k

runner = CliRunner()
PASSWORD = "hunter2-url-password"
QUERY_KEY = "qk-0123456789abcdef"
URL = f"http://alice:{PASSWORD}@127.0.0.1:9/v1?api-key={QUERY_KEY}&deployment=d1"
KEY = "sk-echoed-by-the-server-0123456789"


def _everything_under(folder: Path) -> str:
    """Every file's bytes under ``folder`` as text (SQLite files too: a key in a row is in the file)."""
    return "\n".join(p.read_bytes().decode("utf-8", "replace") for p in sorted(folder.rglob("*")) if p.is_file())


# -- item 5: credentials in endpoint URLs --------------------------------------------------------------------------


def test_redact_url_keeps_the_endpoint_and_drops_its_credentials() -> None:
    shown = redaction.redact_url(URL)
    assert PASSWORD not in shown and QUERY_KEY not in shown
    assert shown.startswith("http://alice:[redacted]@127.0.0.1:9/v1?") and "deployment=d1" in shown
    for name in ("api_key", "key", "token", "access_token", "sig"):
        assert "s3cr3tvalue" not in redaction.redact_url(f"https://h/v1?{name}=s3cr3tvalue&x=1")
    assert redaction.redact_url("http://127.0.0.1:11434") == "http://127.0.0.1:11434"
    assert "tok-abcdef123" not in redaction.redact_url("https://tok-abcdef123@host/v1")


def test_url_credentials_never_reach_settings_as_stored_or_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", URL)
    monkeypatch.setenv("CONCLAVE_OPENAI_BASE_URLS", json.dumps([URL]))
    settings = load_settings()
    assert settings.openai_base_url == URL, "the real value is used for requests"
    stored = json.dumps(settings.redacted())
    assert PASSWORD not in stored and QUERY_KEY not in stored and "127.0.0.1:9/v1" in stored
    shown = runner.invoke(app, ["config", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    assert PASSWORD not in shown.stdout and QUERY_KEY not in shown.stdout
    table = runner.invoke(app, ["config", "show"])
    assert PASSWORD not in table.stdout and QUERY_KEY not in table.stdout
    # Registered as secrets: an error that quotes them in any form is clean.
    assert PASSWORD not in redaction.redact(f"login failed for {PASSWORD}") and QUERY_KEY not in redaction.redact(
        f"bad key {QUERY_KEY}"
    )


def test_the_manifests_recorded_command_and_settings_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from conclave.workflows.evaluation.runs import build_manifest

    monkeypatch.setattr(sys, "argv", ["conclave", "eval", "gsm8k:d.jsonl", "--endpoint", URL, f"--endpoint={URL}"])
    settings = load_settings(openai_base_urls=[URL, URL])
    manifest = json.dumps(build_manifest(settings, kind="eval", run_id="eval-x", config={}, models={}))
    assert PASSWORD not in manifest and QUERY_KEY not in manifest
    assert "--endpoint" in manifest and "127.0.0.1:9/v1" in manifest


def test_mcp_server_environment_secrets_are_masked(tmp_path: Path) -> None:
    settings = load_settings(
        mcp_servers={
            "gh": {"command": ["gh-mcp"], "env": {"GITHUB_TOKEN": "ghp_0123456789abcdef", "MODE": "ro"}},
            "web": {"url": f"http://bob:{PASSWORD}@127.0.0.1:9/mcp"},
        }
    )
    stored = json.dumps(settings.redacted())
    assert "ghp_0123456789abcdef" not in stored and PASSWORD not in stored and '"MODE": "ro"' in stored


# -- W2: a key echoed inside an answer -----------------------------------------------------------------------------


@pytest.fixture
def echoing_server() -> Iterator[StubEndpoint]:
    """A real loopback OpenAI-compatible server whose answers contain the API key it was sent."""
    server = StubEndpoint(answer=f"The answer is 4. (debug: authenticated with {KEY})").start()
    yield server
    server.stop()


async def test_an_echoed_key_reaches_no_answer_item_report_or_cache(
    echoing_server: StubEndpoint, tmp_path: Path, conclave_home: Path
) -> None:
    from conclave.workflows.evaluation import EvalConfig, run_eval

    settings = load_settings(openai_base_url=echoing_server.base_url, openai_api_key=KEY)
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    result = await run_eval(
        EvalConfig(dataset=dataset, methods=["direct"], models=["openai/stub"], limit=2, concurrency=1), settings
    )
    assert echoing_server.served >= 2, "the answers came from the server"
    stored = _everything_under(conclave_home)
    assert "(debug: authenticated with [redacted])" in _everything_under(result.run_dir)
    assert KEY not in stored, "the key reached a file under CONCLAVE_HOME (items, report, cache or manifest)"
    assert any((conclave_home / "cache").rglob("*")), "the cache was written (and holds the redacted answer)"


async def test_a_streamed_echoed_key_is_removed_and_cached_clean(echoing_server: StubEndpoint) -> None:
    from autogen_core.models import CreateResult, UserMessage
    from conclave.workflows.evaluation.cache import CacheSet

    settings = load_settings(openai_base_url=echoing_server.base_url, openai_api_key=KEY)
    clients = CacheSet(settings)
    client = await clients.client("openai/stub")
    message = [UserMessage(content="what key do you see?", source="user")]
    pieces = [item async for item in client.create_stream(message)]
    text = "".join(p for p in pieces if isinstance(p, str))
    assert KEY not in text and "[redacted]" in text
    final = pieces[-1]
    assert isinstance(final, CreateResult) and KEY not in str(final.content)
    again = await client.create(message)  # from the cache now
    assert again.cached and KEY not in str(again.content)
    assert KEY not in _everything_under(settings.cache_path)


def test_an_echoed_key_leaves_tool_call_arguments_and_thoughts() -> None:
    from autogen_core import FunctionCall
    from autogen_core.models import CreateResult, RequestUsage

    from conclave.models.resilience import without_secrets

    redaction.register_secret(KEY)
    usage = RequestUsage(prompt_tokens=1, completion_tokens=1)
    calls = CreateResult(
        finish_reason="function_calls",
        content=[FunctionCall(id="1", name="search", arguments=json.dumps({"query": KEY}))],
        usage=usage,
        cached=False,
        thought=f"the key is {KEY}",
    )
    clean = without_secrets(calls)
    assert KEY not in clean.model_dump_json() and clean.content[0].name == "search"  # type: ignore[union-attr]
    plain = CreateResult(finish_reason="stop", content="nothing secret", usage=usage, cached=False)
    assert without_secrets(plain) is plain


def test_a_key_split_across_stream_pieces_never_passes_whole() -> None:
    redaction.register_secret(KEY)
    stream = redaction.SecretStream()
    text = f"before {KEY} after, and again {KEY}"
    out = "".join(stream.feed(text[i : i + 3]) for i in range(0, len(text), 3)) + stream.flush()
    assert out == "before [redacted] after, and again [redacted]"
    plain = redaction.SecretStream()
    assert plain.feed("ordinary words ") == "ordinary words ", "text that cannot start a secret is not held"


def test_sessions_keep_no_configured_key(conclave_home: Path) -> None:
    from conclave.sessions import SessionStore

    redaction.register_secret(KEY)
    store = SessionStore(conclave_home / "sessions.sqlite")
    session = store.create(title="t")
    store.add_message(session.id, "user", f"my key is {KEY}, is it safe?")
    store.add_message(session.id, "assistant", f"you sent {KEY}", trace=[{"kind": "chunk", "text": KEY}])
    store.close()
    rows = sqlite3.connect(conclave_home / "sessions.sqlite").execute("SELECT content FROM messages").fetchall()
    assert rows and all(KEY not in row[0] for row in rows)
    assert KEY not in _everything_under(conclave_home)


def test_a_dry_runs_endpoint_list_shows_no_url_credentials() -> None:
    """`conclave run --dry-run` names every endpoint: with the URL's credentials redacted."""
    from conclave.workflows.files.access import endpoint_of

    shown = endpoint_of("openai/m", load_settings(openai_base_url=URL))
    assert PASSWORD not in shown and QUERY_KEY not in shown and "127.0.0.1:9/v1" in shown
    pooled = endpoint_of("openai/m", load_settings(openai_base_urls=[URL, "http://127.0.0.1:8/v1"]))
    assert PASSWORD not in pooled and "127.0.0.1:8/v1" in pooled
