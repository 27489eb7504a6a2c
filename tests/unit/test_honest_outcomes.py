"""Issue 17 §1: a run that produced no answer is not ok, wherever it is read (events, `ask`, eval, the trace).

Scripted models only: orchestration, not model quality. A coa run that builds no chain, or whose chain does not
reify, ends with the critic's ``reject`` (never ``accept``), ``RunFinished.ok`` false with the reason; ``ask`` exits
1 with ``"ok": false``; the harness records a failed item scored as no answer and keeps it on resume.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from conclave.cli.main import app
from conclave.workflows.evaluation import run_eval
from conclave.workflows.evaluation.scorers import Outcome, numeric_match
from conclave.workflows.runner import answer_problem
from rich.console import Console
from typer.testing import CliRunner

from conclave.events import (
    AnswerDelta,
    AnswerReady,
    ChainDrafted,
    ChainRejected,
    Critique,
    Event,
    Passage,
    RunFinished,
    RunStarted,
    Usage,
)
from conclave.settings import Settings, load_settings
from conclave.terminal import CHAIN_LINE_CHARS, REASON_CHARS
from tests.unit.test_harness import Factory, config, write_gsm8k
from tests.unit.test_team import GOOD_CHAIN, PLAN, answer, calculator_tool, chain, failing_tool, run

PROSE = "The answer is fourteen dollars because pens are cheap."


def finished(events: list[Event]) -> RunFinished:
    last = events[-1]
    assert isinstance(last, RunFinished)
    return last


def critiques(events: list[Event]) -> list[Critique]:
    return [e for e in events if isinstance(e, Critique)]


# -- the team and the runner ---------------------------------------------------------------------------------


async def test_no_valid_chain_is_rejected_and_not_ok() -> None:
    events, _ = await run([PLAN, PROSE, PROSE, PROSE])
    assert answer(events).value is None
    verdicts = [c.verdict for c in critiques(events)]
    assert verdicts == ["reject"], verdicts  # it used to read "accept" next to "no valid chain could be built"
    assert "no valid chain could be built" in critiques(events)[0].reasons[0]
    end = finished(events)
    assert end.ok is False
    assert end.reason is not None and end.reason.startswith("no answer: no valid chain could be built")
    assert not any(e.kind == "run_failed" for e in events)  # nothing broke: the run answered nothing


async def test_a_chain_whose_steps_fail_is_never_accepted_when_revisions_run_out() -> None:
    bad = chain(
        ("look up the price", "y1", "lookup", {"query": "pen price"}),
        ("cost of 12 pens", "y2", "calculator", {"expression": "y1 * 12"}),
        answer="y2",
    )
    tools = {"calculator": calculator_tool(), "lookup": failing_tool()}
    events, _ = await run([PLAN, bad], tools=tools, coa={"max_critic_rounds": 0})
    [critique] = critiques(events)
    assert critique.verdict == "reject"
    assert "y1" in critique.reasons[0] and critique.reasons[-1] == "revision budget spent: no answer"
    assert answer(events).value is None
    assert finished(events).ok is False and "step y1 failed" in (finished(events).reason or "")


async def test_a_chain_that_reified_is_kept_when_revisions_run_out_and_is_ok() -> None:
    revise = json.dumps({"verdict": "revise", "reasons": ["not sure"]})
    events, _ = await run([PLAN, GOOD_CHAIN, revise], coa={"max_critic_rounds": 0})
    [critique] = critiques(events)
    assert critique.verdict == "accept" and critique.reasons[-1] == "revision budget spent: keeping this answer"
    assert answer(events).value == "14"
    assert finished(events).ok is True and finished(events).reason is None


async def test_prose_methods_are_ok_with_text_and_not_ok_with_an_empty_reply() -> None:
    events, _ = await run(["Adam combines momentum and RMSprop."], method_spec="direct")
    assert answer(events).value is None  # no "Answer:" line: prose is the answer
    assert finished(events).ok is True
    events, _ = await run(["   "], method_spec="direct")
    assert finished(events).ok is False and finished(events).reason == "no answer: the model's reply was empty"


def test_answer_problem_decides_for_every_consumer() -> None:
    reject = Critique(verdict="reject", reasons=["step y1 failed: timeout", "revision budget spent: no answer"])
    accept = Critique(verdict="accept", reasons=["fine"])
    assert answer_problem("coa", AnswerReady(text="**Answer: 14**", value="14"), accept) is None
    assert (
        answer_problem("coa", AnswerReady(text="**Answer: None**", value=None), accept)
        == "no answer: no chain produced a value"
    )
    assert answer_problem("coa", AnswerReady(text="x", value=None), reject) == "no answer: step y1 failed: timeout"
    assert answer_problem("coa", AnswerReady(text="**Answer: 3**", value="3"), reject) is not None
    assert answer_problem("coa", AnswerReady(text="x", value="  "), None) is not None
    assert answer_problem("cot", AnswerReady(text="It is 4.", value=None)) is None
    assert answer_problem("react", AnswerReady(text="", value="4")) is None
    assert answer_problem("cot", AnswerReady(text="", value=None)) == "no answer: the model's reply was empty"
    assert answer_problem("direct", None) == "no answer: the method gave none"
    long = Critique(verdict="reject", reasons=["no valid chain could be built: " + "loop " * 500])
    assert len(answer_problem("coa", AnswerReady(text="", value=None), long) or "") <= len("no answer: ") + REASON_CHARS


# -- `conclave ask` -------------------------------------------------------------------------------------------

cli = CliRunner()


@pytest.fixture
def scripted_ask(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """`conclave ask` in-process on one scripted client per call: append the script before invoking."""
    import conclave.workflows.runner as runner
    from autogen_ext.models.replay import ReplayChatCompletionClient

    from tests.unit.test_team import JSON_INFO

    scripts: list[list[str]] = []
    real = runner.build_context

    async def scripted(question: str, settings: Settings, **kwargs: Any) -> Any:
        client = ReplayChatCompletionClient(scripts.pop(0), model_info=JSON_INFO)
        settings = settings.model_copy(update={"coa": settings.coa.model_copy(update={"plan": "always"})})
        return await real(
            question,
            settings,
            **{
                **kwargs,
                "knowledge": False,
                "tools": {"calculator": calculator_tool()},
                "clients": {r: client for r in ("planner", "reasoner", "critic", "writer")},
            },
        )

    monkeypatch.setattr(runner, "build_context", scripted)
    return scripts


def test_ask_json_with_no_value_is_not_ok_and_exits_1(scripted_ask: list[list[str]]) -> None:
    scripted_ask.append([PLAN, PROSE, PROSE, PROSE])
    result = cli.invoke(app, ["ask", "--json", "What is 2+2?"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is False and data["value"] is None
    assert data["error"].startswith("no answer: no valid chain could be built")
    assert [e["verdict"] for e in data["trace"] if e["kind"] == "critique"] == ["reject"]


def test_ask_with_no_value_says_so_on_stderr(scripted_ask: list[list[str]]) -> None:
    scripted_ask.append([PLAN, PROSE, PROSE, PROSE])
    result = cli.invoke(app, ["ask", "What is 2+2?"])
    assert result.exit_code == 1
    assert "could not build a valid chain" in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "no answer: no valid chain could be built" in errors[0]
    assert "fix:" in result.stderr


def test_ask_that_answers_exits_0(scripted_ask: list[list[str]]) -> None:
    scripted_ask.append([PLAN, GOOD_CHAIN, json.dumps({"verdict": "accept", "reasons": []})])
    result = cli.invoke(app, ["ask", "--json", "How much change?"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["value"] == "14" and data["error"] is None


def test_ask_reads_the_question_from_stdin(scripted_ask: list[list[str]]) -> None:
    scripted_ask.append([PLAN, GOOD_CHAIN, json.dumps({"verdict": "accept", "reasons": []})])
    result = cli.invoke(app, ["ask", "--json"], input="  How much change does Tom get?\n")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["question"] == "How much change does Tom get?"
    assert data["trace"][0]["question"] == "How much change does Tom get?"


def test_ask_with_no_question_anywhere_is_a_usage_error(scripted_ask: list[list[str]]) -> None:
    result = cli.invoke(app, ["ask"], input="\n  \n")
    assert result.exit_code == 2
    assert "Missing question" in result.output and "conclave ask" in result.output
    assert not scripted_ask  # nothing ran


# -- the command line's trace ----------------------------------------------------------------------------------


def rendered(events: list[Event], *, trace: bool) -> str:
    from conclave.cli.render import TraceRenderer

    buffer, err_buffer = io.StringIO(), io.StringIO()
    console = Console(file=buffer, width=100_000, highlight=False, soft_wrap=True, emoji=False)
    err = Console(file=err_buffer, width=100_000, highlight=False, soft_wrap=True, emoji=False)
    renderer = TraceRenderer(console, err, trace=trace, stream=True)
    for event in events:
        renderer.handle(event)
    return buffer.getvalue() + err_buffer.getvalue()  # what a terminal shows: the answer (stdout) and the trace


def no_chain_but_passages() -> list[Event]:
    """What the team yields when it found passages but built no chain: the writer answers from them, then the note."""
    passage = Passage(
        id="0123456789abcdef", source="notes/adam.md", text="Adam combines momentum and RMSprop.", score=0.5
    )
    looping = "y1 = search_knowledge('Adam') " * 60  # a model looping on one line: ~1,800 characters
    note = "\n\n_I could not build a valid chain for this question._"
    return [
        RunStarted(question="What does Adam combine?", method="coa", models={"reasoner": "openai/x"}),
        ChainDrafted(text=looping, form="program"),
        ChainRejected(errors=[f"line 1 does not parse: {looping}"]),
        Critique(
            verdict="reject", reasons=[f"no valid chain could be built: {looping}", "nothing to revise: no answer"]
        ),
        AnswerDelta(text="Adam combines momentum ", agent="writer"),
        AnswerDelta(text="and RMSprop [1].", agent="writer"),
        Usage(agent="writer", model="openai/x", prompt_tokens=10, completion_tokens=8),
        AnswerDelta(text=note, agent="writer"),
        AnswerReady(text="Adam combines momentum and RMSprop [1]." + note, sources=[passage]),
        RunFinished(answer="", seconds=1.0, ok=False, reason="no answer: no valid chain could be built"),
    ]


@pytest.mark.parametrize("trace", [False, True])
def test_the_answer_is_printed_once(trace: bool) -> None:
    out = rendered(no_chain_but_passages(), trace=trace)
    assert out.count("Adam combines momentum and RMSprop [1].") == 1, out
    assert out.count("could not build a valid chain for this question") == 1, out
    assert out.count("answer:") == (1 if trace else 0), out


def test_the_trace_clips_runaway_chains_and_errors_as_the_chat_does() -> None:
    out = rendered(no_chain_but_passages(), trace=True)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= CHAIN_LINE_CHARS + 10, max(len(line) for line in lines)
    rejected = next(line for line in lines if "does not parse" in line)
    assert rejected.endswith("…") and len(rejected.strip()) <= REASON_CHARS + 2
    assert "critic: reject" in out


# -- evaluation --------------------------------------------------------------------------------------------


async def test_eval_records_a_valueless_item_as_failed_and_keeps_it_on_resume(
    conclave_home: Path, tmp_path: Path
) -> None:
    settings = load_settings(model="openai/scripted")
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"

    def reply(question: str, system: str) -> str:
        return "Answer: 7"  # a value instead of a chain, every time: no chain is ever built

    factory = Factory({"openai/scripted": reply})
    result = await run_eval(config(dataset, methods=["coa"], cache=False, limit=1), settings, client_factory=factory)
    [record] = result.records
    assert record.ok is False and record.outcome == "no answer" and record.value is None
    assert record.error.startswith("no answer: no valid chain could be built")
    assert record.correct is False and record.scores["numeric"]["passed"] is False
    # The notice quotes the rejected "7", which is the gold answer: scored as an answer it would have passed.
    assert "could not build a valid chain" in record.answer
    assert numeric_match(Outcome(text=record.answer), record.gold).passed is True
    assert result.summary["failed_units"] == 1 and result.summary["no_answer_units"] == 1
    cell = result.summary["cells"][0]
    assert cell["failed"] == 1 and cell["no_answer"] == 1 and cell["accuracy"] == 0.0

    again = Factory({"openai/scripted": reply})
    resumed = await run_eval(
        config(dataset, methods=["coa"], cache=False, limit=1), settings, resume=result.run_id, client_factory=again
    )
    assert again.calls == 0 and resumed.records[0].outcome == "no answer"


async def test_eval_crashed_units_still_run_again_on_resume(conclave_home: Path, tmp_path: Path) -> None:
    settings = load_settings(model="openai/scripted")
    dataset = f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"

    def down(question: str, system: str) -> str:
        raise ValueError("backend exploded")

    first = await run_eval(
        config(dataset, methods=["cot"], cache=False, limit=2),
        settings,
        client_factory=Factory({"openai/scripted": down}),
    )
    assert [r.outcome for r in first.records] == ["error", "error"]
    again = Factory()
    resumed = await run_eval(
        config(dataset, methods=["cot"], cache=False, limit=2), settings, resume=first.run_id, client_factory=again
    )
    assert again.calls == 2 and all(r.ok and r.outcome == "answered" for r in resumed.records)


def test_eval_where_no_item_got_an_answer_says_so_not_that_the_backend_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import functools

    import conclave.workflows.evaluation as evaluation

    from conclave.errors import BackendError, ConclaveError

    factory = Factory({"openai/scripted": lambda question, system: "Answer: 7"})
    monkeypatch.setattr(evaluation, "run_eval", functools.partial(evaluation.run_eval, client_factory=factory))
    data = write_gsm8k(tmp_path / "dev.jsonl")
    result = cli.invoke(
        app,
        [
            "eval",
            "--dataset",
            f"gsm8k:{data}",
            "--method",
            "coa",
            "--model",
            "openai/scripted",
            "--limit",
            "2",
            "--json",
        ],
    )
    error = result.exception
    assert isinstance(error, ConclaveError) and not isinstance(error, BackendError), result.output
    assert error.message.startswith("no item got an answer (no answer: no valid chain could be built")
    summary = json.loads(result.stdout)["summary"]
    assert summary["failed_units"] == summary["no_answer_units"] == 2
    assert "conclave view eval-" in (error.hint or "")
