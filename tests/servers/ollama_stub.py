"""A small real HTTP server speaking Ollama's API, backed by one GGUF model on llama.cpp's server code (xllamacpp,
the embedded backend's default engine: no llama-cpp-python needed).

No Ollama server can be installed here, so the Ollama backend is tested against this. It answers the routes
the backend and the ``ollama`` Python client use, with the reply shapes Ollama 0.6+ sends:

* ``GET /`` -> ``Ollama is running``; ``GET /api/version``; ``GET /api/tags``; ``GET /api/ps``
* ``POST /api/show`` -> details, model_info (``llama.context_length``), capabilities; 404 for unknown names
* ``POST /api/chat`` streamed (NDJSON) or not; ``format`` = ``"json"`` or a JSON schema (a GBNF grammar, as the
  embedded backend writes it: ``conclave/models/gbnf.py``);
  ``options`` num_ctx, temperature, num_predict, seed, top_p, top_k, stop, repeat_penalty
* ``POST /api/embed`` (and the older ``/api/embeddings``) through a second, embedding-mode instance
* ``GET /_stub/requests`` (not Ollama): the recorded request bodies, without messages, so tests can check
  what a client sent (for example that ``options.num_ctx`` is always set)

Run: ``python -m tests.servers.ollama_stub --model PATH --port N --name smollm2:135m``
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

OLLAMA_VERSION = "0.6.8"
CONTEXT_LENGTH = 8192
CAPABILITIES = ["completion", "tools"]
MAX_RECORDED = 200


def _now() -> str:
    """Ollama's timestamp format (RFC 3339 with fractional seconds)."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _with_tag(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class StubModel:
    """The one model this server holds, with a lock: a llama.cpp context serves one generation at a time."""

    def __init__(self, path: Path, name: str, n_ctx: int, threads: int | None):
        self.path = path
        self.name = name
        self.n_ctx = n_ctx
        self.threads = threads
        self.server, self._key = _llama_server(path, n_ctx, threads, embedding=False)
        self.metadata = self._props()
        self.lock = threading.Lock()
        self._embedder: Any = None
        self._embed_lock = threading.Lock()
        self.size = path.stat().st_size
        self.digest = hashlib.sha256(f"{path.resolve()}:{self.size}".encode()).hexdigest()
        self.modified_at = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
        self.requests: list[dict[str, Any]] = []
        self._record_lock = threading.Lock()

    def matches(self, requested: str | None) -> bool:
        """Ollama treats ``name`` and ``name:latest`` as the same model."""
        if not requested:
            return False
        return _with_tag(requested) == _with_tag(self.name)

    # -- descriptions --------------------------------------------------------------------------------------
    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "134.52M",
            "quantization_level": "Q4_1",
        }

    def tag_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.name,
            "modified_at": self.modified_at,
            "size": self.size,
            "digest": self.digest,
            "details": self.details(),
        }

    def _props(self) -> dict[str, str]:
        """What the model's GGUF says of itself, as llama.cpp's server reports it (``GET /props``)."""
        address = str(self.server.listening_address).removeprefix("http://")
        host, _, port = address.rpartition(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            connection.request("GET", "/props", headers={"Authorization": f"Bearer {self._key}"})
            props = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        return {"tokenizer.chat_template": str(props.get("chat_template") or "")}

    def model_info(self) -> dict[str, Any]:
        meta: dict[str, str] = dict(self.metadata)
        info: dict[str, Any] = {
            "general.architecture": "llama",
            "general.basename": meta.get("general.basename", "SmolLM2"),
            "general.file_type": 3,
            "general.finetune": "Instruct",
            "general.parameter_count": 134515008,
            "general.quantization_version": 2,
            "general.size_label": "135M",
            "general.type": "model",
            "llama.attention.head_count": 9,
            "llama.attention.head_count_kv": 3,
            "llama.block_count": 30,
            "llama.context_length": CONTEXT_LENGTH,
            "llama.embedding_length": 576,
            "llama.feed_forward_length": 1536,
            "llama.rope.dimension_count": 64,
            "llama.rope.freq_base": 100000,
            "llama.vocab_size": 49152,
            "tokenizer.ggml.bos_token_id": 1,
            "tokenizer.ggml.eos_token_id": 2,
            "tokenizer.ggml.model": "gpt2",
            "tokenizer.ggml.pre": "smollm",
            "tokenizer.ggml.merges": None,
            "tokenizer.ggml.token_type": None,
            "tokenizer.ggml.tokens": None,
        }
        return info

    def show(self) -> dict[str, Any]:
        template = self.metadata["tokenizer.chat_template"]
        return {
            "license": "Apache License 2.0",
            "modelfile": f"# Modelfile generated by the Conclave test stub\nFROM {self.path}\n",
            "parameters": f'stop{" " * 27}"<|im_start|>"\nstop{" " * 27}"<|im_end|>"',
            "template": template,
            "details": self.details(),
            "model_info": self.model_info(),
            "capabilities": list(CAPABILITIES),
            "modified_at": self.modified_at,
        }

    def record(self, path: str, body: dict[str, Any]) -> None:
        entry = {k: v for k, v in body.items() if k not in ("messages", "input", "prompt")}
        entry["path"] = path
        entry["n_messages"] = len(body.get("messages") or [])
        with self._record_lock:
            self.requests.append(entry)
            del self.requests[:-MAX_RECORDED]

    # -- generation ----------------------------------------------------------------------------------------
    def generation_kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        """Ollama's ``options`` and ``format`` -> llama.cpp's chat-completion request arguments."""
        options = body.get("options") or {}
        kwargs: dict[str, Any] = {"temperature": float(options.get("temperature", 0.8))}
        num_predict = options.get("num_predict")
        if num_predict is not None and int(num_predict) > 0:
            kwargs["max_tokens"] = int(num_predict)
        else:
            kwargs["max_tokens"] = -1  # Ollama's default: until the context is full
        kwargs["seed"] = int(options["seed"]) if options.get("seed") is not None else 0  # as loaded with seed 0 before
        for ours, theirs in (("top_p", "top_p"), ("top_k", "top_k"), ("repeat_penalty", "repeat_penalty")):
            if options.get(theirs) is not None:
                kwargs[ours] = options[theirs]
        if options.get("stop"):
            kwargs["stop"] = list(options["stop"])
        fmt = body.get("format")
        if fmt == "json":
            kwargs["response_format"] = {"type": "json_object"}
        elif isinstance(fmt, dict):
            from conclave.models.gbnf import json_schema_to_gbnf

            kwargs["grammar"] = json_schema_to_gbnf(json.dumps(fmt))
        elif fmt not in (None, ""):
            raise ValueError(f"invalid format: {fmt!r}")
        return kwargs

    @staticmethod
    def chat_messages(body: dict[str, Any]) -> list[dict[str, str]]:
        out = []
        for message in body.get("messages") or []:
            role = message.get("role", "user")
            content = message.get("content") or ""
            if role == "tool":  # SmolLM2's template has no tool role
                role, content = "user", f"Tool result: {content}"
            out.append({"role": role, "content": content})
        return out

    def generate(
        self,
        body: dict[str, Any],
        kwargs: dict[str, Any],
        on_piece: Callable[[str], None],
        stop: threading.Event,
    ) -> tuple[str, int, int]:
        """Generate under the lock, giving each piece to ``on_piece``; return (finish, prompt, completion).

        ``stop`` ends generation early (the client went away): the lock is then released at once.
        """
        messages = self.chat_messages(body)
        request = {
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            **kwargs,
        }
        state: dict[str, Any] = {"finish": "stop", "usage": {}, "pieces": 0, "error": None}

        def on_chunk(chunk: Any) -> bool:
            """Called by the server for each streamed chunk (or an error); True stops the generation."""
            if stop.is_set():
                return True
            if not isinstance(chunk, dict):
                return False
            if chunk.get("error") or ("choices" not in chunk and "message" in chunk):
                state["error"] = chunk.get("error") or chunk.get("message")
                return True
            if chunk.get("usage"):
                state["usage"] = chunk["usage"]
            for choice in chunk.get("choices") or ():
                piece = (choice.get("delta") or {}).get("content") or ""
                if piece:
                    state["pieces"] += 1
                    on_piece(piece)
                state["finish"] = choice.get("finish_reason") or state["finish"]
            return False

        with self.lock:
            self.server.handle_chat_completions(request, on_chunk)
        if state["error"] is not None:
            raise RuntimeError(str(state["error"]))
        usage = state["usage"]
        prompt = int(usage.get("prompt_tokens") or 1)
        return state["finish"], prompt, int(usage.get("completion_tokens") or state["pieces"])

    def embed(self, texts: list[str]) -> list[list[float]]:
        with self._embed_lock:
            if self._embedder is None:
                self._embedder, _ = _llama_server(self.path, 512, self.threads, embedding=True)
            reply = self._embedder.handle_embeddings({"input": texts})
        if not isinstance(reply, dict) or "data" not in reply:
            raise RuntimeError(f"embedding failed: {reply}")
        return [[float(x) for x in item["embedding"]] for item in reply["data"]]


def _llama_server(path: Path, n_ctx: int, threads: int | None, *, embedding: bool) -> tuple[Any, str]:
    """llama.cpp's server for ``path`` in this process, one slot (one generation at a time, as Ollama's runner per
    request), its HTTP listener on loopback behind a random key; an embedding server pools by mean, normalised."""
    import xllamacpp

    from conclave.models.embedded import default_threads
    from conclave.models.xllama import _params

    key = secrets.token_urlsafe(16)
    params = _params(path, n_ctx=n_ctx, threads=threads or default_threads(), slots=1, lora_path=None, api_key=key)
    if embedding:
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
    return xllamacpp.Server(params), key


def build_app(model: StubModel) -> Starlette:
    """The Starlette app serving ``model`` under Ollama's routes."""

    async def root(request: Request) -> Response:
        return PlainTextResponse("Ollama is running")

    async def version(request: Request) -> Response:
        return JSONResponse({"version": OLLAMA_VERSION})

    async def tags(request: Request) -> Response:
        return JSONResponse({"models": [model.tag_entry()]})

    async def ps(request: Request) -> Response:
        entry = model.tag_entry()
        entry.update({"expires_at": _now(), "size_vram": 0})
        return JSONResponse({"models": [entry]})

    async def read_json(request: Request) -> dict[str, Any] | Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "invalid character in request body")
        if not isinstance(body, dict):
            return _error(400, "json: cannot unmarshal request body")
        return body

    async def show(request: Request) -> Response:
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        model.record("/api/show", body)
        name = body.get("model") or body.get("name")
        if not model.matches(name):
            return _error(404, f"model '{name}' not found")
        return JSONResponse(model.show())

    async def chat(request: Request) -> Response:
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        model.record("/api/chat", body)
        name = body.get("model")
        if not name:
            return _error(400, "model is required")
        if not model.matches(name):
            return _error(404, f'model "{name}" not found, try pulling it first')
        try:
            kwargs = model.generation_kwargs(body)
        except Exception as exc:  # invalid format / schema the grammar compiler rejects
            return _error(400, f"invalid format: {exc}")
        started = time.perf_counter_ns()
        if not body.get("messages"):
            return JSONResponse(
                {
                    "model": name,
                    "created_at": _now(),
                    "message": {"role": "assistant", "content": ""},
                    "done_reason": "load",
                    "done": True,
                }
            )

        def final(finish: str | None, prompt_tokens: int, completion_tokens: int, content: str) -> dict[str, Any]:
            elapsed = time.perf_counter_ns() - started
            return {
                "model": name,
                "created_at": _now(),
                "message": {"role": "assistant", "content": content},
                "done_reason": finish or "stop",
                "done": True,
                "total_duration": elapsed,
                "load_duration": 1_000_000,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": elapsed // 4,
                "eval_count": completion_tokens,
                "eval_duration": elapsed - elapsed // 4,
            }

        if body.get("stream", True):
            return StreamingResponse(stream_lines(name, body, kwargs, final), media_type="application/x-ndjson")

        def whole() -> dict[str, Any]:
            parts: list[str] = []
            finish, prompt_tokens, completion_tokens = model.generate(body, kwargs, parts.append, threading.Event())
            return final(finish, prompt_tokens, completion_tokens, "".join(parts))

        return JSONResponse(await run_in_threadpool(whole))

    async def stream_lines(
        name: str, body: dict[str, Any], kwargs: dict[str, Any], final: Callable[..., dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        """NDJSON chunks from a generation thread; a client that disconnects stops it (and frees the lock)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, payload: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, payload))
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                stop.set()

        def produce() -> None:
            try:
                put("done", model.generate(body, kwargs, lambda piece: put("piece", piece), stop))
            except Exception as exc:
                put("error", exc)

        threading.Thread(target=produce, name="stub-generate", daemon=True).start()
        try:
            while True:
                kind, payload = await queue.get()
                if kind == "piece":
                    chunk = {
                        "model": name,
                        "created_at": _now(),
                        "message": {"role": "assistant", "content": payload},
                        "done": False,
                    }
                elif kind == "done":
                    chunk = final(*payload, "")
                else:
                    chunk = {"error": str(payload)}  # what Ollama sends when a stream fails midway
                yield (json.dumps(chunk) + "\n").encode()
                if kind != "piece":
                    return
        finally:
            stop.set()

    async def embed(request: Request) -> Response:
        body = await read_json(request)
        if isinstance(body, Response):
            return body
        model.record(request.url.path, body)
        name = body.get("model")
        if not model.matches(name):
            return _error(404, f'model "{name}" not found, try pulling it first')
        legacy = request.url.path == "/api/embeddings"
        raw = body.get("prompt") if legacy else body.get("input")
        texts = [raw] if isinstance(raw, str) else list(raw or [])
        if not all(isinstance(t, str) for t in texts):
            return _error(400, "invalid input type")
        vectors = await run_in_threadpool(model.embed, texts)
        if legacy:
            return JSONResponse({"embedding": vectors[0] if vectors else []})
        return JSONResponse(
            {
                "model": name,
                "embeddings": vectors,
                "total_duration": 1,
                "load_duration": 1,
                "prompt_eval_count": sum(len(t.split()) for t in texts),
            }
        )

    async def recorded(request: Request) -> Response:
        return JSONResponse(model.requests)

    return Starlette(
        routes=[
            Route("/", root, methods=["GET", "HEAD"]),
            Route("/api/version", version, methods=["GET"]),
            Route("/api/tags", tags, methods=["GET"]),
            Route("/api/ps", ps, methods=["GET"]),
            Route("/api/show", show, methods=["POST"]),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/embed", embed, methods=["POST"]),
            Route("/api/embeddings", embed, methods=["POST"]),
            Route("/_stub/requests", recorded, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    """Serve one GGUF model under Ollama's API until terminated."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, type=Path, help="GGUF file to serve")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--name", default="smollm2:135m", help="model name clients use")
    parser.add_argument("--n-ctx", type=int, default=4096, help="llama.cpp context size actually allocated")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    model = StubModel(args.model, args.name, args.n_ctx, args.threads)
    uvicorn.run(build_app(model), host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
