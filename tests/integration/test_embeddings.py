"""Embedders: the bundled local model, and the Ollama / OpenAI HTTP APIs against small servers on loopback."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from conclave.embeddings import (
    LocalEmbedder,
    OllamaEmbedder,
    OpenAIEmbedder,
    get_embedder,
    local_model_path,
    spec_for_embedder_name,
)
from conclave.errors import AuthenticationFailed, BackendError, BackendUnavailable, ConfigError, ModelNotFound
from conclave.settings import load_settings
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration


class EmbedServer:
    """Speaks /api/embed (Ollama) and /v1/embeddings (OpenAI) with 3-dimensional vectors; records requests."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.status = 200
        self.body: Any = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, payload, dict(self.headers)))
                if server.status != 200:
                    body = server.body or {"error": f"model '{payload.get('model')}' not found"}
                    self._send(server.status, body)
                    return
                texts = payload["input"]
                vectors = [[float(len(t)), float(i), 1.0] for i, t in enumerate(texts)]
                if self.path == "/api/embed":
                    self._send(200, {"model": payload["model"], "embeddings": vectors})
                elif self.path == "/v1/embeddings":
                    # Out of order on purpose: clients must sort by index.
                    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
                    self._send(200, {"object": "list", "data": list(reversed(data))})
                else:
                    self._send(404, {"error": "no such route"})

            def _send(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[EmbedServer]:
    srv = EmbedServer()
    yield srv
    srv.close()


def test_local_embedder_is_offline_normalised_and_cached() -> None:
    assert (local_model_path() / "model.safetensors").is_file()
    first, second = LocalEmbedder(), get_embedder("local", load_settings())
    assert first.name == second.name == "local:all-MiniLM-L6-v2"
    assert first.dimension == 384
    vectors = first.embed_documents(["Adam combines momentum and RMSprop.", "Bread needs yeast.", "Adam optimiser"])
    assert len(vectors) == 3 and all(len(v) == 384 for v in vectors)
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4) for v in vectors)
    query = second.embed_query("Adam optimiser")
    assert second.model is first.model  # one model per process

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(query, vectors[0]) > cos(query, vectors[1]) + 0.2
    assert first.embed_documents([]) == []


def test_ollama_embedder_batches(server: EmbedServer) -> None:
    embedder = OllamaEmbedder("nomic-embed-text", server.url)
    embedder.batch_size = 4
    vectors = embedder.embed_documents([f"text {i}" for i in range(10)])
    assert len(vectors) == 10 and embedder.dimension == 3
    assert [len(p["input"]) for _, p, _ in server.requests] == [4, 4, 2]
    assert {path for path, _, _ in server.requests} == {"/api/embed"}
    assert server.requests[0][1]["model"] == "nomic-embed-text"
    assert embedder.name == "ollama/nomic-embed-text"


def test_openai_embedder_sorts_by_index_and_sends_key(server: EmbedServer) -> None:
    settings = load_settings(openai_base_url=f"{server.url}/v1", openai_api_key="sk-test-123456789")
    embedder = get_embedder("openai/text-embedding-3-small", settings)
    vectors = embedder.embed_documents(["a", "bb", "ccc"])
    assert [v[1] for v in vectors] == [0.0, 1.0, 2.0]  # in input order although the server reversed them
    path, payload, headers = server.requests[0]
    assert path == "/v1/embeddings" and payload["model"] == "text-embedding-3-small"
    assert headers["Authorization"] == "Bearer sk-test-123456789"


def test_http_errors_map_to_conclave_errors(server: EmbedServer) -> None:
    server.status = 404
    with pytest.raises(ModelNotFound) as info:
        OllamaEmbedder("missing-model", server.url).embed_query("x")
    assert info.value.hint == "ollama pull missing-model"
    server.status, server.body = 401, {"error": "bad key"}
    with pytest.raises(AuthenticationFailed):
        OpenAIEmbedder("m", f"{server.url}/v1", "sk-wrong").embed_query("x")
    server.status, server.body = 500, {"error": "boom"}
    with pytest.raises(BackendError, match="500"):
        OllamaEmbedder("m", server.url).embed_query("x")


def test_unreachable_servers_and_bad_specs() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BackendUnavailable) as info:
        OllamaEmbedder("m", closed, max_retries=0).embed_query("x")
    assert closed in info.value.message and "ollama serve" in (info.value.hint or "")
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        OpenAIEmbedder("m", closed, None, max_retries=0).embed_query("x")
    with pytest.raises(AuthenticationFailed, match="needs an API key"):
        get_embedder("openai/text-embedding-3-small", load_settings())
    for bad in ("bert", "ollama/", "huggingface/x"):
        with pytest.raises(ConfigError, match="unknown embedder"):
            get_embedder(bad, load_settings())
    assert spec_for_embedder_name("local:all-MiniLM-L6-v2") == "local"
    assert spec_for_embedder_name("ollama/nomic-embed-text") == "ollama/nomic-embed-text"
