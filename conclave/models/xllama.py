"""The embedded backend's second engine: llama.cpp's own server code inside this process (``xllamacpp``).

This is the default engine (``embedded_engine = "xllamacpp"``): PyPI ships it as wheels, so installing needs no
compiler. llama-cpp-python (``embedded.py``, the ``llama-cpp`` extra) decodes one request at a time behind a lock.
``xllamacpp`` runs llama.cpp's server loop in a thread of this process: ``slots`` parallel sequences with continuous batching, so N requests decode
together and read the weights once per step (decoding a small model on CPU is bound by memory bandwidth).
Everything else is the embedded backend's, shared with ``embedded.py`` (``InProcessChatClient``): chat messages,
grammar-constrained JSON output and tool calls (the same GBNF text llama-cpp-python compiles: ``gbnf.py``), the same
``CreateResult``s, usage and model info.

One server per (GGUF file, LoRA adapter, context length, threads, slots) is shared by every client and role. No
Python lock is held around a generation: each request runs in its own thread inside the server's
``handle_chat_completions`` (which releases the GIL), and the server schedules the slots.

llama.cpp's server also listens on HTTP (it cannot be switched off): here on 127.0.0.1, an ephemeral port, behind a
random API key that only this process knows; requests from this process go through direct calls, not HTTP, except
token counting and the model's own description (``/tokenize``, ``/props``: the Python binding does not expose them).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import http.client
import json
import secrets
import threading
import time
from collections.abc import AsyncGenerator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from autogen_core import CancellationToken
from autogen_core.models import CreateResult, LLMMessage, RequestUsage
from autogen_core.tools import Tool, ToolSchema
from pydantic import BaseModel

from conclave.errors import BackendError, ConfigError
from conclave.models.embedded import (
    InProcessChatClient,
    Post,
    check_gguf,
    context_overflow,
    count_prompt_tokens,
    default_threads,
    relay_thread,
)

__all__ = ["PROMPT_CACHE_MIB", "Vocabulary", "XLlamaChatCompletionClient", "serve"]

PROMPT_CACHE_MIB = 512
"""Host memory llama.cpp's server may spend on saved prompt states (prefixes evicted from a slot and found again
later); its own default is 8 GiB."""


class _SharedServer:
    """One ``xllamacpp.Server`` and what its clients need around it: how many requests run (to know when a speed
    measurement was taken alone), whether the process is closing (streams stop at their next token)."""

    def __init__(self, server: Any, slots: int, api_key: str):
        self.server = server
        self.slots = slots
        self.api_key = api_key  # for the one request made over its HTTP listener (/tokenize)
        self.counter = threading.Lock()  # guards the counters below only; never held while decoding
        self.active = 0
        self.started = 0
        self.closing = False
        self.grammars: dict[str, str] = {}


_SERVERS: dict[tuple[str, str, int, int, int], _SharedServer] = {}
_SERVERS_LOCK = threading.Lock()


def _params(
    path: Path,
    *,
    n_ctx: int,
    threads: int,
    slots: int,
    lora_path: Path | None,
    port: int = 0,
    api_key: str | None = None,
) -> Any:
    """The server's parameters: ``slots`` sequences of ``n_ctx`` tokens each (a context of ``n_ctx × slots``)."""
    try:
        import xllamacpp
    except ImportError as exc:
        raise ConfigError(
            "the xllamacpp engine is not installed",
            hint="pip install xllamacpp (a dependency of conclave: reinstall it), or set embedded_engine to "
            "llama-cpp-python (pip install 'conclave[llama-cpp]')",
        ) from exc
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_parallel = slots
    params.n_ctx = n_ctx * slots  # not unified: each slot gets n_ctx of it
    params.kv_unified = False
    params.cont_batching = True
    params.cache_prompt = True
    params.cache_ram_mib = PROMPT_CACHE_MIB
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.n_threads_http = 1
    params.warmup = False
    params.verbosity = -1  # llama.cpp's log off: errors come back as replies
    params.hostnames = ["127.0.0.1"]
    params.port = port
    if api_key:
        params.api_keys = [api_key]
    if lora_path is not None:
        params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(str(lora_path), 1.0)]
    return params


def _start(path: Path, n_ctx: int, n_threads: int | None, slots: int, lora_path: Path | None = None) -> _SharedServer:
    threads = n_threads or default_threads()
    key = (str(path), str(lora_path or ""), n_ctx, threads, slots)  # a base with an adapter is another model
    with _SERVERS_LOCK:
        shared = _SERVERS.get(key)
        if shared is None:
            import xllamacpp

            # The HTTP listener cannot be turned off; a key nobody else has keeps other local users out of it.
            api_key = secrets.token_urlsafe(32)
            params = _params(path, n_ctx=n_ctx, threads=threads, slots=slots, lora_path=lora_path, api_key=api_key)
            try:
                server = xllamacpp.Server(params)
            except (RuntimeError, ValueError) as exc:
                raise ConfigError(
                    f"llama.cpp (xllamacpp) could not load {path}"
                    f"{f' with adapter {lora_path}' if lora_path else ''}: {exc}",
                    hint="check that the GGUF file is intact",
                ) from exc
            shared = _SharedServer(server, slots, api_key)
            _SERVERS[key] = shared
        return shared


def _request(shared: _SharedServer, method: str, route: str, body: Mapping[str, Any] | None = None) -> Any:
    """One request to the server's own HTTP listener (loopback, its key), for what the binding does not expose:
    ``/tokenize`` and ``/props``. The reply's JSON, or BackendError."""
    address = str(shared.server.listening_address).removeprefix("http://")
    host, _, port = address.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)  # never through a proxy: it is loopback
    try:
        connection.request(
            method,
            route,
            body=json.dumps(body) if body is not None else None,
            headers={"Authorization": f"Bearer {shared.api_key}", "Content-Type": "application/json"},
        )
        reply = connection.getresponse()
        data = reply.read()
    except OSError as exc:
        raise BackendError(f"the embedded model did not answer {route}: {exc}") from exc
    finally:
        connection.close()
    try:
        if reply.status != 200:
            raise ValueError(reply.status)
        return json.loads(data)
    except ValueError as exc:
        raise BackendError(f"the embedded model answered {route} with HTTP {reply.status}: {data[:200]!r}") from exc


def _token_count(shared: _SharedServer, text: str) -> int:
    """How many tokens the model's tokenizer makes of ``text`` (with BOS), from the server's own ``/tokenize``."""
    return len(_request(shared, "POST", "/tokenize", {"content": text, "add_special": True})["tokens"])


class Vocabulary:
    """A GGUF's chat template, its BOS and EOS tokens and its tokenizer, as llama.cpp loads them (a one-slot server
    of a small context; what ``conclave tune`` encodes its training examples with)."""

    def __init__(self, path: Path, n_threads: int | None = None):
        self._shared = _start(check_gguf(path), 512, n_threads, 1)
        props = _request(self._shared, "GET", "/props")
        self.chat_template = str(props.get("chat_template") or "")
        self.bos_token = str(props.get("bos_token") or "")
        self.eos_token = str(props.get("eos_token") or "")
        eos = self.tokenize(self.eos_token) if self.eos_token else []
        self.eos_id = eos[0] if len(eos) == 1 else -1

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text``, special tokens parsed (``<|im_end|>`` is one token), no BOS added."""
        reply = _request(
            self._shared, "POST", "/tokenize", {"content": text, "add_special": False, "parse_special": True}
        )
        return [int(token) for token in reply["tokens"]]

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``, special tokens written out."""
        return str(_request(self._shared, "POST", "/detokenize", {"tokens": list(tokens)})["content"])


@atexit.register
def _close_servers() -> None:
    """Stop every server before interpreter teardown: running streams stop at their next token, then the server's
    loop thread is ended and joined (``~Server``) and its model freed."""
    with _SERVERS_LOCK:
        servers = list(_SERVERS.values())
        _SERVERS.clear()
    for shared in servers:
        shared.closing = True
    deadline = time.monotonic() + 2.0
    for shared in servers:
        while shared.active and time.monotonic() < deadline:
            time.sleep(0.01)
        if shared.active:
            continue  # a request still inside the server holds it; never free a model under it
        shared.server = None  # the last reference: ~Server terminates the loop and joins its thread


def _error_text(reply: Mapping[str, Any]) -> str | None:
    """The message of an error reply from llama.cpp's server (``{"error": {...}}`` or a bare error object)."""
    error = reply.get("error")
    if isinstance(error, Mapping):
        return str(error.get("message") or error)
    if error:
        return str(error)
    if "choices" not in reply and ("message" in reply or "code" in reply):
        return str(reply.get("message") or reply)
    return None


class XLlamaChatCompletionClient(InProcessChatClient):
    """A ChatCompletionClient running a GGUF model in-process on llama.cpp's server code (``xllamacpp``).

    ``slots`` requests decode at once (more wait for a free slot inside the server). Memory is bounded: the weights,
    a KV cache of ``n_ctx × slots`` tokens (each request has ``n_ctx``, as on the llama-cpp-python engine), and at
    most :data:`PROMPT_CACHE_MIB` MiB of saved prompt states. A slot keeps the prompt it last evaluated
    (``cache_prompt``), and a request goes to the slot sharing the longest prefix with it, so a role's static prompt
    prefix is evaluated once.
    """

    def __init__(self, model_path: Path, *, slots: int = 4, **kwargs: Any):
        super().__init__(model_path, **kwargs)
        if slots < 1:
            raise ConfigError(f"embedded_parallel must be at least 1, not {slots}")
        self._slots = slots
        self._shared: _SharedServer | None = None
        self.cached_tokens = 0
        """Of the last request's prompt tokens, how many were found in the server's prompt cache."""

    @property
    def conclave_parallel(self) -> int:
        """Requests this client decodes at once (``capabilities.parallel_of``)."""
        return self._slots

    def _server(self) -> _SharedServer:
        if self._shared is None:
            self._shared = _start(self._path, self._n_ctx, self._n_threads, self._slots, self._lora_path)
        return self._shared

    def _grammars(self) -> dict[str, Any]:
        return self._server().grammars

    def _compile_grammar(self, schema_text: str) -> str:
        """The GBNF text llama-cpp-python compiles for the same schema (``gbnf.py``): both engines constrain a reply
        identically."""
        from conclave.models.gbnf import json_schema_to_gbnf

        return str(json_schema_to_gbnf(schema_text))

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
        shared = await asyncio.to_thread(self._server)
        chat, kwargs, tool_mode = self._prepare(messages, tools, tool_choice, json_output, extra_create_args)
        request = {
            "messages": chat,
            "stream": True,
            "stream_options": {"include_usage": True},
            "cache_prompt": True,
            **kwargs,
        }

        def produce(post: Post, stop: threading.Event) -> None:
            state: dict[str, Any] = {"finish": "stop", "usage": None, "timings": None, "error": None}

            def on_chunk(chunk: Any) -> bool:
                """Called by the server for each streamed chunk (or an error); True stops the generation."""
                if stop.is_set() or shared.closing:
                    state["finish"] = "cancelled" if stop.is_set() else "closing"
                    return True
                if not isinstance(chunk, Mapping):
                    return False
                error = _error_text(chunk)
                if error is not None:
                    state["error"] = error
                    return True
                if chunk.get("usage"):
                    state["usage"] = chunk["usage"]
                    state["timings"] = chunk.get("timings")
                for choice in chunk.get("choices") or ():
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        post(("delta", delta))
                    if choice.get("finish_reason"):
                        state["finish"] = choice["finish_reason"]
                return False

            with shared.counter:
                shared.active += 1
                shared.started += 1
                mine = shared.started
                alone = shared.active == 1
            outcome: tuple[str, Any]
            try:
                server = shared.server
                if server is None:
                    raise BackendError("the embedded model was shut down (the program is exiting)")
                server.handle_chat_completions(request, on_chunk)
                if state["error"] is not None:
                    error = str(state["error"])
                    raise context_overflow(error) or BackendError(f"the embedded model failed: {error}")
                outcome = ("done", state)
            except Exception as exc:  # surfaced in the event loop below
                outcome = ("error", exc)
            finally:
                with shared.counter:
                    shared.active -= 1
                    state["alone"] = alone and shared.started == mine  # no other request overlapped this one
            post(outcome)

        parts: list[str] = []
        async with contextlib.aclosing(relay_thread(produce, cancellation_token, "conclave-xllama")) as relayed:
            async for kind, payload in relayed:
                if kind == "delta":
                    parts.append(payload)
                    if not tool_mode:
                        yield payload
                else:
                    state = payload
        finish = state["finish"]
        if finish == "cancelled":
            raise asyncio.CancelledError()
        if finish == "closing":
            raise BackendError("the embedded model was shut down: the program is exiting")
        text = "".join(parts)
        reported = state["usage"] or {}
        usage = RequestUsage(
            prompt_tokens=int(reported.get("prompt_tokens") or 0),
            completion_tokens=int(reported.get("completion_tokens") or 0),
        )
        self._record(usage)
        self.cached_tokens = int((reported.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
        timings = state["timings"] or {}
        if state.get("alone") and timings.get("predicted_n") and timings.get("predicted_ms"):
            # Only a generation that ran alone measures the decoding rate (batched ones share the steps).
            self._record_speed(int(timings["predicted_n"]), float(timings["predicted_ms"]) / 1000)
        yield self._result(text, finish, usage, tool_mode)

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = []) -> int:
        return count_prompt_tokens(lambda text: _token_count(self._server(), text), messages, tools)


def serve(
    path: Path,
    *,
    port: int,
    n_ctx: int = 4096,
    slots: int = 4,
    n_threads: int | None = None,
    lora_path: Path | None = None,
    alias: str | None = None,
    cache_prompt: bool = True,
) -> Any:
    """llama.cpp's OpenAI-compatible HTTP server on 127.0.0.1:``port`` from this process (the bench's "server"
    variant): keep the returned object alive while it serves. No API key: for loopback benchmarks only. Without
    ``cache_prompt`` every prompt is evaluated whole, so an answer at temperature 0 does not depend on what the
    server computed before (a prefix found in the cache is the same arithmetic in another order)."""
    import xllamacpp

    params = _params(
        path, n_ctx=n_ctx, threads=n_threads or default_threads(), slots=slots, lora_path=lora_path, port=port
    )
    if not cache_prompt:
        params.cache_prompt = False
        params.cache_ram_mib = 0
    if alias:
        params.model_alias = {alias}
    params.n_threads_http = max(4, slots + 2)  # one HTTP thread per waiting request, or they queue before the slots
    return xllamacpp.Server(params)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m conclave.models.xllama MODEL.gguf --port N [--slots S] [--n-ctx C] [--threads T] [--alias A]``"""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m conclave.models.xllama", description=main.__doc__)
    parser.add_argument("model", type=Path)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slots", type=int, default=4, help="requests decoded at once (default 4)")
    parser.add_argument("--n-ctx", type=int, default=4096, help="tokens per slot (default 4096)")
    parser.add_argument("--threads", type=int, default=None, help="default: the CPUs this process may use")
    parser.add_argument("--alias", default=None, help="the model's name in /v1/models")
    parser.add_argument(
        "--no-cache-prompt", action="store_true", help="evaluate every prompt whole (answers independent of history)"
    )
    args = parser.parse_args(argv)
    running = serve(
        args.model,
        port=args.port,
        n_ctx=args.n_ctx,
        slots=args.slots,
        n_threads=args.threads,
        alias=args.alias,
        cache_prompt=not args.no_cache_prompt,
    )
    print(f"serving {args.model} at {running.listening_address}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
