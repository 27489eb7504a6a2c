"""``conclave mcp`` (issue 28, item 2) with the ``mcp`` client library: a real ``conclave mcp`` spawned over stdio
and one over streamable HTTP. The stdio server answers ``ask`` on the real embedded model (SmolLM2, ``rag`` over the
demo notes); the cancelled call runs the same server code on a slow scripted model (tests/servers/scripted_team.py).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.fixtures.servers import REPO_ROOT, free_port, start_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _conclave() -> str:
    return str(Path(sys.executable).parent / "conclave")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONCLAVE_")}
    env.update(
        CONCLAVE_HOME=str(home),
        CONCLAVE_EMBEDDED_THREADS="1",
        CONCLAVE_MAX_TOKENS="48",
        CONCLAVE_OLLAMA_HOST="http://127.0.0.1:9",
        PYTHONPATH=str(REPO_ROOT),
    )
    return env


@asynccontextmanager
async def _stdio(args: list[str], home: Path, command: str | None = None) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=command or _conclave(), args=args, env=_env(home), cwd=str(REPO_ROOT))
    with (home / "stderr.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            yield session


def _data(result: Any) -> Any:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content) if isinstance(content, dict) and set(content) == {"result"} else content
    return json.loads(result.content[0].text)


def _error(result: Any) -> str:
    assert result.is_error, result
    return " ".join(getattr(block, "text", "") for block in result.content)


async def test_stdio_tools_listed_and_called_ingest_absent(conclave_home: Path) -> None:
    async with _stdio(["mcp", "--model", "embedded:smollm2"], conclave_home) as session:
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert names == {"ask", "search", "list_collections"}, "no ingest without --allow-ingest"

        collections = _data(await session.call_tool("list_collections", {}))
        assert collections[0]["name"] == "demo" and collections[0]["chunks"] > 0 and collections[0]["default"]

        passages = _data(await session.call_tool("search", {"query": "Adam optimiser", "k": 2}))
        assert len(passages) == 2 and any("optimis" in p["source"] for p in passages)

        # a bad argument: the SDK's validation, one clear error, and the session goes on
        message = _error(await session.call_tool("search", {"query": "Adam", "k": "many"}))
        assert "k" in message
        message = _error(await session.call_tool("search", {"query": "Adam", "collection": "private"}))
        assert "not served here" in message
        assert _error(await session.call_tool("ingest", {"path": "/etc/passwd"}))

        answer = _data(
            await session.call_tool("ask", {"question": "What does the Adam optimiser combine?", "method": "rag"})
        )
        assert answer["ok"] is True and answer["answer"].strip() and answer["method"] == "rag"


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``conclave mcp --http --allow-ingest DOCS --collection notes``; yields (URL, DOCS)."""
    home = tmp_path / "home"
    home.mkdir()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kestrel.md").write_text(
        "# Kestrel\n\nThe Kestrel release shipped on 14 March with the new ingest queue.\n"
    )
    (tmp_path / "secret.md").write_text("# Secret\n\nThe vault code is 4417.\n")
    port = free_port()
    cmd = [_conclave(), "mcp", "--http", "--port", str(port), "--allow-ingest", str(docs), "--collection", "notes"]
    server = start_server(cmd, f"http://127.0.0.1:{port}/mcp", tmp_path / "mcp.log", 120, _env(home))
    try:
        yield f"http://127.0.0.1:{port}/mcp", docs
    finally:
        server.stop()


async def test_http_ingest_only_under_its_folder(http_server: tuple[str, Path]) -> None:
    from mcp import Client

    url, docs = http_server
    async with Client(url) as client:
        session = client.session
        names = {tool.name for tool in (await session.list_tools()).tools}
        assert names == {"ask", "search", "list_collections", "ingest"}

        report = _data(await session.call_tool("ingest", {"path": "kestrel.md"}))
        assert report["collection"] == "notes" and report["files_ingested"] == 1 and report["chunks_added"] >= 1

        # outside the folder: by a relative path, by an absolute one, through a link
        assert "outside" in _error(await session.call_tool("ingest", {"path": "../secret.md"}))
        assert "outside" in _error(await session.call_tool("ingest", {"path": str(docs.parent / "secret.md")}))
        (docs / "link.md").symlink_to(docs.parent / "secret.md")
        assert "outside" in _error(await session.call_tool("ingest", {"path": "link.md"}))
        assert "not served here" in _error(await session.call_tool("ingest", {"path": ".", "collection": "other"}))

        passages = _data(await session.call_tool("search", {"query": "When did Kestrel ship?", "k": 3}))
        assert passages and all("vault" not in p["text"] for p in passages)
        assert "14 March" in passages[0]["text"]


def _raw_call_never_read(url: str, session_id: str, index: int) -> socket.socket:
    """A client that sends a tools/call on a connection of its own and never reads the reply."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 100 + index,
            "method": "tools/call",
            "params": {"name": "search", "arguments": {"query": f"ingest queue {index}", "k": 50}},
        }
    ).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nmcp-session-id: {session_id}\r\n"
        f"mcp-protocol-version: 2025-06-18\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(head + body)
    return sock


async def test_clients_that_never_read_their_replies_hold_up_no_one(http_server: tuple[str, Path]) -> None:
    import httpx
    from mcp import Client

    url, _ = http_server
    async with Client(url) as client:
        _data(await client.session.call_tool("ingest", {"path": "kestrel.md"}))
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "mute", "version": "0"}},
    }
    reply = httpx.post(url, json=init, headers=headers, timeout=30)
    session_id = reply.headers["mcp-session-id"]
    httpx.post(
        url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers={**headers, "mcp-session-id": session_id, "mcp-protocol-version": "2025-06-18"},
        timeout=30,
    )
    mute = [_raw_call_never_read(url, session_id, i) for i in range(20)]
    try:
        started = time.monotonic()
        with anyio.fail_after(60):
            async with Client(url) as client:
                collections = _data(await client.session.call_tool("list_collections", {}))
                assert collections[0]["name"] == "notes"
                passages = _data(await client.session.call_tool("search", {"query": "When did Kestrel ship?"}))
                assert "14 March" in passages[0]["text"]
        assert time.monotonic() - started < 60
    finally:
        for sock in mute:
            sock.close()


async def test_a_cancelled_call_stops_the_run_and_the_session_goes_on(tmp_path: Path) -> None:
    marker = tmp_path / "marker.json"
    home = tmp_path / "home"
    home.mkdir()
    args = ["-m", "tests.servers.scripted_team", "mcp", str(marker)]
    async with _stdio(args, home, command=sys.executable) as session:
        started = time.monotonic()
        with anyio.move_on_after(1.0) as scope:
            await session.call_tool("ask", {"question": "Write two hundred words."})
        assert scope.cancelled_caught, "the call was still running when it was cancelled"
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            await anyio.sleep(0.05)
        report = json.loads(marker.read_text())
        assert report["finished"] is False and report["produced"] < 150, report
        assert time.monotonic() - started < 4, "the generation stopped soon after the cancel (200 words take 4 s)"
        # the same session still answers
        marker.unlink()
        result = await session.call_tool("list_collections", {})
        assert not result.is_error
