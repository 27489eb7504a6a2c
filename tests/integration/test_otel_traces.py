"""Issue 28, item 3: an OpenTelemetry trace of every question, checked at a real OTLP/HTTP receiver on loopback.

The span tree of one coa question (scripted models: the orchestration is what is traced), content and secrets,
tracing off by default, an endpoint that is down, bad OTEL_* variables, and the real ``conclave`` command exporting
on its way out (an OpenAI-compatible stub, and once the bundled embedded model).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conclave import tracing
from conclave.errors import ConfigError
from conclave.settings import load_settings
from tests.fixtures.otlp import OtlpReceiver, otlp_receiver  # noqa: F401 - a fixture
from tests.fixtures.servers import free_port
from tests.integration.test_cli_errors import assert_clean_error, cli_command, cli_env
from tests.servers.openai_stub import StubEndpoint
from tests.unit.test_team import (
    GOOD_CHAIN,
    JSON_INFO,
    PENS,
    PLAN,
    WholeStream,
    calculator_tool,
    chain,
    failing_tool,
    run,
)

pytestmark = pytest.mark.integration

ACCEPT = json.dumps({"verdict": "accept", "reasons": ["the steps match the question"]})
SECRET = "sk-test-0tel-secret-never-an-attribute"


@pytest.fixture(autouse=True)
def _fresh_tracing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No OTEL_* variable of the developer's, and no exporter left from another test (one per process)."""
    for key in list(os.environ):
        if key.startswith("OTEL_"):
            monkeypatch.delenv(key)
    tracing.shutdown(0)
    yield
    tracing.shutdown(0)


def _export_to(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # milliseconds: the test need not wait for the batch


def _flushed(receiver: OtlpReceiver, count: int) -> list[dict[str, Any]]:
    tracing.shutdown(10)
    return receiver.wait_for(count)


def _children(spans: list[dict[str, Any]], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((s for s in spans if s["parent_id"] == parent["span_id"]), key=lambda s: s["start"])


def _inside(child: dict[str, Any], parent: dict[str, Any]) -> bool:
    slack = 2_000_000  # ns: the events' clock and the agents' clock are read a moment apart
    return parent["start"] - slack <= child["start"] <= child["end"] <= parent["end"] + slack


# -- the span tree of one coa question ---------------------------------------------------------------------------


async def test_one_coa_question_is_one_trace_of_agent_turns_model_calls_and_tool_calls(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver
) -> None:
    _export_to(monkeypatch, otlp_receiver.url)
    events, _ = await run([PLAN, GOOD_CHAIN, ACCEPT])
    assert events[-1].ok
    spans = _flushed(otlp_receiver, 12)

    assert len({s["trace_id"] for s in spans}) == 1, "one question, one trace"
    roots = [s for s in spans if s["parent_id"] is None]
    assert [r["name"] for r in roots] == ["conclave.question coa"]
    root = roots[0]
    assert root["resource"]["service.name"] == "conclave"
    assert root["attributes"]["conclave.method"] == "coa" and root["attributes"]["conclave.ok"] is True
    assert root["status"] != 2  # not ERROR

    turns = _children(spans, root)
    assert [t["name"] for t in turns] == [
        f"invoke_agent {a}" for a in ("planner", "retriever", "reasoner", "reifier", "critic", "writer")
    ]
    assert all(t["attributes"]["gen_ai.operation.name"] == "invoke_agent" and _inside(t, root) for t in turns)
    by_agent = {t["attributes"]["gen_ai.agent.name"]: t for t in turns}

    # Model calls: the GenAI semantic conventions, each under the turn of the agent that made it.
    for agent in ("planner", "reasoner", "critic"):
        (call,) = [s for s in _children(spans, by_agent[agent]) if s["name"].startswith("chat ")]
        attrs = call["attributes"]
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.system"] and attrs["gen_ai.request.model"] == "WholeStream"
        assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
        assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
        assert _inside(call, by_agent[agent])
    assert root["attributes"]["gen_ai.usage.input_tokens"] == sum(
        s["attributes"]["gen_ai.usage.input_tokens"] for s in spans if s["name"].startswith("chat ")
    )

    # Tool calls: name, duration, status, under the reifier that ran them; no arguments or results by default.
    tools = _children(spans, by_agent["reifier"])
    assert [(t["name"], t["attributes"]["gen_ai.tool.call.id"]) for t in tools] == [
        ("execute_tool calculator", "y1"),
        ("execute_tool calculator", "y2"),
    ]
    for tool in tools:
        assert tool["attributes"]["gen_ai.tool.name"] == "calculator"
        assert tool["attributes"]["conclave.tool.status"] == "ok" and tool["status"] != 2
        assert tool["end"] >= tool["start"] and _inside(tool, by_agent["reifier"])
        assert "gen_ai.tool.call.arguments" not in tool["attributes"]
        assert "gen_ai.tool.call.result" not in tool["attributes"]
    assert "input.value" not in root["attributes"] and "output.value" not in root["attributes"]
    # The critic's verdict rides on its turn as a span event.
    assert [e["attributes"]["conclave.verdict"] for e in by_agent["critic"]["events"]] == ["accept"]


async def test_a_failed_tool_is_an_error_span_and_its_dependent_is_skipped(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver
) -> None:
    _export_to(monkeypatch, otlp_receiver.url)
    bad = chain(
        ("look up the price", "y1", "lookup", {"query": "pen price"}),
        ("cost of 12 pens", "y2", "calculator", {"expression": "y1 * 12"}),
        answer="y2",
    )
    events, _ = await run(
        [PLAN, bad, GOOD_CHAIN, ACCEPT], tools={"calculator": calculator_tool(), "lookup": failing_tool()}
    )
    assert events[-1].ok
    spans = _flushed(otlp_receiver, 14)
    tools = sorted((s for s in spans if s["name"].startswith("execute_tool")), key=lambda s: s["start"])
    assert [(t["attributes"]["gen_ai.tool.name"], t["attributes"]["conclave.tool.status"]) for t in tools[:2]] == [
        ("lookup", "failed"),
        ("calculator", "skipped"),
    ]
    assert tools[0]["status"] == 2 and tools[0]["status_message"] == "failed"  # ERROR, and no error text by default
    # The critic sent the chain back: two reasoner turns, two reifier turns.
    turns = [s["name"] for s in spans if s["name"].startswith("invoke_agent")]
    assert turns.count("invoke_agent reasoner") == 2 and turns.count("invoke_agent reifier") == 2


async def test_a_question_its_consumer_abandons_is_still_one_trace(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver
) -> None:
    """A client that goes away mid-answer (`serve`'s disconnect, Ctrl-C in the chat): the trace says so."""
    from conclave.workflows.runner import build_context, run_question

    _export_to(monkeypatch, otlp_receiver.url)
    client = WholeStream([PLAN, GOOD_CHAIN, ACCEPT], model_info=JSON_INFO)
    ctx = await build_context(
        PENS,
        load_settings(coa={"plan": "always", "form": "auto", "use_critic": True}),
        method="coa",
        clients={role: client for role in ("planner", "reasoner", "critic", "writer")},
        tools={"calculator": calculator_tool()},
        knowledge=False,
    )
    stream = run_question(ctx)
    async for event in stream:
        if event.kind == "chain":
            break
    await stream.aclose()
    spans = _flushed(otlp_receiver, 3)
    (root,) = [s for s in spans if s["parent_id"] is None]
    assert root["status"] == 2 and root["status_message"] == "abandoned before it finished"
    assert root["attributes"]["conclave.ok"] is False
    assert "invoke_agent planner" in {s["name"] for s in spans}


async def test_each_evaluation_unit_is_its_own_trace(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    from conclave.workflows.evaluation import run_eval

    from tests.unit.test_harness import Factory, config, write_gsm8k

    _export_to(monkeypatch, otlp_receiver.url)
    data = write_gsm8k(tmp_path / "dev.jsonl")
    await run_eval(config(f"gsm8k:{data}"), load_settings(model="openai/scripted"), client_factory=Factory())
    spans = _flushed(otlp_receiver, 16)
    roots = [s for s in spans if s["parent_id"] is None]
    units = sorted((r["attributes"]["conclave.eval.item_id"], r["attributes"]["conclave.method"]) for r in roots)
    assert units == sorted((i, m) for i in ("q1", "q2", "q3", "q4") for m in ("cot", "direct"))
    assert len({r["trace_id"] for r in roots}) == 8
    assert all(r["attributes"]["conclave.eval.model"] == "openai/scripted" for r in roots)


async def test_content_only_when_asked_and_never_a_secret(
    monkeypatch: pytest.MonkeyPatch, otlp_receiver: OtlpReceiver
) -> None:
    _export_to(monkeypatch, otlp_receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"authorization=Bearer%20{SECRET}")
    question = f"My key is {SECRET}. A shop sells pens at 3 dollars each; what do 12 pens cost?"
    events, _ = await run([PLAN, GOOD_CHAIN, ACCEPT], question=question, otel_content=True, openai_api_key=SECRET)
    assert events[-1].ok
    spans = _flushed(otlp_receiver, 12)
    root = next(s for s in spans if s["parent_id"] is None)
    assert "pens at 3 dollars" in root["attributes"]["input.value"]
    assert "14" in root["attributes"]["output.value"]
    tool = next(s for s in spans if s["attributes"].get("gen_ai.tool.call.id") == "y1")
    assert json.loads(tool["attributes"]["gen_ai.tool.call.arguments"]) == {"expression": "3 * 12"}
    assert tool["attributes"]["gen_ai.tool.call.result"] == "36"
    # The collector got the key as the header the user configured, and nowhere in what was traced.
    assert otlp_receiver.requests[0]["authorization"] == f"Bearer {SECRET}"
    dumped = json.dumps(spans)
    assert SECRET not in dumped and "[redacted]" in root["attributes"]["input.value"]


# -- off unless configured ---------------------------------------------------------------------------------------


async def test_nothing_is_traced_or_sent_by_default(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tracing.trace_config(load_settings()) is None
    events, _ = await run([PLAN, GOOD_CHAIN, ACCEPT])
    assert events[-1].ok
    tracing.shutdown(1)
    assert otlp_receiver.wait_for(1, timeout=1.0) == []
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.url)
    for off in ({"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}):
        assert tracing.trace_config(load_settings(), env={**os.environ, **off}) is None
    assert tracing.trace_config(load_settings(otel="off")) is None
    assert tracing.trace_config(load_settings()) == tracing.TraceConfig("otlp", False, otlp_receiver.url)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("OTEL_TRACES_EXPORTER", "zipkin", "OTEL_TRACES_EXPORTER"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "endpoint"),
    ],
)
def test_an_otel_variable_conclave_cannot_honour_is_one_line(variable: str, value: str, named: str) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", variable: value}
    with pytest.raises(ConfigError, match=named):
        tracing.trace_config(load_settings(), env=env)


def test_an_untrusted_env_file_or_a_workflow_cannot_turn_content_on(tmp_path: Path) -> None:
    from conclave.workflows.files.access import refuse_endpoint_overrides

    from conclave.errors import WorkflowError
    from conclave.settings import load_settings_with_origins

    dotenv = tmp_path / ".env"
    dotenv.write_text("CONCLAVE_OTEL_CONTENT=true\nCONCLAVE_OTEL=console\n", encoding="utf-8")
    loaded = load_settings_with_origins(env={"CONCLAVE_HOME": str(tmp_path / "home")}, dotenv_path=dotenv)
    assert loaded.settings.otel_content is False and [w.key for w in loaded.withheld] == ["otel_content"]
    assert loaded.settings.otel == "console"  # printing on stderr sends nothing anywhere: a .env may ask for it
    with pytest.raises(WorkflowError, match="otel_content"):
        refuse_endpoint_overrides({"otel_content": True}, "wf.yaml")


# -- an endpoint that is down ------------------------------------------------------------------------------------


async def test_an_endpoint_that_is_down_costs_a_warning_never_the_answer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _export_to(monkeypatch, f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "1")
    started = time.perf_counter()
    events, _ = await run([PLAN, GOOD_CHAIN, ACCEPT])
    assert events[-1].ok and events[-2].value == "14"
    assert time.perf_counter() - started < 5  # the same scripted question untraced takes well under a second
    stopping = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="conclave.tracing"):
        tracing.shutdown()
        assert time.perf_counter() - stopping <= tracing.EXIT_FLUSH_SECONDS + 0.5
        deadline = time.monotonic() + 10
        while "could not be sent" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "traces could not be sent to http://127.0.0.1:" in caplog.text and "answers go on" in caplog.text


# -- the real command ---------------------------------------------------------------------------------------------


@pytest.fixture
def stub() -> Iterator[StubEndpoint]:
    endpoint = StubEndpoint(answer="Four.\nAnswer: 4").start()
    yield endpoint
    endpoint.stop()


def _ask(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cli_command(), *args],
        env=cli_env(CONCLAVE_EMBEDDED_THREADS="1", **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_conclave_ask_sends_its_trace_before_it_exits(stub: StubEndpoint, otlp_receiver: OtlpReceiver) -> None:
    proc = _ask(
        "ask",
        "--model",
        "openai/stub",
        "--method",
        "direct",
        "What is 2+2?",
        CONCLAVE_OPENAI_BASE_URL=stub.base_url,
        OPENAI_API_KEY=SECRET,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.url,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("Answer: 4")
    spans = otlp_receiver.wait_for(2, timeout=5)
    (root,) = [s for s in spans if s["parent_id"] is None]
    (call,) = [s for s in spans if s["parent_id"] == root["span_id"]]
    assert root["name"] == "conclave.question direct"
    attrs = call["attributes"]
    assert (attrs["gen_ai.system"], attrs["gen_ai.request.model"]) == ("openai", "stub")
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert SECRET not in json.dumps(spans)


def test_conclave_ask_with_the_endpoint_down_answers_as_fast(stub: StubEndpoint) -> None:
    args = ("ask", "--model", "openai/stub", "--method", "direct", "What is 2+2?")
    env = {"CONCLAVE_OPENAI_BASE_URL": stub.base_url, "OPENAI_API_KEY": SECRET}
    started = time.perf_counter()
    plain = _ask(*args, **env)
    plain_s = time.perf_counter() - started
    started = time.perf_counter()
    down = _ask(*args, **env, OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{free_port()}")
    down_s = time.perf_counter() - started
    assert plain.returncode == down.returncode == 0, down.stderr
    assert down.stdout == plain.stdout
    # The answer is printed before exit; leaving waits at most EXIT_FLUSH_SECONDS for the spans still queued.
    assert down_s <= plain_s + tracing.EXIT_FLUSH_SECONDS + 2, (plain_s, down_s)
    assert "Traceback" not in down.stderr


def test_otel_prints_the_trace_on_stderr_and_leaves_stdout_to_the_answer(stub: StubEndpoint) -> None:
    proc = _ask(
        "--otel", "ask", "--model", "openai/stub", "--method", "direct", "What is 2+2?",
        CONCLAVE_OPENAI_BASE_URL=stub.base_url,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Four.\nAnswer: 4"
    assert '"name": "conclave.question direct"' in proc.stderr and '"gen_ai.system": "openai"' in proc.stderr


def test_a_bad_otel_variable_stops_ask_with_one_line(stub: StubEndpoint) -> None:
    proc = _ask(
        "ask", "--model", "openai/stub", "--method", "direct", "What is 2+2?",
        CONCLAVE_OPENAI_BASE_URL=stub.base_url, OTEL_TRACES_EXPORTER="zipkin",
    )  # fmt: skip
    error, fix = assert_clean_error(proc, code=2)
    assert "OTEL_TRACES_EXPORTER" in error and "otlp, console or none" in fix


@pytest.mark.slow
def test_a_real_embedded_answer_is_traced_with_its_token_counts(otlp_receiver: OtlpReceiver) -> None:
    proc = _ask(
        "ask", "--model", "embedded:smollm2", "--method", "direct", "What is the capital of France?",
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.url,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    spans = otlp_receiver.wait_for(2, timeout=5)
    (call,) = [s for s in spans if s["name"].startswith("chat ")]
    attrs = call["attributes"]
    assert (attrs["gen_ai.system"], attrs["gen_ai.request.model"]) == ("llama.cpp", "smollm2")
    assert attrs["gen_ai.usage.input_tokens"] > 10 and 0 < attrs["gen_ai.usage.output_tokens"] <= 32
    assert attrs["gen_ai.response.finish_reasons"][0] in ("stop", "length")
    assert call["end"] - call["start"] > 1_000_000  # a real generation takes more than a millisecond
