"""The batch runner for rule actions (``HandlerRegistry.run_batch``, what ``handle_many`` and
``run_due`` hand a batch to) prepares each rule action once per batch: the handler and the
params of every later run of the same ``Action`` object are the first run's. Held to running
each action on its own (``HandlerRegistry.run``) on random batches: the same notes and errors,
the same params, the same notifications and activities; a params model that is not frozen is
parsed again for every run (each run its own value), a rule action changed under the same
rule id and index is prepared again."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from leadflow import Action, FlowSettings, HandlerRegistry
from leadflow.runtime.context import ActionContext
from leadflow.testing.contracts import make_scheduled_action

from .helpers import T0
from .service_support import build_flow, notifier_of


class Loose(BaseModel):
    """A params model that is not frozen: a handler may change its value."""

    text: str


def _documents() -> list[dict[str, Any]]:
    return [
        {"actionType": "create_activity", "subject": "Call", "assignTo": "alice"},
        {"actionType": "create_activity", "subject": "Call", "assignTo": "alice"},  # equal
        {"actionType": "create_activity", "subject": "Plan", "assignTo": "least_loaded"},
        {"actionType": "send_notification", "template": "t"},
        {"actionType": "send_notification", "template": "t", "assignTo": "least_loaded"},
        {"actionType": "loose", "params": {"text": "x"}},
        {"actionType": "loose", "params": {"text": "y"}},
        {"actionType": "bare"},
        {"actionType": "quiet"},
        {"actionType": "ghost"},
    ]


def _registry(seen: list[Any]) -> HandlerRegistry:
    def loose(ctx: ActionContext[Loose]) -> str:
        seen.append(ctx.params)
        if ctx.params.text == "y":
            raise RuntimeError("y fails")
        return f"loose {ctx.params.text}"

    def bare(ctx: ActionContext[None]) -> str:
        return f"bare {ctx.params}"

    registry = HandlerRegistry.default()
    registry.register("loose", loose, params=Loose)
    registry.register("bare", bare)
    registry.register("quiet", bare)
    registry.hold("quiet")
    return registry


def _outcome(value: Any) -> Any:
    return (type(value).__name__, str(value)) if isinstance(value, Exception) else value


SLOTS = [("r1", 0), ("r1", 1), ("r2", 0)]

batches = st.lists(
    st.tuples(
        st.integers(0, len(_documents()) - 1),
        st.integers(0, len(SLOTS) - 1),
        st.integers(1, 4),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(batches)
def test_run_batch_gives_what_run_gives_one_by_one(batch: list[tuple[int, int, int]]) -> None:
    actions = [Action.model_validate(document) for document in _documents()]
    scheduled = []
    for n, (which, slot, opportunity) in enumerate(batch):
        rule_id, index = SLOTS[slot]
        stored = make_scheduled_action(
            f"k{n}",
            rule_id=rule_id,
            action_index=index,
            action=actions[which],
            opportunity_id=f"opp-{opportunity}",
            state="claimed",
            lease_owner="w1",
            lease_expires_at=T0,
        )
        assert stored.action is actions[which]  # the rule's object, as the planner hands it
        scheduled.append(stored)
    answers = []
    for batched in (True, False):
        seen: list[Any] = []
        registry = _registry(seen)
        flow = build_flow(rules=[], handlers=registry, settings=FlowSettings(worker_id="w1"))
        contexts = [flow.executor.context(action, T0) for action in scheduled]
        if batched:
            outcomes = list(registry.run_batch(contexts))
        else:
            outcomes = []
            for ctx in contexts:
                try:
                    outcomes.append(registry.run(ctx))
                except Exception as exc:
                    outcomes.append(exc)
        # Each run of a params model that is not frozen has its own value.
        assert len({id(params) for params in seen}) == len(seen)
        activities = sorted(
            (a.activity_id, a.assigned_to, a.subject)
            for n in range(1, 5)
            for a in flow.storage.activities.for_opportunity(f"opp-{n}")
        )
        sent = [(n.key, n.recipients) for n in notifier_of(flow).sent]
        answers.append(
            (
                [_outcome(o) for o in outcomes],
                [ctx.params for ctx in contexts],
                [params.text for params in seen],
                activities,
                sent,
            )
        )
    assert answers[0] == answers[1]
