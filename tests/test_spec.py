"""RewardSpec: validation, frame windows, the schema a model reads, errors a model can act on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from reasoner.checks import CHECK_KINDS
from reasoner.spec import FrameWindow, RewardSpec, SpecError, explain_validation_error


def spec_dict(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": 1,
        "rationale": "The ball must end in the square without touching the wall.",
        "goal": {"text": "At the end, is the red ball inside the blue square?", "window": "last"},
        "process": [{"text": "Does the red ball stay in one piece?"}],
    }
    return base | overrides


def explain(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        RewardSpec.model_validate(data)
    return explain_validation_error(info.value)


# ------------------------------------------------------------------------ windows


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({"kind": "all"}, [0, 1, 2, 3, 4, 5, 6, 7, 8]),
        ({"kind": "first"}, [0]),
        ({"kind": "last"}, [8]),
        ({"kind": "first_n", "n": 3}, [0, 1, 2]),
        ({"kind": "last_n", "n": 2}, [7, 8]),
        # frame i sits at time i/8: 0.25 -> frame 2, 0.5 -> frame 4
        ({"kind": "range", "start": 0.25, "end": 0.5}, [2, 3, 4]),
        ({"kind": "range", "start": 0.3, "end": 0.3}, []),
        ("last", [8]),
    ],
)
def test_window_indices(window: Any, expected: list[int]) -> None:
    parsed = FrameWindow.model_validate(window)
    if expected:
        assert parsed.indices(9) == expected
    else:
        with pytest.raises(SpecError, match="contains no frame"):
            parsed.indices(9)


def test_window_outside_the_video_says_how_many_frames_exist() -> None:
    window = FrameWindow(kind="last_n", n=30)
    with pytest.raises(SpecError) as info:
        window.indices(24)
    message = explain_validation_error(info.value)
    assert "only 24" in message and "n <= 24" in message


@pytest.mark.parametrize(
    ("window", "fix"),
    [
        ({"kind": "last_n"}, "needs n"),
        ({"kind": "all", "n": 3}, "remove n"),
        ({"kind": "range", "start": 0.8, "end": 0.2}, "swap them"),
        ({"kind": "range", "start": 0.1}, "needs start and end"),
        ({"kind": "last", "start": 0.1}, "remove them"),
        ({"kind": "middle"}, "'all'"),
    ],
)
def test_bad_windows_are_rejected_with_a_fix(window: dict[str, Any], fix: str) -> None:
    message = explain(spec_dict(goal={"text": "Is the ball in the square?", "window": window}))
    assert "goal.window" in message and fix in message


# ----------------------------------------------------------------------- the spec


def test_valid_spec_round_trips_through_json() -> None:
    spec = RewardSpec.model_validate(
        spec_dict(
            lam=0.3,
            verifiers=[{"text": "Is the square still blue?"}],
            checks=[
                {
                    "kind": "inside_region",
                    "object": {"color": "red"},
                    "region": {"type": "box", "x0": 0.6, "y0": 0.6, "x1": 1, "y1": 1},
                    "role": "goal",
                    "window": "last",
                }
            ],
        )
    )
    assert RewardSpec.model_validate_json(spec.model_dump_json()) == spec
    assert spec.goal is not None and spec.goal.window.kind == "last"
    assert [name for name, _, _ in spec.queries()] == ["goal", "process[0]", "verifier[0]"]
    summary = spec.summary().splitlines()
    assert summary[0].startswith("v1 (lam=0.3)")
    assert "check[0] inside_region (goal, w=1, last)" in summary[-1]


def test_defaults_follow_the_paper() -> None:
    spec = RewardSpec.model_validate(spec_dict())
    assert spec.lam == 0.5
    assert spec.process[0].window.kind == "all"
    assert spec.verifiers == [] and spec.checks == []


def test_a_goal_check_can_stand_in_for_the_goal_query() -> None:
    data = spec_dict(
        goal=None,
        checks=[
            {
                "kind": "reach_by_end",
                "role": "goal",
                "object": {"color": "red"},
                "target": {"type": "point", "x": 0.8, "y": 0.8},
            }
        ],
    )
    assert RewardSpec.model_validate(data).goal is None


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"goal": None}, "the spec has no goal"),
        ({"lam": 1.5}, "lam: Input should be less than or equal to 1"),
        ({"lam": -0.1}, "lam: Input should be greater than or equal to 0"),
        ({"lam": float("nan")}, "lam: must be a finite number"),
        ({"checks": [{"kind": "teleport_check"}]}, "unknown check kind 'teleport_check'"),
        ({"checks": [{"object": {"color": "red"}}]}, "missing 'kind'"),
        ({"process": [{"text": "Q?"}] * 9}, "at most 8 items"),
        ({"goal": {"text": "   "}}, "the question is empty"),
        ({"rationale": ""}, "rationale"),
        ({"surprise": 1}, "surprise: unknown field"),
    ],
)
def test_invalid_specs_explain_how_to_fix_them(overrides: dict[str, Any], expected: str) -> None:
    message = explain(spec_dict(**overrides))
    assert message.startswith("The reward spec is invalid")
    assert expected in message
    assert "call the tool again" in message


def test_unknown_check_kind_lists_every_kind_with_what_it_does() -> None:
    message = explain(spec_dict(checks=[{"kind": "explode", "object": {"color": "red"}}]))
    assert "checks[0]" in message
    for kind in CHECK_KINDS:
        assert f"- {kind}: " in message


def test_error_locations_name_the_check_kind_and_region_type() -> None:
    bad_box = {"type": "box", "x0": 0.9, "y0": 0.0, "x1": 0.1, "y1": 1.0}
    message = explain(
        spec_dict(
            checks=[
                {"kind": "outside_region", "object": {"color": "puce"}, "region": bad_box},
            ]
        )
    )
    assert "checks[0](kind=outside_region).region(type=box): box needs x0 < x1" in message
    assert "checks[0](kind=outside_region).object.color: must be a colour name" in message
    # One line per problem: the colour fails both union members but is reported once.
    assert message.count(".object.color") == 1


def test_bounds_keep_numbers_sane() -> None:
    huge = {"kind": "object_count", "object": {"color": "red"}, "count": 10**9}
    assert "count: Input should be less than or equal to 32" in explain(spec_dict(checks=[huge]))
    tol = {"kind": "stays_one_blob", "object": {"color": [1, 2, 3], "tolerance": 0}}
    assert "tolerance" in explain(spec_dict(checks=[tol]))
    rgb = {"kind": "stays_one_blob", "object": {"color": [300, 2, 3]}}
    assert "integers 0-255" in explain(spec_dict(checks=[rgb]))


def test_invalid_json_is_explained() -> None:
    with pytest.raises(ValidationError) as info:
        RewardSpec.model_validate_json('{"version": 1, "rationale": ')
    assert "not valid JSON" in explain_validation_error(info.value)


# ------------------------------------------------------------------ the schema


def _properties(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, model in schema.get("$defs", {}).items():
        found += [(f"{name}.{p}", v) for p, v in model.get("properties", {}).items()]
    found += [(f"RewardSpec.{p}", v) for p, v in schema["properties"].items()]
    return found


def test_every_field_in_the_tool_schema_is_described_for_a_model() -> None:
    schema = RewardSpec.model_json_schema()
    props = _properties(schema)
    assert len(props) > 60
    undocumented = [name for name, prop in props if len(prop.get("description", "")) < 10]
    assert undocumented == []
    kinds = schema["properties"]["checks"]["items"]["discriminator"]["mapping"]
    assert set(kinds) == set(CHECK_KINDS)
    json.dumps(schema)  # serialisable as a tool schema
