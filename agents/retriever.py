"""The retriever: runs the knowledge search for each sub-question that needs it; it never answers.

It needs no model call: the planner already wrote the queries, and the original question is searched
too, so a weak plan cannot starve the reasoner of evidence.
"""

from __future__ import annotations

from autogen_core import CancellationToken
from conclave.agents.base import RoleAgent, TeamState
from conclave.tools.toolset import source_filter

from conclave.events import Passage, Retrieved


class Retriever(RoleAgent):
    def __init__(self, state: TeamState, store: object | None):
        super().__init__("retriever", "Searches the knowledge collection for each sub-question.", state)
        self.store = store

    def queries(self) -> list[str]:
        state = self.state
        wanted = [s.query or s.question for s in state.subquestions if s.needs == "knowledge"]
        if not wanted and any(s.needs == "none" for s in state.subquestions):
            wanted = [state.question]
        if wanted and state.question not in wanted:
            wanted.append(state.question)
        seen: set[str] = set()
        return [q for q in wanted if not (q.lower() in seen or seen.add(q.lower()))]  # type: ignore[func-returns-value]

    async def act(self, cancellation_token: CancellationToken) -> str:
        state = self.state
        if self.store is None or state.collection is None:
            return "retrieval: no collection"
        by_id: dict[str, Passage] = {}
        for query in self.queries():
            # The filter only when a source scopes the run: a store without one keeps working as before.
            scope = {"where": source_filter(state.source)} if state.source else {}
            found = await self.store.search(  # type: ignore[attr-defined]
                query, k=state.settings.top_k, collection=state.collection, **scope
            )
            await state.publish(Retrieved(query=query, passages=list(found)))
            for passage in found:
                if passage.id not in by_id or by_id[passage.id].score < passage.score:
                    by_id[passage.id] = passage
        state.passages = sorted(by_id.values(), key=lambda p: p.score, reverse=True)[: max(state.settings.top_k, 4)]
        return f"retrieval: {len(state.passages)} passages"


def build_retriever(state: TeamState, store: object | None) -> Retriever:
    """The retriever agent for one question."""
    return Retriever(state, store)
