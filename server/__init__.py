"""The team behind other tools' protocols: ``conclave serve`` (an OpenAI-compatible API, ``openai_api.py``) and
``conclave mcp`` (an MCP server, ``mcp_server.py``). Both answer through one :class:`~conclave.server.service.Team`:
the same question pipeline as ``ask`` (``workflows/runner.py``), its models loaded once and shared by every request.
"""
