"""`vlm-teacher run` and `vlm-teacher chat` on the tiny setup, through the real CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from agent_support import write_cli_config
from tiny_wan import one_torch_thread
from typer.testing import CliRunner

from agent.cli import app
from agent.summary import BASE_VIDEO
from agent.trace import read_trace
from evals.tasks import check, get_task


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def test_run_prints_progress_and_a_summary(tmp_path: Path) -> None:
    config = write_cli_config(tmp_path)
    args = ["run", "--config", str(config), "--task", "mini/maze/2", "--max-steps", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "teacher 1" in out and "write_reward_spec" in out and "optimize" in out
    rows = ("exit", "LoRA steps", "goal", "checker", "checker, before", "video (mp4)", "trace")
    assert "frames (exact)" in out  # videos/final.npy (the path may wrap)
    for row in (*rows, "summary (html)"):
        assert row in out, row
    run_dir = tmp_path / "runs" / "mini-maze-2"
    assert (run_dir / "video.mp4").is_file() and (run_dir / "video.gif").is_file()
    assert read_trace(run_dir)[-1]["lora_steps"] == 2
    # The one-page summary, with the mini-world checker's verdict on the final video.
    page = (run_dir / "summary.html").read_text()
    assert 'id="checker"' in page and "mini/maze/2" in page
    assert (run_dir / "before.gif").is_file() and (run_dir / "before.mp4").is_file()
    # ... and its verdict on the before video, the same checker on videos/base.npy.
    before = check(get_task("mini/maze/2", num_frames=9), np.load(run_dir / BASE_VIDEO))
    row = page.split('id="checker-before"')[1].split("</tr>")[0]
    assert f"score {before.score:.3f}" in row
    assert ("passed" if before.passed else "failed") in row
    # Run again: the finished run only reports, and its page is written the same way.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "summary (html)" in again.output
    assert (run_dir / "summary.html").read_text() == page


def test_chat_reviews_the_spec_and_stops(tmp_path: Path) -> None:
    config = write_cli_config(tmp_path)
    args = ["chat", "--config", str(config), "--task", "mini/recolor/1"]
    result = CliRunner().invoke(app, args, input="a\nwhat do you see?\n/stop\n")
    assert result.exit_code == 0, result.output
    assert "write_reward_spec" in result.output and "must become" in result.output
    assert "user_stop" in result.output and "summary (html)" in result.output
    assert (tmp_path / "runs" / "mini-recolor-1" / "summary.html").is_file()


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    config = write_cli_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["budgets"]["max_turns"] = 0
    config.write_text(yaml.safe_dump(data))
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--task", "mini/maze/2"])
    assert result.exit_code == 2 and "max_turns" in result.output
    result = CliRunner().invoke(
        app, ["run", "--config", str(write_cli_config(tmp_path)), "--task", "mini/sokoban/1"]
    )
    assert result.exit_code == 2 and "names no family" in result.output


def test_missing_mini_models_stop_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evals.mini import paths

    monkeypatch.setitem(paths.SHIPPED_SOURCES, paths.MINI_VGM_SOURCE, tmp_path / "no-vgm")
    config = Path(__file__).resolve().parents[1] / "configs" / "agent" / "mini.yaml"
    out = tmp_path / "runs"
    args = ["run", "--config", str(config), "--task", "mini/navigate/2000003", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--fresh"])
    assert result.exit_code == 2, result.output
    assert "vlm-teacher train vgm" in result.output
    assert not out.exists()  # refused before a run folder was made
