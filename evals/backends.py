"""Where a batch's jobs run: in this process, in local worker processes, or on Ray.

A *job* is one instance with the methods still to run on it. Every backend
takes the same `JobRunner` (a picklable callable: job -> records) and hands the
records back to the driver, which alone writes the results file. What differs
is only where the runner executes and how a crash is contained:

- `InProcessBackend`: jobs run one after another in the driver (debugging).
- `LocalBackend`: N long-lived worker processes (spawned, so CUDA is safe), one
  job each at a time. A worker that dies (OOM killer, segfault) or overruns the
  job timeout is replaced and only its job is reported failed; the batch goes on.
  Workers die with the driver (Linux parent-death signal), so a killed batch
  leaves no orphans writing into its folder.
- `RayBackend`: one Ray task per job, CPUs/GPUs per task from config; the same
  batch runs unchanged on a laptop's local Ray or a multi-node cluster.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from evals.results import EvalRecord, Failure


@dataclass(frozen=True)
class Job:
    """One instance of the batch and the methods still to run on it."""

    index: int
    instance_id: str
    methods: tuple[str, ...]


class JobRunner(Protocol):
    """Runs one job where it lands; yields one record per method, failures included."""

    def __call__(self, job: Job) -> Iterator[EvalRecord]: ...


OnRecord = Callable[[EvalRecord], None]
OnJobFailed = Callable[[Job, Failure], None]


class Backend(Protocol):
    def run(
        self, jobs: Sequence[Job], runner: JobRunner, on_record: OnRecord, on_failed: OnJobFailed
    ) -> None:
        """Run every job; report each record and each job that died without finishing."""


def _job_error(err: BaseException) -> Failure:
    # An exception escaping the runner is our bug, not the method's: keep the
    # traceback's tail so the record says where, and carry on with the batch.
    tail = "".join(traceback.format_exception(err)[-3:]).strip()
    return Failure(kind="error", message=f"job crashed: {tail}")


# --------------------------------------------------------------------------- in process
@dataclass
class InProcessBackend:
    """Run jobs sequentially in this process (no isolation; for debugging and tiny runs)."""

    def run(
        self, jobs: Sequence[Job], runner: JobRunner, on_record: OnRecord, on_failed: OnJobFailed
    ) -> None:
        for job in jobs:
            try:
                for record in runner(job):
                    on_record(record)
            except Exception as err:
                on_failed(job, _job_error(err))


# --------------------------------------------------------------------------- local processes
_PR_SET_PDEATHSIG = 1


def _die_with_driver(lifeline: Connection) -> None:
    """Exit this worker the moment the driver is gone, however it died.

    Only the driver holds the other end of `lifeline`, so its death reads as EOF
    here, even while the main thread is busy in a job. (A parent-death signal is
    not enough: under a fork server the parent is the server, which the workers
    themselves keep alive.) On Linux the kernel also kills the worker when its
    parent process dies.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv()  # the driver never sends: this returns only at its death
        os._exit(1)

    threading.Thread(target=watch, name="driver-lifeline", daemon=True).start()


def _worker_main(
    conn: Connection, lifeline: Connection, payload: bytes, env: dict[str, str]
) -> None:
    """Entry point of a local worker process: receive jobs, stream records back."""
    _die_with_driver(lifeline)
    # Set before the runner is unpickled, so that device selection
    # (CUDA_VISIBLE_DEVICES) is in place before any model code touches CUDA.
    os.environ.update(env)
    runner: JobRunner = pickle.loads(payload)
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the driver is gone
        if message is None:
            return
        job: Job = message
        try:
            for record in runner(job):
                conn.send(("record", record.model_dump_json()))
            conn.send(("done", None))
        except (BrokenPipeError, OSError):
            return
        except Exception as err:
            conn.send(("crashed", _job_error(err).model_dump_json()))


@dataclass
class _Slot:
    number: int
    process: Any = None
    conn: Connection | None = None
    lifeline: Connection | None = None
    job: Job | None = None
    started: float = 0.0


def _default_start_method() -> str:
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


@dataclass
class LocalBackend:
    """A pool of `workers` processes, each running one job at a time.

    `devices` pins worker i to device `devices[i % len(devices)]` through
    `CUDA_VISIBLE_DEVICES`; `job_timeout_s` bounds one job's wall time (the worker
    is killed and replaced, the job recorded as a timeout).

    Workers start from a fork server where the platform has one: it imports the
    `preload` modules (torch, the model code) once, and each worker is a fork of
    it, so N workers do not each spend seconds importing. The fork server never
    touches CUDA, so forking from it is safe; elsewhere workers are spawned.
    """

    workers: int = 1
    devices: Sequence[str] = ()
    job_timeout_s: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    preload: Sequence[str] = ()
    start_method: str = field(default_factory=_default_start_method)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"LocalBackend needs workers >= 1, got {self.workers}")
        if self.start_method not in ("forkserver", "spawn"):
            # Plain fork would copy a driver that may hold CUDA state or threads.
            raise ValueError(
                f"start_method must be 'forkserver' or 'spawn', not {self.start_method!r}"
            )

    def _context(self) -> Any:
        ctx = mp.get_context(self.start_method)
        if self.start_method == "forkserver" and self.preload:
            # Takes effect when this process starts its fork server (once per process).
            ctx.set_forkserver_preload(["__main__", *self.preload])
        return ctx

    def _start(self, ctx: Any, slot: _Slot, payload: bytes) -> None:
        env = dict(self.env)
        if self.devices:
            env["CUDA_VISIBLE_DEVICES"] = self.devices[slot.number % len(self.devices)]
        parent_end, child_end = ctx.Pipe(duplex=True)
        life_read, life_write = ctx.Pipe(duplex=False)
        process = ctx.Process(
            target=_worker_main,
            args=(child_end, life_read, payload, env),
            name=f"vlm-teacher-eval-worker-{slot.number}",
            daemon=True,
        )
        process.start()
        # Our copies of the worker's ends go, so each side's death is the other's EOF.
        child_end.close()
        life_read.close()
        slot.process, slot.conn, slot.lifeline, slot.job = process, parent_end, life_write, None

    @staticmethod
    def _stop(slot: _Slot, kill: bool) -> None:
        if slot.process is None:
            return
        if kill and slot.process.is_alive():
            slot.process.kill()
        slot.process.join(timeout=10)
        for end in (slot.conn, slot.lifeline):
            if end is not None:
                end.close()
        slot.process, slot.conn, slot.lifeline, slot.job = None, None, None, None

    def run(
        self, jobs: Sequence[Job], runner: JobRunner, on_record: OnRecord, on_failed: OnJobFailed
    ) -> None:
        if not jobs:
            return
        ctx = self._context()
        payload = pickle.dumps(runner)
        pending = deque(jobs)
        slots = [_Slot(number=i) for i in range(min(self.workers, len(jobs)))]
        try:
            for slot in slots:
                self._start(ctx, slot, payload)
            while pending or any(slot.job is not None for slot in slots):
                for slot in slots:
                    if slot.job is None and pending:
                        slot.job, slot.started = pending.popleft(), time.monotonic()
                        assert slot.conn is not None
                        slot.conn.send(slot.job)
                busy = [slot for slot in slots if slot.job is not None]
                waitables: list[Any] = [slot.conn for slot in busy]
                waitables += [slot.process.sentinel for slot in busy]
                wait(waitables, timeout=self._poll_interval(busy))
                for slot in busy:
                    self._service(ctx, slot, payload, on_record, on_failed)
        finally:
            for slot in slots:
                if slot.conn is not None and slot.process is not None and slot.process.is_alive():
                    with contextlib.suppress(OSError):
                        slot.conn.send(None)
            for slot in slots:
                self._stop(slot, kill=False)

    def _poll_interval(self, busy: list[_Slot]) -> float | None:
        if self.job_timeout_s is None or not busy:
            return None
        now = time.monotonic()
        return max(0.01, min(slot.started + self.job_timeout_s - now for slot in busy))

    def _service(
        self,
        ctx: Any,
        slot: _Slot,
        payload: bytes,
        on_record: OnRecord,
        on_failed: OnJobFailed,
    ) -> None:
        """Drain one worker's messages; replace it if it died or overran its job."""
        assert slot.conn is not None and slot.job is not None
        job = slot.job
        try:
            # Drain first: a worker may send its last records and then die.
            while slot.conn.poll():
                kind, body = slot.conn.recv()
                if kind == "record":
                    on_record(EvalRecord.model_validate_json(body))
                elif kind == "done":
                    slot.job = None
                    return
                elif kind == "crashed":
                    slot.job = None
                    on_failed(job, Failure.model_validate_json(body))
                    return
        except (EOFError, OSError):
            pass  # the worker is gone; handled below
        if not slot.process.is_alive():
            code = slot.process.exitcode
            hint = " (killed: out of memory?)" if code == -signal.SIGKILL else ""
            self._stop(slot, kill=True)
            on_failed(job, Failure(kind="worker_died", message=f"worker exit code {code}{hint}"))
            self._start(ctx, slot, payload)
        elif (
            self.job_timeout_s is not None and time.monotonic() - slot.started > self.job_timeout_s
        ):
            self._stop(slot, kill=True)
            on_failed(
                job, Failure(kind="timeout", message=f"job exceeded {self.job_timeout_s:g} s")
            )
            self._start(ctx, slot, payload)


# --------------------------------------------------------------------------- ray
def _ray_run_job(runner: JobRunner, job: Job) -> list[str]:
    """Body of one Ray task: the records as JSON, so the driver re-validates them."""
    return [record.model_dump_json() for record in runner(job)]


@dataclass
class RayBackend:
    """One Ray task per job on the cluster at `address` (None: a local Ray instance).

    Connects to an already initialized Ray if there is one (and leaves it
    running); otherwise starts or joins one for this batch and shuts it down after.
    """

    address: str | None = None
    num_cpus_per_task: float = 1.0
    num_gpus_per_task: float = 0.0
    max_in_flight: int | None = None
    init_kwargs: dict[str, Any] = field(default_factory=dict)

    def run(
        self, jobs: Sequence[Job], runner: JobRunner, on_record: OnRecord, on_failed: OnJobFailed
    ) -> None:
        try:
            import ray
        except ImportError as err:
            raise RuntimeError(
                "--backend ray needs the 'ray' extra: pip install 'vlm-teacher[ray]'"
            ) from err
        if not jobs:
            return
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, **self.init_kwargs)
        try:
            task = ray.remote(_ray_run_job).options(
                num_cpus=self.num_cpus_per_task, num_gpus=self.num_gpus_per_task, max_retries=0
            )
            runner_ref = ray.put(runner)
            pending = deque(jobs)
            # A bounded window keeps a huge batch from flooding the scheduler, and
            # keeps the driver's view of "in flight" small if it is killed.
            window = self.max_in_flight or max(1, int(ray.cluster_resources().get("CPU", 1)) * 2)
            in_flight: dict[Any, Job] = {}
            while pending or in_flight:
                while pending and len(in_flight) < window:
                    job = pending.popleft()
                    in_flight[task.remote(runner_ref, job)] = job
                done, _ = ray.wait(list(in_flight), num_returns=1)
                for ref in done:
                    job = in_flight.pop(ref)
                    try:
                        bodies = ray.get(ref)
                    except ray.exceptions.RayTaskError as err:
                        on_failed(job, _job_error(err.cause or err))
                        continue
                    except ray.exceptions.RayError as err:
                        # Worker crashed, node lost, Ray's OOM killer: the job is lost.
                        on_failed(
                            job, Failure(kind="worker_died", message=f"{type(err).__name__}: {err}")
                        )
                        continue
                    for body in bodies:
                        on_record(EvalRecord.model_validate_json(body))
        finally:
            if started_here:
                ray.shutdown()
