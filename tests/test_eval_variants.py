"""Method variants of eval files: merged and validated, and their overrides reach the runs.

A tiny agent setup (offline teacher, pixel-space Wan at 16 px x 5 frames, a
random-init Qwen3-VL scorer) on one mini-world task, run through the batch
runner in process, as `vlm-teacher eval` runs it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from tiny_wan import one_torch_thread

from agent.commands.eval import method_factories, prepare_eval
from agent.offline_teacher import OfflineTeacher
from agent.teacher_config import OfflinePolicyConfig
from agent.trace import read_trace
from evals.batch.runner import run_batch
from evals.results import ResultsStore
from evals.tasks import get_task
from reasoner.errors import ConfigError

AGENT: dict[str, Any] = {
    "teacher": {"kind": "offline", "offline": {"burst": 2}},
    "reasoner": {
        "video_model": {
            "kind": "wan_ti2v",
            "source": "tiny-pixel",
            "height": 16,
            "width": 16,
            "num_frames": 5,
            "num_inference_steps": 2,
            "max_sequence_length": 16,
        },
        "decoder": {"surrogate": "identity"},
        "lora": {"rank": 4, "alpha": 8.0},
    },
    "scorer": {"source": "tiny:qwen3_vl", "vqa": {"max_pixels": 4096}},
    "tto": {"num_frames": 5, "lr": 1e-2, "tau": 0.05},
    "budgets": {"max_turns": 10, "max_lora_steps": 2, "wall_clock_s": 300},
    "tools": {"max_burst": 2, "min_image_side": 0},
}
VARIANTS: dict[str, Any] = {
    "best_of_3": {"method": "best_of_n", "best_of_n": {"n": 3}},
    "teacher_checks": {"method": "teacher", "agent": {"scorer": {"include": "checks"}}},
    "teacher_lam1": {"method": "teacher", "agent": {"tools": {"spec_overrides": {"lam": 1.0}}}},
    "teacher_fixed3": {
        "method": "teacher",
        "agent": {
            "tto": {"tau": None},
            "budgets": {"max_lora_steps": 3},
            "teacher": {"offline": {"until_budget": True}},
        },
    },
}
INSTANCE = "mini/navigate/2000000"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


def write_eval(
    folder: Path,
    variants: dict[str, Any],
    agent_overrides: dict[str, Any] | None = None,
    **eval_section: Any,
) -> Path:
    (folder / "agent.yaml").write_text(yaml.safe_dump(AGENT))
    config = {
        "agent": "agent.yaml",
        "agent_overrides": agent_overrides or {},
        "variants": variants,
        "eval": {"suite": "mini:test", "methods": ["base"], **eval_section},
    }
    path = folder / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    ("variant", "message"),
    [
        (
            {"method": "teacher", "agent": {"tto": {"tua": None}}},
            r"variant 'odd' \(method teacher\).*tto\.tua",
        ),
        (
            {"method": "teacher", "agent": {"scorer": {"source": None}}},
            r"variant 'odd' \(method teacher\) overrides scorer\.source.*shared",
        ),
        (
            {"method": "teacher", "agent": {"reasoner": {"lora": {"rank": 8}}}},
            r"variant 'odd'.* overrides reasoner",
        ),
        (
            {"method": "teacher", "agent": {"tools": {"spec_overrides": {"lam": 2}}}},
            r"variant 'odd'.*spec_overrides\.lam",
        ),
        (  # until_budget with the agent's tau still set: the optimizer would stop early
            {"method": "teacher", "agent": {"teacher": {"offline": {"until_budget": True}}}},
            r"variant 'odd'.*until_budget.*tto\.tau: null",
        ),
        ({"method": "base", "best_of_n": {"n": 5}}, "options are for method best_of_n"),
        ({"method": "best_of_n", "best_of_n": {"n": 0}}, r"variant 'odd'.*>= 1"),
    ],
)
def test_a_bad_variant_fails_before_any_run_and_names_itself(
    tmp_path: Path, variant: dict[str, Any], message: str
) -> None:
    path = write_eval(tmp_path, {"odd": variant})
    with pytest.raises(ConfigError, match="(?s)" + message):
        prepare_eval(path, {})


def test_variant_names_and_matched_n_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="name of a built-in method"):
        prepare_eval(write_eval(tmp_path, {"teacher": {"method": "teacher"}}), {})
    path = write_eval(tmp_path, {"bon": {"method": "best_of_n", "best_of_n": {"n": "matched"}}})
    prepared = prepare_eval(path, {"methods": ["bon"]})
    with pytest.raises(ConfigError, match="matched, which `vlm-teacher experiment` fills in"):
        method_factories(["bon"], prepared.agent_path, prepared.file, prepared.teacher_kind)
    with pytest.raises(ConfigError, match=r"unknown methods \['nope'\]; choose from .*bon"):
        method_factories(["nope"], prepared.agent_path, prepared.file, prepared.teacher_kind)


def test_variants_share_the_heavy_components_and_merge_their_overrides(tmp_path: Path) -> None:
    lam1 = {"method": "best_of_n", "agent": {"tools": {"spec_overrides": {"lam": 1.0}}}}
    prepared = prepare_eval(write_eval(tmp_path, {**VARIANTS, "best_lam1": lam1}), {})
    names = ["teacher", "teacher_checks", "teacher_fixed3", "best_of_3", "best_lam1"]
    built = {
        name: factory()
        for name, factory in method_factories(
            names, prepared.agent_path, prepared.file, prepared.teacher_kind
        ).items()
    }
    teacher, checks, fixed = built["teacher"], built["teacher_checks"], built["teacher_fixed3"]
    # One video model and one scorer for every method of the process.
    assert checks.reasoner is teacher.reasoner is fixed.reasoner
    assert checks.scorer is teacher.scorer is fixed.scorer is not None
    assert built["best_of_3"].method.reasoner is teacher.reasoner
    assert built["best_of_3"].method.n == 3
    # Overrides are deep-merged: the rest of each section stays the agent file's.
    assert (teacher.config.scorer.include, checks.config.scorer.include) == ("all", "checks")
    assert checks.config.scorer.vqa.max_pixels == 4096
    assert (fixed.config.tto.tau, fixed.config.tto.max_steps, fixed.config.tto.lr) == (
        None,
        3,
        1e-2,
    )
    assert fixed.config.teacher.offline.until_budget and fixed.config.teacher.offline.burst == 2
    assert fixed.teacher is not teacher.teacher  # its own policy, its own teacher object
    # best_of_n picks by a spec with the same fixed lam the agent's tools would set.
    task = get_task(INSTANCE, size=16, num_frames=5)
    image = torch.from_numpy(task.first_frame.copy()).permute(2, 0, 1).float() / 255
    writers = {name: built[name].method.spec_writer for name in ("best_of_3", "best_lam1")}
    assert writers["best_of_3"].write_spec(task.instruction, image).lam == 0.5
    assert writers["best_lam1"].write_spec(task.instruction, image).lam == 1.0


def optimized_terms(run_dir: Path) -> set[str]:
    """Names of the spec terms the optimize calls of a run scored."""
    names = set()
    for event in read_trace(run_dir):
        if event["event"] == "tool" and event["name"] == "optimize" and "result" in event:
            names |= {term["name"] for term in event["result"]["terms"]}
    return names


def test_variant_overrides_reach_the_runs(tmp_path: Path) -> None:
    """include=checks drops the VQA terms, lam is fixed, a fixed-step run takes every step."""
    path = write_eval(tmp_path, VARIANTS)
    methods = ["teacher", "teacher_checks", "teacher_lam1", "teacher_fixed3"]
    prepared = prepare_eval(
        path,
        {"out": str(tmp_path / "batch"), "limit": 1, "families": ["navigate"], "methods": methods},
    )
    assert prepared.eval.backend == "local"
    config = prepared.eval.model_copy(update={"backend": "inprocess"})
    factories = method_factories(methods, prepared.agent_path, prepared.file, "offline")
    summary = run_batch(config, factories, show_progress=False)
    assert (summary.ok, summary.failed) == (4, 0)
    out = tmp_path / "batch"
    records = ResultsStore(out).latest()

    def details(method: str) -> dict[str, Any]:
        return json.loads((out / "runs" / method / INSTANCE / "trace.json").read_text())["details"]

    # The default teacher optimizes the spec's questions and checks ...
    both = optimized_terms(out / "runs" / "teacher" / INSTANCE)
    assert {"goal", "process[0]"} <= both and any(t.startswith("check[") for t in both)
    # ... the checks-only variant, with the same scorer loaded, only its checks.
    only_checks = optimized_terms(out / "runs" / "teacher_checks" / INSTANCE)
    assert only_checks and all(t.startswith("check[") for t in only_checks)

    # lam is fixed on every spec the teacher wrote; the default keeps the teacher's 0.5.
    assert [s["lam"] for s in details("teacher_lam1")["specs"]] == [1.0]
    assert [s["lam"] for s in details("teacher")["specs"]] == [0.5]

    # tau null + until_budget: exactly the budget's 3 steps, recorded like the teacher's.
    fixed = records[(INSTANCE, "teacher_fixed3")]
    assert fixed.steps == 3 and fixed.cost["optimization_steps"] == 3
    assert len(fixed.loss_curve) == 4  # 3 stepped iterates + the closing evaluation
    assert records[(INSTANCE, "teacher")].steps == 2


def test_until_budget_keeps_the_offline_teacher_optimizing_past_convergence() -> None:
    """Without the knob a converged burst is verified (and a pass accepted); with it, not."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    frame = np.full((16, 16, 3), 255, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    task = "Task t/1: Move the red square to the blue square.\nThe video has 5 frames."
    converged = {
        "steps_run": 2,
        "steps_left": 4,
        "tau": None,
        "stop_reason": None,
        "losses": [0.9, 0.899],
        "latest": {"iterate": 2, "loss": 0.899},
    }
    history: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": task},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        },
    ]
    for i, (name, args, result) in enumerate(
        [
            ("write_reward_spec", {}, {"accepted": True, "version": 1}),
            ("optimize", {"steps": 2}, converged),
        ]
    ):
        call = {
            "id": f"c{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        history += [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": json.dumps(result)},
        ]

    def next_call(policy: OfflinePolicyConfig) -> str:
        return OfflineTeacher(policy).reply(history, [], 10.0).tool_calls[0].name

    assert next_call(OfflinePolicyConfig(burst=2)) == "verify"
    assert next_call(OfflinePolicyConfig(burst=2, until_budget=True)) == "optimize"


def test_a_fixed_lam_replaces_the_teachers_and_refuses_a_spec_with_nothing_to_optimize() -> None:
    from reasoner.reward import compile_spec
    from reasoner.spec import RewardSpec, SpecError
    from tools.write_reward_spec import fix_fields

    reach = {
        "kind": "reach_by_end",
        "role": "goal",
        "object": {"color": "red"},
        "target": {"type": "point", "x": 0.9, "y": 0.9},
    }
    whole = {"kind": "stays_one_blob", "role": "process", "object": {"color": "red"}}
    goal_only = RewardSpec(rationale="r", goal={"text": "Is it there?"}, checks=[reach])
    assert fix_fields(goal_only, {"lam": None}) == (goal_only, {})
    fixed, named = fix_fields(goal_only, {"lam": 1.0})
    assert (fixed.lam, named, goal_only.lam) == (1.0, {"lam": 1.0}, 0.5)
    # Process only, but the spec has no process term: refused, not silently goal-only.
    with pytest.raises(SpecError, match=r"only process terms are optimized.*question or check"):
        fix_fields(goal_only, {"lam": 0.0})
    both = goal_only.model_copy(update={"process": [{"text": "Does it stay whole?"}]})
    assert fix_fields(both, {"lam": 0.0})[0].lam == 0.0
    # Which terms count depends on what the setup optimizes (scorer.include).
    with pytest.raises(SpecError, match="no process check"):
        fix_fields(both, {"lam": 0.0}, include="checks")

    # lam 0 on goal and process checks: the goal check weighs nothing in the total.
    spec = RewardSpec.model_validate({"rationale": "r", "checks": [reach, whole]})
    weights = {
        lam: [t.weight for t in compile_spec(fix_fields(spec, {"lam": lam})[0], None, 5)._checks]
        for lam in (0.0, 1.0)
    }
    assert weights == {0.0: [0.0, 1.0], 1.0: [1.0, 0.0]}


def test_file_wide_agent_overrides_reach_every_method_under_the_variants_own(
    tmp_path: Path,
) -> None:
    overrides = {"keep_session_states": False, "budgets": {"max_lora_steps": 3}}
    one_step = {"method": "teacher", "agent": {"budgets": {"max_lora_steps": 1}}}
    path = write_eval(tmp_path, {**VARIANTS, "teacher_one": one_step}, overrides)
    prepared = prepare_eval(path, {})
    names = ["teacher", "teacher_checks", "teacher_one"]
    built = {
        name: factory()
        for name, factory in method_factories(
            names, prepared.agent_path, prepared.file, prepared.teacher_kind
        ).items()
    }
    configs = {name: method.config for name, method in built.items()}
    assert all(not c.keep_session_states for c in configs.values())
    # The file's step budget, except where a variant sets its own; the rest stays.
    assert [configs[n].budgets.max_lora_steps for n in names] == [3, 3, 1]
    assert configs["teacher_checks"].scorer.include == "checks"
    assert configs["teacher"].budgets.max_turns == 10
    for bad, message in [
        ({"reasoner": {"lora": {"rank": 8}}}, "agent_overrides sets reasoner"),
        ({"budgets": {"max_lora_step": 3}}, "max_lora_step"),
    ]:
        with pytest.raises(ConfigError, match=message):
            prepare_eval(write_eval(tmp_path, VARIANTS, bad), {"methods": ["teacher"]})


def test_an_eval_file_extends_another_from_any_folder(tmp_path: Path) -> None:
    """Sections merge key by key, lists replace, and `agent:` stays relative to its file."""
    write_eval(tmp_path, VARIANTS, {"keep_session_states": False}, limit=4)
    child_dir = tmp_path / "sub"
    child_dir.mkdir()
    child = child_dir / "child.yaml"
    child.write_text(
        yaml.safe_dump(
            {
                "extends": "../eval.yaml",
                "variants": {"best_of_2": {"method": "best_of_n", "best_of_n": {"n": 2}}},
                "eval": {"methods": ["teacher", "best_of_2"]},
            }
        )
    )
    prepared = prepare_eval(child, {})
    assert prepared.agent_path == (tmp_path / "agent.yaml").resolve()
    assert set(prepared.file.variants) == {*VARIANTS, "best_of_2"}
    assert prepared.eval.methods == ["teacher", "best_of_2"]
    assert (prepared.eval.limit, prepared.eval.suite) == (4, "mini:test")
    assert prepared.file.agent_overrides == {"keep_session_states": False}
    # Loops and bad values say what to change.
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="eval configs extend each other in a loop"):
        prepare_eval(tmp_path / "a.yaml", {})
    (tmp_path / "c.yaml").write_text("extends: [eval.yaml]\n")
    with pytest.raises(ConfigError, match="extends must be the path of another eval config"):
        prepare_eval(tmp_path / "c.yaml", {})
    (tmp_path / "d.yaml").write_text("extends: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"nowhere\.yaml does not exist"):
        prepare_eval(tmp_path / "d.yaml", {})
