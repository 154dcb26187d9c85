"""Measure the mini VGM's base behaviour on held-out tasks: success per family and pass@N.

    python -m evals.mini.measure_vgm --per-family 50 --samples 20

For every test-split task, the video model samples `samples` videos through
`VideoReasoner.sample` (the full 4-step sampler, exactly what the `base` and
`best_of_n` methods call), from the successive noises of one generator seeded
with `noise_seed` — so sample 0 is what `base` produces with that seed, and the
first N samples are what `best_of_n` with N draws. Each video is scored by the
family's independent checker. Reported per family:

- `base_success`: share of tasks whose sample 0 passes;
- `sample_success`: share of all samples that pass (the expected one-sample rate);
- `pass_at[N]`, N = 1..samples: share of tasks where at least one of the first
  N samples passes — best-of-N with an oracle pick;
- `one_step`: how close the one-step prediction x0_hat = z1 - v(z1, 1, c)
  (the test-time optimization's view) is to the 4-step sample from the same
  noise: mean absolute pixel difference in [0, 1], share of pixels whose
  palette colour agrees, and how often the checker's verdict agrees;
- `criteria_met` / `criteria_mean`: for each of the checker's criteria on
  sample 0, the share of tasks where it is fully met (a video passes only when
  all are) and its mean value in [0, 1] (for `object_intact`, the share of
  frames where the object is whole) — which rule the model breaks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from evals.checkers.pixels import classify
from evals.mini.device import device_option
from evals.mini.options import EvalSplitOption
from evals.mini.paths import mini_reasoner_config, portable_name
from evals.tasks import Task, TaskIdError, check, iter_split, resolve_families
from reasoner.config import ReasonerConfig
from reasoner.video_model import VideoReasoner


def frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) in [0, 1] -> uint8 (F, H, W, 3), as the methods' videos are saved."""
    scaled = frames.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return scaled.permute(0, 2, 3, 1).cpu().numpy()


def first_frame_tensor(task: Task) -> torch.Tensor:
    """The task's first frame as (3, H, W) float in [0, 1]."""
    return torch.tensor(task.first_frame, dtype=torch.float32).permute(2, 0, 1) / 255.0


@torch.no_grad()
def sample_task(
    reasoner: VideoReasoner, task: Task, samples: int, noise_seed: int = 0
) -> dict[str, Any]:
    """Checker verdicts of `samples` 4-step samples and the one-step agreement on sample 0."""
    cond = reasoner.encode(task.instruction, first_frame_tensor(task))
    generator = torch.Generator(device="cpu").manual_seed(noise_seed)
    passed, scores = [], []
    one_step: dict[str, float] = {}
    criteria: dict[str, float] = {}
    for i in range(samples):
        noise = reasoner.initial_noise(generator)
        video = reasoner.sample(noise, cond)
        result = check(task, frames_to_uint8(video))
        passed.append(bool(result.passed))
        scores.append(float(result.score))
        if i == 0:
            criteria = {k: float(v) for k, v in result.criteria.items()}
            quick = reasoner.decode(reasoner.predict_latent(noise, cond, grad="first"))
            quick_u8, video_u8 = frames_to_uint8(quick), frames_to_uint8(video)
            quick_passed = check(task, quick_u8).passed
            one_step = {
                "mean_abs_diff": float((quick - video).abs().mean()),
                "palette_agreement": float((classify(quick_u8) == classify(video_u8)).mean()),
                "verdict_agrees": float(quick_passed == result.passed),
                "one_step_passed": float(quick_passed),
            }
    return {
        "task_id": task.task_id,
        "passed": passed,
        "scores": scores,
        "one_step": one_step,
        "criteria": criteria,
    }


def pass_at(passed: list[list[bool]], n: int) -> float:
    """Share of tasks with a passing sample among their first `n` (oracle best-of-n)."""
    return float(np.mean([any(p[:n]) for p in passed]))


def summarize(records: list[dict[str, Any]], samples: int) -> dict[str, Any]:
    """Per-family statistics (see the module docstring) from `sample_task` records."""
    passed = [r["passed"] for r in records]
    keys = records[0]["one_step"].keys()
    criteria = records[0]["criteria"].keys()  # one family: every record has the same ones
    return {
        "tasks": len(records),
        "base_success": pass_at(passed, 1),
        "sample_success": float(np.mean([np.mean(p) for p in passed])),
        "mean_score": float(np.mean([np.mean(r["scores"]) for r in records])),
        "pass_at": {n: pass_at(passed, n) for n in range(1, samples + 1)},
        "one_step": {k: float(np.mean([r["one_step"][k] for r in records])) for k in keys},
        "criteria_met": {
            k: float(np.mean([r["criteria"][k] >= 1.0 for r in records])) for k in criteria
        },
        "criteria_mean": {k: float(np.mean([r["criteria"][k] for r in records])) for k in criteria},
    }


def measure(
    cfg: ReasonerConfig,
    per_family: int = 50,
    samples: int = 20,
    noise_seed: int = 0,
    families: list[str] | None = None,
    split: str = "test",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Sample and score `per_family` tasks of every family; returns the JSON-ready report."""
    reasoner = VideoReasoner.from_config(cfg, attach_lora=False)
    names = resolve_families(families)
    report: dict[str, Any] = {
        "model": portable_name(cfg.video_model.source),
        "split": split,
        "samples_per_task": samples,
        "noise_seed": noise_seed,
        "families": {},
        "records": {},
    }
    for name in names:
        start = time.perf_counter()
        records = [
            sample_task(reasoner, task, samples, noise_seed)
            for task in iter_split(
                split,
                families=[name],
                limit=per_family,
                size=cfg.video_model.height,
                num_frames=cfg.video_model.num_frames,  # the checker needs the model's length
            )
        ]
        summary = summarize(records, samples)
        summary["seconds"] = round(time.perf_counter() - start, 1)
        report["families"][name] = summary
        report["records"][name] = records
        log(
            f"{name}: base {summary['base_success']:.2f}, per sample "
            f"{summary['sample_success']:.2f}, pass@{samples} "
            f"{summary['pass_at'][samples]:.2f} ({summary['seconds']:.0f} s)"
        )
    return report


def markdown_table(report: dict[str, Any], points: tuple[int, ...] = (1, 2, 5, 10, 20)) -> str:
    """The report as Markdown: one row per family and a mean row."""
    fams = report["families"]
    shown = [n for n in points if n <= report["samples_per_task"]]
    head = ["family", "tasks", "base", "per sample", *[f"pass@{n}" for n in shown]]
    head += ["1-step vs 4-step |Δ|", "palette agree", "verdict agree"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def row(label: str, stats: list[dict[str, Any]]) -> str:
        def mean(get: Callable[[dict[str, Any]], float]) -> float:
            return float(np.mean([get(s) for s in stats]))

        cells = [
            label,
            str(sum(s["tasks"] for s in stats)),
            f"{mean(lambda s: s['base_success']):.0%}",
            f"{mean(lambda s: s['sample_success']):.0%}",
            *[f"{mean(lambda s, n=n: s['pass_at'][n]):.0%}" for n in shown],
            f"{mean(lambda s: s['one_step']['mean_abs_diff']):.3f}",
            f"{mean(lambda s: s['one_step']['palette_agreement']):.1%}",
            f"{mean(lambda s: s['one_step']['verdict_agrees']):.0%}",
        ]
        return "| " + " | ".join(cells) + " |"

    rows += [row(name, [stats]) for name, stats in fams.items()]
    rows.append(row("**mean**", list(fams.values())))
    return "\n".join(rows)


def criteria_table(report: dict[str, Any]) -> str:
    """Which criteria hold on sample 0, as Markdown: per family, the share of tasks where
    each criterion is fully met, with its mean value in brackets."""
    fams = report["families"]
    names: list[str] = []
    for stats in fams.values():
        names += [k for k in stats["criteria_met"] if k not in names]
    rows = [
        "| family | " + " | ".join(names) + " | passed |",
        "|" + "---|" * (len(names) + 2),
    ]
    for family, stats in fams.items():
        cells = [
            f"{stats['criteria_met'][k]:.0%} ({stats['criteria_mean'][k]:.2f})"
            if k in stats["criteria_met"]
            else "—"
            for k in names
        ]
        rows.append(f"| {family} | " + " | ".join(cells) + f" | {stats['base_success']:.0%} |")
    return "\n".join(rows)


def main(
    per_family: Annotated[int, typer.Option(min=1, help="Tasks per family (of --split).")] = 50,
    samples: Annotated[int, typer.Option(min=1, help="Samples per task (pass@1..N).")] = 20,
    noise_seed: Annotated[int, typer.Option(help="Seed of each task's noise generator.")] = 0,
    model: Annotated[
        Path | None, typer.Option(help="Model folder (default: the shipped mini VGM).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    threads: Annotated[int, typer.Option(min=1, help="torch CPU threads.")] = 2,
    device: Annotated[
        str, typer.Option(help="Where the video model runs: 'cpu', or 'cuda' / 'cuda:N'.")
    ] = "cpu",
    split: EvalSplitOption = "test",
    families: Annotated[
        str | None, typer.Option(help="Comma-separated families (default: all).")
    ] = None,
) -> None:
    """Base success per family and the oracle pass@N curve of the mini VGM."""
    device_option(device)
    torch.set_num_threads(threads)
    data = mini_reasoner_config().model_dump()
    if model is not None:
        data["video_model"]["source"] = str(model)
    data["video_model"]["device"] = device
    cfg = ReasonerConfig.model_validate(data)
    # Checked here, before `measure` loads the model.
    asked = None if families is None else [f.strip() for f in families.split(",") if f.strip()]
    try:
        names = resolve_families(asked)
    except TaskIdError as err:
        raise typer.BadParameter(str(err), param_hint="--families") from err
    if not names:
        raise typer.BadParameter(f"no family in {families!r}", param_hint="--families")
    report = measure(cfg, per_family, samples, noise_seed, families=names, split=split)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
    typer.echo(markdown_table(report))
    typer.echo("\nCriteria on sample 0: share of tasks fully meeting each (mean value):\n")
    typer.echo(criteria_table(report))


if __name__ == "__main__":
    typer.run(main)
