"""Benchmark suites as the batch runner sees them: ids in, items out, videos scored.

    mini:<split>        the mini world's procedural tasks (checker scores)
    vbvr:<dir>          VBVR-Bench question folders (mini-world checker when the
                        folder came from our export; outputs in the scorer's layout)
    ruler:<file>        RULER-Bench rows (checklist judge scores)

A suite is a small picklable description: workers and Ray tasks receive it and
load each instance where they run, so nothing heavy crosses process lines.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from evals.ruler import JudgeConfig, RulerJudge, RulerRow, load_rows, resolve_data_path
from reasoner.errors import ConfigError

if TYPE_CHECKING:
    from evals.tasks import Task

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class BadInput(ValueError):
    """An instance cannot be loaded (missing or unreadable question data)."""


@dataclass(frozen=True)
class Item:
    """One loaded instance: what a method sees, plus the suite's own data for scoring."""

    instance_id: str
    family: str
    task: str | None
    prompt: str
    image: np.ndarray | None
    """First frame (H, W, 3) uint8, or None for text-only instances."""
    payload: Any = field(default=None, repr=False)
    """Suite-private: the mini `Task`, the RULER row, the VBVR question folder."""


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one video, in the record's terms."""

    score: float | None
    passed: bool | None = None
    sub_scores: Mapping[str, float] = field(default_factory=dict)
    note: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)


class Suite(Protocol):
    """What the runner needs of a benchmark."""

    spec: str

    def families(self) -> list[str]:
        """Every family (or category) the suite holds, for validating --families."""
        ...

    def instance_ids(self, families: Sequence[str] | None, limit: int | None) -> list[str]:
        """The batch's instances, in a fixed order (so --limit is a stable prefix)."""
        ...

    def family_of(self, instance_id: str) -> str:
        """The instance's family without loading it (for records of failed loads)."""
        ...

    def load(self, instance_id: str) -> Item: ...

    def output_path(self, item: Item, method: str) -> PurePosixPath:
        """Where the video goes, relative to the batch folder (the benchmark's layout)."""
        ...

    def prepare_output(
        self, item: Item, method: str, out_dir: Path, written: Path | None
    ) -> Path | None:
        """Write what the layout needs beside the video (e.g. VBVR question files).

        Returns the folder written, if any; `written` is that folder from an earlier
        method of the same instance, to copy instead of rendering again.
        """
        ...

    def expected_shape(self, item: Item) -> tuple[int, int, int] | None:
        """(frames, height, width) a video must have to be scored, if the suite fixes it."""
        ...

    def score(self, item: Item, video: np.ndarray, fps: float) -> Score: ...


def safe_relpath(name: str) -> PurePosixPath:
    """An instance id or method name as a relative path; refuses anything that could escape."""
    parts = name.split("/")
    if not all(_SEGMENT.fullmatch(part) and ".." not in part for part in parts):
        raise BadInput(f"{name!r} cannot be used as a folder name in the batch output")
    return PurePosixPath(*parts)


def check_families(asked: Sequence[str] | None, known: Sequence[str], spec: str) -> None:
    if asked is None:
        return
    unknown = sorted(set(asked) - set(known))
    if unknown:
        raise ConfigError(
            f"--families {unknown} are not in suite {spec}; it has: {', '.join(sorted(known))}"
        )


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Center-crop to a square and resize to `size` px (the video model's frame size)."""
    height, width = image.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = image[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(square)
    # BICUBIC with PIL's antialiasing: deterministic, and fine for both directions.
    return np.asarray(Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC))


# ----------------------------------------------------------------------------- mini world
@dataclass(frozen=True)
class MiniSuite:
    """The mini world's tasks of one split, scored by each family's rule checker."""

    split: str
    size: int
    num_frames: int

    @property
    def spec(self) -> str:
        return f"mini:{self.split}"

    def __post_init__(self) -> None:
        from evals.tasks import SPLITS

        if self.split not in SPLITS:
            raise ConfigError(f"suite mini:{self.split}: the splits are {', '.join(SPLITS)}")

    def families(self) -> list[str]:
        from evals.tasks import FAMILIES

        return sorted(FAMILIES)

    def instance_ids(self, families: Sequence[str] | None, limit: int | None) -> list[str]:
        from evals.tasks import SPLITS

        check_families(families, self.families(), self.spec)
        chosen = sorted(families) if families else self.families()
        # Interleave families seed by seed, so any --limit prefix stays balanced.
        ids: list[str] = []
        for seed in SPLITS[self.split]:
            for family in chosen:
                ids.append(f"mini/{family}/{seed}")
                if limit is not None and len(ids) == limit:
                    return ids
        return ids

    def family_of(self, instance_id: str) -> str:
        return instance_id.split("/")[1]

    def load(self, instance_id: str) -> Item:
        from evals.tasks import get_task

        task = get_task(instance_id, size=self.size, num_frames=self.num_frames)
        return Item(
            instance_id=instance_id,
            family=task.family,
            task=None,
            prompt=task.instruction,
            image=task.first_frame,
            payload=task,
        )

    def output_path(self, item: Item, method: str) -> PurePosixPath:
        return vbvr_video_path(item.payload, method)

    def prepare_output(self, item: Item, method: str, out_dir: Path, written: Path | None) -> Path:
        from evals.vbvr import write_question_files

        target = vbvr_question_dir(item.payload, method, out_dir)
        if written is not None:
            copy_question_files(written, target)  # the same files, without re-encoding
        else:
            write_question_files(item.payload, target)
        return target

    def expected_shape(self, item: Item) -> tuple[int, int, int]:
        return (self.num_frames, self.size, self.size)

    def score(self, item: Item, video: np.ndarray, fps: float) -> Score:
        return checker_score(item.payload, video)


# ----------------------------------------------------------------------------- VBVR
VBVR_RUN_ID = "0"


def vbvr_video_path(task: Task, method: str) -> PurePosixPath:
    """`vbvr/{method}/{generator}/{task_type}/{task_id}/{run_id}/video/output.mp4`."""
    from evals.vbvr import output_dir

    run = output_dir(PurePosixPath("vbvr"), method, task, run_id=VBVR_RUN_ID)
    return PurePosixPath(run.as_posix()) / "video" / "output.mp4"


def vbvr_question_dir(task: Task, method: str, out_dir: Path) -> Path:
    """`{run_id}/question/` beside the video, where the scorer reads the question files."""
    from evals.vbvr import output_dir

    return output_dir(out_dir / "vbvr", method, task, run_id=VBVR_RUN_ID) / "question"


def checker_score(task: Task, video: np.ndarray) -> Score:
    """The mini-world rule checker's verdict; unscored when the task has no checker."""
    from evals.tasks import check, has_checker

    if not has_checker(task):
        return Score(
            score=None,
            note=f"{task.task_id} has no mini-world checker: score the vbvr/ folder with "
            "VBVR-Bench's evaluator",
        )
    result = check(task, video)
    return Score(
        score=result.score,
        passed=result.passed,
        sub_scores=dict(result.criteria),
        note=result.reason,
    )


@dataclass(frozen=True)
class VbvrQuestion:
    """A VBVR instance: the task read from its folder, and the folder itself."""

    task: Task
    folder: Path


@dataclass
class VbvrSuite:
    """VBVR-Bench question folders under `root`; instance ids are `{generator}/{type}/{id}`.

    The family of an instance is its generator folder. Folders exported from the
    mini world are scored by their checker; others are written in the scorer's
    layout and left unscored here.
    """

    root: Path
    size: int
    _ids: list[str] = field(default_factory=list, init=False, repr=False)

    @property
    def spec(self) -> str:
        return f"vbvr:{self.root}"

    def __post_init__(self) -> None:
        if not self.root.is_dir():
            raise ConfigError(f"suite {self.spec}: {self.root} is not a folder")

    def ids(self) -> list[str]:
        if not self._ids:
            from evals.vbvr import find_question_dirs

            folders = find_question_dirs(self.root)
            self._ids = [folder.relative_to(self.root).as_posix() for folder in folders]
            if not self._ids:
                raise ConfigError(
                    f"suite {self.spec}: no question folders (with prompt.txt) under {self.root}"
                )
        return self._ids

    def families(self) -> list[str]:
        return sorted({self.family_of(i) for i in self.ids()})

    def family_of(self, instance_id: str) -> str:
        return instance_id.split("/")[0]

    def instance_ids(self, families: Sequence[str] | None, limit: int | None) -> list[str]:
        check_families(families, self.families(), self.spec)
        ids = [i for i in self.ids() if not families or self.family_of(i) in families]
        return ids[:limit] if limit is not None else ids

    def load(self, instance_id: str) -> Item:
        from evals.vbvr import QuestionFolderError, read_question

        folder = self.root / safe_relpath(instance_id)
        try:
            task = read_question(folder, load_solution=False)
        except (QuestionFolderError, OSError) as err:
            raise BadInput(str(err)) from err
        image = task.first_frame
        if image.shape[:2] != (self.size, self.size):
            image = resize_image(image, self.size)
        return Item(
            instance_id=instance_id,
            family=self.family_of(instance_id),
            task=folder.parent.name,
            prompt=task.instruction,
            image=image,
            payload=VbvrQuestion(task=task, folder=folder),
        )

    def output_path(self, item: Item, method: str) -> PurePosixPath:
        return vbvr_video_path(item.payload.task, method)

    def prepare_output(self, item: Item, method: str, out_dir: Path, written: Path | None) -> Path:
        # The scorer compares against the question as given: copy its files verbatim.
        question: VbvrQuestion = item.payload
        target = vbvr_question_dir(question.task, method, out_dir)
        copy_question_files(question.folder, target)
        return target

    def expected_shape(self, item: Item) -> tuple[int, int, int] | None:
        from evals.tasks import has_checker

        task = item.payload.task
        # A mini-world checker scores videos of the task's own size and length only.
        return (task.num_frames, task.size, task.size) if has_checker(task) else None

    def score(self, item: Item, video: np.ndarray, fps: float) -> Score:
        return checker_score(item.payload.task, video)


# ----------------------------------------------------------------------------- RULER
@dataclass
class RulerSuite:
    """RULER-Bench rows; videos to `ruler/{method}/{task}/{index}.mp4`, judged by checklist."""

    path: Path
    judge: JudgeConfig
    size: int
    _rows: dict[str, RulerRow] = field(default_factory=dict, init=False, repr=False)
    _judge: RulerJudge | None = field(default=None, init=False, repr=False)

    @property
    def spec(self) -> str:
        return f"ruler:{self.path}"

    def __getstate__(self) -> dict[str, Any]:
        # The judge holds an HTTP client: each process makes its own.
        return {**self.__dict__, "_judge": None, "_rows": {}}

    def rows(self) -> dict[str, RulerRow]:
        if not self._rows:
            self._rows = {row.instance_id: row for row in load_rows(self.path)}
        return self._rows

    def families(self) -> list[str]:
        return sorted({row.category for row in self.rows().values()})

    def instance_ids(self, families: Sequence[str] | None, limit: int | None) -> list[str]:
        check_families(families, self.families(), self.spec)
        ids = [i for i, row in self.rows().items() if not families or row.category in families]
        return ids[:limit] if limit is not None else ids

    def family_of(self, instance_id: str) -> str:
        return self.rows()[instance_id].category

    def load(self, instance_id: str) -> Item:
        row = self.rows()[instance_id]
        image = None
        if row.input_image_path:
            try:
                path = resolve_data_path(self.path.parent, row.input_image_path)
                with Image.open(path) as opened:
                    image = resize_image(np.asarray(opened.convert("RGB")), self.size)
            except (OSError, ValueError) as err:
                raise BadInput(f"{instance_id}: input image: {err}") from err
        return Item(instance_id, row.category, row.task_name, row.prompt, image, payload=row)

    def output_path(self, item: Item, method: str) -> PurePosixPath:
        row: RulerRow = item.payload
        return PurePosixPath("ruler") / method / row.task_name / f"{row.index}.mp4"

    def prepare_output(self, item: Item, method: str, out_dir: Path, written: Path | None) -> None:
        return None  # the RULER layout is the video alone

    def expected_shape(self, item: Item) -> None:
        return None  # the judge takes any frame size and length

    def score(self, item: Item, video: np.ndarray, fps: float) -> Score:
        if self._judge is None:
            self._judge = RulerJudge(self.judge, data_root=self.path.parent)
        verdict = self._judge.judge(item.payload, video, fps)
        return Score(
            score=verdict.score,
            passed=None,
            sub_scores=verdict.metric_scores,
            details={
                "labels": list(verdict.labels),
                "reasoning": verdict.reasoning,
                "judge_model": self.judge.model,
                "judge_usage": verdict.usage,
            },
        )


def copy_question_files(source: Path, target: Path) -> None:
    """Copy a question folder's files (not subfolders) into `target`."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file():
            shutil.copy2(path, target / path.name)
