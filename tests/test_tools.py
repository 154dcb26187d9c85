"""The teacher's tools called directly: schemas, argument errors, frames, resume of a session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from agent_support import SPEC, agent_config, drawn_task, reasoner, scorer
from pydantic import BaseModel, Field
from tiny_wan import one_torch_thread

from agent.offline_reading import read_task, spec_for
from evals.tasks import get_task
from reasoner.spec import RewardSpec
from tools.base import (
    ToolError,
    ToolResult,
    with_shared_fields_described_once,
    without_generated_titles,
)
from tools.context import RunContext, ToolSettings
from tools.registry import TOOLS, call_tool, tool_schemas


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(autouse=True)
def _fresh_lora():
    # These tests drive the tools without a session, so they reset the shared model.
    yield
    reasoner().lora.reset()


def context(run_dir: Path, **settings: Any) -> RunContext:
    config = agent_config()
    return RunContext(
        run_dir,
        drawn_task(),
        reasoner(),
        scorer(),
        config.tto,
        ToolSettings(**{"max_lora_steps": 8, "min_image_side": 0, **settings}),
    )


def run(ctx: RunContext, name: str, args: dict[str, Any] | str, state: dict) -> ToolResult:
    """Call a tool the way the graph does, folding its effects into a minimal state."""
    ctx.sync(state)
    result = call_tool(ctx, name, args if isinstance(args, str) else json.dumps(args))
    if result.spec is not None:
        state["specs"] = [*state.get("specs", []), {"spec": result.spec}]
    state["videos"] = {**state.get("videos", {}), **result.videos}
    state["lora_steps"] = state.get("lora_steps", 0) + result.steps
    if result.session_file:
        state["session_file"] = result.session_file
    return result


def test_every_tool_has_a_schema_a_model_can_follow() -> None:
    schemas = {s["function"]["name"]: s["function"] for s in tool_schemas()}
    assert (
        set(schemas)
        == set(TOOLS)
        == {
            "inspect_frames",
            "write_reward_spec",
            "revise_reward_spec",
            "optimize",
            "verify",
            "finish",
        }
    )
    for name, fn in schemas.items():
        assert len(fn["description"]) > 40, name
        props = fn["parameters"]["properties"]
        for field, prop in props.items():
            assert "description" in prop or "$ref" in prop or "anyOf" in prop, (name, field)
    assert "goal" in schemas["write_reward_spec"]["parameters"]["properties"]


def _keys_outside_properties(node: Any) -> set[str]:
    """Every schema keyword used in `node`, not counting field names or example data."""
    if isinstance(node, list):
        return set().union(*(_keys_outside_properties(n) for n in node)) if node else set()
    if not isinstance(node, dict):
        return set()
    keys: set[str] = set()
    for key, value in node.items():
        if key in ("properties", "$defs"):
            keys |= set().union(*(_keys_outside_properties(v) for v in value.values()))
        elif key not in ("examples", "default", "const", "enum"):
            keys |= {key} | _keys_outside_properties(value)
    return keys


def test_the_spec_schema_is_sent_once_and_without_generated_titles() -> None:
    """The tools fit a small context: revise_reward_spec refers to write_reward_spec's schema."""
    schemas = {s["function"]["name"]: s["function"]["parameters"] for s in tool_schemas()}
    full, outline = schemas["write_reward_spec"], schemas["revise_reward_spec"]
    kinds = {
        v["properties"]["kind"]["const"]
        for v in full["$defs"].values()
        if "kind" in v.get("properties", {}) and "const" in v["properties"]["kind"]
    }
    assert {"stays_one_blob", "one_moves_at_a_time", "reach_by_end"} <= kinds
    assert "$defs" not in outline and "$ref" not in json.dumps(outline)
    assert outline["properties"].keys() == full["properties"].keys()
    assert outline["required"] == full["required"]
    assert "write_reward_spec" in outline["properties"]["checks"]["items"]["description"]
    # Field descriptions stay; the titles pydantic derives from the names go.
    assert outline["properties"]["lam"]["description"] == full["properties"]["lam"]["description"]
    assert all("title" not in _keys_outside_properties(p) for p in schemas.values())
    # Was 60.7k characters with the spec twice and titles; a 16k-token context must hold
    # these, the prompt and the frames.
    assert len(json.dumps(tool_schemas())) < 30_000


def test_the_fields_every_check_kind_shares_are_described_once() -> None:
    full = {s["function"]["name"]: s["function"]["parameters"] for s in tool_schemas()}[
        "write_reward_spec"
    ]
    text = json.dumps(full)
    checks = [d for d in full["$defs"].values() if "role" in d.get("properties", {})]
    assert len(checks) == 11
    for field in ("name", "role", "weight"):
        described = RewardSpec.model_json_schema()["$defs"]["StaysOneBlob"]["properties"][field]
        assert text.count(json.dumps(described["description"])[1:-1].rstrip(".")) == 1
        assert f"`{field}`" in full["properties"]["checks"]["description"]
        assert all("description" not in d["properties"][field] for d in checks)
    # A check's own fields keep their descriptions.
    assert "description" in full["$defs"]["StaysOneBlob"]["properties"]["size_tolerance"]


def test_a_shared_field_described_differently_keeps_its_descriptions() -> None:
    class Cat(BaseModel):
        name: str = Field(description="Its name.")
        age: int = Field(description="Years.")

    class Dog(BaseModel):
        name: str = Field(description="Its name.")
        age: int = Field(description="Dog years.")

    class Pets(BaseModel):
        pets: list[Cat | Dog] = Field(description="The pets.")

    out = with_shared_fields_described_once(Pets.model_json_schema(), "pets", ("name", "age"))
    assert out["properties"]["pets"]["description"] == (
        "The pets. Every kind also takes `name`: Its name."
    )
    assert [d["properties"]["age"]["description"] for d in out["$defs"].values()] == [
        "Years.",
        "Dog years.",
    ]
    assert all("description" not in d["properties"]["name"] for d in out["$defs"].values())
    assert "description" in Pets.model_json_schema()["$defs"]["Cat"]["properties"]["name"]


def test_schemas_accept_a_real_spec_and_revise_still_validates_it_fully(tmp_path: Path) -> None:
    jsonschema = __import__("jsonschema")
    schemas = {s["function"]["name"]: s["function"]["parameters"] for s in tool_schemas()}
    for family in ("navigate", "maze", "pairs", "recolor"):
        task = get_task(f"mini/{family}/2000000", num_frames=9)
        # What the offline teacher writes, as written: it shows a model teacher's form.
        written = spec_for(read_task(task.instruction, task.first_frame))
        jsonschema.validate(written, schemas["write_reward_spec"])
        jsonschema.validate(written, schemas["revise_reward_spec"])
        spec = RewardSpec.model_validate(written).model_dump(mode="json")
        jsonschema.validate(spec, schemas["write_reward_spec"])
        jsonschema.validate(spec, schemas["revise_reward_spec"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**spec, "colour": "red"}, schemas["revise_reward_spec"])
    # The outline lets a wrong check through; the tool's full model does not.
    bad = {**SPEC, "version": 2, "checks": [{"kind": "stays_whole", "objects": {}}]}
    jsonschema.validate(bad, schemas["revise_reward_spec"])
    ctx = context(tmp_path)
    state: dict[str, Any] = {}
    run(ctx, "write_reward_spec", SPEC, state)
    with pytest.raises(ToolError, match="stays_whole"):
        run(ctx, "revise_reward_spec", bad, state)


def test_generated_titles_go_but_a_field_called_title_stays() -> None:
    class Card(BaseModel):
        title: str = Field(description="The card's title.", examples=[{"title": "kept"}])
        body: str

    schema = without_generated_titles(Card.model_json_schema())
    assert set(schema["properties"]) == {"title", "body"}
    assert schema["properties"]["title"] == {
        "description": "The card's title.",
        "examples": [{"title": "kept"}],
        "type": "string",
    }
    assert "title" not in schema and "title" not in schema["properties"]["body"]


def test_argument_mistakes_are_tool_errors_that_say_what_to_change(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    cases = {
        ("paint", "{}"): "no tool 'paint'",
        ("optimize", "{steps: 3}"): "not valid JSON",
        ("optimize", "[3]"): "must be a JSON object",
        ("optimize", '{"steps": 3, "lr": 1}'): "unknown argument",
        ("optimize", '{"steps": 3}'): "write_reward_spec first",
        ("inspect_frames", '{"video": "first_frame", "frames": [0], "times": [0.5]}'): "not both",
        ("verify", '{"iterate": "worst"}'): "iterate",
        ("finish", '{"decision": "accept", "reason": "ok", "video": "full-9"}'): "full-quality",
        ("write_reward_spec", '{"rationale": "x"}'): "no goal",
    }
    state: dict[str, Any] = {}
    ctx.sync(state)
    for (name, raw), expected in cases.items():
        with pytest.raises(ToolError, match=expected):
            call_tool(ctx, name, raw)


def test_inspect_frames_returns_images_and_numbers(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    state: dict[str, Any] = {}
    ctx.sync(state)
    frames = drawn_task().first_frame[None].repeat(5, axis=0).copy()
    frames[4, :8, :8] = 0  # the last frame changes in one corner
    state["videos"] = {"clip": ctx.add_video("clip", frames, kind="preview")}
    result = run(ctx, "inspect_frames", {"video": "clip", "frames": [0, -1]}, state)
    rows = result.data["frames"]
    assert [r["frame"] for r in rows] == [0, 4]
    assert rows[0]["change_from_first"] == 0.0
    assert rows[1]["change_from_first"] > 0 and rows[1]["change_from_previous"] > 0
    assert [i.caption for i in result.images] == ["clip frame 0", "clip frame 4"]
    assert all((tmp_path / i.path).is_file() for i in result.images)
    assert [
        r["frame"] for r in run(ctx, "inspect_frames", {"video": "clip"}, state).data["frames"]
    ] == [0, 1, 3, 4]
    with pytest.raises(ToolError, match=r"valid: 0\.\.4"):
        run(ctx, "inspect_frames", {"video": "clip", "frames": [7]}, state)


def test_a_restored_session_continues_bit_identically(tmp_path: Path) -> None:
    first = context(tmp_path / "run")
    state: dict[str, Any] = {}
    run(first, "write_reward_spec", SPEC, state)
    burst = run(first, "optimize", {"steps": 2}, state)
    assert burst.steps == 2 and burst.data["steps_left"] == 6
    assert len(burst.data["terms"]) == 4 and burst.data["preview"] == "preview-1"
    saved = json.loads(json.dumps(state))  # what the checkpoint holds after this burst

    # The same process goes on ...
    going_on = run(first, "optimize", {"steps": 3}, state).data["losses"]
    params_on = [p.detach().clone() for p in reasoner().lora.trainable_parameters()]
    # ... and a new context (a restarted process) restores the saved burst and redoes it.
    second = context(tmp_path / "run")
    resumed = run(second, "optimize", {"steps": 3}, saved).data["losses"]
    params_resumed = [p.detach().clone() for p in reasoner().lora.trainable_parameters()]
    assert resumed == going_on
    assert all(torch.equal(a, b) for a, b in zip(params_on, params_resumed, strict=True))
    assert second.session is not None and second.session.iterate == 5


def test_verify_scores_every_term_on_a_full_quality_video(tmp_path: Path) -> None:
    ctx = context(tmp_path)
    state: dict[str, Any] = {}
    run(ctx, "write_reward_spec", SPEC, state)
    result = run(ctx, "verify", {}, state)
    names = [t["name"] for t in result.data["terms"]]
    assert names == [
        "goal",
        "process[0]",
        "check[0]:reach_by_end",
        "check[1]:stays_one_blob",
        "verifier[0]",
    ]
    assert result.data["video"] == "full-1" and state["videos"]["full-1"]["kind"] == "full"
    assert result.data["passed"] == (not result.data["failed"])
    assert ctx.video("full-1").shape[0] == drawn_task().num_frames  # all F frames, not K


def test_step_budget_clips_and_then_refuses(tmp_path: Path) -> None:
    from tools.optimize import StepBudgetSpent

    ctx = context(tmp_path, max_lora_steps=3, max_burst=2)
    state: dict[str, Any] = {}
    run(ctx, "write_reward_spec", SPEC, state)
    assert run(ctx, "optimize", {"steps": 5}, state).steps == 2  # per-call limit
    assert run(ctx, "optimize", {"steps": 5}, state).steps == 1  # budget
    with pytest.raises(StepBudgetSpent):
        run(ctx, "optimize", {"steps": 1}, state)
