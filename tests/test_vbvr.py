"""VBVR-Bench question folders in and out, and the scorer's output layout."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from evals.tasks import FAMILIES, NoCheckerError, check, get_task, has_checker, perturb
from evals.vbvr import (
    QUESTION_FILES,
    QuestionFolderError,
    export_question,
    export_split,
    load_questions,
    output_dir,
    read_question,
    score_outputs,
    write_output,
)
from evals.video_io import read_video, write_video

# The two real VBVR-Bench question folders live beside the repository (not in it);
# VBVR_SAMPLE_DIR points elsewhere.
SAMPLES = Path(
    os.environ.get(
        "VBVR_SAMPLE_DIR", Path(__file__).resolve().parents[2] / "shared/data/vbvr-sample"
    )
)
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="VBVR sample folders not found")


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("scale", [1, 3])
def test_export_then_import_round_trips(family: str, scale: int, tmp_path: Path) -> None:
    task = get_task(f"mini/{family}/1000003")
    folder = export_question(task, tmp_path, scale=scale)
    assert folder == tmp_path / f"mini_{family}_data-generator" / f"{family}_task" / (
        f"{family}_01000003"
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(QUESTION_FILES)
    assert read_video(folder / "ground_truth.mp4").shape[1:3] == (32 * scale, 32 * scale)

    back = read_question(folder)
    assert (back.task_id, back.family, back.seed) == (task.task_id, family, task.seed)
    assert (back.size, back.num_frames) == (task.size, task.num_frames)
    assert back.instruction == task.instruction
    assert back.hidden == task.hidden
    assert (back.first_frame == task.first_frame).all()  # png: lossless
    assert np.abs(back.solution.astype(int) - task.solution).max() <= 1  # video codec
    assert check(back, back.solution).passed


def test_export_split_writes_limit_folders_per_family(tmp_path: Path) -> None:
    folders = export_split("val", tmp_path, families=["maze", "pairs"], limit=2)
    assert len(folders) == 4
    tasks, problems = load_questions(tmp_path)
    assert problems == {}
    assert sorted(t.task_id for t in tasks) == [
        "mini/maze/1000000",
        "mini/maze/1000001",
        "mini/pairs/1000000",
        "mini/pairs/1000001",
    ]
    assert all(t.solution is None for t in tasks)  # not decoded unless asked


@needs_samples
def test_real_vbvr_folders_load_as_tasks_without_a_checker() -> None:
    tasks, problems = load_questions(SAMPLES)
    assert problems == {}
    assert {t.family for t in tasks} == {
        "vbvr/O-34_dot_to_dot_task_data-generator",
        "vbvr/O-47_sliding_puzzle_data-generator",
    }
    for task in tasks:
        folder = Path(task.hidden["question_dir"])
        assert task.instruction == (folder / "prompt.txt").read_text().strip()
        assert task.task_id == f"vbvr/{task.family[5:]}/{folder.parent.name}/{folder.name}"
        assert task.size == 1024 and task.first_frame.shape == (1024, 1024, 3)
        assert task.num_frames == 70 and task.seed == 42
        assert task.hidden["final_frame"].shape == (1024, 1024, 3)
        assert not has_checker(task)
        with pytest.raises(NoCheckerError, match="no mini-world rule checker"):
            check(task, np.zeros((70, 1024, 1024, 3), np.uint8))
        with pytest.raises(NoCheckerError):
            perturb(task, "frozen", 0)
    solved = read_question(Path(tasks[0].hidden["question_dir"]), load_solution=True)
    assert solved.solution.shape == (70, 1024, 1024, 3)


def test_missing_or_broken_question_files_are_clear_errors(tmp_path: Path) -> None:
    folder = export_question(get_task("mini/recolor/2"), tmp_path / "q")
    (folder / "final_frame.png").unlink()
    with pytest.raises(QuestionFolderError, match=r"missing final_frame\.png"):
        read_question(folder)
    with pytest.raises(QuestionFolderError, match="no such question folder"):
        read_question(tmp_path / "nowhere")

    good = export_question(get_task("mini/recolor/3"), tmp_path / "q")
    broken = export_question(get_task("mini/recolor/4"), tmp_path / "q")
    (broken / "first_frame.png").write_bytes(b"garbage")
    tasks, problems = load_questions(tmp_path / "q")
    assert [t.task_id for t in tasks] == ["mini/recolor/3"]
    assert set(problems) == {str(folder), str(broken)}
    assert "missing final_frame.png" in problems[str(folder)]
    assert "first_frame.png" in problems[str(broken)]
    assert good.is_dir()


def test_metadata_naming_an_unknown_family_is_refused(tmp_path: Path) -> None:
    folder = export_question(get_task("mini/maze/2"), tmp_path)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["mini_world"]["family"] = "sokoban"
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(QuestionFolderError, match="family 'sokoban'"):
        read_question(folder)


def test_outputs_land_where_the_scorer_reads_them_and_score(tmp_path: Path) -> None:
    task = get_task("mini/navigate/1000001")
    solved = write_output(tmp_path, "wan-mini", task, task.solution, run_id="0", scale=2)
    frozen = write_output(tmp_path, "wan-mini", task, perturb(task, "frozen", 0), run_id="1")
    other = get_task("mini/pairs/1000001")
    broken = write_output(tmp_path, "wan-mini", other, other.solution, run_id="0")
    broken.write_bytes(b"truncated")

    run = tmp_path / "wan-mini/mini_navigate_data-generator/navigate_task/navigate_01000001/0"
    assert solved == run / "video" / "output.mp4"
    assert output_dir(tmp_path, "wan-mini", task, "1") == frozen.parent.parent
    assert sorted(p.name for p in (run / "question").iterdir()) == sorted(QUESTION_FILES)
    assert read_video(solved).shape == (17, 64, 64, 3)

    rows = {(r["task_id"], r["run_id"]): r for r in score_outputs(tmp_path, "wan-mini")}
    assert rows[(task.task_id, "0")]["score"] == 1.0
    assert rows[(task.task_id, "0")]["passed"] is True
    assert rows[(task.task_id, "1")]["score"] == pytest.approx(0.6)
    assert rows[(other.task_id, "0")]["score"] == 0.0
    assert "not a readable mp4" in rows[(other.task_id, "0")]["reason"]


def test_output_of_wrong_length_scores_zero_with_the_reason(tmp_path: Path) -> None:
    task = get_task("mini/maze/1000002")
    path = write_output(tmp_path, "m", task, task.solution, run_id="0")
    write_video(path, task.solution[:9])
    (row,) = score_outputs(tmp_path, "m")
    assert row["score"] == 0.0 and "9 frames" in row["reason"]


@needs_samples
def test_foreign_outputs_keep_their_question_and_are_not_scored(tmp_path: Path) -> None:
    tasks, _ = load_questions(SAMPLES)
    task = tasks[0]
    path = write_output(tmp_path, "m", task, np.zeros((5, 16, 16, 3), np.uint8), run_id="r1")
    question = path.parent.parent / "question"
    for name in QUESTION_FILES:
        original = Path(task.hidden["question_dir"]) / name
        assert (question / name).read_bytes() == original.read_bytes()
    (row,) = score_outputs(tmp_path, "m")
    assert row["score"] is None and "VBVR-Bench's evaluator" in row["reason"]


def test_names_that_would_leave_the_output_root_are_refused(tmp_path: Path) -> None:
    task = get_task("mini/maze/1")
    for model, run_id in (("../up", "0"), ("m", "../0"), ("m", "a/b"), ("", "0")):
        with pytest.raises(ValueError, match="one folder name"):
            write_output(tmp_path, model, task, task.solution, run_id=run_id)
    assert not any(tmp_path.parent.glob("up"))


def test_copied_sample_without_metadata_is_reported(tmp_path: Path) -> None:
    folder = export_question(get_task("mini/pairs/5"), tmp_path / "g" / "t")
    shutil.move(folder / "metadata.json", tmp_path / "elsewhere.json")
    with pytest.raises(QuestionFolderError, match=r"missing metadata\.json"):
        read_question(folder)
