"""`vlm-teacher tasks list|show|export|check`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from agent.cli import app
from evals.tasks import get_task, perturb
from evals.vbvr import load_questions
from evals.video_io import read_image, write_video

runner = CliRunner()


def test_list_names_families_perturbations_and_seed_ranges() -> None:
    result = runner.invoke(app, ["tasks", "list"])
    assert result.exit_code == 0, result.output
    for word in ("navigate", "maze", "pairs", "recolor", "through_wall", "2000000..2000499"):
        assert word in result.output


def test_show_prints_instructions_and_writes_a_grid(tmp_path: Path) -> None:
    grid = tmp_path / "grid.png"
    result = runner.invoke(
        app, ["tasks", "show", "mini/maze/3", "mini/recolor/8", "--grid", str(grid), "--hidden"]
    )
    assert result.exit_code == 0, result.output
    assert get_task("mini/maze/3").instruction in result.output
    assert '"blocked_word":"wall"' in result.output
    image = read_image(grid)
    assert image.shape == (2 + 128 + 2, 2 + 2 * (128 + 2), 3)  # two 32 px frames at 4x


def test_show_a_split_with_solution_videos(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["tasks", "show", "--split", "val", "-f", "pairs", "-n", "2", "--videos", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mini_pairs_1000000.gif",
        "mini_pairs_1000001.gif",
    ]


def test_show_without_tasks_says_what_to_give() -> None:
    result = runner.invoke(app, ["tasks", "show"])
    assert result.exit_code != 0
    assert "--split" in result.output


def test_export_writes_question_folders(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["tasks", "export", "--split", "test", "-n", "1", "-o", str(tmp_path), "--scale", "2"]
    )
    assert result.exit_code == 0, result.output
    tasks, problems = load_questions(tmp_path)
    assert problems == {} and len(tasks) == 4
    assert {t.seed for t in tasks} == {2000000}


def test_check_scores_a_video_file(tmp_path: Path) -> None:
    task = get_task("mini/navigate/6")
    good = write_video(tmp_path / "good.mp4", task.solution)
    bad = write_video(tmp_path / "bad.gif", perturb(task, "through_obstacle", 0))
    result = runner.invoke(app, ["tasks", "check", task.task_id, str(good)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["passed"] is True
    verdict = json.loads(runner.invoke(app, ["tasks", "check", task.task_id, str(bad)]).output)
    assert verdict["criteria"]["followed_rule"] == 0.0
    missing = runner.invoke(app, ["tasks", "check", task.task_id, str(tmp_path / "none.mp4")])
    assert missing.exit_code == 1 and "no such video file" in missing.output
    unknown = runner.invoke(app, ["tasks", "check", "mini/chess/1", str(good)])
    assert unknown.exit_code == 1 and "names no family" in unknown.output
    bad_length = runner.invoke(app, ["tasks", "check", task.task_id, str(good), "--frames", "10"])
    assert bad_length.exit_code == 1 and "use 4k+1 frames" in bad_length.output
    zero = runner.invoke(app, ["tasks", "check", task.task_id, str(good), "--frames", "0"])
    assert zero.exit_code == 1 and "num_frames=0" in zero.output  # refused, not replaced
    # A video of a length no task has is scored, and the checker says what is wrong.
    odd = write_video(tmp_path / "odd.gif", task.solution[:10])
    verdict = json.loads(runner.invoke(app, ["tasks", "check", task.task_id, str(odd)]).stdout)
    assert verdict["passed"] is False and verdict["score"] == 0.0
    assert "video has 10 frames" in verdict["reason"]


def test_check_reads_a_runs_exact_frames_and_warns_about_smeared_mp4(tmp_path: Path) -> None:
    """An agent run keeps a 4:2:0 `video.mp4` to watch and the exact `videos/final.npy`;
    the number of frames is the video's (the mini runs make 9)."""
    task = get_task("mini/recolor/2000000", num_frames=9)
    np.save(tmp_path / "final.npy", task.solution)
    exact = runner.invoke(app, ["tasks", "check", task.task_id, str(tmp_path / "final.npy")])
    assert exact.exit_code == 0, exact.output
    assert json.loads(exact.stdout)["passed"] is True and "note" not in exact.stderr
    playable = write_video(tmp_path / "video.mp4", task.solution, lossless=False)
    smeared = runner.invoke(app, ["tasks", "check", task.task_id, str(playable)])
    assert smeared.exit_code == 0, smeared.output
    assert "4:2:0" in smeared.stderr and "videos/final.npy" in smeared.stderr
    json.loads(smeared.stdout)  # the verdict is still printed, as JSON on stdout
