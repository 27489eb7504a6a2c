"""Issue 17 §3 and the `ask` part of §2/§7: the answer log (`conclave logs`), `conclave runs list|show|rm`, `ask
--jsonl`, the stage spinner (stderr only) and Ctrl-C.

Scripted models only (the `scripted_ask` fixture of test_honest_outcomes, the harness's scripted Factory).
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import conclave.cli.main as main_module
import pytest
from conclave.cli.main import _cancelled, app
from conclave.cli.render import AskProgress, TraceRenderer
from conclave.workflows.evaluation import EvalConfig, run_eval
from rich.console import Console
from typer.testing import CliRunner

from conclave.errors import ConfigError
from conclave.events import AnswerDelta, AnswerReady, ChainDrafted, PlanMade, RunFinished, RunStarted, Usage
from conclave.logs import LogRecord, LogStore, LogStoreError, logs_path, record_from_ask
from conclave.redact import register_secret
from conclave.settings import load_settings
from tests.unit.test_harness import Factory, write_gsm8k
from tests.unit.test_honest_outcomes import PROSE, scripted_ask  # noqa: F401 (a fixture)
from tests.unit.test_team import GOOD_CHAIN, PLAN

cli = CliRunner()
ACCEPT = json.dumps({"verdict": "accept", "reasons": []})


def _logs(*args: str) -> list[dict[str, Any]]:
    result = cli.invoke(app, ["logs", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- the answer log ---------------------------------------------------------------------------------------------


def test_ask_logs_the_answer_and_logs_lists_and_searches_it(scripted_ask: list[list[str]]) -> None:
    scripted_ask.append([PLAN, GOOD_CHAIN, ACCEPT])
    assert cli.invoke(app, ["ask", "How much change does Tom get?"]).exit_code == 0
    scripted_ask.append([PLAN, PROSE, PROSE, PROSE])
    assert cli.invoke(app, ["ask", "What is 2+2?"]).exit_code == 1  # no answer: logged too, as not ok
    records = _logs()
    assert [r["question"] for r in records] == ["What is 2+2?", "How much change does Tom get?"]  # newest first
    latest, first = records
    assert first["ok"] is True and first["value"] == "14" and first["method"] == "coa" and first["origin"] == "ask"
    assert first["model"] and first["models"]["reasoner"] == first["model"]
    assert first["usage"]["total"]["calls"] >= 1 and first["seconds"] is not None and first["created"] > 0
    assert [e["kind"] for e in first["trace"]][0] == "run_started" and first["trace"][-1]["kind"] == "run_finished"
    assert latest["ok"] is False and latest["error"].startswith("no answer: no valid chain could be built")
    assert [r["question"] for r in _logs("--search", "change")] == ["How much change does Tom get?"]
    assert _logs("--search", "%") == []  # LIKE wildcards are text
    assert len(_logs("-n", "1")) == 1
    table = cli.invoke(app, ["logs"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "How much change does Tom get?" in table.stdout and "coa" in table.stdout


def test_no_log_writes_nothing(scripted_ask: list[list[str]]) -> None:
    scripted_ask.append([PLAN, GOOD_CHAIN, ACCEPT])
    assert cli.invoke(app, ["ask", "--no-log", "How much change?"]).exit_code == 0
    assert _logs() == []


def test_the_log_answers_setting_turns_the_log_off(
    scripted_ask: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONCLAVE_LOG_ANSWERS", "false")
    scripted_ask.append([PLAN, GOOD_CHAIN, ACCEPT])
    assert cli.invoke(app, ["ask", "How much change?"]).exit_code == 0
    assert _logs() == []


def test_a_damaged_log_does_not_lose_the_answer(scripted_ask: list[list[str]], conclave_home: Path) -> None:
    damaged = conclave_home / "logs.sqlite"
    damaged.write_bytes(b"this is not a database" * 10)
    scripted_ask.append([PLAN, GOOD_CHAIN, ACCEPT])
    result = cli.invoke(app, ["ask", "--json", "How much change?"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["value"] == "14"  # the answer is printed in full
    [warning] = [line for line in result.stderr.splitlines() if line.strip()]
    assert warning.startswith("warning: logging is off:") and "is damaged" in warning and "mv " in warning
    assert damaged.read_bytes() == b"this is not a database" * 10  # untouched
    listed = cli.invoke(app, ["logs"])
    assert isinstance(listed.exception, LogStoreError) and listed.exception.exit_code == 2  # main() exits with it
    assert "logs database" in listed.exception.message
    assert "mv " in (listed.exception.hint or "")  # type: ignore[union-attr]


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "logs.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (x TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(Exception, match="not a Conclave logs database"):
        LogStore(path)
    assert path.read_bytes() == before


def test_no_secret_reaches_the_log(conclave_home: Path) -> None:
    register_secret("s3cr3t-configured-key-value")
    result = {
        "question": "why? api_key=abcdef123456",
        "answer": "",
        "ok": False,
        "method": "coa",
        "model": "m",
        "trace": [
            {
                "kind": "run_failed",
                "error": "401 from server: Authorization: Bearer sk-live1234567890abc",
                "hint": "key s3cr3t-configured-key-value was rejected",
            }
        ],
    }
    record = record_from_ask(result, failure={"error": "401: Bearer sk-live1234567890abc", "hint": None})
    store = LogStore.open(load_settings())
    store.add(record)
    [logged] = store.recent()
    store.close()
    raw = logs_path(load_settings()).read_bytes() + b"".join(
        p.read_bytes() for p in conclave_home.glob("logs.sqlite*") if p.is_file()
    )
    for secret in (b"sk-live1234567890abc", b"s3cr3t-configured-key-value", b"abcdef123456"):
        assert secret not in raw
    assert "[redacted]" in (logged.error or "") and logged.ok is False
    assert "[redacted]" in json.dumps(logged.trace) and "401 from server" in json.dumps(logged.trace)


def test_the_log_is_newest_first_and_keeps_every_field(tmp_path: Path) -> None:
    clock = iter([100.0, 200.0])
    store = LogStore(tmp_path / "logs.sqlite", clock=lambda: next(clock))
    store.add(LogRecord(question="q1", answer="a1", ok=True, method="cot", model="x", usage={"total": {"calls": 1}}))
    store.add(LogRecord(question="q2", answer="a2", ok=False, error="boom", origin="chat", session="abcd"))
    second, first = store.recent()
    assert (first.question, first.created, first.usage) == ("q1", 100.0, {"total": {"calls": 1}})
    assert (second.origin, second.session, second.error, second.ok) == ("chat", "abcd", "boom", False)
    store.close()


# -- ask --jsonl, the spinner, Ctrl-C ------------------------------------------------------------------------------


def test_ask_jsonl_streams_every_event_and_ends_with_run_finished(scripted_ask: list[list[str]]) -> None:
    scripted_ask.append([PLAN, GOOD_CHAIN, ACCEPT])
    result = cli.invoke(app, ["ask", "--jsonl", "How much change?"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]  # every line parses, nothing else on stdout
    assert events[0]["kind"] == "run_started" and events[-1]["kind"] == "run_finished" and events[-1]["ok"] is True
    assert "answer" in {e["kind"] for e in events}
    scripted_ask.append([PLAN, PROSE, PROSE, PROSE])
    failed = cli.invoke(app, ["ask", "--jsonl", "What is 2+2?"])
    assert failed.exit_code == 1
    last = json.loads(failed.stdout.splitlines()[-1])
    assert last["kind"] == "run_finished" and last["ok"] is False


def test_json_and_jsonl_together_are_a_usage_error(scripted_ask: list[list[str]]) -> None:
    result = cli.invoke(app, ["ask", "--json", "--jsonl", "What?"])
    assert result.exit_code == 2 and "--jsonl" in result.output
    assert not scripted_ask


def _terminal(buffer: io.StringIO) -> Console:
    return Console(file=buffer, force_terminal=True, width=100, highlight=False, soft_wrap=True)


def test_the_spinner_shows_the_stage_on_stderr_and_never_on_stdout() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    out, err = _terminal(stdout), _terminal(stderr)
    renderer = TraceRenderer(out, err, trace=True, stream=True)
    seconds = iter(range(0, 1000, 6))
    progress = AskProgress(err, enabled=True, clock=lambda: float(next(seconds)))
    progress.start()
    events = [
        RunStarted(question="q", method="coa", models={"reasoner": "m"}),
        PlanMade(subquestions=[{"question": "q", "needs": "calculation"}]),
        Usage(agent="planner", model="m", prompt_tokens=1, completion_tokens=1),
        ChainDrafted(text="[1 + 1 = y1]"),
        AnswerDelta(text="The answer is 2."),
        AnswerReady(text="The answer is 2.", value="2"),
        RunFinished(answer="The answer is 2.", seconds=1.0),
    ]
    stages = []
    for event in events:
        progress.handle(event, renderer.handle)
        stages.append(progress.stage if progress._live is not None else None)
    progress.stop()
    assert stages[:4] == [
        "getting ready: model, collection, plan",
        "reasoner writing the chain",
        "reasoner writing the chain",
        "running the chain's tools",
    ]
    assert stages[4:] == [None, None, None]  # gone for good once the answer streams
    assert "reasoner writing the chain ·" in stderr.getvalue() and " s" in stderr.getvalue()
    shown = stdout.getvalue()
    assert "The answer is 2." in shown and "plan" in stderr.getvalue()  # the trace is on stderr
    for stage in ("getting ready", "writing the chain ·", "loading the model"):
        assert stage not in shown


def test_the_spinner_is_off_when_disabled() -> None:
    stderr = io.StringIO()
    progress = AskProgress(_terminal(stderr), enabled=False)
    progress.start()
    progress.handle(RunStarted(question="q", method="coa", models={}), lambda e: None)
    progress.stop()
    assert stderr.getvalue() == ""


def test_cancelled_prints_one_line_and_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    codes: list[int] = []
    _cancelled(streaming=True, exit=codes.append)
    captured = capsys.readouterr()
    assert codes == [130] and captured.err == "cancelled\n" and captured.out == "\n"


def test_ctrl_c_during_ask_is_cancelled_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import conclave.workflows.runner as runner

    async def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    def cancelled(**kwargs: Any) -> None:
        _cancelled(**kwargs, exit=lambda code: (_ for _ in ()).throw(SystemExit(code)))

    monkeypatch.setattr(runner, "build_context", interrupted)
    monkeypatch.setattr(main_module, "_cancelled", cancelled)
    result = cli.invoke(app, ["ask", "What?"])
    assert result.exit_code == 130
    assert result.stderr.strip() == "cancelled" and "Traceback" not in result.output


# -- runs list / show / rm ------------------------------------------------------------------------------------------


async def _eval_run(tmp_path: Path) -> str:
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"
    result = await run_eval(
        EvalConfig(dataset=dataset, methods=["cot"], models=["openai/scripted"]),
        load_settings(),
        client_factory=Factory(),
    )
    return result.run_id


async def test_runs_list_show_and_rm(tmp_path: Path, conclave_home: Path) -> None:
    run_id = await _eval_run(tmp_path)
    listed = cli.invoke(app, ["runs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    [info] = json.loads(listed.stdout)
    assert (info["id"], info["kind"], info["status"], info["items"], info["methods"]) == (
        run_id,
        "eval",
        "complete",
        "4/4",
        ["cot"],
    )
    assert info["started"]
    table = cli.invoke(app, ["runs", "list"])  # 80 columns: the id is still whole
    assert table.exit_code == 0 and run_id in table.stdout and "complete" in table.stdout

    shown = cli.invoke(app, ["runs", "show", run_id, "--json"])
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.stdout)
    [cell] = data["accuracy"]
    assert cell["method"] == "cot" and cell["model"] == "openai/scripted" and 0 <= cell["accuracy"] <= 1
    assert data["config"]["methods"] == ["cot"]
    assert Path(data["files"]["report.html"]).is_file() and Path(data["files"]["summary.json"]).is_file()
    text = cli.invoke(app, ["runs", "show", run_id[:-1] + run_id[-1]])
    assert text.exit_code == 0 and "accuracy cot @ openai/scripted" in text.stdout and "report.html" in text.stdout

    declined = cli.invoke(app, ["runs", "rm", run_id], input="n\n")
    assert declined.exit_code == 1 and (conclave_home / "runs" / run_id).is_dir()
    removed = cli.invoke(app, ["runs", "rm", run_id, "--yes"])
    assert removed.exit_code == 0, removed.output
    assert not (conclave_home / "runs" / run_id).exists()
    assert json.loads(cli.invoke(app, ["runs", "list", "--json"]).stdout) == []


def test_runs_rm_refuses_unknown_runs_and_folders_outside_runs(tmp_path: Path, conclave_home: Path) -> None:
    unknown = cli.invoke(app, ["runs", "rm", "eval-20990101-000000-beef", "--yes"])
    assert isinstance(unknown.exception, ConfigError) and unknown.exception.exit_code == 2
    assert "no run 'eval-20990101-000000-beef'" in str(unknown.exception)
    assert "conclave runs list" in (unknown.exception.hint or "")  # type: ignore[union-attr]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "manifest.json").write_text("{}", encoding="utf-8")
    refused = cli.invoke(app, ["runs", "rm", str(outside), "--yes"])
    assert isinstance(refused.exception, ConfigError) and "not deleted" in refused.exception.message
    assert (outside / "manifest.json").is_file()
    # a link inside runs/ that points outside is refused too
    (conclave_home / "runs").mkdir(exist_ok=True)
    (conclave_home / "runs" / "eval-link").symlink_to(outside)
    linked = cli.invoke(app, ["runs", "rm", "eval-link", "--yes"])
    assert isinstance(linked.exception, ConfigError) and (outside / "manifest.json").is_file()


def test_runs_list_survives_a_damaged_run_folder(conclave_home: Path) -> None:
    broken = conclave_home / "runs" / "eval-20990101-000000-dead"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json", encoding="utf-8")
    listed = cli.invoke(app, ["runs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)[0]["status"] == "damaged"
