"""`vlm-teacher bench step` and `vlm-teacher demo` on the tiny CPU config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_wan import one_torch_thread
from typer.testing import CliRunner

from agent.cli import app

TINY = Path(__file__).parents[1] / "configs" / "reasoner" / "tiny.yaml"


@pytest.fixture(autouse=True)
def _restore_threads():
    yield from one_torch_thread()


def _json_line(output: str) -> dict:
    lines = [line for line in output.splitlines() if line.startswith("{")]
    assert len(lines) == 1, output
    return json.loads(lines[0])


def test_bench_step_prints_one_json_line_with_the_measurements() -> None:
    args = ["bench", "step", "--config", str(TINY), "--steps", "3", "--warmup", "1"]
    result = CliRunner().invoke(app, [*args, "--frames", "5", "--threads", "1", "--lr", "1e-2"])
    assert result.exit_code == 0, result.output
    line = _json_line(result.stdout)
    assert line["source"] == "tiny" and line["device"] == "cpu"
    assert len(line["seconds_all"]) == 3
    assert line["seconds_per_step"] == sorted(line["seconds_all"])[1] > 0
    assert line["peak_memory_bytes"] > 0 and line["peak_memory_kind"] == "cpu_max_rss"
    # rank 16 on q, k, v, out of attn1 and attn2 (dim 24) in 2 blocks: 16 * (24 + 24) each
    assert line["params_trained"] == 2 * 8 * 16 * (24 + 24)
    assert line["frames_in_loss"] == 5
    assert line["losses"][-1] < line["losses"][0]  # the LoRA steps actually optimize


def test_bench_step_through_the_last_step_with_the_full_decoder() -> None:
    args = ["bench", "step", "--config", str(TINY), "--steps", "1", "--warmup", "0"]
    result = CliRunner().invoke(app, [*args, "--grad", "last", "--decoder", "full"])
    assert result.exit_code == 0, result.output
    line = _json_line(result.stdout)
    assert line["grad"] == "last" and line["decoder"] == "full"


def test_bench_step_reports_configuration_errors_without_a_traceback(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("num_frames: 17", "num_frames: 16"))
    result = CliRunner().invoke(app, ["bench", "step", "--config", str(bad)])
    assert result.exit_code == 2
    assert "num_frames: must be 4k+1" in result.stderr
    result = CliRunner().invoke(app, ["bench", "step", "--config", str(TINY), "--grad", "every"])
    assert result.exit_code == 2
    assert "grad" in result.stderr


def test_demo_runs_the_tiny_benchmark() -> None:
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert _json_line(result.stdout)["source"] == "tiny"
