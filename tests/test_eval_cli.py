"""`vlm-teacher eval` and `vlm-teacher report` end to end, with the agent as the teacher.

A tiny agent setup (offline teacher, pixel-space Wan at 16 px x 5 frames,
checks-only scoring, 2 LoRA steps) over two mini-world tasks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from agent.cli import app
from evals.results import ResultsStore

AGENT = {
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
    "scorer": {"source": None, "include": "checks"},
    "tto": {"num_frames": 5, "lr": 1e-2, "tau": 0.05},
    "budgets": {"max_turns": 8, "max_lora_steps": 2, "wall_clock_s": 300},
    "tools": {"max_burst": 2, "min_image_side": 0},
}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def write_configs(folder: Path, **eval_section: object) -> Path:
    (folder / "agent.yaml").write_text(yaml.safe_dump(AGENT))
    config = {
        "agent": "agent.yaml",
        "methods": {"best_of_n": {"n": 2}},
        "eval": {"suite": "mini:test", "methods": ["base", "best_of_n", "teacher"], **eval_section},
    }
    path = folder / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def test_eval_then_report_from_the_command_line(tmp_path: Path) -> None:
    config = write_configs(tmp_path)
    out = tmp_path / "batch"
    args = ["eval", "--config", str(config), "--out", str(out), "--limit", "2"]
    result = invoke(*args, "--backend", "inprocess", "--no-progress")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert (summary["records"], summary["ok"], summary["failed"]) == (6, 6, 0)

    records = ResultsStore(out).latest()
    teacher = records[("mini/maze/2000000", "teacher")]
    # The agent's own trace is linked, its exit named, its steps and losses recorded.
    assert teacher.trace == "runs/teacher/mini/maze/2000000/trace.jsonl"
    assert (out / teacher.trace).is_file()
    assert teacher.exit_reason and teacher.steps is not None and 1 <= teacher.steps <= 2
    assert len(teacher.loss_curve) >= teacher.steps  # one loss per evaluated iterate
    assert teacher.cost["teacher_calls"] >= 1
    bon = records[("mini/maze/2000000", "best_of_n")]
    assert bon.cost["samples"] == 2 and bon.cost["teacher_calls"] == 1  # one spec written
    base = records[("mini/maze/2000000", "base")]
    assert base.cost["vgm_forward_passes"] == 2  # the 2-step sampler
    assert {r.seed for k, r in records.items() if k[0] == "mini/maze/2000000"} == {base.seed}

    again = invoke(*args, "--backend", "inprocess", "--no-progress")
    assert json.loads(again.output.strip().splitlines()[-1])["skipped"] == 6

    report = invoke("report", str(out))
    assert report.exit_code == 0, report.output
    html = (out / "report.html").read_text()
    assert (
        html.count("<video ") == 6 and 'href="runs/teacher/mini/maze/2000000/trace.jsonl"' in html
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--methods", "base,solver"], "needs a model teacher"),
        (["--methods", "base,magic"], "unknown methods ['magic']"),
        (["--suite", "mini:holdout"], "the splits are"),
        (["--families", "dragons"], "--families ['dragons']"),
    ],
)
def test_bad_flags_say_what_to_change(tmp_path: Path, flags: list[str], message: str) -> None:
    config = write_configs(tmp_path)
    result = invoke("eval", "--config", str(config), "--out", str(tmp_path / "b"), *flags)
    assert result.exit_code != 0
    assert message in result.output or message in str(result.exception)
