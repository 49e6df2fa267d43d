"""Sequences checked at load (check_sequence / sequence_problems), linted (lint_sequences), their
JSON Schema and the ``leadflow sequences`` commands; the shipped example passes all of them."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
import pytest
from click.testing import CliRunner
from hypothesis import event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from leadflow import HandlerRegistry, InvalidInputError, LeadFlow, LeadflowError
from leadflow.lint import FieldSpec, lint_sequences
from leadflow.lint.schemas import PayloadSchemas
from leadflow.rules import (
    EventTypes,
    Vocabulary,
    WorkingCalendar,
    check_sequence,
    sequence_problems,
)
from leadflow.rules.defaults import EXAMPLE_SEQUENCE_EVENT_TYPES, example_sequence
from leadflow.runtime.sequence_schema import STEP_KINDS, sequence_schema
from leadflow.sequences import SequenceDefinition

from .suite import examples
from .test_model_limits import anything, condition_nodes, json_values, keys, mapping_with

VOCABULARY = Vocabulary.of(
    event_types=EXAMPLE_SEQUENCE_EVENT_TYPES, actions=HandlerRegistry.default()
)


def example() -> dict[str, Any]:
    return copy.deepcopy(example_sequence().to_document())


def definition(document: dict[str, Any]) -> SequenceDefinition:
    return SequenceDefinition.model_validate(document)


def where(document: dict[str, Any], vocabulary: Vocabulary = VOCABULARY) -> list[str]:
    return [p.location for p in sequence_problems(definition(document), vocabulary)]


# ---------------------------------------------------------------------------- the example


def test_the_example_loads_and_lints_clean() -> None:
    sequence = example_sequence()
    check_sequence(sequence, VOCABULARY)
    assert lint_sequences([sequence], vocabulary=VOCABULARY) == []
    assert [step.kind for step in sequence.steps] == [
        "action",
        "wait_for_event",
        "branch",
        "exit",
        "wait",
        "action",
        "wait_for_event",
        "action",
    ]
    assert {goal.name for goal in sequence.goals} == {"won", "lost"}
    flow = LeadFlow.in_memory(event_types=EXAMPLE_SEQUENCE_EVENT_TYPES)
    check_sequence(sequence, flow.vocabulary)


def test_the_example_needs_its_reply_event_registered() -> None:
    with pytest.raises(InvalidInputError) as caught:
        check_sequence(example_sequence(), Vocabulary.default())
    assert caught.value.field == "steps[6] (reply).eventType"
    assert str(caught.value).startswith(
        "sequence 'website-lead-sequence', steps[6] (reply).eventType: unknown event type "
        "'email.replied'"
    )


# ---------------------------------------------------------------------------- load checks


def test_every_problem_is_located_by_step_and_field() -> None:
    doc = example()
    doc["entry"]["eventType"] = "opportunity.craeted"
    doc["steps"][1]["conditions"][0]["operator"] = "equalz"
    doc["steps"][2]["cases"][0]["when"][0]["field"] = "outcome"
    doc["steps"][5]["action"].pop("template")
    doc["steps"][6]["eventType"] = "email.replyed"
    doc["steps"][7]["action"]["params"]["dueWithinHours"] = -1
    doc["goals"][1]["conditions"][0] = {"field": "newStatus", "operator": "in", "value": "lost"}
    doc["goals"][0]["eventType"] = "status_changd"
    problems = sequence_problems(definition(doc), VOCABULARY)
    assert [(p.location, p.code) for p in problems] == [
        ("entry.eventType", "unknown-event-type"),
        ("steps[1] (call-outcome).conditions[0].operator", "unknown-operator"),
        ("steps[2] (no-answer).cases[0].when[0].field", "bad-branch-field"),
        ("steps[5] (intro-email).action.template", "bad-params"),
        ("steps[6] (reply).eventType", "unknown-event-type"),
        ("steps[7] (second-call).action.params.dueWithinHours", "bad-params"),
        ("goals[0].eventType", "unknown-event-type"),
        ("goals[1].conditions[0].value", "bad-value"),
    ]
    assert "did you mean 'opportunity.created'?" in problems[0].problem
    assert "did you mean 'email.replied'?" in problems[4].problem
    assert "'entry.outcome'" in problems[2].hint
    with pytest.raises(InvalidInputError) as caught:
        check_sequence(definition(doc), VOCABULARY)
    assert caught.value.field == "entry.eventType"


def test_unknown_action_types_and_host_handlers() -> None:
    doc = example()
    doc["steps"][5]["action"] = {"actionType": "fax", "template": "x"}
    assert where(doc) == ["steps[5] (intro-email).action.actionType"]
    handlers = HandlerRegistry.default()
    handlers.register("fax", lambda ctx: "faxed")
    assert where(doc, VOCABULARY.replace(actions=handlers)) == []
    # a vocabulary that does not know its action types leaves them to the runtime
    assert where(doc, VOCABULARY.replace(actions=None)) == []


def test_operators_values_and_limits() -> None:
    doc = example()
    doc["goals"][0]["conditions"] = [
        {"any": [{"field": "newStatus", "operator": "between", "value": 3}]}
    ]
    assert where(doc) == ["goals[0].conditions[0].any[0].value"]
    deep: Any = {"field": "newStatus", "operator": "equals", "value": "won"}
    for _ in range(3):
        deep = {"all": [deep]}
    doc = example()
    doc["goals"][0]["conditions"] = [deep]
    shallow = VOCABULARY.replace(limits=dataclasses.replace(VOCABULARY.limits, condition_depth=2))
    [problem] = sequence_problems(definition(doc), shallow)
    assert problem.code == "bad-condition" and problem.location.startswith("goals[0].conditions")


def test_business_waits_need_a_calendar_that_can_plan_them() -> None:
    doc = example()
    doc["steps"].insert(
        0, {"id": "pause", "kind": "wait", "delay": {"amount": 4, "unit": "business_hours"}}
    )
    assert where(doc) == []
    assert where(doc, VOCABULARY.replace(calendar=None)) == [
        "steps[0] (pause).delay",
        "steps[2] (call-outcome).timeout",
        "steps[5] (next-morning).until.businessDays",
        "steps[7] (reply).timeout",
    ]

    # a calendar whose only working day is a holiday every year: no business day to be found
    class Closed(WorkingCalendar):
        def is_working_day(self, day: Any) -> bool:
            return False

    assert len(where(doc, VOCABULARY.replace(calendar=Closed()))) == 4


def test_the_model_refuses_structure_with_the_step_named() -> None:
    doc = example()
    doc["steps"][2]["otherwise"] = "nowhere"
    with pytest.raises(ValidationError) as caught:
        definition(doc)
    assert "steps[2] (no-answer).otherwise: no step has id 'nowhere'" in str(caught.value)


@pytest.mark.parametrize("kind", ["teleport", None, 7])
def test_an_unknown_step_kind_is_named_with_the_kinds_there_are(kind: Any) -> None:
    doc = example()
    doc["steps"][1] = {"id": "odd", "kind": kind} if kind is not None else {"id": "odd"}
    with pytest.raises(ValidationError) as caught:
        definition(doc)
    [error] = caught.value.errors()
    assert error["loc"] == ("steps", 1) and error["type"] == "step_kind"
    assert error["msg"] == "unknown step kind: expected one of " + ", ".join(STEP_KINDS)


# ---------------------------------------------------------------------------- arbitrary input

steps = st.one_of(
    mapping_with(
        {
            "id": st.sampled_from(["a", "b", "c", "Bad Id"]),
            "kind": st.sampled_from([*STEP_KINDS, "teleport"]),
            "action": mapping_with(
                {
                    "actionType": st.sampled_from(["send_email", "create_activity", "fly"]),
                    "template": st.text(max_size=4),
                    "subject": st.text(max_size=4),
                    "delay": st.one_of(st.integers(-1, 3), json_values),
                    "params": st.dictionaries(keys, json_values, max_size=2),
                }
            ),
            "delay": st.one_of(
                st.integers(-1, 10**6),
                st.fixed_dictionaries(
                    {
                        "amount": st.one_of(st.integers(-1, 5000), st.floats()),
                        "unit": st.sampled_from(["hours", "business_days", "business_hours"]),
                    }
                ),
            ),
            "until": mapping_with(
                {"at": st.sampled_from(["09:00", "24:00", "9"]), "nextDay": st.booleans()}
            ),
            "eventType": st.sampled_from(["activity.completed", "email.replied", "x.y", "Bad"]),
            "conditions": st.lists(condition_nodes, max_size=2),
            "timeout": st.one_of(st.integers(-1, 100), json_values),
            "then": st.sampled_from(["a", "b", "zz"]),
            "onTimeout": st.sampled_from(["a", "c"]),
            "cases": st.lists(
                mapping_with(
                    {
                        "when": st.lists(condition_nodes, min_size=1, max_size=2),
                        "goto": st.sampled_from(["a", "b", "c"]),
                    }
                ),
                max_size=2,
            ),
            "otherwise": st.sampled_from(["a", "c"]),
            "variants": st.lists(
                mapping_with(
                    {
                        "name": st.sampled_from(["A", "B", "-"]),
                        "weight": st.integers(-1, 3),
                        "goto": st.sampled_from(["a", "b"]),
                    }
                ),
                max_size=3,
            ),
            "target": st.sampled_from(["a", "b", "q"]),
        }
    ),
    anything,
)
sequence_documents = st.one_of(
    mapping_with(
        {
            "sequenceId": st.sampled_from(["s1", "$bad"]),
            "name": st.text(min_size=1, max_size=4),
            "entry": mapping_with(
                {
                    "eventType": st.sampled_from(["opportunity.created", "quote_sent", "x"]),
                    "conditions": st.lists(condition_nodes, max_size=2),
                }
            ),
            "steps": st.lists(steps, min_size=1, max_size=4),
            "goals": st.lists(
                mapping_with(
                    {
                        "name": st.text(max_size=3),
                        "eventType": st.sampled_from(["opportunity.status_changed", "a"]),
                        "conditions": st.lists(condition_nodes, max_size=2),
                    }
                ),
                max_size=2,
            ),
            "window": mapping_with(
                {"days": st.lists(st.sampled_from(["mon", "sun", "xx"])), "start": st.text()}
            ),
            "timezone": st.sampled_from(["Europe/Paris", "Mars/Olympus", ""]),
        }
    ),
    st.builds(lambda: example()),
)


@st.composite
def mutated_examples(draw: st.DrawFn) -> Any:
    """The example with a few of its parts replaced: most load, so the checks see them."""
    doc = example()
    names = st.sampled_from(
        ["activity.completed", "email.replied", "email.replyed", "quote_sent", "x.y"]
    )
    leaf = st.fixed_dictionaries(
        {
            "field": st.sampled_from(["outcome", "newStatus", "activityType", "leadsource"]),
            "operator": st.sampled_from(["equals", "in", "between", "exists", "equalz"]),
            "value": st.one_of(
                st.sampled_from(["won", "call", "no_answer", 3]),
                st.lists(st.sampled_from(["a", "won", 1]), max_size=3),
            ),
        }
    )
    plain = st.recursive(
        leaf,
        lambda inner: st.one_of(
            st.fixed_dictionaries({"all": st.lists(inner, max_size=2)}),
            st.fixed_dictionaries({"any": st.lists(inner, max_size=2)}),
            st.fixed_dictionaries({"not": inner}),
        ),
        max_leaves=4,
    )
    conditions = st.lists(st.one_of(plain, condition_nodes), max_size=2)
    for _ in range(draw(st.integers(1, 4))):
        part = draw(st.sampled_from(["entry", "goal", "wait", "branch", "action", "delay"]))
        if part == "entry":
            doc["entry"] = {"eventType": draw(names), "conditions": draw(conditions)}
        elif part == "goal":
            goal = draw(st.sampled_from(doc["goals"]))
            goal.update(eventType=draw(names), conditions=draw(conditions))
        elif part == "wait":
            step = doc["steps"][draw(st.sampled_from([1, 6]))]
            step.update(eventType=draw(names), conditions=draw(conditions))
        elif part == "branch":
            fields = st.sampled_from(
                ["event.outcome", "entry.leadSource", "outcome", "opportunity"]
            )
            when = [
                {**leaf, "field": draw(fields)} if "field" in leaf else leaf
                for leaf in draw(st.lists(plain, min_size=1, max_size=2))
            ]
            doc["steps"][2]["cases"][0]["when"] = when
        elif part == "action":
            step = doc["steps"][draw(st.sampled_from([0, 5, 7]))]
            step["action"] = {
                "actionType": draw(st.sampled_from(["send_email", "create_activity", "fax"])),
                **draw(
                    st.dictionaries(st.sampled_from(["template", "subject"]), st.text(max_size=3))
                ),
                "params": draw(st.dictionaries(keys, json_values, max_size=2)),
            }
        else:
            unit = draw(st.sampled_from(["hours", "business_hours", "business_days"]))
            doc["steps"][6]["timeout"] = {"amount": draw(st.integers(0, 4000)), "unit": unit}
    return doc


@settings(max_examples=examples(300), deadline=None)
@given(st.one_of(sequence_documents, mutated_examples(), mutated_examples()))
def test_arbitrary_documents_raise_only_documented_errors(document: Any) -> None:
    try:
        loaded = SequenceDefinition.model_validate(document)
    except ValidationError:
        event("refused by the model")
        return
    problems = sequence_problems(loaded, VOCABULARY)
    event("loaded, with problems" if problems else "loaded, no problem")
    try:
        check_sequence(loaded, VOCABULARY)
    except InvalidInputError as exc:
        assert problems and exc.field == problems[0].location
        assert str(exc).startswith(f"sequence {loaded.sequence_id!r}, {exc.field}: ")
        assert re.match(r"^(entry|goals\[\d+\]|steps\[\d+\] \([a-z0-9_-]+\))\.", exc.field)
    else:
        assert problems == []
    try:
        lint_sequences([document, loaded], vocabulary=VOCABULARY)
    except LeadflowError as exc:  # pragma: no cover - lint reports, never raises
        pytest.fail(f"lint raised {exc!r}")


# ---------------------------------------------------------------------------- lint


def codes(documents: list[Any], **options: Any) -> list[tuple[str | None, str, str, str]]:
    options.setdefault("vocabulary", VOCABULARY)
    return [
        (f.rule_id, f.location, f.code, f.severity) for f in lint_sequences(documents, **options)
    ]


def test_lint_unreachable_steps() -> None:
    doc = example()
    doc["steps"][2]["otherwise"] = "next-morning"  # nothing goes to 'answered' any more
    assert codes([doc]) == [
        ("website-lead-sequence", "steps[3] (answered)", "unreachable-step", "warning")
    ]


def test_lint_goals_that_can_never_be_met() -> None:
    doc = example()
    doc["goals"][0]["conditions"].append(
        {"field": "newStatus", "operator": "equals", "value": "lost"}
    )
    assert codes([doc]) == [
        ("website-lead-sequence", "goals[0].conditions", "goal-never-met", "error")
    ]
    schemas = PayloadSchemas()
    schemas.register("lead.scored", {"band": FieldSpec("string", ("hot", "cold"))}, strict=True)
    doc = example()
    doc["goals"].append(
        {
            "name": "warm",
            "eventType": "lead.scored",
            "conditions": [{"field": "band", "operator": "equals", "value": "warm"}],
        }
    )
    vocabulary = VOCABULARY.replace(
        event_types=EventTypes([*EXAMPLE_SEQUENCE_EVENT_TYPES, "lead.scored"])
    )
    found = codes([doc], vocabulary=vocabulary, payload_schemas=schemas)
    assert ("website-lead-sequence", "goals[2].conditions", "goal-never-met", "error") in found
    assert (
        "website-lead-sequence",
        "goals[2].conditions[0].value",
        "unknown-value",
        "warning",
    ) in found


def test_lint_branch_fields_against_the_entry_payload() -> None:
    doc = example()
    doc["steps"][2]["cases"].append(
        {
            "when": [
                {"field": "entry.leadsource", "operator": "equals", "value": "website"},
                {"field": "opportunity.stage", "operator": "equals", "value": "x"},
            ],
            "goto": "second-call",
        }
    )
    found = lint_sequences([doc], vocabulary=VOCABULARY)
    assert [(f.location, f.code) for f in found] == [
        ("steps[2] (no-answer).cases[1].when[0].field", "unknown-field"),
        ("steps[2] (no-answer).cases[1].when[1].field", "unknown-field"),
    ]
    assert "did you mean 'entry.leadSource'?" in found[0].hint


def test_lint_a_goal_that_pre_empts_a_wait() -> None:
    doc = example()
    doc["goals"].append({"name": "any call", "eventType": "activity.completed"})
    assert codes([doc]) == [
        (
            "website-lead-sequence",
            "steps[1] (call-outcome).eventType",
            "goal-preempts-wait",
            "error",
        )
    ]
    doc["goals"][-1]["conditions"] = [
        {"field": "outcome", "operator": "equals", "value": "converted"}
    ]
    assert codes([doc]) == [
        (
            "website-lead-sequence",
            "steps[1] (call-outcome).eventType",
            "goal-overlaps-wait",
            "warning",
        )
    ]
    doc["goals"][-1]["conditions"] = [
        {"field": "activityType", "operator": "equals", "value": "email"}
    ]
    assert codes([doc]) == []  # exclusive: the goal never sees the call


def test_lint_dead_branches() -> None:
    doc = example()
    doc["steps"][2]["cases"][0]["when"].append(
        {"field": "event.outcome", "operator": "equals", "value": "successful"}
    )
    assert codes([doc]) == [
        ("website-lead-sequence", "steps[2] (no-answer).cases", "branch-never-taken", "error")
    ]
    doc = example()
    doc["steps"][2]["cases"].append(
        {"when": [{"field": "event.outcome", "operator": "in", "value": []}], "goto": "answered"}
    )
    assert codes([doc]) == [
        (
            "website-lead-sequence",
            "steps[2] (no-answer).cases[1].when",
            "case-never-holds",
            "warning",
        )
    ]


def test_lint_pointless_splits() -> None:
    doc = example()
    doc["steps"].insert(
        4,
        {
            "id": "ab",
            "kind": "split",
            "variants": [
                {"name": "A", "weight": 1, "goto": "next-morning"},
                {"name": "B", "weight": 1, "goto": "next-morning"},
            ],
        },
    )
    doc["steps"][2]["cases"][0]["goto"] = "ab"
    assert codes([doc]) == [
        ("website-lead-sequence", "steps[4] (ab).variants", "pointless-split", "warning")
    ]


def test_lint_two_sequences_messaging_one_contact_at_once() -> None:
    first = example()
    first["steps"].insert(
        0, {"id": "hello", "kind": "action", "action": {"actionType": "send_sms", "template": "hi"}}
    )
    second = {
        "sequenceId": "welcome",
        "name": "Welcome",
        "entry": {"eventType": "opportunity.created"},
        "steps": [
            {"id": "wait", "kind": "wait", "delay": {"amount": 5, "unit": "minutes"}},
            {
                "id": "mail",
                "kind": "action",
                "action": {"actionType": "send_email", "template": "welcome"},
            },
        ],
    }
    assert codes([first, second]) == [
        ("welcome", "steps[1] (mail).action", "messages-at-once", "warning")
    ]
    [finding] = lint_sequences([first, second], vocabulary=VOCABULARY)
    assert "'website-lead-sequence'" in finding.message and "steps[0] (hello)" in finding.message
    second["steps"][0]["delay"] = 2  # two hours apart: not at once
    assert codes([first, second]) == []
    second["steps"][0]["delay"] = {"amount": 5, "unit": "minutes"}
    second["entry"]["conditions"] = [
        {"field": "leadSource", "operator": "equals", "value": "phone"}
    ]
    assert codes([first, second]) == []  # never the same lead


def test_lint_documents_that_are_not_sequences_and_duplicate_ids() -> None:
    broken = example()
    broken["steps"][6].pop("timeout")
    found = codes([example(), broken, example(), {"steps": []}])
    assert found == [
        ("#4", "name", "invalid-sequence", "error"),
        ("#4", "steps", "invalid-sequence", "error"),
        ("website-lead-sequence", "sequenceId", "duplicate-id", "error"),
        ("website-lead-sequence", "steps[6] (reply).timeout", "invalid-sequence", "error"),
    ]


# ---------------------------------------------------------------------------- JSON Schema


def validator() -> Any:
    schema = sequence_schema(VOCABULARY)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_the_schema_accepts_the_example_as_shipped_and_as_stored() -> None:
    shipped = Path(__file__).resolve().parent.parent / "src/leadflow/data/example_sequence.json"
    check = validator()
    assert list(check.iter_errors(json.loads(shipped.read_text("utf-8")))) == []
    assert list(check.iter_errors(json.loads(json.dumps(example(), default=str)))) == []


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["steps"][0].update(kind="teleport"),
        lambda d: d["steps"][0].pop("kind"),
        lambda d: d["steps"][0]["action"].update(delay=3),
        lambda d: d["steps"][0]["action"].update(actionType="fly"),
        lambda d: d["steps"][5]["action"].pop("template"),
        lambda d: d["steps"][4]["until"].update(at="9am"),
        lambda d: d["steps"][4].update(delay=1),
        lambda d: d["steps"][6].pop("timeout"),
        lambda d: d["steps"][1]["conditions"][0].update(operator="equalz"),
        lambda d: d["goals"][0].update(eventType="status_changd"),
        lambda d: d.update(surprise=True),
        lambda d: d.update(steps=[]),
    ],
)
def test_the_schema_rejects_bad_documents(change: Any) -> None:
    doc = json.loads(json.dumps(example(), default=str))
    change(doc)
    assert list(validator().iter_errors(doc)), doc


def test_the_schema_names_every_field_of_the_models() -> None:
    from pydantic.alias_generators import to_camel

    schema = sequence_schema(VOCABULARY)
    fields = {to_camel(name) for name in SequenceDefinition.model_fields}
    assert set(schema["properties"]) == fields
    from leadflow import sequences as models

    for kind, model in [
        ("action", models.ActionStep),
        ("wait", models.WaitStep),
        ("wait_for_event", models.WaitForEventStep),
        ("branch", models.BranchStep),
        ("split", models.SplitStep),
        ("goto", models.GotoStep),
        ("exit", models.ExitStep),
    ]:
        names = {to_camel(name) for name in model.model_fields}
        assert set(schema["$defs"][f"step.{kind}"]["properties"]) == names, kind


# ---------------------------------------------------------------------------- CLI


def run(*args: str) -> Any:
    from leadflow.cli import cli

    return CliRunner().invoke(cli, ["sequences", *args])


def write(path: Path, data: Any) -> str:
    path.write_text(json.dumps(data, default=str), encoding="utf-8")
    return str(path)


def test_cli_validate(tmp_path: Path) -> None:
    good = write(tmp_path / "good.json", example())
    result = run("validate", good)
    assert result.exit_code == 1
    assert "$.steps[6] (reply).eventType: unknown event type 'email.replied'" in result.output
    assert "--event-type" in result.output
    result = run("validate", good, "--event-type", "email.replied")
    assert result.exit_code == 0, result.output
    assert result.output == f"{good}: 1 sequence(s), all valid\n"
    broken = example()
    broken["sequenceId"] = "broken"
    broken["steps"][1]["conditions"][0]["operator"] = "equalz"
    broken["steps"][5]["action"].pop("template")
    other = {**example(), "sequenceId": "other"}
    many = write(tmp_path / "many.json", [other, broken, {"name": "x"}])
    result = run("validate", good, many, "--event-type", "email.replied")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0] == f"{good}: 1 sequence(s), all valid"
    assert lines[1].startswith(
        f"{many}: sequence 'broken': [1].steps[1] (call-outcome).conditions[0].operator: "
        "unknown operator 'equalz'"
    )
    assert lines[2] == (
        f"{many}: sequence 'broken': [1].steps[5] (intro-email).action.template: Field required"
    )
    assert lines[3] == f"{many}: sequence #3: [2].steps: Field required"
    assert lines[-1].endswith("error: 2 of 4 sequence(s) in 2 files are invalid")
    twice = write(tmp_path / "twice.json", example())
    result = run("validate", good, twice, "--event-type", "email.replied")
    assert result.exit_code == 1 and "the same id as" in result.output


def test_cli_lint_and_schema(tmp_path: Path) -> None:
    good = write(tmp_path / "good.json", example())
    result = run("lint", good, "--event-type", "email.replied")
    assert result.exit_code == 0 and "0 error(s), 0 warning(s)" in result.output
    split = example()
    split["steps"].append(
        {
            "id": "ab",
            "kind": "split",
            "variants": [
                {"name": "A", "weight": 1, "goto": "answered"},
                {"name": "B", "weight": 1, "goto": "answered"},
            ],
        }
    )
    warned = write(tmp_path / "warned.json", split)
    result = run("lint", warned, "--event-type", "email.replied", "--json")
    assert result.exit_code == 0
    assert json.loads(result.output)["counts"] == {"error": 0, "warning": 1, "info": 0}
    assert run("lint", warned, "--event-type", "email.replied", "--strict").exit_code == 1
    assert run("lint", good).exit_code == 1  # email.replied unknown
    assert run("lint", str(tmp_path / "missing.json")).exit_code == 1
    result = run("schema", "--event-type", "email.replied")
    assert result.exit_code == 0
    assert "email.replied" in json.loads(result.output)["$defs"]["eventType"]["enum"]
