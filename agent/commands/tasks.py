"""`vlm-teacher tasks`: list, show, export and check mini-world tasks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Mini-world tasks: list, show, export as VBVR folders, check a video.")

Ids = Annotated[list[str] | None, typer.Argument(help="Task ids, e.g. mini/maze/3.")]
SplitOpt = Annotated[str | None, typer.Option("--split", help="train, val or test.")]
FamilyOpt = Annotated[
    list[str] | None, typer.Option("--family", "-f", help="Only this family (repeatable).")
]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", help="Tasks per family from a split.")]
SizeOpt = Annotated[int, typer.Option("--size", help="Frame side in px (multiple of 8).")]
FramesOpt = Annotated[int, typer.Option("--frames", help="Frames per video (4k+1).")]


def _tasks(ids, split, families, limit, size, frames):
    from evals.tasks import get_task, iter_split

    if ids and split:
        raise typer.BadParameter("give task ids or --split, not both")
    if ids:
        return [get_task(i, size=size, num_frames=frames) for i in ids]
    if split:
        return list(iter_split(split, families, limit=limit, size=size, num_frames=frames))
    raise typer.BadParameter("give task ids (e.g. mini/maze/3) or --split train|val|test")


@app.command("list")
def list_families() -> None:
    """List the families, their rule-breaking variants, and the splits' seed ranges."""
    from evals.tasks import FAMILIES, SPLITS

    for name, family in FAMILIES.items():
        typer.echo(f"{name:10s} {family.description}")
        typer.echo(f"{'':10s} perturbations: {', '.join(family.perturbations)}")
    for split, seeds in SPLITS.items():
        typer.echo(f"split {split:5s} seeds {seeds.start}..{seeds.stop - 1}")


@app.command("show")
def show(
    ids: Ids = None,
    split: SplitOpt = None,
    family: FamilyOpt = None,
    limit: LimitOpt = 4,
    size: SizeOpt = 32,
    frames: FramesOpt = 17,
    grid: Annotated[
        Path | None, typer.Option("--grid", help="Write a PNG grid of the first frames here.")
    ] = None,
    videos: Annotated[
        Path | None, typer.Option("--videos", help="Write each solution as a GIF into this folder.")
    ] = None,
    hidden: Annotated[
        bool, typer.Option("--hidden", help="Also print the hidden ground truth (checker only).")
    ] = False,
) -> None:
    """Print tasks' instructions; optionally save a grid of first frames and solution GIFs."""
    from evals.video_io import make_grid, write_image, write_video

    tasks = _tasks(ids, split, family, limit, size, frames)
    for task in tasks:
        typer.echo(f"{task.task_id}: {task.instruction}")
        if hidden:
            typer.echo("  hidden: " + json.dumps(task.hidden, separators=(",", ":")))
        if videos is not None and task.solution is not None:
            name = task.task_id.replace("/", "_") + ".gif"
            write_video(videos / name, task.solution.repeat(4, 1).repeat(4, 2))
    if grid is not None:
        write_image(grid, make_grid([t.first_frame for t in tasks], cols=min(len(tasks), 6)))
        typer.echo(f"grid of {len(tasks)} first frames: {grid}")


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Root folder for the question folders.")],
    ids: Ids = None,
    split: SplitOpt = None,
    family: FamilyOpt = None,
    limit: LimitOpt = 10,
    size: SizeOpt = 32,
    frames: FramesOpt = 17,
    scale: Annotated[int, typer.Option("--scale", help="Enlarge frames this many times.")] = 1,
) -> None:
    """Export tasks as VBVR-Bench question folders."""
    from evals.vbvr import export_tasks

    folders = export_tasks(_tasks(ids, split, family, limit, size, frames), out, scale=scale)
    typer.echo(f"exported {len(folders)} question folders under {out}")


@app.command("check")
def check_video(
    task: Annotated[str, typer.Argument(help="A task id (mini/...) or a question folder.")],
    video: Annotated[
        Path,
        typer.Argument(
            help="The video to score: .mp4, .gif, or a run's exact frames (videos/final.npy)."
        ),
    ],
    size: SizeOpt = 32,
    frames: Annotated[
        int | None,
        typer.Option("--frames", help="Frames of a mini task (4k+1); default: the video's."),
    ] = None,
) -> None:
    """Score a video file with the task's rule checker and print the criteria as JSON."""
    from evals.tasks import NoCheckerError, TaskIdError, check
    from evals.tasks.base import renderable_num_frames
    from evals.vbvr import QuestionFolderError, task_from_id_or_folder
    from evals.video_io import MediaReadError, fit_to_size, is_chroma_subsampled, read_video
    from reasoner.errors import ConfigError

    try:
        frames_read = read_video(video)
        count = frames_read.shape[0]
        # Without --frames, the video's length, or get_task's default (17) for a length
        # no mini task has (the checker then says so). A --frames value is used as given:
        # one no task has is refused.
        default = count if renderable_num_frames(count) else 17
        num_frames = default if frames is None else frames
        the_task = task_from_id_or_folder(task, size=size, num_frames=num_frames)
        result = check(the_task, fit_to_size(frames_read, the_task.size))
    except (ConfigError, MediaReadError, NoCheckerError, QuestionFolderError, TaskIdError) as err:
        typer.echo(json.dumps({"score": 0.0, "passed": False, "reason": str(err)}))
        raise typer.Exit(1) from err
    if is_chroma_subsampled(video):
        typer.echo(
            f"note: {video.name} is a 4:2:0 mp4, whose colours are smeared over 2x2 pixels; "
            "small objects may fail the checker here and pass in the exact frames. Score a "
            "run's videos/final.npy or video.gif instead.",
            err=True,
        )
    typer.echo(json.dumps(result.to_dict(), indent=2))
