"""The evaluation harness with scripted models: scores, reports, cache, judge, bad input, resume in-process.

``ScriptedBackend`` answers by the question in the last user message (so results do not depend on the order
concurrent units run in) and counts the calls that reach it, which is how the cache tests prove a repeated run made
zero backend calls.
"""

from __future__ import annotations

import asyncio
import errno
import json
import re
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from autogen_core.models import CreateResult, LLMMessage, RequestUsage, SystemMessage, UserMessage
from autogen_ext.models.replay import ReplayChatCompletionClient
from conclave.workflows.evaluation import EvalConfig, run_eval
from conclave.workflows.evaluation.runs import RunFolderError

from conclave.errors import ConfigError
from conclave.settings import Settings, load_settings

QUESTIONS = {
    "q1": ("Tom has 3 apples and buys 4 more. How many apples does he have?", "7"),
    "q2": ("A pen costs 2 dollars. How much do 6 pens cost?", "12"),
    "q3": ("Sara had 1,500 dollars and spent 250. How much is left?", "1,250"),
    "q4": ("It is 5 degrees and drops by 8. What is the temperature?", "-3"),
}


def write_gsm8k(path: Path, *, malformed: bool = False) -> Path:
    """A GSM8K-format file of the four questions above (and optionally two broken lines)."""
    lines = [json.dumps({"id": key, "question": q, "answer": f"work\n#### {a}"}) for key, (q, a) in QUESTIONS.items()]
    if malformed:
        lines.insert(1, "{not json")
        lines.insert(3, json.dumps({"id": "bad", "question": "no final line", "answer": "5"}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def right_answer(question: str) -> str:
    return next(a for q, a in QUESTIONS.values() if q == question)


def cot_reply(question: str, system: str) -> str:
    """CoT gets everything right except q4; direct gets only q1 right."""
    gold = right_answer(question)
    if "step by step" in system:
        value = gold if not question.startswith("It is 5") else "13"
        return f"Let me think.\nFirst step.\nAnswer: {value}"
    value = gold if question.startswith("Tom") else "0"
    return f"Answer: {value}"


class ScriptedBackend(ReplayChatCompletionClient):
    """A replay client that answers ``reply(question, system)`` and counts the calls reaching it."""

    def __init__(self, reply: Callable[[str, str], str], *, name: str = "openai/scripted", delay: float = 0.0):
        super().__init__([])
        self.reply = reply
        self.conclave_name = name
        self.calls = 0
        self.delay = delay

    def _text(self, messages: Sequence[LLMMessage]) -> str:
        users = [m for m in messages if isinstance(m, UserMessage)]
        systems = [m for m in messages if isinstance(m, SystemMessage)]
        question = str(users[-1].content) if users else ""
        return self.reply(question, str(systems[0].content) if systems else "")

    async def create(self, messages: Sequence[LLMMessage], **kwargs: Any) -> CreateResult:  # type: ignore[override]
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        self.chat_completions = [self._text(messages)]
        self._current_index = 0
        return await super().create(messages, **kwargs)

    async def create_stream(  # type: ignore[override]
        self, messages: Sequence[LLMMessage], **kwargs: Any
    ) -> AsyncGenerator[str | CreateResult, None]:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        text = self._text(messages)
        for piece in re.split(r"(?<=\n)", text):
            if piece:
                yield piece
        usage = RequestUsage(
            prompt_tokens=sum(len(str(m.content).split()) for m in messages), completion_tokens=len(text.split())
        )
        yield CreateResult(finish_reason="stop", content=text, usage=usage, cached=False)


class Factory:
    """A client factory for the harness: one scripted backend per spec."""

    def __init__(self, replies: Mapping[str, Callable[[str, str], str]] | None = None, delay: float = 0.0):
        self.replies = dict(replies or {})
        self.delay = delay
        self.backends: dict[str, ScriptedBackend] = {}

    async def __call__(self, spec: str, settings: Settings) -> ScriptedBackend:
        if spec not in self.backends:
            self.backends[spec] = ScriptedBackend(self.replies.get(spec, cot_reply), name=spec, delay=self.delay)
        return self.backends[spec]

    @property
    def calls(self) -> int:
        return sum(b.calls for b in self.backends.values())


@pytest.fixture
def settings(conclave_home: Path) -> Settings:
    return load_settings(model="openai/scripted")


@pytest.fixture
def dataset(tmp_path: Path) -> str:
    return f"gsm8k:{write_gsm8k(tmp_path / 'dev.jsonl')}"


def config(dataset: str, **overrides: Any) -> EvalConfig:
    base: dict[str, Any] = {"dataset": dataset, "methods": ["cot", "direct"], "models": ["openai/scripted"]}
    return EvalConfig(**{**base, **overrides})


def comparable(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must not change between equivalent runs (timings and timestamps may)."""
    return [
        (
            r.key,
            r.answer,
            r.value,
            r.correct,
            json.dumps(r.scores, sort_keys=True),
            r.prompt_tokens,
            r.completion_tokens,
            r.llm_calls,
        )
        for r in records
    ]


async def test_scores_summary_and_reports(settings: Settings, dataset: str) -> None:
    factory = Factory()
    result = await run_eval(config(dataset), settings, client_factory=factory)

    folder = result.run_dir
    for name in ("items.jsonl", "summary.json", "report.md", "report.html", "manifest.json", "config.json"):
        assert (folder / name).is_file(), name
    lines = (folder / "items.jsonl").read_text().splitlines()
    assert len(lines) == 8
    cells = {(c["method"], c["model"]): c for c in result.summary["cells"]}
    assert cells[("cot", "openai/scripted")]["correct"] == 3 and cells[("cot", "openai/scripted")]["accuracy"] == 0.75
    assert (
        cells[("direct", "openai/scripted")]["correct"] == 1
        and cells[("direct", "openai/scripted")]["accuracy"] == 0.25
    )
    low, high = cells[("cot", "openai/scripted")]["ci95"]
    assert 0 < low < 0.75 < high <= 1
    record = next(r for r in result.records if r.key == "q3|cot|openai/scripted")
    assert record.correct is True and record.value == "1,250"
    assert record.llm_calls == 1 and record.usage["reasoner"]["calls"] == 1
    assert record.completion_tokens > 0 and record.latency is not None
    assert [e["kind"] for e in record.trace][0] == "run_started"
    assert all(e["kind"] != "answer_delta" for e in record.trace)
    comp = result.summary["comparisons"][0]
    assert (comp["a_only"], comp["b_only"]) == (2, 0)

    html = (folder / "report.html").read_text()
    assert html.count("<svg") == 3
    assert "<script" not in html and "https://" not in html and "cdn" not in html.lower()
    assert "75.0%" in html and "25.0%" in html
    md = (folder / "report.md").read_text()
    assert "| cot | openai/scripted | 75.0% |" in md and "McNemar" in md

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "eval" and manifest["models"]["cells"] == ["openai/scripted"]
    assert {"cot", "direct", "reasoner"} <= set(manifest["prompt_hashes"])
    assert "evaluation/judge_correctness" in manifest["prompt_hashes"]
    assert manifest["packages"]["autogen-core"] and manifest["settings"]["home"]
    assert manifest["dataset"]["items_selected"] == 4


async def test_scores_are_deterministic_across_runs(settings: Settings, dataset: str) -> None:
    first = await run_eval(config(dataset, cache=False), settings, client_factory=Factory())
    second = await run_eval(config(dataset, cache=False, concurrency=3), settings, client_factory=Factory())
    assert comparable(first.records) == comparable(second.records)
    strip = ("generated", "run_id", "meta")
    cells_a = [{k: v for k, v in c.items() if k != "latency"} for c in first.summary["cells"]]
    cells_b = [{k: v for k, v in c.items() if k != "latency"} for c in second.summary["cells"]]
    assert cells_a == cells_b
    assert {k: v for k, v in first.summary.items() if k not in (*strip, "cells")} == {
        k: v for k, v in second.summary.items() if k not in (*strip, "cells")
    }


async def test_repeated_run_is_served_wholly_from_the_cache(settings: Settings, dataset: str) -> None:
    cold = Factory()
    first = await run_eval(config(dataset), settings, client_factory=cold)
    assert cold.calls == 8 and first.summary["backend_calls"] == 8 and first.summary["cached_units"] == 0

    warm = Factory()  # a fresh backend: anything that reaches it is a cache miss
    second = await run_eval(config(dataset), settings, client_factory=warm)
    assert warm.calls == 0
    assert second.backend_calls == {"openai/scripted": 0}
    assert second.summary["backend_calls"] == 0 and second.summary["cached_units"] == 8
    assert all(r.cached for r in second.records)
    assert comparable(first.records) == comparable(second.records)
    assert list((settings.cache_path).iterdir()), "one store folder per model spec"

    uncached = Factory()
    await run_eval(config(dataset, cache=False), settings, client_factory=uncached)
    assert uncached.calls == 8


async def test_cache_is_per_model_spec(settings: Settings, dataset: str) -> None:
    factory = Factory({"openai/a": cot_reply, "openai/b": cot_reply})
    await run_eval(config(dataset, methods=["cot"], models=["openai/a"]), settings, client_factory=factory)
    await run_eval(config(dataset, methods=["cot"], models=["openai/b"]), settings, client_factory=factory)
    # Same prompts, different model: the second model must not be served the first one's answers.
    assert factory.backends["openai/a"].calls == 4 and factory.backends["openai/b"].calls == 4
    assert len(list(settings.cache_path.iterdir())) == 2


class Stop(Exception):
    pass


async def test_resume_skips_finished_items_and_matches_a_clean_run(settings: Settings, dataset: str) -> None:
    clean = await run_eval(config(dataset, cache=False), settings, client_factory=Factory())

    seen: list[int] = []

    def stop_after_three(update: Any) -> None:
        seen.append(update.done)
        if update.done >= 3:
            raise Stop

    state: dict[str, Any] = {}
    with pytest.raises(Stop):
        await run_eval(
            config(dataset, cache=False, concurrency=1),
            settings,
            client_factory=Factory(),
            on_progress=stop_after_three,
            on_start=lambda rid, d: state.update(run_id=rid, run_dir=d),
        )
    folder: Path = state["run_dir"]
    assert json.loads((folder / "status.json").read_text())["status"] == "interrupted"
    assert len((folder / "items.jsonl").read_text().splitlines()) == 3
    # A write torn by a kill: half a record without its newline.
    with (folder / "items.jsonl").open("a") as fh:
        fh.write('{"key": "q4|cot|scr')

    resumed_backend = Factory()
    resumed = await run_eval(
        config("ignored:x", methods=["coa"]), settings, resume=state["run_id"], client_factory=resumed_backend
    )
    assert resumed_backend.calls == 5  # 8 units, 3 finished before the interruption
    assert resumed.run_id == state["run_id"]
    assert comparable(resumed.records) == comparable(clean.records)
    lines = (folder / "items.jsonl").read_text().splitlines()
    assert len(lines) == 8 and all(json.loads(line) for line in lines)
    assert json.loads((folder / "status.json").read_text())["status"] == "finished"


async def test_judge_invalid_json_is_retried_then_missing_never_a_pass(settings: Settings, dataset: str) -> None:
    factory = Factory({"openai/scripted": cot_reply, "openai/judge-bad": lambda q, s: "I think it is fine!"})
    result = await run_eval(
        config(dataset, methods=["cot"], scorers=["correctness", "numeric"], judge="openai/judge-bad"),
        settings,
        client_factory=factory,
    )
    assert factory.backends["openai/judge-bad"].calls == 4 * 3  # one attempt and two retries per item
    for record in result.records:
        score = record.scores["correctness"]
        assert score["value"] is None and score["passed"] is None and score["missing"] is True
        assert record.correct is None
    cell = result.summary["cells"][0]
    assert cell["accuracy"] is None and cell["scored"] == 0
    assert cell["scores"]["correctness"]["missing"] == 4
    assert cell["scores"]["numeric"]["pass_rate"] == 0.75


async def test_judge_valid_verdicts_are_scored(settings: Settings, dataset: str) -> None:
    def judge(question: str, system: str) -> str:
        right = "Candidate answer: Let me think" in question and "Answer: 13" not in question
        return json.dumps({"reasoning": "compared", "score": 5 if right else 1})

    factory = Factory({"openai/scripted": cot_reply, "openai/judge-good": judge})
    result = await run_eval(
        config(dataset, methods=["cot"], scorers=["correctness"], judge="openai/judge-good"),
        settings,
        client_factory=factory,
    )
    assert [r.correct for r in result.records] == [True, True, True, False]
    assert result.records[0].scores["correctness"]["value"] == 5.0
    assert factory.backends["openai/judge-good"].calls == 4


async def test_malformed_lines_are_reported_and_valid_ones_run(settings: Settings, tmp_path: Path) -> None:
    path = write_gsm8k(tmp_path / "broken.jsonl", malformed=True)
    notes: list[str] = []
    result = await run_eval(
        config(f"gsm8k:{path}", methods=["cot"]), settings, client_factory=Factory(), on_note=notes.append
    )
    assert len(result.records) == 4
    assert any("line 2: not valid JSON" in n for n in notes)
    assert any("line 4: the answer has no '#### N' final line" in n for n in notes)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert len(manifest["dataset"]["problems"]) == 2
    with pytest.raises(ConfigError, match=r"2 malformed record\(s\): line 2: not valid JSON"):
        await run_eval(config(f"gsm8k:{path}", methods=["cot"], strict=True), settings, client_factory=Factory())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"dataset": "gsm8k:/nonexistent/dev.jsonl"}, "data set file not found"),
        ({"dataset": "csv:x.csv"}, "unknown data set kind 'csv'"),
        ({"methods": ["magic"]}, "unknown method 'magic'"),
        ({"scorers": ["bleu"]}, "unknown scorer 'bleu'"),
        ({"models": ["gpt4"]}, "unknown model spec 'gpt4'"),
    ],
)
async def test_bad_configuration_fails_before_anything_runs(
    settings: Settings, dataset: str, overrides: dict[str, Any], message: str
) -> None:
    factory = Factory()
    with pytest.raises(ConfigError, match=re.escape(message)):
        await run_eval(config(**{"dataset": dataset, **overrides}), settings, client_factory=factory)
    assert factory.calls == 0
    assert not settings.runs_path.exists() or not any(settings.runs_path.iterdir())


async def test_unwritable_run_folder_is_a_clear_error(settings: Settings, dataset: str) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    settings.runs_path.write_text("a file where the runs folder should be")
    with pytest.raises(RunFolderError, match="cannot create the run folder") as info:
        await run_eval(config(dataset), settings, client_factory=Factory())
    assert "writable" in (info.value.hint or "")


async def test_disk_full_keeps_finished_items_and_names_the_resume(
    settings: Settings, dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conclave.workflows.evaluation import runs

    real_append = runs.JsonlLog.append
    written: list[int] = []

    def append(self: runs.JsonlLog, record: dict[str, Any]) -> None:
        if self.path.name == "items.jsonl" and len(written) >= 2:
            raise runs._write_error(self.path, OSError(errno.ENOSPC, "No space left on device"), self.run_id)
        written.append(1)
        real_append(self, record)

    monkeypatch.setattr(runs.JsonlLog, "append", append)
    state: dict[str, Any] = {}
    with pytest.raises(RunFolderError, match="No space left on device") as info:
        await run_eval(
            config(dataset, concurrency=1),
            settings,
            client_factory=Factory(),
            on_start=lambda rid, d: state.update(run_id=rid, run_dir=d),
        )
    assert f"--resume {state['run_id']}" in (info.value.hint or "")
    assert len((state["run_dir"] / "items.jsonl").read_text().splitlines()) == 2

    monkeypatch.setattr(runs.JsonlLog, "append", real_append)
    resumed = await run_eval(config(dataset), settings, resume=state["run_id"], client_factory=Factory())
    assert len(resumed.records) == 8


async def test_manifest_and_outputs_never_contain_secrets(settings: Settings, dataset: str) -> None:
    secret = "sk-test-SECRET-1234567890abcdef"
    keyed = load_settings(model="openai/scripted", openai_api_key=secret)
    result = await run_eval(config(dataset), keyed, client_factory=Factory())
    for path in result.run_dir.iterdir():
        assert secret not in path.read_text(errors="replace"), path.name
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["settings"]["openai_api_key"] != secret


async def test_a_crashing_unit_is_recorded_and_the_run_goes_on(settings: Settings, dataset: str) -> None:
    def flaky(question: str, system: str) -> str:
        if question.startswith("A pen"):
            raise ValueError("backend exploded")
        return cot_reply(question, system)

    result = await run_eval(
        config(dataset, methods=["cot"], cache=False), settings, client_factory=Factory({"openai/scripted": flaky})
    )
    failed = [r for r in result.records if not r.ok]
    assert [r.item_id for r in failed] == ["q2"]
    assert "backend exploded" in failed[0].error and failed[0].correct is False
    assert result.summary["failed_units"] == 1 and len(result.records) == 4


def test_outcome_and_statistics_come_from_events_only() -> None:
    from conclave.tools.toolset import format_passages
    from conclave.workflows.evaluation.units import outcome_from_events

    from conclave.events import (
        AnswerReady,
        ChainRejected,
        Critique,
        Passage,
        Retrieved,
        RunFinished,
        StepFinished,
        ToolCalled,
    )

    def passage(pid: str) -> Passage:
        return Passage(id=pid, source=f"docs/{pid}.md", text=f"text of {pid}", score=0.5)

    events = [
        Retrieved(query="first hop", passages=[passage("a"), passage("b"), passage("c")]),
        Retrieved(query="second hop", passages=[passage("d"), passage("e")]),
        ToolCalled(tool="search_knowledge", args={"query": "x"}, result=format_passages([passage("f"), passage("g")])),
        ToolCalled(tool="calculator", args={"expression": "1+1"}, result="2"),
        ChainRejected(errors=["bad"]),
        StepFinished(step_id="y1", tool="calculator", status="ok", value="2"),
        StepFinished(step_id="y2", tool="calculator", status="skipped"),
        Critique(verdict="revise", reasons=["r"]),
        Critique(verdict="accept", reasons=[], round=1),
        AnswerReady(text="It is 2 [1].", value="2", sources=[passage("a")]),
        RunFinished(
            answer="It is 2.",
            seconds=1.5,
            usage={
                "planner": {"calls": 1, "prompt_tokens": 10, "completion_tokens": 5},
                "reasoner": {"calls": 2, "prompt_tokens": 30, "completion_tokens": 20},
            },
        ),
    ]
    outcome, stats = outcome_from_events(events, k=2)
    # Each search's top 2: a, b from the first hop, d, e from the second, f, g from the react-style tool call.
    ids = [i for i in outcome.retrieved_ids if not i.startswith("docs/")]
    assert ids == ["a", "b", "d", "e", "f", "g"]
    assert "docs/f.md" in outcome.retrieved_ids
    assert outcome.retrieved and outcome.value == "2" and outcome.text == "It is 2 [1]."
    assert (stats["llm_calls"], stats["prompt_tokens"], stats["completion_tokens"]) == (3, 40, 25)
    assert (stats["tool_calls"], stats["replans"], stats["critic_rounds"]) == (3, 1, 2)
    assert stats["latency"] == 1.5 and stats["ok"] is True


def test_skip_leaves_out_the_first_items_for_a_held_out_check() -> None:
    from conclave.workflows.evaluation.datasets import Item, select_items

    items = [Item(id=str(n), question=f"q{n}", answers=(str(n),)) for n in range(1, 11)]
    assert [i.id for i in select_items(items, skip=3, limit=4)] == ["4", "5", "6", "7"]
    assert [i.id for i in select_items(items, skip=8)] == ["9", "10"]
    assert select_items(items, skip=20) == []
    assert [i.id for i in select_items(items, limit=2)] == ["1", "2"]
    with pytest.raises(ValueError):
        EvalConfig(dataset="gsm8k:x.jsonl", skip=-1)


def test_the_eta_times_each_method_on_its_own_items() -> None:
    from collections import Counter

    from conclave.cli.evaluate import clock
    from conclave.workflows.evaluation.harness import Eta

    eta = Eta(
        Counter({("direct", "embedded"): 10, ("coa", "embedded"): 10, ("coa", "openai/x"): 8}),
        lambda spec: 1 if spec.startswith("embedded") else 4,
    )
    assert eta.seconds() is None, "nothing timed yet"
    eta.finished("direct", "embedded", 1.0, cached=False)
    eta.finished("direct", "embedded", 0.0, cached=True)  # cached: done, not timed
    # direct's pace stands in for the cells not started: 8 direct + 10 coa + 8 coa on a 4-way endpoint.
    assert eta.seconds() == 8 * 1.0 + 10 * 1.0 + 8 * 1.0 / 4
    for _ in range(2):
        eta.finished("coa", "embedded", 20.0, cached=False)
    assert eta.seconds() == 8 * 1.0 + 8 * 20.0 + 8 * 10.5 / 4
    assert clock(None) == "–" and clock(65) == "1:05" and clock(3725) == "1:02:05"


def test_units_in_flight_per_model_follow_what_the_model_serves_at_once() -> None:
    from conclave.workflows.evaluation.units import model_parallel

    serial = load_settings(embedded_engine="llama-cpp-python")
    slots = serial.model_copy(update={"embedded_engine": "xllamacpp", "embedded_parallel": 3})
    assert model_parallel("embedded:smollm2", 8, serial) == 1, "llama-cpp-python: one at a time"
    assert model_parallel("embedded:smollm2", 8, slots) == 3, "xllamacpp: its slots"
    assert model_parallel("embedded:smollm2", 2, slots) == 2, "never more than the run's concurrency"
    assert model_parallel("openai/gpt-4o", 8, serial) == 8, "a remote backend: the run's concurrency"
