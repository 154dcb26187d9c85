"""The worker side of a batch: run one instance's methods, save, score, record.

`BatchWorker` is the picklable `JobRunner` every backend executes. For each
method of a job it builds the method once per process, runs it on the
instance's condition, checks the video, writes it where the benchmark expects
it, scores it and writes a trace; any failure becomes a `failed` record with its
reason, so one bad instance never stops the batch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from evals.backends import Job
from evals.batch.methods import BatchMethod, MethodFactory, summarize
from evals.batch.suites import BadInput, Item, Suite, safe_relpath
from evals.results import EvalRecord, Failure, FailureKind
from evals.ruler import JudgeUnavailable

if TYPE_CHECKING:
    import torch

# Methods built in this process for the current batch: a worker process (or a
# reused Ray worker) builds each method once, whatever the job count. A new
# batch in the same process (in-process runs, a long-lived Ray worker) drops
# the previous batch's methods and their models.
_BUILT: dict[str, BatchMethod] = {}
_BUILT_FOR: list[str] = []


class BadVideo(ValueError):
    """A method returned something that is not a scorable video."""


def derive_seed(batch_seed: int, instance_id: str) -> int:
    """The instance's seed: stable across runs, processes and machines (unlike hash())."""
    digest = hashlib.sha256(f"{batch_seed}:{instance_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def video_to_uint8(video: torch.Tensor) -> np.ndarray:
    """Check a method's (F, 3, H, W) float video in [0, 1]; return uint8 (F, H, W, 3)."""
    import torch

    from evals.video_io import to_uint8

    if not isinstance(video, torch.Tensor):
        raise BadVideo(f"the method returned a {type(video).__name__}, not a tensor")
    if video.ndim != 4 or video.shape[1] != 3:
        raise BadVideo(f"the method returned shape {tuple(video.shape)}; expected (F, 3, H, W)")
    if not bool(torch.isfinite(video).all()):
        raise BadVideo("the method's video holds NaN or Inf values")
    low, high = float(video.min()), float(video.max())
    if low < -1e-3 or high > 1 + 1e-3:
        raise BadVideo(f"video values span [{low:.3f}, {high:.3f}]; expected [0, 1]")
    return to_uint8(video.detach().cpu().clamp(0, 1))


def _atomic_video(path: Path, frames: np.ndarray, fps: float) -> None:
    from evals.video_io import write_video

    path.parent.mkdir(parents=True, exist_ok=True)
    # Same suffix, so the writer picks the same container; readers never see half a file.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    write_video(tmp, frames, fps)
    os.replace(tmp, path)


def _atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


@dataclass
class BatchWorker:
    """Runs jobs of one batch; picklable, so it travels to workers and Ray tasks."""

    batch_id: str
    suite: Suite
    suite_spec: str
    factories: Mapping[str, MethodFactory]
    out_dir: str
    """Absolute path of the batch folder (workers may run in another cwd)."""
    seed: int
    video_fps: float
    threads: int | None = 1
    failure_kinds: tuple[tuple[type[BaseException], FailureKind], ...] = ()
    """Extra exception classes to classify, e.g. the agent's TeacherError."""

    def _method(self, name: str) -> BatchMethod:
        if [self.batch_id] != _BUILT_FOR:
            _BUILT.clear()
            _BUILT_FOR[:] = [self.batch_id]
        if name not in _BUILT:
            _BUILT[name] = self.factories[name]()
        return _BUILT[name]

    # ------------------------------------------------------------------ one job
    def __call__(self, job: Job) -> Iterator[EvalRecord]:
        import torch

        # CPU results are bitwise reproducible only at a fixed thread count: this
        # is what lets a resumed, in-process or Ray run reproduce a local one.
        # The caller's setting comes back after the job (it matters in process).
        previous = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            yield from self._job(job)
        finally:
            torch.set_num_threads(previous)

    def _job(self, job: Job) -> Iterator[EvalRecord]:
        seed = derive_seed(self.seed, job.instance_id)
        try:
            item = self.suite.load(job.instance_id)
        except Exception as err:
            failure = Failure(
                kind=self._classify(err, default="bad_input"),
                message=f"{type(err).__name__}: {err}",
            )
            for method in job.methods:
                family = self.suite.family_of(job.instance_id)
                yield self._failed(job.instance_id, family, None, method, seed, failure, None)
            return
        written: list[Path] = []  # question files already laid out for this instance
        for method in job.methods:
            yield self._run_one(item, method, seed, written)

    def _run_one(self, item: Item, method: str, seed: int, written: list[Path]) -> EvalRecord:
        from reasoner.methods import Condition

        start = time.perf_counter()
        out = Path(self.out_dir)
        run_dir = out / "runs" / method / safe_relpath(item.instance_id)
        try:
            # A previous attempt (killed before its record) may have left files.
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.mkdir(parents=True)
            cond = Condition(
                prompt=item.prompt, image=_image_tensor(item.image), seed=seed, key=item.instance_id
            )
            output = self._method(method)(cond, run_dir)
            frames = video_to_uint8(output.video)
            expected = self.suite.expected_shape(item)
            if expected is not None and frames.shape[:3] != expected:
                raise BadVideo(
                    f"video is {frames.shape[:3]} (frames, height, width); the suite expects "
                    f"{expected}: set the video model's num_frames/height/width to match"
                )
            video_rel = self.suite.output_path(item, method)
            folder = self.suite.prepare_output(item, method, out, written[0] if written else None)
            if folder is not None and not written:
                written.append(folder)
            _atomic_video(out / video_rel, frames, self.video_fps)
            score = self.suite.score(item, frames, self.video_fps)
            summary = summarize(output)
            trace_rel = self._trace(out, run_dir, item, method, seed, output, score, summary.trace)
        except Exception as err:
            self._after_failure(err)
            failure = Failure(kind=self._classify(err), message=f"{type(err).__name__}: {err}")
            return self._failed(
                item.instance_id, item.family, item.task, method, seed, failure, start
            )
        return EvalRecord(
            suite=self.suite_spec,
            instance_id=item.instance_id,
            family=item.family,
            task=item.task,
            method=method,
            seed=seed,
            status="ok",
            score=score.score,
            passed=score.passed,
            sub_scores=dict(score.sub_scores),
            score_note=score.note,
            details=dict(score.details),
            cost={k: float(v) for k, v in output.cost.to_dict().items()},
            steps=summary.steps,
            exit_reason=summary.exit_reason,
            loss_curve=summary.loss_curve,
            video=str(video_rel),
            trace=trace_rel,
            seconds=time.perf_counter() - start,
        )

    def _trace(
        self,
        out: Path,
        run_dir: Path,
        item: Item,
        method: str,
        seed: int,
        output: Any,
        score: Any,
        method_trace: str | None,
    ) -> str:
        """Write `trace.json` (always); return the trace to link: the method's own, if any."""
        _atomic_json(
            run_dir / "trace.json",
            {
                "instance_id": item.instance_id,
                "method": method,
                "seed": seed,
                "prompt": item.prompt,
                "score": score.score,
                "passed": score.passed,
                "sub_scores": dict(score.sub_scores),
                "score_note": score.note,
                "cost": output.cost.to_dict(),
                "details": output.details,
            },
        )
        if method_trace is None:
            return str((run_dir / "trace.json").relative_to(out))
        # Model output is data: a trace path must stay inside the method's run folder.
        resolved = (run_dir / method_trace).resolve()
        if not resolved.is_relative_to(run_dir.resolve()) or not resolved.is_file():
            raise BadInput(f"the method's trace {method_trace!r} is not a file in its run folder")
        return str(resolved.relative_to(out.resolve()))

    def _failed(
        self,
        instance_id: str,
        family: str,
        task: str | None,
        method: str,
        seed: int,
        failure: Failure,
        start: float | None,
    ) -> EvalRecord:
        return EvalRecord(
            suite=self.suite_spec,
            instance_id=instance_id,
            family=family,
            task=task,
            method=method,
            seed=seed,
            status="failed",
            failure=failure,
            seconds=0.0 if start is None else time.perf_counter() - start,
        )

    def _classify(self, err: BaseException, default: FailureKind = "error") -> FailureKind:
        import openai
        import torch

        for link in _chain(err):
            if isinstance(link, BadVideo):
                return "bad_video"
            if isinstance(link, BadInput):
                return "bad_input"
            if isinstance(link, MemoryError | torch.cuda.OutOfMemoryError):
                return "oom"
            if isinstance(link, JudgeUnavailable):
                return "judge_unavailable"
            if isinstance(link, openai.APIConnectionError | openai.APIStatusError):
                return "teacher_unavailable"
            for cls, kind in self.failure_kinds:
                if isinstance(link, cls):
                    return kind
        return default

    @staticmethod
    def _after_failure(err: BaseException) -> None:
        import torch

        # Free what a failed (e.g. out-of-memory) attempt left cached for the next one.
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _image_tensor(image: np.ndarray | None) -> torch.Tensor | None:
    if image is None:
        return None
    from evals.video_io import to_tensor

    # to_tensor maps uint8 (F, H, W, 3) to float (F, 3, H, W); a frame is F = 1.
    return to_tensor(image[None])[0]
