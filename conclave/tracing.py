"""OpenTelemetry traces of every question, built from the run's own events.

``workflows.runner.run_question`` hands each event of a question to a :class:`QuestionTrace`; when the question ends
(answered, failed or abandoned) the trace turns them into spans with the times the events carry: the question, each
team agent's turn (``RunContext.turns``), each model call (``Usage``: the GenAI semantic conventions) and each tool
call (``StepFinished`` of a chain, ``ToolCalled`` of react). Building the spans after the fact costs the answer
nothing while it runs, and the events already know what instrumenting AutoGen could not see (docs/ARCHITECTURE.md).

Off unless configured: the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (or
``OTEL_TRACES_EXPORTER=otlp``) export over OTLP; ``otel = "console"`` (``--otel``) or ``OTEL_TRACES_EXPORTER=console``
print spans on stderr. What the user typed or the tools returned (the question, the answer, tool arguments and
results) is recorded only with ``otel_content`` (or ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``); every
text attribute is redacted like an error message, so no configured secret becomes an attribute.

Spans leave through a bounded ``BatchSpanProcessor`` in a background thread: an endpoint that is down costs one warning
and the spans, never an answer; at exit at most :data:`EXIT_FLUSH_SECONDS` are spent sending what is left.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from conclave.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

    from conclave.events import Event
    from conclave.settings import Settings

__all__ = [
    "EXIT_FLUSH_SECONDS",
    "AgentTurn",
    "QuestionTrace",
    "TraceConfig",
    "question_trace",
    "shutdown",
    "trace_config",
    "tracing_for",
]

log = logging.getLogger("conclave.tracing")

EXIT_FLUSH_SECONDS = 2.0
"""At exit, how long sending the spans still queued may delay the process (none once an export has failed)."""
CONTENT_CHARS = 8192
"""A recorded text (question, answer, tool arguments or result) is clipped to this many characters."""
PROTOCOLS = ("http/protobuf", "grpc")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class AgentTurn:
    """One team agent's turn: its name and when it started and ended (``time.time()``, the clock of ``Event.at``)."""

    agent: str
    start: float
    end: float


@dataclass(frozen=True)
class TraceConfig:
    """Where spans go (``otlp`` to ``endpoint`` over ``protocol``, or ``console`` on stderr) and whether texts are
    recorded. Equal configurations share one exporter per process."""

    exporter: Literal["otlp", "console"]
    content: bool = False
    endpoint: str = ""
    """As given (the exporter reads ``OTEL_*`` itself); only for messages, redacted there."""
    protocol: str = "http/protobuf"


def _env(env: Mapping[str, str], *names: str) -> str:
    return next((env[n].strip() for n in names if env.get(n, "").strip()), "")


def trace_config(settings: Settings, env: Mapping[str, str] | None = None) -> TraceConfig | None:
    """What tracing the settings and the ``OTEL_*`` variables ask for; None: off (the default). ConfigError for a
    variable Conclave cannot honour (an unknown exporter or protocol, an endpoint that is not an http(s) URL)."""
    from conclave.redact import redact_url

    env = os.environ if env is None else env
    content = settings.otel_content or _env(env, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT").lower() in _TRUE
    if settings.otel == "off" or _env(env, "OTEL_SDK_DISABLED").lower() in _TRUE:
        return None
    exporter = _env(env, "OTEL_TRACES_EXPORTER").lower()
    if exporter not in ("", "otlp", "console", "none"):
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={exporter!r} is not one Conclave can send traces with",
            hint="use otlp, console or none (or unset it)",
        )
    if settings.otel == "console" or exporter == "console":
        return TraceConfig("console", content)
    endpoint = _env(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if exporter == "none" or (not endpoint and exporter != "otlp"):
        return None
    protocol = _env(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL") or PROTOCOLS[0]
    if protocol not in PROTOCOLS:
        raise ConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported", hint=f"use {' or '.join(PROTOCOLS)}"
        )
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"the OTLP endpoint {redact_url(endpoint)!r} is not an http(s) URL",
                hint="set OTEL_EXPORTER_OTLP_ENDPOINT to the collector's base URL, e.g. http://127.0.0.1:4318",
            )
    return TraceConfig("otlp", content, endpoint, protocol)


# ------------------------------------------------------------------------------------------- the exporters


class _Guarded:
    """A span exporter that never raises and says once that spans were dropped (an endpoint that is down)."""

    def __init__(self, inner: SpanExporter, where: str) -> None:
        self.inner = inner
        self.where = where
        self.failed = threading.Event()

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        try:
            result = self.inner.export(spans)
        except Exception as exc:  # a broken exporter must not take the batch thread with it
            result = SpanExportResult.FAILURE
            reason = type(exc).__name__
        else:
            reason = "no answer"
        if result is not SpanExportResult.SUCCESS and not self.failed.is_set():
            self.failed.set()
            log.warning("traces could not be sent to %s (%s): spans dropped; answers go on", self.where, reason)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))


def _exporter(config: TraceConfig) -> SpanExporter:
    from conclave.redact import redact_url

    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)  # stdout is the answer's (`conclave ask > answer.txt`)
    if config.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError as exc:
            raise ConfigError(
                "OTLP over grpc needs the opentelemetry-exporter-otlp-proto-grpc package",
                hint="pip install opentelemetry-exporter-otlp-proto-grpc, or use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            ) from exc
        return _Guarded(GrpcExporter(), redact_url(config.endpoint) or "the OTLP endpoint")  # type: ignore[return-value]
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return _Guarded(OTLPSpanExporter(), redact_url(config.endpoint) or "the OTLP endpoint")  # type: ignore[return-value]


@dataclass
class _Tracing:
    config: TraceConfig
    provider: TracerProvider
    tracer: Tracer
    exporter: Any


_LOCK = threading.Lock()
_ACTIVE: dict[TraceConfig, _Tracing] = {}


def tracing_for(settings: Settings) -> _Tracing | None:
    """The process's tracer for these settings (made on first use), or None when tracing is off."""
    config = trace_config(settings)
    if config is None:
        return None
    with _LOCK:
        if config not in _ACTIVE:
            _ACTIVE[config] = _start(config)
            if len(_ACTIVE) == 1:
                atexit.register(shutdown)
        return _ACTIVE[config]


def _start(config: TraceConfig) -> _Tracing:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from conclave import __version__

    exporter = _exporter(config)
    attributes: dict[str, Any] = {"service.version": __version__}
    if not os.environ.get("OTEL_SERVICE_NAME"):
        attributes[SERVICE_NAME] = "conclave"
    # Our own provider, not the global one: AutoGen's runtime would otherwise add its message-passing spans.
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(exporter))  # bounded queue: spans beyond it are dropped
    return _Tracing(config, provider, provider.get_tracer("conclave", __version__), exporter)


def shutdown(timeout: float = EXIT_FLUSH_SECONDS) -> None:
    """Send what is queued (for at most ``timeout`` seconds; none once an export failed) and stop every exporter.
    Registered at exit; tests call it to flush."""
    with _LOCK:
        active = list(_ACTIVE.values())
        _ACTIVE.clear()
    for tracing in active:
        failed = getattr(tracing.exporter, "failed", None)
        wait = 0.0 if failed is not None and failed.is_set() else timeout
        # The SDK's shutdown waits for a retrying export; a daemon thread lets the process go when time is up.
        stopper = threading.Thread(target=tracing.provider.shutdown, name="conclave-otel-shutdown", daemon=True)
        stopper.start()
        stopper.join(wait)


# ------------------------------------------------------------------------------------------- one question


def question_trace(ctx: Any) -> QuestionTrace | None:
    """A trace for the question ``ctx`` runs (``workflows.context.RunContext``), or None when tracing is off."""
    tracing = tracing_for(ctx.settings)
    return None if tracing is None else QuestionTrace(tracing, ctx)


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _provider_and_model(spec: str) -> tuple[str, str]:
    """``gen_ai.provider.name`` and ``gen_ai.request.model`` of a model spec (``embedded:qwen``, ``ollama/x``)."""
    if spec == "embedded" or spec.startswith("embedded:"):
        name = spec.partition(":")[2] or "embedded"  # plain `embedded`: the default built-in model
        return "llama.cpp", os.path.basename(name)  # a GGUF path names the file, not the user's folders
    provider, slash, model = spec.partition("/")
    return (provider, model) if slash else ("unknown", spec)


class QuestionTrace:
    """Collects one question's events and exports them as spans when it ends (:meth:`finish`)."""

    def __init__(self, tracing: _Tracing, ctx: Any) -> None:
        self.tracing = tracing
        self.ctx = ctx
        self.content = tracing.config.content
        self.events: list[Event] = []
        self.started = time.time()
        self._redact: Callable[[str], str] = str

    def add(self, event: Event) -> None:
        if event.kind != "answer_delta":  # the answer arrives whole in AnswerReady
            self.events.append(event)

    def finish(self) -> None:
        """Export the question's spans; a problem here costs a warning, never the answer."""
        try:
            self._export(time.time())
        except Exception as exc:
            log.warning("the trace of this question was not recorded (%s: %s)", type(exc).__name__, exc)

    # ----------------------------------------------------------------------------------------- attributes

    def _text(self, value: Any) -> str:
        from conclave.terminal import clip

        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return self._redact(clip(text, CONTENT_CHARS))

    def _content(self, attributes: dict[str, Any], **texts: Any) -> None:
        """Add what the user or a tool wrote, only when recording content was asked for."""
        if self.content:
            for key, value in texts.items():
                if value not in (None, ""):
                    attributes[key.replace("__", ".")] = self._text(value)

    # ----------------------------------------------------------------------------------------- spans

    def _export(self, now: float) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        from conclave.events import AnswerReady, RunFailed, RunFinished, RunStarted
        from conclave.redact import redactor

        self._redact = redactor()

        events = self.events
        first = next((e for e in events if isinstance(e, RunStarted)), None)
        finished = next((e for e in reversed(events) if isinstance(e, RunFinished)), None)
        failure = next((e for e in events if isinstance(e, RunFailed)), None)
        answer = next((e for e in reversed(events) if isinstance(e, AnswerReady)), None)
        start = first.at if first is not None else self.started
        end = finished.at if finished is not None else now
        ctx = self.ctx
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": "conclave",
            "openinference.span.kind": "CHAIN",
            "conclave.method": ctx.method,
        }
        if ctx.collection:
            attributes["conclave.collection"] = self._text(ctx.collection)
        for role, spec in sorted(ctx.models.items()):
            attributes[f"conclave.model.{role}"] = self._text(spec)
        for key, value in (getattr(ctx, "trace_attributes", None) or {}).items():
            attributes[key] = self._text(value)
        self._content(
            attributes,
            input__value=ctx.question,
            output__value=answer.text if answer else None,
            conclave__answer__value=answer.value if answer else None,
            conclave__chain=answer.chain if answer else None,
        )
        usage = [e for e in events if e.kind == "usage"]
        attributes["gen_ai.usage.input_tokens"] = sum(e.prompt_tokens for e in usage)  # type: ignore[attr-defined]
        attributes["gen_ai.usage.output_tokens"] = sum(e.completion_tokens for e in usage)  # type: ignore[attr-defined]
        tracer = self.tracing.tracer
        root = tracer.start_span(f"conclave.question {ctx.method}", start_time=_ns(start), attributes=attributes)
        if failure is not None:
            root.set_status(Status(StatusCode.ERROR, self._text(failure.error)))
        elif finished is None:
            root.set_status(Status(StatusCode.ERROR, "abandoned before it finished"))
        elif not finished.ok:
            root.set_status(Status(StatusCode.ERROR, self._text(finished.reason or "no answer")))
        root.set_attribute("conclave.ok", bool(finished is not None and finished.ok and failure is None))
        in_root = trace.set_span_in_context(root)
        turns = [(turn, self._turn_span(turn, in_root)) for turn in getattr(ctx, "turns", None) or []]
        for event in events:
            self._event_span(event, turns, root)
        for turn, span in turns:
            span.end(end_time=_ns(turn.end))
        root.end(end_time=_ns(max(end, start)))

    def _turn_span(self, turn: AgentTurn, parent: Any) -> Span:
        return self.tracing.tracer.start_span(
            f"invoke_agent {turn.agent}",
            context=parent,
            start_time=_ns(turn.start),
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": turn.agent,
                "openinference.span.kind": "AGENT",
            },
        )

    @staticmethod
    def _parent(turns: list[tuple[AgentTurn, Span]], start: float, end: float, agent: str | None, root: Span) -> Span:
        """The turn the interval falls in (the named agent's first), else the question itself."""
        middle = (start + end) / 2
        inside = [(t, s) for t, s in turns if t.start - 1e-3 <= middle <= t.end + 1e-3]
        named = [s for t, s in inside if t.agent == agent]
        return named[0] if named else inside[0][1] if inside else root

    def _event_span(self, event: Event, turns: list[tuple[AgentTurn, Span]], root: Span) -> None:
        from conclave.events import StepFinished, ToolCalled, Usage

        if isinstance(event, Usage):
            self._model_span(event, turns, root)
        elif isinstance(event, StepFinished):
            seconds = max(0.0, event.ended - event.started)
            started = self._step_args(event)
            self._tool_span(
                event.tool,
                event.at - seconds,
                event.at,
                turns,
                root,
                status=event.status,
                error=event.error,
                call_id=event.step_id,
                sample=event.sample,
                args=started,
                result=event.value,
            )
        elif isinstance(event, ToolCalled):
            self._tool_span(
                event.tool,
                event.at - event.seconds,
                event.at,
                turns,
                root,
                status="failed" if event.is_error else "ok",
                error=event.result if event.is_error else None,
                args=event.args,
                result=None if event.is_error else event.result,
            )
        elif event.kind in ("plan", "retrieval", "chain", "replan", "vote", "critique"):
            span = self._parent(turns, event.at, event.at, None, root)
            span.add_event(f"conclave.{event.kind}", self._event_attributes(event), timestamp=_ns(event.at))

    def _step_args(self, finished: Any) -> dict[str, Any] | None:
        """The arguments of the StepStarted that ``finished`` ends (same sample and step, the latest before it)."""
        from conclave.events import StepStarted

        found = None
        for event in self.events:
            if event is finished:
                break
            if isinstance(event, StepStarted) and (event.step_id, event.sample) == (finished.step_id, finished.sample):
                found = event.args
        return found

    def _model_span(self, event: Any, turns: list[tuple[AgentTurn, Span]], root: Span) -> None:
        from opentelemetry import trace

        provider, model = _provider_and_model(event.model)
        total = event.prompt_tokens + event.completion_tokens
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": provider,
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": self._text(model),
            "gen_ai.request.temperature": float(self.ctx.settings.temperature),
            "gen_ai.request.max_tokens": int(self.ctx.settings.max_tokens),
            "gen_ai.usage.input_tokens": event.prompt_tokens,
            "gen_ai.usage.output_tokens": event.completion_tokens,
            "conclave.agent": event.agent,
            "openinference.span.kind": "LLM",
            "llm.model_name": self._text(model),
            "llm.token_count.prompt": event.prompt_tokens,
            "llm.token_count.completion": event.completion_tokens,
            "llm.token_count.total": total,
        }
        if event.finish_reason:
            attributes["gen_ai.response.finish_reasons"] = [event.finish_reason]
        if event.calls != 1:
            attributes["conclave.calls"] = event.calls
        start = event.at - max(0.0, event.seconds)
        parent = self._parent(turns, start, event.at, event.agent, root)
        span = self.tracing.tracer.start_span(
            f"chat {self._text(model)}",
            context=trace.set_span_in_context(parent),
            kind=trace.SpanKind.CLIENT,
            start_time=_ns(start),
            attributes=attributes,
        )
        span.end(end_time=_ns(event.at))

    def _tool_span(
        self,
        tool: str,
        start: float,
        end: float,
        turns: list[tuple[AgentTurn, Span]],
        root: Span,
        *,
        status: str,
        error: str | None = None,
        call_id: str | None = None,
        sample: int = 0,
        args: Any = None,
        result: Any = None,
    ) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import Status, StatusCode

        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": self._text(tool),
            "gen_ai.tool.type": "function",
            "conclave.tool.status": status,
            "conclave.tool.seconds": round(max(0.0, end - start), 6),
            "openinference.span.kind": "TOOL",
            "tool.name": self._text(tool),
        }
        if call_id:
            attributes["gen_ai.tool.call.id"] = self._text(call_id)
        if sample:
            attributes["conclave.sample"] = sample
        self._content(
            attributes,
            gen_ai__tool__call__arguments=args,
            gen_ai__tool__call__result=result,
            input__value=args,
            output__value=result,
        )
        parent = self._parent(turns, start, end, None, root)
        span = self.tracing.tracer.start_span(
            f"execute_tool {self._text(tool)}",
            context=trace.set_span_in_context(parent),
            kind=trace.SpanKind.INTERNAL,
            start_time=_ns(start),
            attributes=attributes,
        )
        if status in ("failed", "timeout"):
            # The error text may quote the arguments: it is content too.
            span.set_status(Status(StatusCode.ERROR, self._text(error) if self.content and error else status))
        span.end(end_time=_ns(max(end, start)))

    def _event_attributes(self, event: Any) -> dict[str, Any]:
        """A span event's attributes: counts and verdicts always, the texts only with content recorded."""
        kind = event.kind
        out: dict[str, Any] = {}
        if kind == "plan":
            out["conclave.subquestions"] = len(event.subquestions)
        elif kind == "retrieval":
            out["conclave.passages"] = len(event.passages)
            self._content(out, conclave__query=event.query)
        elif kind == "chain":
            out.update(
                {"conclave.form": event.form, "conclave.attempt": event.attempt, "conclave.sample": event.sample}
            )
            self._content(out, conclave__chain=event.text)
        elif kind == "replan":
            out.update({"conclave.errors": len(event.errors), "conclave.attempt": event.attempt})
            self._content(out, conclave__reasons=event.errors)
        elif kind == "vote":
            out["conclave.votes"] = sum(event.counts.values())
            self._content(out, conclave__winner=event.winner)
        elif kind == "critique":
            out.update({"conclave.verdict": event.verdict, "conclave.round": event.round})
            self._content(out, conclave__reasons=event.reasons)
        return out
