"""Batch reports: the summary table by hand, the Markdown and the HTML page's content."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from evals.report import build_report, loss_curve_svg, render_markdown, write_report
from evals.results import EvalRecord, Failure, ResultsStore
from evals.video_io import write_video


def write_mp4(path: Path, seed: int, frames: int = 9, size: int = 32) -> None:
    """A video written the way the batch writes its outputs (evals.video_io)."""
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, size=(frames, size, size, 3), dtype=np.uint8)
    write_video(path, video, fps=8)


def make_batch(folder: Path) -> list[EvalRecord]:
    """A small finished batch: 2 families x 3 methods, one failure, a retried record."""
    specs = [
        # instance, family, method, score, passed, steps, wall seconds, vgm calls, curve
        ("mini/grid/1", "grid", "base", 0.2, False, 0, 1.0, 4, []),
        ("mini/grid/1", "grid", "best_of_n", 0.6, False, 0, 4.0, 16, []),
        ("mini/grid/1", "grid", "teacher", 1.0, True, 3, 6.0, 20, [0.9, 0.5, None, 0.2]),
        ("mini/grid/2", "grid", "base", 0.4, False, 0, 3.0, 4, []),
        ("mini/grid/2", "grid", "best_of_n", 1.0, True, 0, 8.0, 16, []),
        ("mini/maze/3", "maze", "base", 0.0, False, 0, 2.0, 4, []),
        ("mini/maze/3", "maze", "teacher", 0.5, False, 5, 10.0, 30, [1.2, 1.0, 0.8]),
    ]
    records = []
    for n, (iid, fam, method, score, passed, steps, secs, vgm, curve) in enumerate(specs):
        video = f"vbvr/{method}/{iid.replace('/', '_')}/video/output.mp4"
        write_mp4(folder / video, seed=n)
        trace = folder / "runs" / method / iid / "trace.json"
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text(json.dumps({"prompt": f"Solve <{iid}> & win"}))
        records.append(
            EvalRecord(
                suite="mini:test",
                instance_id=iid,
                family=fam,
                method=method,
                seed=n,
                status="ok",
                score=score,
                passed=passed,
                steps=steps,
                cost={"wall_seconds": secs, "vgm_forward_passes": vgm},
                loss_curve=curve,
                exit_reason="converged" if steps else None,
                video=video,
                trace=str(trace.relative_to(folder)),
            )
        )
    failed = EvalRecord(
        suite="mini:test",
        instance_id="mini/maze/3",
        family="maze",
        method="best_of_n",
        seed=9,
        status="failed",
        failure=Failure(kind="oom", message="CUDA out of memory <tried 2 GiB>"),
    )
    records.append(failed)
    # A superseded attempt: the report must use the later record of the same key.
    stale = records[0].model_copy(update={"score": 0.9})
    with ResultsStore(folder) as store:
        store.append(stale)
        for record in records:
            store.append(record)
    (folder / "batch.json").write_text(
        json.dumps({"suite": "mini:test", "methods": ["base", "best_of_n", "teacher"]})
    )
    return records


def test_summary_rows_match_hand_computed_numbers(tmp_path: Path) -> None:
    make_batch(tmp_path)
    report = build_report(tmp_path)
    rows = {(r.family, r.method): r for r in report.rows}
    grid_teacher = rows[("grid", "teacher")]
    assert grid_teacher.score == pytest.approx(1.0)
    assert grid_teacher.cost_ratio == pytest.approx(6.0 / 2.0)  # base grid mean = (1 + 3) / 2
    grid_base = rows[("grid", "base")]
    assert grid_base.score == pytest.approx(0.3)  # the stale 0.9 was superseded
    assert rows[("grid", "best_of_n")].success == pytest.approx(0.5)
    assert rows[("grid", "best_of_n")].cost_ratio == pytest.approx(6.0 / 2.0)
    maze_bon = rows[("maze", "best_of_n")]
    assert (maze_bon.n, maze_bon.failed, maze_bon.score, maze_bon.success) == (1, 1, None, 0.0)
    everything = rows[("all", "teacher")]
    assert everything.score == pytest.approx(0.75)
    assert everything.steps == pytest.approx(4.0)
    assert everything.cost_ratio == pytest.approx(8.0 / 2.0)  # (6 + 10) / 2 over (1 + 3 + 2) / 3
    assert rows[("all", "base")].cost_ratio == pytest.approx(1.0)
    assert report.methods == ["base", "best_of_n", "teacher"]


def test_markdown_lists_every_row(tmp_path: Path) -> None:
    make_batch(tmp_path)
    text = render_markdown(build_report(tmp_path))
    assert "| grid | teacher | 1 | 1.000 | 100.0% | 3.0 | 6.00 | 20.0 | 3.00× | 0 |" in text
    assert "| maze | best_of_n | 1 | – | 0.0% | – | – | – | – | 1 |" in text
    assert "| **all** | teacher | 2 | 0.750 |" in text


def test_html_holds_videos_side_by_side_escaped_text_and_trace_links(tmp_path: Path) -> None:
    make_batch(tmp_path)
    md_path, html_path = write_report(tmp_path)
    assert md_path.exists()
    html = html_path.read_text()
    assert html.count("<video ") == 7  # every ok record, none for the failure
    assert 'src="vbvr/base/mini_grid_1/video/output.mp4"' in html
    assert 'href="runs/teacher/mini/grid/1/trace.json"' in html
    assert "Solve &lt;mini/grid/1&gt; &amp; win" in html  # prompts are escaped
    assert "CUDA out of memory &lt;tried 2 GiB&gt;" in html
    assert html.count('class="curve"') == 2
    # Within an instance, base comes first.
    first = html.index('id="i1"')
    assert html.index('data-method="base"', first) < html.index('data-method="teacher"', first)


def test_loss_curve_svg_breaks_at_non_finite_steps() -> None:
    svg = loss_curve_svg([1.0, 0.5, None, 0.25])
    assert svg is not None and svg.count("<polyline") == 2 and "loss, 4 evals: 1 → 0.25" in svg
    assert loss_curve_svg([None]) is None


def test_report_needs_a_batch_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no results\.jsonl"):
        build_report(tmp_path)


def test_report_command_writes_both_files(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from agent.cli import app

    make_batch(tmp_path)
    result = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report.md").read_text().startswith("# vlm-teacher eval: mini:test")
    assert "<video " in (tmp_path / "report.html").read_text()
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")], env={"COLUMNS": "400"})
    assert missing.exit_code != 0 and "no results.jsonl" in missing.output
