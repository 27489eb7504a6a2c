"""A loopback OpenAI-compatible chat endpoint for tests and benchmarks: it answers every chat completion with a fixed
text after a fixed delay (no model), streaming or not, and counts what it served.

    python tests/servers/openai_stub.py PORT [--delay SECONDS] [--answer TEXT]
or in-process: ``StubEndpoint(delay=1.0).start()``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubEndpoint:
    def __init__(self, delay: float = 0.0, answer: str = "Answer: 42", port: int = 0, model: str = "stub"):
        self.delay = delay
        self.model = model
        self.answer = answer
        self.served = 0
        self.requests: list[dict[str, object]] = []
        """The decoded body of every chat request, in order."""
        self.in_flight = 0
        self.peak = 0
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> StubEndpoint:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="openai-stub", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # /v1/models
                body = json.dumps({"object": "list", "data": [{"id": stub.model, "object": "model"}]}).encode()
                self._send(200, body, "application/json")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = json.loads(self.rfile.read(length) or b"{}")
                with stub._lock:
                    stub.requests.append(request)
                    stub.in_flight += 1
                    stub.peak = max(stub.peak, stub.in_flight)
                try:
                    time.sleep(stub.delay)
                    usage = {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}
                    if request.get("stream"):
                        self.send_response(200)
                        self.send_header("Content-Type", "text/event-stream")
                        self.end_headers()
                        for chunk in (stub.answer, None):
                            delta = {"content": chunk} if chunk else {}
                            event = {
                                "id": "c1",
                                "object": "chat.completion.chunk",
                                "created": 0,
                                "model": "stub",
                                "choices": [{"index": 0, "delta": delta, "finish_reason": None if chunk else "stop"}],
                            }
                            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        tail = {
                            "id": "c1",
                            "object": "chat.completion.chunk",
                            "created": 0,
                            "model": "stub",
                            "choices": [],
                            "usage": usage,
                        }
                        # Counted before the last bytes go out: a client that has its answer sees it counted.
                        with stub._lock:
                            stub.served += 1
                        self.wfile.write(f"data: {json.dumps(tail)}\n\ndata: [DONE]\n\n".encode())
                    else:
                        body = {
                            "id": "c1",
                            "object": "chat.completion",
                            "created": 0,
                            "model": "stub",
                            "choices": [
                                {
                                    "index": 0,
                                    "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": stub.answer},
                                }
                            ],
                            "usage": usage,
                        }
                        with stub._lock:
                            stub.served += 1
                        self._send(200, json.dumps(body).encode(), "application/json")
                finally:
                    with stub._lock:
                        stub.in_flight -= 1

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--answer", default="Answer: 42")
    args = parser.parse_args()
    endpoint = StubEndpoint(args.delay, args.answer, args.port)
    print(endpoint.base_url, flush=True)
    endpoint.httpd.serve_forever()
