"""``conclave serve`` and ``conclave mcp`` on a scripted model, for the tests that need many or slow answers (a
full queue, a client that leaves mid-stream, a cancelled call): the real server code on loopback or stdio, with
only the model replaced.

    python -m tests.servers.scripted_team serve PORT MARKER [QUEUE]
    python -m tests.servers.scripted_team mcp MARKER

The model answers every question with TOKENS words, one every DELAY seconds, and records in MARKER (JSON) how many
it produced and whether it reached the end, so a test can see that a generation stopped when its client went away.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from autogen_core.models import CreateResult, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

from conclave.settings import load_settings
from tests.unit.test_team import JSON_INFO

TOKENS = 200
DELAY = 0.02


class SlowModel(ReplayChatCompletionClient):
    """Streams ``TOKENS`` words slowly; MARKER says how far each generation got."""

    def __init__(self, marker: Path):
        super().__init__(["unused"], model_info=JSON_INFO)
        self.marker = marker

    async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> AsyncGenerator[str | CreateResult, None]:
        produced = 0
        finished = False
        try:
            for i in range(TOKENS):
                await asyncio.sleep(DELAY)
                produced += 1
                yield f"word{i} "
            finished = True
            usage = RequestUsage(prompt_tokens=10, completion_tokens=TOKENS)
            yield CreateResult(finish_reason="stop", content="", usage=usage, cached=False)
        finally:
            self.marker.write_text(json.dumps({"produced": produced, "finished": finished}))


def main() -> None:
    from conclave.server.service import Team

    mode = sys.argv[1]
    settings = load_settings(method="direct")
    if mode == "serve":
        from conclave.server.openai_api import run_server

        port, marker = int(sys.argv[2]), Path(sys.argv[3])
        queue = int(sys.argv[4]) if len(sys.argv) > 4 else 8
        model = SlowModel(marker)
        team = Team(settings, queue=queue, clients={r: model for r in ("planner", "reasoner", "critic", "writer")})
        run_server(team, host="127.0.0.1", port=port)
    else:
        from conclave.server.mcp_server import run_stdio

        model = SlowModel(Path(sys.argv[2]))
        team = Team(settings, clients={r: model for r in ("planner", "reasoner", "critic", "writer")})
        run_stdio(team)


if __name__ == "__main__":
    main()
