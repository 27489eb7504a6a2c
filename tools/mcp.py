"""Tools from Model Context Protocol servers, as LangChain tools beside the built-in ones.

``settings.mcp_servers`` names each server: a stdio command (``command = ["python", "server.py"]``) or a
streamable-HTTP ``url``. Their tools join :func:`tools.toolset.build_tools` as ``SERVER_TOOL`` (an identifier, so
a program-form chain can call it), with an argument model built from the tool's JSON schema, so chains, react,
``conclave tool`` and ``conclave tools`` treat them like the others.

Safety: a server's tool runs only if the server marks it read-only (``readOnlyHint``) or the server's ``allow`` list
names it: documents a model reads can steer it, so a tool that changes something is the user's explicit choice.
Servers start programs, so only the user's own settings may name them (settings.py refuses them from a ``.env``,
allowed or not, and from the settings.toml of a home a ``.env`` chose; workflow files cannot set them). A server
from settings.toml starts in that file's folder (``McpServer.cwd``), so a relative ``server.py`` is the one beside
the settings file, never one in the folder Conclave runs in.

Each call opens its own session (a stdio server is started for the call and stopped after it): a server that crashes
fails that call, with the end of its stderr in the error, and the next call starts afresh. The tool list is read
once per process and server.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, ConfigDict, Field, create_model

from conclave.errors import ConfigError

if TYPE_CHECKING:
    from conclave.settings import McpServer, Settings

__all__ = ["McpTool", "list_server", "mcp_tools", "tool_name"]

T = TypeVar("T")
_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
}
_STDERR_TAIL = 400


@dataclass(frozen=True)
class McpTool:
    """One tool a server offers, and whether Conclave may call it."""

    server: str
    name: str
    description: str
    input_schema: dict[str, Any]
    read_only: bool
    allowed: bool

    @property
    def conclave_name(self) -> str:
        return tool_name(self.server, self.name)


def tool_name(server: str, tool: str) -> str:
    """``SERVER_TOOL`` as an identifier (what a chain writes)."""
    name = re.sub(r"\W+", "_", f"{server}_{tool}").strip("_")
    return name if name and not name[0].isdigit() else f"mcp_{name}"


_LISTED: dict[tuple[str, str], list[McpTool]] = {}
_LOCK = threading.Lock()


def run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to its end from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())  # type: ignore[arg-type]
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(make())  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="conclave-mcp", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def _session(server: McpServer, name: str, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open a session on ``server``, run ``work(session)``, close it; errors name the server (and, for a stdio
    server, end with what it wrote to stderr)."""
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as errlog:
        try:
            async with asyncio.timeout(server.timeout):
                if server.url:
                    from mcp import Client

                    async with Client(server.url) as client:
                        return await work(client.session)
                params = StdioServerParameters(
                    command=server.command[0],
                    args=list(server.command[1:]),
                    env=dict(server.env) or None,
                    cwd=server.cwd,
                )
                async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
                    await session.initialize()
                    return await work(session)
        except ToolException:
            raise
        except TimeoutError:
            raise ToolException(f"MCP server {name!r} did not answer within {server.timeout:g} s") from None
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            cause = _innermost(exc)
            if isinstance(cause, ToolException):
                raise cause from None  # the tool's own error, already worded (it left the server running)
            errlog.seek(0)
            tail = " ".join(errlog.read()[-_STDERR_TAIL:].split())
            raise ToolException(
                f"MCP server {name!r} failed: {type(cause).__name__}: {cause}"
                + (f" (its stderr: …{tail})" if tail else "")
            ) from None


def _innermost(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _list(server: McpServer, name: str) -> list[McpTool]:
    async def work(session: Any) -> list[McpTool]:
        listed = await session.list_tools()
        out = []
        for tool in listed.tools:
            notes = tool.annotations
            read_only = bool(notes is not None and notes.read_only_hint)
            out.append(
                McpTool(
                    name,
                    tool.name,
                    (tool.description or tool.name).strip(),
                    dict(tool.input_schema or {"type": "object", "properties": {}}),
                    read_only,
                    read_only or tool.name in server.allow or tool_name(name, tool.name) in server.allow,
                )
            )
        return out

    return await _session(server, name, work)


def list_server(settings: Settings, name: str) -> list[McpTool]:
    """The tools of one configured server (read once per process and configuration)."""
    server = settings.mcp_servers[name]
    key = (name, server.model_dump_json())
    with _LOCK:
        if key in _LISTED:
            return _LISTED[key]
    try:
        tools = run_sync(lambda: _list(server, name))
    except ToolException as exc:
        raise ConfigError(
            f"cannot list the tools of {exc}",
            hint=f"check mcp_servers.{name} in settings.toml "
            "(`conclave config show`), or run the server's command by hand",
        ) from None
    with _LOCK:
        _LISTED[key] = tools
    return tools


def _args_model(tool: McpTool) -> type[BaseModel]:
    """A pydantic model for the tool's JSON-schema arguments (what validation and prompts read)."""
    props = tool.input_schema.get("properties") or {}
    required = set(tool.input_schema.get("required") or [])
    fields: dict[str, Any] = {}
    for arg, spec in props.items():
        if not str(arg).isidentifier():
            continue
        kind = _TYPES.get(str(spec.get("type")) if isinstance(spec, dict) else "", Any)
        info = Field(... if arg in required else None, description=str(spec.get("description", "")) or None)
        fields[arg] = (kind if arg in required else kind | None, info)
    return create_model(f"{tool.conclave_name}_args", __config__=ConfigDict(extra="forbid"), **fields)


def _text(result: Any) -> str:
    parts = [getattr(block, "text", None) for block in result.content or []]
    text = "\n".join(p for p in parts if p)
    if not text and result.structured_content is not None:
        import json

        text = json.dumps(result.structured_content, ensure_ascii=False)
    return text


def as_langchain(settings: Settings, tool: McpTool) -> BaseTool:
    server = settings.mcp_servers[tool.server]

    async def call(**arguments: Any) -> str:
        clean = {k: v for k, v in arguments.items() if v is not None}

        async def work(session: Any) -> str:
            result = await session.call_tool(tool.name, clean)
            text = _text(result)
            if result.is_error:
                raise ToolException(f"{tool.conclave_name}: {text or 'the tool reported an error'}")
            return text

        return await _session(server, tool.server, work)

    def call_sync(**arguments: Any) -> str:
        return run_sync(lambda: call(**arguments))

    return StructuredTool.from_function(
        func=call_sync,
        coroutine=call,
        name=tool.conclave_name,
        args_schema=_args_model(tool),
        description=f"{tool.description} (MCP server {tool.server})",
        handle_tool_error=False,
    )


def hidden_tools(settings: Settings) -> list[McpTool]:
    """The tools of every configured server that no run may call: not marked read-only, not named by ``allow``."""
    return [tool for name in settings.mcp_servers for tool in list_server(settings, name) if not tool.allowed]


def why_hidden(settings: Settings, tool: McpTool) -> str:
    """Why a hidden tool is hidden and the exact setting that allows it (the server's ``allow`` list, grown by it)."""
    allow = [*settings.mcp_servers[tool.server].allow, tool.name]
    return (
        f"hidden: not marked read-only by MCP server {tool.server!r}, and not in its allow list; to let runs call "
        f"it, set in settings.toml: [mcp_servers.{tool.server}] allow = {json.dumps(allow)}"
    )


def mcp_tools(settings: Settings) -> dict[str, BaseTool]:
    """The allowed tools of every configured server, keyed by their Conclave names."""
    out: dict[str, BaseTool] = {}
    for name in settings.mcp_servers:
        for tool in list_server(settings, name):
            if tool.allowed:
                out[tool.conclave_name] = as_langchain(settings, tool)
    return out
