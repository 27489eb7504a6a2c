"""The planner: sub-questions, and which of them need knowledge or calculation (structured output)."""

from __future__ import annotations

from typing import Literal

from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient, LLMMessage, SystemMessage, UserMessage
from conclave.agents.base import RoleAgent, SubQuestion, TeamState, structured_reply
from conclave.agents.prompting import load_prompt
from pydantic import BaseModel, Field

from conclave.events import PlanMade


# No string length limits in these schemas: llama.cpp expands maxLength into nested grammar rules, which makes
# constrained decoding slow and, past its limits, fails to compile. Lengths are clipped after parsing instead.
class PlannedQuestion(BaseModel):
    question: str
    needs: Literal["knowledge", "calculation", "none"]
    query: str = ""


class Plan(BaseModel):
    subquestions: list[PlannedQuestion] = Field(min_length=1, max_length=3)


def fallback_plan(question: str, has_collection: bool) -> list[SubQuestion]:
    """When the model's plan is unusable: one sub-question, the question itself."""
    return [SubQuestion(question=question, needs="knowledge" if has_collection else "none", query=question)]


class Planner(RoleAgent):
    def __init__(self, state: TeamState, client: ChatCompletionClient):
        super().__init__("planner", "Splits the question into sub-questions and says what each needs.", state)
        self.client = client

    def needs_model(self) -> bool:
        """``coa.plan = auto``: a plan pays for itself when there is a conversation to resolve ("and its
        inventor?"). Otherwise the question goes to the reasoner as it is: the retriever searches it, and the chain
        writes its own lookups (a two-hop question is two ``search_knowledge`` steps), so a separate plan would cost a
        model call to say what the chain says again."""
        mode = self.state.settings.coa.plan
        return mode == "always" or (mode == "auto" and bool(self.state.history))

    async def act(self, cancellation_token: CancellationToken) -> str:
        state = self.state
        if no_plan_needed(state):
            state.no_plan = "no plan: an explanation is answered from its passages (coa.explain_from_passages)"
            state.subquestions = fallback_plan(state.question, True)
            await state.publish(
                PlanMade(subquestions=[vars(s) for s in state.subquestions], raw="", route=state.no_plan)
            )
            return state.no_plan
        if not self.needs_model():
            state.subquestions = fallback_plan(state.question, state.collection is not None)
            await state.publish(PlanMade(subquestions=[vars(s) for s in state.subquestions], raw=""))
            return "plan: the question as it is"
        user = f"Question: {state.question}"
        if state.history:
            last_q, last_a = state.history[-1]
            user = f"Earlier question: {last_q}\nEarlier answer: {last_a[:300]}\n\n" + user
        messages: list[LLMMessage] = [
            SystemMessage(content=load_prompt("planner")),
            UserMessage(content=user, source="user"),
        ]
        plan, raw = await structured_reply(
            state, "planner", self.client, messages, Plan, "plan", max_tokens=256, cancellation_token=cancellation_token
        )
        if plan is None:
            state.subquestions = fallback_plan(state.question, state.collection is not None)
        else:
            state.subquestions = [
                SubQuestion(p.question[:300], p.needs, (p.query or p.question)[:200]) for p in plan.subquestions
            ]
        await state.publish(PlanMade(subquestions=[vars(s) for s in state.subquestions], raw=raw))
        return "plan: " + "; ".join(f"{s.question} ({s.needs})" for s in state.subquestions)


def no_plan_needed(state: TeamState) -> bool:
    """An explanation asked of a collection, with nothing to compute and no conversation to resolve: a chain would
    only write the lookups the retriever makes anyway (``coa.explain_from_passages``)."""
    from conclave.agents.reasoner import is_explanation, needs_arithmetic

    return (
        state.settings.coa.explain_from_passages
        and state.collection is not None
        and not state.history
        and is_explanation(state.question)
        and not needs_arithmetic(state.question)
    )


def build_planner(state: TeamState, client: ChatCompletionClient) -> Planner:
    """The planner agent for one question."""
    return Planner(state, client)
