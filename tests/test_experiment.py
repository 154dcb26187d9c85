"""The experiment harness: the compute-matched N rule, the tables, and a tiny run end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_eval_variants import AGENT
from tiny_wan import one_torch_thread
from typer.testing import CliRunner

from agent.cli import app
from evals.mini.experiment import (
    ExperimentPlan,
    matched_n,
    mean_seconds,
    render_markdown,
    summarize_experiment,
)
from evals.results import EvalRecord, Failure, ResultsStore


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    yield from one_torch_thread()


def test_matched_n_is_the_rounded_time_ratio_clamped() -> None:
    assert matched_n(12.0, 1.0) == 12
    assert matched_n(2.5, 1.0) == 3  # halves round up (Python's round() would give 2)
    assert matched_n(3.49, 1.0) == 3
    assert matched_n(0.2, 1.0) == 1  # at least one sample
    assert matched_n(500.0, 1.0) == 64 and matched_n(500.0, 1.0, max_n=10) == 10
    with pytest.raises(ValueError, match="positive"):
        matched_n(5.0, 0.0)


def record(
    family: str,
    method: str,
    i: int,
    passed: bool | None,
    seconds: float,
    score: float | None = None,
    **kw: Any,
):
    if score is None and passed is not None:
        score = float(passed)
    return EvalRecord(
        suite="mini:test",
        instance_id=f"mini/{family}/{i}",
        family=family,
        method=method,
        seed=i,
        status="ok" if passed is not None else "failed",
        passed=passed,
        score=score,
        cost={"wall_seconds": seconds},
        failure=None if passed is not None else Failure(kind="error", message="boom"),
        **kw,
    )


PLAN = ExperimentPlan(
    per_family=2,
    best_of_n="best_of_5",
    matched=None,
    tables=[{"title": "Methods", "methods": ["base", "best_of_5", "teacher", "missing"]}],
)


def hand_built() -> list[EvalRecord]:
    return [
        record("maze", "base", 0, True, 1.0, steps=0),
        record("maze", "base", 1, False, 1.0, steps=0),
        record("navigate", "base", 0, False, 1.0, steps=0),
        record("navigate", "base", 1, False, 1.0, steps=0),
        record("maze", "best_of_5", 0, True, 5.0, steps=0),
        record("maze", "best_of_5", 1, True, 5.0, steps=0),
        record("navigate", "best_of_5", 0, True, 6.0, steps=0),
        record("navigate", "best_of_5", 1, None, 99.0),  # failed: no video, did not pass
        record("maze", "teacher", 0, True, 10.0, steps=10),
        record("maze", "teacher", 1, False, 12.0, score=0.5, steps=20),  # partial credit
        record("navigate", "teacher", 0, True, 8.0, steps=4),
        record("navigate", "teacher", 1, True, 10.0, steps=6),
    ]


def test_tables_from_hand_built_records_give_hand_computed_numbers() -> None:
    result = summarize_experiment(
        hand_built(),
        PLAN,
        ["maze", "navigate"],
        command="vlm-teacher experiment --per-family 2",
        suite="mini:test",
        seed=0,
        matched=None,
    )
    base, bon, teacher = (result.stats[m] for m in ("base", "best_of_5", "teacher"))
    assert base.success == {"maze": 0.5, "navigate": 0.0} and base.mean_success == 0.25
    assert bon.success == {"maze": 1.0, "navigate": 0.5} and bon.mean_success == 0.75
    assert (bon.n, bon.failed) == (4, 1)
    assert bon.seconds == pytest.approx(16 / 3)  # the failed record has no method time
    assert teacher.success == {"maze": 0.5, "navigate": 1.0} and teacher.mean_success == 0.75
    assert (teacher.steps, teacher.seconds) == (10.0, 10.0)
    # Checker score: maze (1 + 0.5) / 2, navigate 1, mean 0.875; a failed record counts 0.
    assert teacher.mean_score == pytest.approx(0.875)
    assert bon.mean_score == pytest.approx((1.0 + 0.5) / 2)
    assert teacher.seconds_vs_best_of_n == pytest.approx(10.0 / (16 / 3))
    assert mean_seconds(hand_built(), "base") == 1.0

    md = render_markdown(result)
    assert "vlm-teacher experiment --per-family 2" in md
    assert "| teacher | 50.0% | 100.0% | **75.0%** | 0.875 | 10.0 | 10.00 | 1.88× | 4 | 0 |" in md
    assert "| best_of_5 | 100.0% | 50.0% | **75.0%** | 0.750 | 0.0 | 5.33 | 1.00× | 4 | 1 |" in md
    assert "| missing | – |" in md  # a method without records keeps its row
    assert "10.00 s vs 5.33 s per instance = **1.88×**" in md
    data = result.to_dict()
    assert data["teacher_vs_best_of_n"]["ratio"] == pytest.approx(1.875)
    assert data["methods"]["base"]["success"] == {"maze": 0.5, "navigate": 0.0}


EXPERIMENT = {
    "variants": {
        "best_of_2": {"method": "best_of_n", "best_of_n": {"n": 2}},
        "best_of_matched": {"method": "best_of_n", "best_of_n": {"n": "matched"}},
        "teacher_fixed3": {
            "method": "teacher",
            "agent": {
                "tto": {"tau": None},
                "budgets": {"max_lora_steps": 3},
                "teacher": {"offline": {"until_budget": True}},
            },
        },
    },
    "experiment": {
        "per_family": 3,
        "best_of_n": "best_of_2",
        "max_matched_n": 6,
        "tables": [
            {"title": "Methods", "methods": ["base", "best_of_2", "best_of_matched", "teacher"]},
            {"title": "Steps", "methods": ["teacher_fixed3", "teacher"]},
        ],
    },
    "eval": {"suite": "mini:test"},
}


def test_the_experiment_runs_its_phases_resumes_and_writes_its_table(tmp_path: Path) -> None:
    agent = {**AGENT, "scorer": {"source": None, "include": "checks"}}
    (tmp_path / "agent.yaml").write_text(yaml.safe_dump(agent))
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({"agent": "agent.yaml", **EXPERIMENT}))
    out = tmp_path / "exp"
    args = ["experiment", "--config", str(config), "--per-family", "1", "--families", "navigate"]
    args += ["--out", str(out), "--backend", "inprocess", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output

    records = ResultsStore(out).latest()
    assert sorted(m for _, m in records) == sorted(
        ["base", "best_of_2", "teacher", "teacher_fixed3", "best_of_matched"]
    )
    assert all(r.status == "ok" for r in records.values())
    instance = "mini/navigate/2000000"
    # Phase 2 drew N = round(teacher s / base s) samples, N clamped to 1..6.
    teacher_s = records[(instance, "teacher")].cost["wall_seconds"]
    base_s = records[(instance, "base")].cost["wall_seconds"]
    n = matched_n(teacher_s, base_s, max_n=6)
    assert records[(instance, "best_of_matched")].cost["samples"] == n
    assert records[(instance, "teacher_fixed3")].steps == 3

    data = json.loads((out / "experiment.json").read_text())
    assert data["matched"]["n"] == n and data["families"] == ["navigate"]
    assert data["methods"]["teacher_fixed3"]["steps"] == 3.0
    md = (out / "experiment.md").read_text()
    assert "## Steps" in md and f"= **{n}**" in md
    assert "--per-family 1" in md and "--families navigate" in md

    # Rerunning resumes: nothing runs again, the same table comes out.
    lines = (out / "results.jsonl").read_text().count("\n")
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert (out / "results.jsonl").read_text().count("\n") == lines
    assert json.loads((out / "experiment.json").read_text())["methods"] == data["methods"]


def test_the_shipped_experiment_config_resolves_every_method(tmp_path: Path) -> None:
    """configs/eval/mini-experiment.yaml, as shipped and pointed at a tiny agent."""
    from agent.commands.eval import method_factories, prepare_eval

    shipped = Path(__file__).parents[1] / "configs" / "eval" / "mini-experiment.yaml"
    # As shipped, against the real mini agent config (checks only): every variant validates.
    assert prepare_eval(shipped, {}).file.experiment is not None
    data = yaml.safe_load(shipped.read_text())
    assert data["agent"] == "../agent/mini.yaml"
    (tmp_path / "agent.yaml").write_text(
        yaml.safe_dump(
            {**AGENT, "budgets": {"max_lora_steps": 20, "max_turns": 24, "wall_clock_s": 300}}
        )
    )
    data["agent"] = "agent.yaml"
    (tmp_path / "e.yaml").write_text(yaml.safe_dump(data))
    prepared = prepare_eval(tmp_path / "e.yaml", {})
    plan = prepared.file.experiment
    assert plan is not None and plan.per_family == 50 and plan.matched == "best_of_matched"
    assert plan.phase1_methods()[0] == "base" and "best_of_matched" not in plan.phase1_methods()
    phase1 = plan.phase1_methods()
    assert set(phase1) == {
        "base",
        "best_of_5",
        "teacher",
        "teacher_lam1",
        "teacher_lam0",
        "teacher_last",
        "teacher_fixed5",
        "teacher_fixed10",
        "teacher_fixed20",
    }
    factories = method_factories(
        [*phase1, "best_of_matched"],
        prepared.agent_path,
        prepared.file,
        "offline",
        {"best_of_matched": 7},
    )
    assert factories["best_of_matched"].options["best_of_n"]["n"] == 7
    assert factories["teacher_fixed10"].agent_patch["budgets"] == {"max_lora_steps": 10}


def test_the_vqa_experiment_extends_the_main_one_and_runs_its_own_tables() -> None:
    from agent.commands.eval import prepare_eval

    configs = Path(__file__).parents[1] / "configs"
    prepared = prepare_eval(configs / "eval" / "mini-experiment-vqa.yaml", {})
    plan, file = prepared.file.experiment, prepared.file
    assert prepared.agent_path == (configs / "agent" / "mini-vqa.yaml").resolve()
    assert plan is not None and plan.per_family == 50 and plan.max_matched_n == 64
    assert set(plan.phase1_methods()) == {
        "base",
        "best_of_5",
        "teacher",
        "teacher_vqa",
        "teacher_checks",
    }
    # Inherited from mini-experiment.yaml: the baselines and the file-wide overrides.
    assert file.variants["best_of_5"].best_of_n == {"n": 5}
    assert file.agent_overrides == {"keep_session_states": False}
    assert file.variants["teacher_vqa"].agent == {"scorer": {"include": "queries"}}
    assert (prepared.eval.out, prepared.eval.suite) == ("runs/experiment-mini-vqa", "mini:test")


def test_the_noise_candidates_run_is_the_teacher_with_eight_draws() -> None:
    from agent.commands.eval import prepare_eval

    configs = Path(__file__).parents[1] / "configs"
    prepared = prepare_eval(configs / "eval" / "mini-noise-candidates.yaml", {})
    assert prepared.agent_path == (configs / "agent" / "mini.yaml").resolve()
    variant = prepared.file.variants["teacher_noise8"]
    assert variant.method == "teacher" and variant.agent == {"tto": {"noise_candidates": 8}}
    # The same instances and seeds as the main experiment, whose teacher row it is set beside.
    main = prepare_eval(configs / "eval" / "mini-experiment.yaml", {})
    assert prepared.file.eval.suite == main.file.eval.suite
    assert prepared.file.eval.seed == main.file.eval.seed
