"""Measure a trained mini scorer on held-out tasks, in either set of phrasings.

    python -m evals.mini.evaluate_scorer --phrasings train --tasks-per-family 50 \
        --out docs/results/mini-scorer-train-phrasings.json

The scorer card (`scorer_card.json`, written by `evals.mini.train_scorer`)
holds the accuracy on held-out paraphrases. This asks the same held-out-split
tasks in the trained paraphrases instead: the wordings the offline teacher
writes, so it is the accuracy the teacher's questions actually get. The recipe
(data config and seed) is read from the folder's card, so the videos and rows
are those the training run's evaluation would draw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from evals.mini.options import EvalSplitOption
from evals.mini.paths import MINI_SCORER_DIR
from evals.mini.train_scorer import (
    CARD_NAME,
    Phrasings,
    ScorerTrainConfig,
    evaluate,
    shipped_vgm_sampler,
)


def load_recipe(scorer_dir: Path) -> ScorerTrainConfig:
    """The recipe a scorer folder was trained by, from its card."""
    card_path = scorer_dir / CARD_NAME
    if not card_path.is_file():
        raise FileNotFoundError(
            f"{card_path} not found: point --scorer at a folder written by "
            "`python -m evals.mini.train_scorer`"
        )
    return ScorerTrainConfig.model_validate(json.loads(card_path.read_text())["recipe"])


def summary_lines(result: dict[str, Any]) -> list[str]:
    """Accuracy overall, on task questions (all but the colour probes) and by role and
    family, one per line."""
    accuracy, rows = result["accuracy"], result["rows_per_group"]
    groups = sorted(k for k in accuracy if k.startswith(("role/", "task_questions/")))
    keys = ["all", "task_questions", *groups]
    return [f"{k:<26} {accuracy[k]:.4f}  ({rows[k]} rows)" for k in keys if k in accuracy]


def main(
    scorer: Annotated[Path, typer.Option(help="Trained scorer folder.")] = MINI_SCORER_DIR,
    phrasings: Annotated[
        Phrasings,
        typer.Option(help="'train' (the teacher's wordings) or 'held_out' (the card's)."),
    ] = "train",
    split: EvalSplitOption = "test",
    tasks_per_family: Annotated[int, typer.Option(min=1, help="Tasks per family.")] = 50,
    vgm: Annotated[
        bool, typer.Option(help="Include samples of the shipped mini video model, as training did.")
    ] = True,
    out: Annotated[Path | None, typer.Option(help="Write the result here as JSON.")] = None,
) -> None:
    """Accuracy of a mini scorer on held-out tasks (P(Yes) > P(No) is "Yes")."""
    from reasoner.vqa import VQAScorer

    try:
        cfg = load_recipe(scorer)
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="--scorer") from None
    sampler = shipped_vgm_sampler(cfg.vgm_drift_std) if vgm else None
    model = VQAScorer.from_pretrained(str(scorer))
    result = evaluate(
        model,
        cfg,
        sampler=sampler,
        split=split,
        tasks_per_family=tasks_per_family,
        phrasings=phrasings,
        progress=True,
    )
    result |= {"scorer": scorer.name, "tasks_per_family": tasks_per_family, "vgm_samples": vgm}
    for line in summary_lines(result):
        typer.echo(line)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        typer.echo(f"wrote {out}")


app = typer.Typer(add_completion=False)
app.command()(main)

if __name__ == "__main__":
    app()
