"""The batch runner end to end on real tiny methods: records, layouts, resume, failures.

Methods are the reasoner's own (base, best-of-N and the fixed teacher pipeline)
on a tiny pixel-space Wan model at 16 px x 5 frames (tests/test_runner_methods.py),
over mini-world tasks.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from scripted_server import Reply, ScriptedServer
from test_runner_methods import FACTORIES, FRAMES, SIZE, eval_config, make_base, make_flaky

from evals.backends import InProcessBackend
from evals.batch.config import EvalConfig
from evals.batch.jobs import derive_seed
from evals.batch.runner import run_batch
from evals.report import build_report
from evals.results import ResultsError, ResultsStore
from evals.ruler import JudgeConfig
from evals.tasks import check, get_task
from evals.vbvr import export_tasks, score_outputs
from evals.video_io import read_video, to_tensor, to_uint8, write_image, write_video
from reasoner.methods import Condition

# The two real VBVR-Bench question folders live beside the repository (not in it);
# VBVR_SAMPLE_DIR points elsewhere. Without them a synthetic foreign folder stands in.
SAMPLES = Path(
    os.environ.get(
        "VBVR_SAMPLE_DIR", Path(__file__).resolve().parents[2] / "shared/data/vbvr-sample"
    )
)


def config(out: Path, **kw: object) -> EvalConfig:
    return eval_config(out, **kw)


def lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


# ---------------------------------------------------------------- tests
def test_batch_scores_each_record_and_writes_the_vbvr_scorer_layout(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    summary = run_batch(
        config(out, limit=4), FACTORIES, backend=InProcessBackend(), show_progress=False
    )
    assert (summary.ok, summary.failed, summary.skipped) == (12, 0, 0)
    records = list(ResultsStore(out).iter_records())
    assert len(records) == 12 and len({r.key for r in records}) == 12
    # --limit 4 interleaves the families seed by seed.
    assert [r.instance_id for r in records[::3]] == [
        "mini/maze/2000000",
        "mini/navigate/2000000",
        "mini/pairs/2000000",
        "mini/recolor/2000000",
    ]
    for record in records:
        task = get_task(record.instance_id, size=SIZE, num_frames=FRAMES)
        generator, task_type = f"mini_{task.family}_data-generator", f"{task.family}_task"
        folder = f"{task.family}_{task.seed:08d}"
        # The layout DESIGN.md documents: {model}/{generator}/{task_type}/{task_id}/{run_id}/...
        run = out / "vbvr" / record.method / generator / task_type / folder / "0"
        assert record.video == str((run / "video" / "output.mp4").relative_to(out))
        assert sorted(p.name for p in (run / "question").iterdir()) == sorted(
            [
                "first_frame.png",
                "prompt.txt",
                "final_frame.png",
                "ground_truth.mp4",
                "metadata.json",
            ]
        )
        # The video on disk is the method's, up to the codec's RGB -> YUV rounding.
        video = read_video(out / record.video)
        assert video.shape == (FRAMES, SIZE, SIZE, 3)
        if record.method == "base":
            # The score is the checker's on the frames the method produced: run the
            # (deterministic) method again with the record's seed and check them.
            cond = Condition(task.instruction, to_tensor(task.first_frame), seed=record.seed)
            frames = to_uint8(make_base().method(cond).video)
            assert np.abs(frames.astype(int) - video.astype(int)).mean() < 4
            result = check(task, frames)
            assert record.score == result.score and record.passed == result.passed
            assert record.sub_scores == result.criteria
        assert record.seed == derive_seed(0, record.instance_id)
        trace = json.loads((out / record.trace).read_text())
        assert trace["prompt"] == task.instruction and trace["score"] == record.score
    teacher = [r for r in records if r.method == "teacher"]
    assert all(r.steps == 2 and r.exit_reason == "max_steps" for r in teacher)
    assert all(len(r.loss_curve) == 3 for r in teacher)  # 2 steps + the closing evaluation
    assert all(r.cost["vgm_forward_passes"] > 0 for r in records)
    # The scorer-layout reader of evals.vbvr finds every run, question and video.
    rows = score_outputs(out / "vbvr", "teacher")
    assert sorted(row["task_id"] for row in rows) == sorted(r.instance_id for r in teacher)
    assert all(row["score"] is not None for row in rows)


def test_rerun_skips_finished_records_and_extends_the_batch(tmp_path: Path) -> None:
    out = tmp_path / "batch"
    cfg = config(out, limit=2, methods=["base", "teacher"])
    run_batch(cfg, FACTORIES, backend=InProcessBackend(), show_progress=False)
    first = lines(out)
    again = run_batch(cfg, FACTORIES, backend=InProcessBackend(), show_progress=False)
    assert (again.skipped, again.ok, again.failed) == (4, 0, 0)
    assert lines(out) == first  # nothing rewritten
    bigger = config(out, limit=3, methods=["base", "teacher", "best_of_n"])
    summary = run_batch(bigger, FACTORIES, backend=InProcessBackend(), show_progress=False)
    assert (summary.skipped, summary.ok) == (4, 5)
    now = lines(out)
    assert now[:4] == first and len(now) == 9
    assert len({(r["instance_id"], r["method"]) for r in now}) == 9
    with pytest.raises(ResultsError, match=r"holds a different batch .*seed: 0 -> 1"):
        run_batch(config(out, limit=2, seed=1), FACTORIES, backend=InProcessBackend())


def test_failures_are_recorded_with_their_reason_and_retried_on_request(tmp_path: Path) -> None:
    out, markers = tmp_path / "batch", tmp_path / "markers"
    markers.mkdir()
    faults = {
        "mini/maze/2000000": "oom",
        "mini/navigate/2000000": "teacher",
        "mini/pairs/2000000": "nan",
    }
    factories = {"base": functools.partial(make_flaky, str(markers), faults)}
    cfg = config(out, limit=5, methods=["base"])
    summary = run_batch(cfg, factories, backend=InProcessBackend(), show_progress=False)
    assert (summary.ok, summary.failed) == (2, 3)
    latest = ResultsStore(out).latest()
    kinds = {k[0]: r.failure.kind for k, r in latest.items() if r.failure}
    assert kinds == {
        "mini/maze/2000000": "oom",
        "mini/navigate/2000000": "teacher_unavailable",
        "mini/pairs/2000000": "bad_video",
    }
    assert "NaN" in latest[("mini/pairs/2000000", "base")].failure.message
    # A plain rerun keeps the failures; --retry-failed runs them again.
    again = run_batch(cfg, factories, backend=InProcessBackend(), show_progress=False)
    assert (again.ok, again.failed, again.skipped) == (0, 0, 5)
    retry = cfg.model_copy(update={"retry_failed": True})
    summary = run_batch(retry, factories, backend=InProcessBackend(), show_progress=False)
    assert (summary.ok, summary.failed, summary.skipped) == (3, 0, 2)
    assert all(r.status == "ok" for r in ResultsStore(out).latest().values())
    assert len(lines(out)) == 8  # 5 first records + 3 superseding ones


def write_foreign_question(folder: Path) -> None:
    """A question folder as a VBVR generator writes it (not from our export)."""
    folder.mkdir(parents=True)
    frames = np.random.default_rng(5).integers(0, 256, (9, 64, 64, 3), dtype=np.uint8)
    write_image(folder / "first_frame.png", frames[0])
    write_image(folder / "final_frame.png", frames[-1])
    write_video(folder / "ground_truth.mp4", frames, fps=16)
    (folder / "prompt.txt").write_text("Slide the tiles into order.")
    (folder / "metadata.json").write_text(json.dumps({"task_id": folder.name, "parameters": {}}))


def test_vbvr_suite_scores_our_exports_and_writes_foreign_questions_unscored(
    tmp_path: Path,
) -> None:
    questions = tmp_path / "questions"
    tasks = [get_task(f"mini/navigate/{s}", size=SIZE, num_frames=FRAMES) for s in (7, 8)]
    export_tasks(tasks, questions)
    foreign_id = "O-99_tiles_data-generator/tiles_task/tiles_00000001"
    write_foreign_question(questions / foreign_id)
    samples = sorted(p.parent.relative_to(SAMPLES).as_posix() for p in SAMPLES.rglob("prompt.txt"))
    if SAMPLES.is_dir():
        shutil.copytree(SAMPLES, questions, dirs_exist_ok=True)
    broken = questions / "X-1_broken_data-generator" / "broken_task" / "broken_00000001"
    broken.mkdir(parents=True)
    (broken / "prompt.txt").write_text("a question folder without its other files")
    out = tmp_path / "batch"
    cfg = config(out, suite=f"vbvr:{questions}", methods=["base"])
    summary = run_batch(cfg, FACTORIES, backend=InProcessBackend(), show_progress=False)
    assert (summary.ok, summary.failed) == (3 + len(samples), 1)
    latest = {k[0]: r for k, r in ResultsStore(out).latest().items()}
    ours = latest["mini_navigate_data-generator/navigate_task/navigate_00000007"]
    assert ours.family == "mini_navigate_data-generator"
    assert ours.status == "ok" and 0.0 <= ours.score <= 1.0 and ours.passed is not None
    for instance_id in [foreign_id, *samples]:
        foreign = latest[instance_id]
        assert foreign.status == "ok" and foreign.score is None
        assert "no mini-world checker" in foreign.score_note
        run = out / foreign.video
        assert run.parts[-2:] == ("video", "output.mp4")
        assert read_video(run).shape == (FRAMES, SIZE, SIZE, 3)
        # The question files beside it are the question's own, byte for byte.
        question, source = run.parent.parent / "question", questions / instance_id
        for name in ("prompt.txt", "metadata.json", "first_frame.png", "ground_truth.mp4"):
            assert (question / name).read_bytes() == (source / name).read_bytes()
    bad = latest["X-1_broken_data-generator/broken_task/broken_00000001"]
    assert bad.status == "failed" and bad.failure.kind == "bad_input"
    assert "missing" in bad.failure.message


def test_ruler_suite_writes_the_benchmark_layout_and_aggregates_the_judge(
    tmp_path: Path,
) -> None:
    rows = [
        {
            "prompt": "A red ball falls.",
            "index": i,
            "task_name": task,
            "category": category,
            "input_image_path": "images/start.png",
            "checklist": [
                {"Instruction Following": "Does a ball fall?"},
                {"Visual Consistency": "Is the ball kept?"},
                {"Visual Fidelity": "Is it clean?"},
                {"Rule Coherence": "Does it accelerate?"},
            ],
        }
        for i, (task, category) in enumerate([("physics", "science"), ("idioms", "semantic")])
    ]
    data = tmp_path / "ruler.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # Image-to-video rows (the tiny model is TI2V); a 40x24 image is center-cropped to 16 px.
    (tmp_path / "images").mkdir()
    Image.new("RGB", (40, 24), (250, 10, 10)).save(tmp_path / "images" / "start.png")
    script = [
        Reply(content='<answer>["Good", "Good", "Medium", "Poor"]</answer>'),
        Reply(content='<answer>["Poor", "Good", "Good", "Good"]</answer>'),
    ]
    out = tmp_path / "batch"
    with ScriptedServer(script) as server:
        judge = JudgeConfig(model="judge", base_url=server.base_url, retry_wait_s=0.0)
        cfg = config(out, suite=f"ruler:{data}", methods=["base"], judge=judge)
        summary = run_batch(cfg, FACTORIES, backend=InProcessBackend(), show_progress=False)
        judged = server.requests
    assert (summary.ok, summary.failed) == (2, 0)
    assert len(judged) == 2
    # The input image, then 5 frames at 16 fps sampled at 2 fps: every 8th -> frame 0 only.
    images = [p for p in judged[0]["messages"][1]["content"] if p["type"] == "image_url"]
    assert len(images) == 2
    latest = ResultsStore(out).latest()
    physics = latest[("physics/0", "base")]
    assert physics.video == "ruler/base/physics/0.mp4" and (out / physics.video).is_file()
    assert physics.score == pytest.approx((1.0 + 1.0 + 0.5 + 0.0) / 4)
    assert physics.details["labels"] == ["Good", "Good", "Medium", "Poor"]
    summary_table = build_report(out).ruler["base"]
    assert summary_table.overall["Avg"] == pytest.approx((62.5 + 75.0) / 2)
    assert summary_table.categories["semantic"]["IF"] == pytest.approx(0.0)


def test_bad_configs_fail_before_any_work(tmp_path: Path) -> None:
    from reasoner.errors import ConfigError

    with pytest.raises(ConfigError, match="not available"):
        run_batch(config(tmp_path, methods=["base", "magic"]), FACTORIES)
    with pytest.raises(ConfigError, match=r"--families \['dragons'\]"):
        run_batch(config(tmp_path, families=["dragons"]), FACTORIES)
    with pytest.raises(ConfigError, match="use mini:<split>"):
        run_batch(config(tmp_path, suite="imagenet:val"), FACTORIES)
    # Config validation: pydantic reports our ConfigError messages as ValidationErrors.
    with pytest.raises(ValidationError, match="add a `judge:` section"):
        config(tmp_path, suite="ruler:rows.jsonl")
    with pytest.raises(ValidationError, match=r"4k\+1"):
        config(tmp_path, num_frames=8)
    assert not (tmp_path / "results.jsonl").exists()
    assert np.isfinite(derive_seed(0, "x"))
