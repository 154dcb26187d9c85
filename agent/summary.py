"""A run's one-page summary: `summary.html` in the run folder, written after the run.

    page = write_summary(outcome, config, task, reasoner, checker)

The page shows the task (id, instruction, first frame), the video before the
run (the base model's sample: no LoRA, the run's own noise) beside the final
one, how the run ended, the reward spec in use, the loss of every optimized
query and check at each evaluation of the run (inline SVG), the final
P(Yes) / check losses and, for a mini-world task, the rule checker's verdict.
One self-contained HTML file: no script, no network, every string escaped.

Every file it links to was written by the run or here, under fixed names
(`images/first_frame.png`, `video.*`, `before.*`, `trace.jsonl`); nothing a
model wrote names a path on it.

The run never renders the base model's video (unless no spec was written, when
it is the final video), so it is sampled here, once: it is saved as
`videos/base.npy` and reused when the page is written again (a finished run that
is run again only prints its summary).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from agent.config import AgentConfig
from agent.graph import write_playable
from agent.run import RunOutcome
from evals.report import loss_curve_svg
from reasoner.spec import RewardSpec
from tools.context import RunContext, TaskView, to_uint8

if TYPE_CHECKING:
    from evals.tasks import Task
    from reasoner.video_model import VideoReasoner

SUMMARY_FILE = "summary.html"
BASE_VIDEO = "videos/base.npy"
BEFORE_STEM = "before"
FIRST_FRAME = "images/first_frame.png"  # where the graph's start node saves it
TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class SpecRow:
    """One question or check of a reward spec, readable."""

    name: str  # the term's name in losses and scores: goal, process[0], check[1]:name, ...
    role: str
    window: str
    weight: str
    text: str
    is_check: bool = False
    scored: bool = True  # False: the setup leaves this kind of term out (scorer.include)


@dataclass(frozen=True)
class Curve:
    """One optimized term's loss over the run's evaluations."""

    name: str
    about: str  # the question, or the check's kind and parameters
    points: int  # evaluations with a finite loss for this term
    svg: str | None


def spec_rows(spec: RewardSpec) -> list[SpecRow]:
    """Questions then checks, named as the reward names their terms."""
    rows = [
        SpecRow(name, role, q.window.describe(), "", q.text) for name, role, q in spec.queries()
    ]
    for i, check in enumerate(spec.checks):
        shown = {"kind", "name", "role", "weight", "window"}  # in their own columns
        params = check.model_dump(mode="json", exclude=shown, exclude_defaults=True)
        rows.append(
            SpecRow(
                name=f"check[{i}]:{check.name or check.kind}",
                role=check.role,
                window=check.window.describe(),
                weight=f"{check.weight:g}",
                text=f"{check.kind} {json.dumps(params, separators=(', ', ': '))}",
                is_check=True,
            )
        )
    return rows


def mark_unscored(rows: list[SpecRow], include: str) -> list[SpecRow]:
    """`rows` with the terms `scorer.include` leaves out of the optimization marked."""
    if include == "all":
        return rows
    return [dataclasses.replace(row, scored=row.is_check == (include == "checks")) for row in rows]


def _finite(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def loss_curves(
    bursts: Iterable[Mapping[str, Any]],
) -> tuple[list[float | None], dict[str, list[float | None]]]:
    """The total loss and each term's loss at every evaluation of the run, in order.

    One value per optimizer record (the gradient steps and closing evaluations
    of every burst); None where the loss was not finite, or the term was not in
    the spec at that evaluation (a revision adds or drops terms).
    """
    records = [record for burst in bursts for record in burst["records"]]
    names = list(dict.fromkeys(t["name"] for r in records for t in r["terms"]))
    total = [_finite(r["loss"]) for r in records]
    curves: dict[str, list[float | None]] = {name: [] for name in names}
    for record in records:
        losses = {t["name"]: _finite(t["loss"]) for t in record["terms"]}
        for name in names:
            curves[name].append(losses.get(name))
    return total, curves


def base_frames(
    run_dir: Path, config: AgentConfig, task: TaskView, reasoner: VideoReasoner
) -> np.ndarray:
    """The base model's video of this task (uint8), sampled at most once per run folder."""
    path = run_dir / BASE_VIDEO
    if path.is_file():
        return np.load(path, allow_pickle=False)
    ctx = RunContext(run_dir, task, reasoner, None, config.tto)
    frames = to_uint8(ctx.base_video())  # resets the LoRA: call only after the run
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:  # write then rename: a kill leaves no half file
        np.save(handle, frames, allow_pickle=False)
    tmp.replace(path)
    return frames


def checker_verdict(task: Task, frames: np.ndarray) -> dict[str, Any] | None:
    """The mini-world rule checker's verdict on a uint8 video; None for other tasks."""
    from evals.tasks import check, has_checker

    if not has_checker(task):
        return None
    return check(task, frames).to_dict()


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_summary(context: Mapping[str, Any]) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # the instruction and the spec are text from outside: escape all
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _num
    return env.get_template("summary.html.j2").render(**context)


def before_frames(
    outcome: RunOutcome, config: AgentConfig, task: TaskView, reasoner: VideoReasoner
) -> np.ndarray:
    """The run's before video (uint8): the base model's, sampled once per run folder."""
    if outcome.state.get("specs"):
        return base_frames(outcome.run_dir, config, task, reasoner)
    # No spec, no optimization: the final video is the base model's sample.
    return np.load(outcome.video_path, allow_pickle=False)


def write_summary(
    outcome: RunOutcome,
    config: AgentConfig,
    task: TaskView,
    reasoner: VideoReasoner,
    checker: Mapping[str, Any] | None = None,
    before_checker: Mapping[str, Any] | None = None,
) -> Path:
    """Write `summary.html` (and the before video) into the run folder; returns its path.

    `checker` and `before_checker`: the independent checker's verdicts on the final
    and the before video, shown when given.
    """
    run_dir, state, result = outcome.run_dir, outcome.state, outcome.result
    before = before_frames(outcome, config, task, reasoner)
    before_files = write_playable(run_dir, BEFORE_STEM, before)

    specs = [RewardSpec.model_validate(entry["spec"]) for entry in state.get("specs") or []]
    about = {row.name: row.text for spec in specs for row in spec_rows(spec)}
    total, per_term = loss_curves(state.get("bursts") or [])
    curves = [
        Curve(name, about.get(name, ""), _count(values), loss_curve_svg(values))
        for name, values in per_term.items()
    ]
    context = {
        "task": {"id": task.task_id, "instruction": task.instruction},
        "first_frame": FIRST_FRAME if (run_dir / FIRST_FRAME).is_file() else None,
        "before": before_files,
        "after": {"mp4": result["files"]["video (mp4)"], "gif": result["files"]["video (gif)"]},
        "exit": outcome.exit,
        "result": result,
        "spec": specs[-1] if specs else None,
        "spec_rows": mark_unscored(spec_rows(specs[-1]), config.scorer.include) if specs else [],
        "include": config.scorer.include,
        "earlier_specs": [spec.summary() for spec in specs[:-1]],
        "total_curve": loss_curve_svg(total),
        "evaluations": len(total),
        "curves": curves,
        "scores": result.get("scores"),
        "checker": checker,
        "before_checker": before_checker,
    }
    page = run_dir / SUMMARY_FILE
    page.write_text(render_summary(context), encoding="utf-8")
    return page


def _count(values: Sequence[float | None]) -> int:
    return sum(v is not None for v in values)
