"""Issue 29, item 4: one conversation from the command line. `conclave ask --continue` follows up the last answer and
`--session ID` a given conversation (the chat's sessions), their earlier turns reaching the run; `conclave logs` shows
an id column and `conclave logs show ID` one record whole.

`ask` runs in-process (typer's CliRunner) against a loopback OpenAI-compatible stub that records what it was sent;
the sessions and the log are the real SQLite files under the test's CONCLAVE_HOME.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from conclave.cli.main import app
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.logs import LogRecord, LogStore
from conclave.sessions import SessionStore
from conclave.settings import load_settings
from tests.servers.openai_stub import StubEndpoint

cli = CliRunner()
ANSWER = "Paris is the capital.\nAnswer: Paris"


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubEndpoint]:
    endpoint = StubEndpoint(answer=ANSWER).start()
    monkeypatch.setenv("CONCLAVE_OPENAI_BASE_URL", endpoint.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    yield endpoint
    endpoint.stop()


def ask(*args: str) -> Any:
    return cli.invoke(app, ["ask", "--model", "openai/stub", "--method", "direct", *args])


def turns(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, content) of a chat request's messages after the system prompt and the method's worked example."""
    messages = [(str(m["role"]), str(m["content"])) for m in request["messages"]]  # type: ignore[union-attr]
    return messages[3:]


def sessions() -> SessionStore:
    return SessionStore.open(load_settings())


def logged() -> list[dict[str, Any]]:
    result = cli.invoke(app, ["logs", "--json"])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


def test_continue_follows_up_the_last_answer_and_keeps_one_conversation(stub: StubEndpoint) -> None:
    assert ask("What is the capital of France?").exit_code == 0
    assert turns(stub.requests[-1]) == [("user", "What is the capital of France?")]

    followed = ask("--continue", "And of Italy?")
    assert followed.exit_code == 0, followed.output
    assert turns(stub.requests[-1]) == [
        ("user", "What is the capital of France?"),
        ("assistant", ANSWER),
        ("user", "And of Italy?"),
    ]
    [info] = sessions().list_sessions()
    assert info.messages == 4  # the first answer starts the conversation, the follow-up joins it
    assert logged()[0]["session"] == info.id

    assert ask("-C", "And of Spain?").exit_code == 0  # -c stays --collection; -C is --continue's short form
    assert [text for role, text in turns(stub.requests[-1]) if role == "user"] == [
        "What is the capital of France?",
        "And of Italy?",
        "And of Spain?",
    ]
    [info] = sessions().list_sessions()
    assert info.messages == 6
    assert [r["session"] for r in logged()] == [info.id, info.id, None]


def test_session_continues_a_given_conversation_by_its_id_prefix(stub: StubEndpoint) -> None:
    store = sessions()
    other = store.create()
    store.add_message(other.id, "user", "Who wrote Hamlet?")
    store.add_message(other.id, "assistant", "Shakespeare wrote it.")
    chosen = store.create()
    store.add_message(chosen.id, "user", "What is the capital of Peru?")
    store.add_message(chosen.id, "assistant", "Lima.")
    result = ask("--session", chosen.id[:6], "And its population?")
    assert result.exit_code == 0, result.output
    assert turns(stub.requests[-1]) == [
        ("user", "What is the capital of Peru?"),
        ("assistant", "Lima."),
        ("user", "And its population?"),
    ]
    assert [m.content for m in sessions().messages(chosen.id)][2:] == ["And its population?", ANSWER]
    assert len(sessions().messages(other.id)) == 2


def test_the_planner_reads_a_follow_up_against_the_conversation(
    stub: StubEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    import conclave.workflows.runner as runner

    from tests.unit.test_team import calculator_tool

    real = runner.build_context

    async def without_knowledge(question: str, settings: Any, **kwargs: Any) -> Any:
        return await real(question, settings, **{**kwargs, "knowledge": False, "tools": {"calc": calculator_tool()}})

    monkeypatch.setattr(runner, "build_context", without_knowledge)
    store = sessions()
    info = store.create()
    store.add_message(info.id, "user", "How many legs does a spider have?")
    store.add_message(info.id, "assistant", "A spider has 8 legs.")
    cli.invoke(app, ["ask", "--model", "openai/stub", "--method", "coa", "--session", info.id, "And three spiders?"])
    planner = str(stub.requests[0]["messages"])  # the team's first call
    assert "Earlier question: How many legs does a spider have?" in planner and "And three spiders?" in planner


def test_continue_with_no_conversation_yet_is_one_error(stub: StubEndpoint) -> None:
    result = ask("--continue", "And of Italy?")
    assert isinstance(result.exception, ConfigError) and result.exception.exit_code == 2
    assert "no conversation to continue" in str(result.exception) and stub.requests == []


def test_an_unknown_session_is_one_error_that_names_the_list(stub: StubEndpoint) -> None:
    result = ask("--session", "beef", "And of Italy?")
    assert isinstance(result.exception, ConfigError) and result.exception.exit_code == 2
    assert "no session 'beef'" in result.exception.message and "sessions list" in (result.exception.hint or "")
    assert stub.requests == []


def test_continue_and_session_together_are_a_usage_error(stub: StubEndpoint) -> None:
    result = ask("--continue", "--session", "beef", "And of Italy?")
    assert result.exit_code == 2 and "--continue and --session" in result.output
    assert stub.requests == []


# -- logs: the id column and one record whole -------------------------------------------------------------------


def _record() -> int:
    store = LogStore.open(load_settings())
    try:
        return store.add(
            LogRecord(
                question="How much change does Tom get?",
                answer="Tom gets 14 dollars back [1].",
                ok=True,
                method="coa",
                model="openai/stub",
                value="14",
                models={"reasoner": "openai/stub"},
                usage={"total": {"calls": 3, "prompt_tokens": 120, "completion_tokens": 40}},
                seconds=2.5,
                trace=[
                    {"kind": "chain", "text": "[20 - 6 = y1]"},
                    {
                        "kind": "answer",
                        "text": "Tom gets 14 dollars back [1].",
                        "value": "14",
                        "chain": "[20 - 6 = 14]",
                        "sources": [{"id": "abc", "source": "notes/tom.md", "text": "Tom pays 6 of his 20 dollars."}],
                    },
                ],
            )
        )
    finally:
        store.close()


def test_logs_shows_an_id_column_and_logs_show_prints_the_record_whole() -> None:
    record_id = _record()
    table = cli.invoke(app, ["logs"], terminal_width=200)
    assert table.exit_code == 0, table.output
    header = next(line for line in table.stdout.splitlines() if "question" in line and "time" in line)
    assert header.split()[1] == "id"
    assert any(line.split()[1:2] == [str(record_id)] for line in table.stdout.splitlines() if "Tom" in line)

    shown = cli.invoke(app, ["logs", "show", str(record_id)], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    for part in (
        "How much change does Tom get?",  # the question
        "Tom gets 14 dollars back [1].",  # the answer
        "[20 - 6 = 14]",  # the filled-in chain
        "notes/tom.md",  # the sources
        "Tom pays 6 of his 20 dollars.",
        "3 model call(s) · 120 prompt + 40 completion tokens",  # the usage
    ):
        assert part in text, part

    data = json.loads(cli.invoke(app, ["logs", "show", str(record_id), "--json"]).stdout)
    assert data["id"] == record_id and data["chain"] == "[20 - 6 = 14]"
    assert [s["source"] for s in data["sources"]] == ["notes/tom.md"]


def test_logs_show_of_an_unknown_id_is_one_error() -> None:
    result = cli.invoke(app, ["logs", "show", "999"])
    assert isinstance(result.exception, ConfigError) and result.exception.exit_code == 2
    assert "no logged answer 999" in result.exception.message and "conclave logs" in (result.exception.hint or "")
