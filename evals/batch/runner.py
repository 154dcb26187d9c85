"""The driver of a batch: plan, skip what is done, dispatch, record, report progress.

    summary = run_batch(config, {"base": make_base, "teacher": make_teacher})

1. Open the suite and list its instances (`--families`, `--limit`).
2. Open the batch folder: check it holds the same batch (suite, seed, frame
   settings), lock it, and read which (instance, method) records exist.
3. Make one job per instance with the methods it still lacks.
4. Run the jobs on the backend; append each record as it arrives, and a failed
   record for every method of a job whose worker died.

Rerunning the same command resumes: finished records are skipped, and a killed
run loses only the records of the instances that were in flight.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evals.backends import Backend, InProcessBackend, Job, LocalBackend, RayBackend
from evals.batch.config import EvalConfig
from evals.batch.jobs import BatchWorker
from evals.batch.methods import MethodFactories
from evals.batch.progress import BatchProgress
from evals.batch.suites import MiniSuite, RulerSuite, Suite
from evals.results import (
    EvalRecord,
    Failure,
    FailureKind,
    ResultsError,
    ResultsStore,
    atomic_write_json,
)
from reasoner.errors import ConfigError

MANIFEST = "batch.json"
# Imported once by the local fork server, then shared by every worker it forks:
# torch and the video model code are what make a worker slow to start.
PRELOAD = ("torch", "reasoner.methods", "reasoner.video_model")
# What makes two runs "the same batch": a folder is only ever resumed with these equal.
_IDENTITY = ("suite", "seed", "size", "num_frames", "video_fps")


@dataclass(frozen=True)
class BatchSummary:
    """What one invocation did."""

    out: Path
    instances: int
    records_total: int
    """(instance, method) pairs in scope."""
    skipped: int
    """Already in the results file before this run."""
    ok: int
    failed: int


def open_suite(config: EvalConfig) -> Suite:
    """The suite named by `config.suite` ('mini:<split>', 'vbvr:<dir>', 'ruler:<file>')."""
    spec = config.suite
    if spec is None:
        raise ConfigError("no suite given: pass --suite mini:test | vbvr:<dir> | ruler:<file>")
    kind, _, arg = spec.partition(":")
    if not arg:
        raise ConfigError(f"suite {spec!r} names no {kind or 'suite'} argument, e.g. mini:test")
    if kind == "mini":
        return MiniSuite(
            split=arg, size=_need(config.size, "size"), num_frames=_need_frames(config)
        )
    if kind == "vbvr":
        from evals.batch.suites import VbvrSuite

        return VbvrSuite(root=Path(arg).resolve(), size=_need(config.size, "size"))
    if kind == "ruler":
        if config.judge is None:
            raise ConfigError("a 'ruler:' suite needs a `judge:` section in the eval config")
        return RulerSuite(
            path=Path(arg).resolve(), judge=config.judge, size=_need(config.size, "size")
        )
    raise ConfigError(f"suite {spec!r}: use mini:<split>, vbvr:<question dir> or ruler:<rows file>")


def _need(value: int | None, name: str) -> int:
    if value is None:
        raise ConfigError(f"eval config: `{name}` is unset (the CLI fills it from the video model)")
    return value


def _need_frames(config: EvalConfig) -> int:
    return _need(config.num_frames, "num_frames")


def make_backend(config: EvalConfig) -> Backend:
    """The backend `config.backend` names, sized from config and the machine."""
    if config.backend == "inprocess":
        return InProcessBackend()
    if config.backend == "ray":
        opts = config.ray
        return RayBackend(
            address=opts.address,
            num_cpus_per_task=opts.num_cpus_per_task,
            num_gpus_per_task=opts.num_gpus_per_task,
            max_in_flight=opts.max_in_flight,
        )
    devices = list(config.devices) or _visible_gpus()
    if config.workers is not None:
        workers = config.workers
    elif devices:
        workers = len(devices)
    else:
        workers = max(1, (os.cpu_count() or 1) // config.threads_per_worker)
    return LocalBackend(
        workers=workers, devices=devices, job_timeout_s=config.job_timeout_s, preload=PRELOAD
    )


def _visible_gpus() -> list[str]:
    # Without an NVIDIA driver there is no GPU to count, and the driver stays free
    # of torch (workers import it; the driver only hands out jobs).
    if shutil.which("nvidia-smi") is None:
        return []
    import torch

    count = torch.cuda.device_count()
    if not count:
        return []
    # Keep the user's own CUDA_VISIBLE_DEVICES mapping if they set one.
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in visible.split(",") if d.strip()] if visible else []
    return ids[:count] if ids else [str(i) for i in range(count)]


def _check_manifest(out: Path, config: EvalConfig) -> None:
    """Refuse to mix two different batches in one folder; record the batch on first use."""
    identity = {key: getattr(config, key) for key in _IDENTITY}
    path = out / MANIFEST
    if path.exists():
        import json

        saved = json.loads(path.read_text())
        changed = {k: (saved.get(k), v) for k, v in identity.items() if saved.get(k) != v}
        if changed:
            what = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ResultsError(
                f"{out} holds a different batch ({what}); rerun with the same settings to "
                "resume it, or choose a new --out folder"
            )
        methods = list(dict.fromkeys([*saved.get("methods", []), *config.methods]))
    else:
        methods = list(config.methods)
    atomic_write_json(path, {**identity, "methods": methods})


def plan_jobs(
    instance_ids: Sequence[str], methods: Sequence[str], finished: set[tuple[str, str]]
) -> list[Job]:
    """One job per instance that still lacks a method; methods keep the order given."""
    jobs = []
    for instance_id in instance_ids:
        todo = tuple(m for m in methods if (instance_id, m) not in finished)
        if todo:
            jobs.append(Job(index=len(jobs), instance_id=instance_id, methods=todo))
    return jobs


def run_batch(
    config: EvalConfig,
    factories: MethodFactories,
    *,
    backend: Backend | None = None,
    show_progress: bool = True,
    failure_kinds: Sequence[tuple[type[BaseException], FailureKind]] = (),
) -> BatchSummary:
    """Run (or resume) the batch `config` describes with the given method factories."""
    missing = [m for m in config.methods if m not in factories]
    if missing:
        raise ConfigError(
            f"methods {missing} are not available; known methods: {', '.join(sorted(factories))}"
        )
    if config.out is None:
        raise ConfigError("no output folder: pass --out <dir>")
    out = Path(config.out).resolve()
    suite = open_suite(config)
    instance_ids = suite.instance_ids(config.families, config.limit)
    if not instance_ids:
        raise ConfigError(f"suite {config.suite} has no instances for families={config.families}")

    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(out).open_for_append()
    try:
        _check_manifest(out, config)
        finished = store.finished_keys(retry_failed=config.retry_failed)
        scope = {(i, m) for i in instance_ids for m in config.methods}
        jobs = plan_jobs(instance_ids, config.methods, finished)
        worker = BatchWorker(
            batch_id=uuid.uuid4().hex,
            suite=suite,
            suite_spec=config.suite or "",
            factories=dict(factories),
            out_dir=str(out),
            seed=config.seed,
            video_fps=config.video_fps,
            threads=config.threads_per_worker,
            failure_kinds=tuple(failure_kinds),
        )
        written: set[tuple[str, str]] = set()
        counts = {"ok": 0, "failed": 0}
        todo = sum(len(job.methods) for job in jobs)
        with BatchProgress(todo, f"eval {config.suite}", enabled=show_progress) as progress:

            def on_record(record: EvalRecord) -> None:
                # Exactly once per key, whatever a backend does (e.g. a retried task).
                if record.key in written or record.key in finished:
                    return
                store.append(record, fsync=config.fsync)
                written.add(record.key)
                counts[record.status] += 1
                progress.advance(record.status == "ok")

            def on_failed(job: Job, failure: Failure) -> None:
                for method in job.methods:
                    if (job.instance_id, method) not in written:
                        family = suite.family_of(job.instance_id)
                        on_record(_lost(config, job, family, method, failure))

            (backend or make_backend(config)).run(jobs, worker, on_record, on_failed)
    finally:
        store.close()
    return BatchSummary(
        out=out,
        instances=len(instance_ids),
        records_total=len(scope),
        skipped=len(scope & finished),
        ok=counts["ok"],
        failed=counts["failed"],
    )


def _lost(config: EvalConfig, job: Job, family: str, method: str, failure: Failure) -> EvalRecord:
    """The failed record of a method whose job died before reporting it."""
    from evals.batch.jobs import derive_seed

    return EvalRecord(
        suite=config.suite or "",
        instance_id=job.instance_id,
        family=family,
        method=method,
        seed=derive_seed(config.seed, job.instance_id),
        status="failed",
        failure=failure,
    )


def summary_line(summary: BatchSummary) -> dict[str, Any]:
    """A JSON-ready one-line summary for the CLI."""
    return {
        "out": str(summary.out),
        "instances": summary.instances,
        "records": summary.records_total,
        "skipped": summary.skipped,
        "ok": summary.ok,
        "failed": summary.failed,
    }
