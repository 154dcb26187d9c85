"""VBVR-Bench question folders in and out, and the output layout its scorer reads.

A question folder is `{generator}/{task_type}/{task_id}/` holding
`first_frame.png`, `prompt.txt`, `final_frame.png`, `ground_truth.mp4` (16 fps)
and `metadata.json`. Mini-world tasks export to
`mini_{family}_data-generator/{family}_task/{family}_{seed:08d}/` with their
hidden ground truth in `metadata.json` (`parameters`) plus a `mini_world`
block, so reading the folder back gives a task the rule checker can score.
A folder written by anyone else reads as a task without a mini-world checker.

Model outputs go to `{model}/{generator}/{task_type}/{task_id}/{run_id}/`
with `video/output.mp4` and the question files copied into `question/`.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from evals.tasks import FAMILIES, Task, check, get_task, has_checker, iter_split
from evals.video_io import (
    MediaReadError,
    downscale,
    fit_to_size,
    read_image,
    read_video,
    upscale,
    write_image,
    write_video,
)

QUESTION_FILES = (
    "first_frame.png",
    "prompt.txt",
    "final_frame.png",
    "ground_truth.mp4",
    "metadata.json",
)
FPS = 16
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class QuestionFolderError(ValueError):
    """A question folder that is missing files or holds unreadable ones."""


def _safe(name: str, what: str) -> str:
    """A single path component made of letters, digits, '.', '_' and '-' (no '..')."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        raise ValueError(
            f"{what} {name!r} must be one folder name of letters, digits, '.', '_' or '-'"
        )
    return name


def question_path(task: Task) -> tuple[str, str, str]:
    """(generator, task_type, task folder) of a task's question folder."""
    if task.hidden.get("source") == "vbvr":
        vbvr = task.hidden
        return vbvr["generator"], vbvr["task_type"], vbvr["folder"]
    return (
        f"mini_{task.family}_data-generator",
        f"{task.family}_task",
        f"{task.family}_{task.seed:08d}",
    )


# -- writing questions ----------------------------------------------------------------


def write_question_files(task: Task, folder: Path, *, scale: int = 1, fps: int = FPS) -> Path:
    """Write the five question files of a task into `folder` (frames enlarged `scale`×)."""
    folder.mkdir(parents=True, exist_ok=True)
    if task.hidden.get("source") == "vbvr":  # a foreign question: copy it as it is
        source = Path(task.hidden["question_dir"])
        for name in QUESTION_FILES:
            shutil.copy2(source / name, folder / name)
        return folder
    if task.solution is None:
        raise ValueError(f"task {task.task_id} has no solution video to write as ground truth")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale={scale!r}: use a whole number >= 1")
    generator, _, folder_name = question_path(task)
    write_image(folder / "first_frame.png", upscale(task.first_frame, scale))
    write_image(folder / "final_frame.png", upscale(task.solution[-1], scale))
    write_video(folder / "ground_truth.mp4", upscale(task.solution, scale), fps=fps)
    (folder / "prompt.txt").write_text(task.instruction, encoding="utf-8")
    metadata = {
        "task_id": folder_name,
        "generator": generator.removesuffix("_data-generator"),
        "parameters": task.hidden,
        "generation": {"seed": task.seed},
        "mini_world": {
            "task_id": task.task_id,
            "family": task.family,
            "seed": task.seed,
            "size": task.size,
            "num_frames": task.num_frames,
            "scale": scale,
            "fps": fps,
        },
    }
    (folder / "metadata.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    return folder


def export_question(task: Task, root: str | Path, *, scale: int = 1, fps: int = FPS) -> Path:
    """Write a task as a VBVR question folder under `root`; returns the folder."""
    folder = Path(root).joinpath(*question_path(task))
    return write_question_files(task, folder, scale=scale, fps=fps)


def export_tasks(
    tasks: Iterable[Task], root: str | Path, *, scale: int = 1, fps: int = FPS
) -> list[Path]:
    """Export several tasks; returns their folders."""
    return [export_question(task, root, scale=scale, fps=fps) for task in tasks]


def export_split(
    split: str,
    root: str | Path,
    *,
    families: Iterable[str] | None = None,
    limit: int | None = None,
    size: int = 32,
    num_frames: int = 17,
    scale: int = 1,
) -> list[Path]:
    """Export a split (`limit` tasks per family) as VBVR question folders under `root`."""
    tasks = iter_split(split, families=families, limit=limit, size=size, num_frames=num_frames)
    return export_tasks(tasks, root, scale=scale)


# -- reading questions ----------------------------------------------------------------


def read_question(folder: str | Path, *, load_solution: bool = True) -> Task:
    """Read a VBVR question folder as a Task.

    A folder exported from the mini world comes back with its family, seed and
    hidden ground truth (frames shrunk back to the task size), so its checker
    works. Any other folder becomes a task of family `vbvr/<generator>` without
    a mini-world checker; its metadata and final frame go into `hidden`.
    `load_solution=False` skips decoding ground_truth.mp4 (large for real data).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise QuestionFolderError(f"{folder}: no such question folder")
    missing = [name for name in QUESTION_FILES if not (folder / name).is_file()]
    if missing:
        raise QuestionFolderError(
            f"{folder}: missing {', '.join(missing)} "
            f"(a VBVR question folder holds {', '.join(QUESTION_FILES)})"
        )
    try:
        metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
        instruction = (folder / "prompt.txt").read_text(encoding="utf-8").strip()
        first = read_image(folder / "first_frame.png")
        solution = read_video(folder / "ground_truth.mp4") if load_solution else None
    except (json.JSONDecodeError, UnicodeDecodeError, MediaReadError) as err:
        raise QuestionFolderError(f"{folder}: unreadable question file: {err}") from err
    if not isinstance(metadata, dict):
        raise QuestionFolderError(f"{folder}: metadata.json must hold a JSON object")
    if isinstance(metadata.get("mini_world"), dict):
        return _mini_task(folder, metadata, instruction, first, solution)
    return _foreign_task(folder, metadata, instruction, first, solution)


def _mini_task(
    folder: Path,
    metadata: dict[str, Any],
    instruction: str,
    first: np.ndarray,
    solution: np.ndarray | None,
) -> Task:
    info = metadata["mini_world"]
    family, size, scale = info.get("family"), info.get("size"), info.get("scale", 1)
    if family not in FAMILIES:
        raise QuestionFolderError(
            f"{folder}: metadata names mini-world family {family!r}, which this version "
            f"does not have ({', '.join(FAMILIES)})"
        )
    try:
        first = downscale(first, scale)
        solution = None if solution is None else downscale(solution, scale)
    except ValueError as err:
        raise QuestionFolderError(f"{folder}: frames do not match scale {scale}: {err}") from err
    if first.shape != (size, size, 3):
        raise QuestionFolderError(
            f"{folder}: first_frame.png is {first.shape[1]}x{first.shape[0]} after shrinking "
            f"by {scale}; metadata says {size}x{size}"
        )
    if solution is not None and solution.shape != (info["num_frames"], size, size, 3):
        raise QuestionFolderError(
            f"{folder}: ground_truth.mp4 has {solution.shape[0]} frames of "
            f"{solution.shape[2]}x{solution.shape[1]}; metadata says {info['num_frames']} "
            f"of {size}x{size}"
        )
    return Task(
        task_id=info["task_id"],
        family=family,
        seed=int(info["seed"]),
        instruction=instruction,
        first_frame=first,
        num_frames=int(info["num_frames"]),
        size=int(size),
        solution=solution,
        hidden=metadata["parameters"],
    )


def _foreign_task(
    folder: Path,
    metadata: dict[str, Any],
    instruction: str,
    first: np.ndarray,
    solution: np.ndarray | None,
) -> Task:
    height, width = first.shape[:2]
    if height != width:
        raise QuestionFolderError(
            f"{folder}: first_frame.png is {width}x{height}; tasks need square frames"
        )
    if solution is None:
        num_frames = imageio_ffmpeg.count_frames_and_secs(str(folder / "ground_truth.mp4"))[0]
    else:
        num_frames = solution.shape[0]
        if solution.shape[1:3] != (height, width):
            raise QuestionFolderError(
                f"{folder}: ground_truth.mp4 is {solution.shape[2]}x{solution.shape[1]}, "
                f"first_frame.png {width}x{height}"
            )
    try:
        final = read_image(folder / "final_frame.png")
    except MediaReadError as err:
        raise QuestionFolderError(f"{folder}: unreadable question file: {err}") from err
    generator, task_type, name = folder.parent.parent.name, folder.parent.name, folder.name
    seed = metadata.get("generation", {}).get("seed")
    return Task(
        task_id=f"vbvr/{generator}/{task_type}/{name}",
        family=f"vbvr/{generator}",
        seed=seed if isinstance(seed, int) else -1,
        instruction=instruction,
        first_frame=first,
        num_frames=int(num_frames),
        size=height,
        solution=solution,
        hidden={
            "source": "vbvr",
            "question_dir": str(folder.resolve()),
            "generator": generator,
            "task_type": task_type,
            "folder": name,
            "metadata": metadata,
            "final_frame": final,
        },
    )


def find_question_dirs(root: str | Path) -> list[Path]:
    """Folders under `root` that look like question folders (hold a prompt.txt or first frame)."""
    root = Path(root)
    return sorted(
        {p.parent for name in ("prompt.txt", "first_frame.png") for p in root.rglob(name)}
    )


def load_questions(
    root: str | Path, *, load_solution: bool = False
) -> tuple[list[Task], dict[str, str]]:
    """Read every question folder under `root`; a broken one is reported, not raised.

    Returns the tasks and, for each folder that could not be read, the reason.
    """
    tasks, problems = [], {}
    for folder in find_question_dirs(root):
        try:
            tasks.append(read_question(folder, load_solution=load_solution))
        except QuestionFolderError as err:
            problems[str(folder)] = str(err)
    return tasks, problems


# -- model outputs --------------------------------------------------------------------


def output_dir(root: str | Path, model: str, task: Task, run_id: str = "0") -> Path:
    """`{root}/{model}/{generator}/{task_type}/{task_id}/{run_id}` for one generated video."""
    return Path(root, _safe(model, "model"), *question_path(task), _safe(run_id, "run_id"))


def write_output(
    root: str | Path,
    model: str,
    task: Task,
    video: np.ndarray,
    *,
    run_id: str = "0",
    scale: int = 1,
    fps: int = FPS,
) -> Path:
    """Write a generated video where VBVR-Bench's scorer looks for it; returns the mp4 path.

    The question files go into `question/` beside `video/`, as the scorer expects.
    """
    run = output_dir(root, model, task, run_id)
    path = write_video(run / "video" / "output.mp4", upscale(video, scale), fps=fps)
    write_question_files(task, run / "question", scale=scale, fps=fps)
    return path


def iter_outputs(root: str | Path, model: str) -> Iterator[Path]:
    """Every run folder of a model under `root` (those holding video/output.mp4)."""
    base = Path(root, _safe(model, "model"))
    for video in sorted(base.glob("*/*/*/*/video/output.mp4")):
        yield video.parent.parent


def score_run(run: Path) -> dict[str, Any]:
    """Score one run folder with the mini-world checker; problems become a zero score."""
    row: dict[str, Any] = {"run": str(run), "run_id": run.name}
    try:
        task = read_question(run / "question", load_solution=False)
    except QuestionFolderError as err:
        return {**row, "task_id": None, "score": 0.0, "passed": False, "reason": str(err)}
    row["task_id"] = task.task_id
    if not has_checker(task):
        reason = f"{task.task_id} has no mini-world checker; score it with VBVR-Bench's evaluator"
        return {**row, "score": None, "passed": None, "reason": reason}
    try:
        video = fit_to_size(read_video(run / "video" / "output.mp4"), task.size)
    except MediaReadError as err:
        return {**row, "score": 0.0, "passed": False, "reason": str(err)}
    result = check(task, video)
    return {**row, **result.to_dict()}


def score_outputs(root: str | Path, model: str) -> list[dict[str, Any]]:
    """Score every run of a model; one row per run, never an exception for a bad run."""
    return [score_run(run) for run in iter_outputs(root, model)]


def task_from_id_or_folder(ref: str, *, size: int = 32, num_frames: int = 17) -> Task:
    """A task from a `mini/...` id or a path to a question folder."""
    if ref.startswith("mini/"):
        return get_task(ref, size=size, num_frames=num_frames)
    return read_question(ref)
