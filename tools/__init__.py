"""What Conclave's agents can do: LangChain tools (``registry``), the Chroma knowledge store (``store``), ingestion
(``ingest``), the calculators, MCP tools (``mcp``) and the demo notes. Import the module you need; importing this
package loads nothing heavy."""
