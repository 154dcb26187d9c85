"""Local backends: jobs run in worker processes; a crash, a death or a hang costs one job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from evals.backends import InProcessBackend, Job, LocalBackend
from evals.results import EvalRecord, Failure


@dataclass(frozen=True)
class BehaviourJobs:
    """A real job runner whose behaviour is named by the instance id's prefix.

    ok-*: one record per method; raise-*: a record, then an exception; die-*: a
    record, then the worker process SIGKILLs itself (what the OOM killer does);
    hang-*: sleeps far past any timeout. Records carry the worker's pid and its
    CUDA_VISIBLE_DEVICES so tests can see where they ran.
    """

    def __call__(self, job: Job) -> Iterator[EvalRecord]:
        kind = job.instance_id.split("-")[0]
        for n, method in enumerate(job.methods):
            if n == 1 and kind == "raise":
                raise RuntimeError("a bug in the job runner")
            if n == 1 and kind == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            if kind == "hang":
                time.sleep(60)
            yield EvalRecord(
                suite="t",
                instance_id=job.instance_id,
                family="f",
                method=method,
                seed=job.index,
                status="ok",
                score=1.0,
                details={"pid": os.getpid(), "device": os.environ.get("CUDA_VISIBLE_DEVICES")},
            )


def run(backend, jobs: list[Job]) -> tuple[list[EvalRecord], list[tuple[Job, Failure]]]:
    records: list[EvalRecord] = []
    failed: list[tuple[Job, Failure]] = []
    backend.run(jobs, BehaviourJobs(), records.append, lambda j, f: failed.append((j, f)))
    return records, failed


def jobs_named(*names: str) -> list[Job]:
    return [Job(index=i, instance_id=n, methods=("base", "teacher")) for i, n in enumerate(names)]


def test_local_pool_contains_crashes_deaths_and_hangs() -> None:
    jobs = jobs_named("ok-1", "raise-2", "ok-3", "die-4", "ok-5", "hang-6", "ok-7")
    backend = LocalBackend(workers=2, devices=["7", "8"], job_timeout_s=3.0)
    records, failed = run(backend, jobs)

    done = sorted((r.instance_id, r.method) for r in records)
    oks = [f"ok-{i}" for i in (1, 3, 5, 7)]
    expected = [(i, m) for i in oks for m in ("base", "teacher")]
    # The first method's record of a job that then crashes or dies is kept.
    expected += [("die-4", "base"), ("raise-2", "base")]
    assert done == sorted(expected)
    kinds = {job.instance_id: failure for job, failure in failed}
    assert set(kinds) == {"raise-2", "die-4", "hang-6"}
    assert (
        kinds["raise-2"].kind == "error" and "a bug in the job runner" in kinds["raise-2"].message
    )
    assert kinds["die-4"].kind == "worker_died" and "-9" in kinds["die-4"].message
    assert kinds["hang-6"].kind == "timeout"
    # Work was spread over more than one process (and replacements after the death
    # and the timeout), each pinned to one of the given devices.
    assert len({r.details["pid"] for r in records}) >= 2
    assert {r.details["device"] for r in records} <= {"7", "8"}
    assert os.getpid() not in {r.details["pid"] for r in records}


def test_in_process_backend_reports_a_crash_and_goes_on() -> None:
    records, failed = run(InProcessBackend(), jobs_named("raise-1", "ok-2"))
    assert [(r.instance_id, r.method) for r in records] == [
        ("raise-1", "base"),
        ("ok-2", "base"),
        ("ok-2", "teacher"),
    ]
    assert [(j.instance_id, f.kind) for j, f in failed] == [("raise-1", "error")]


def test_workers_die_with_a_killed_driver(tmp_path: Path) -> None:
    # A driver that starts two workers on jobs that never end, then is SIGKILLed:
    # its workers must not live on (they would write into the batch folder).
    pids = tmp_path / "pids"
    driver = textwrap.dedent(
        f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from evals.backends import LocalBackend
        from test_runner_backends import jobs_named, BehaviourJobs

        class Announce(BehaviourJobs):
            def __call__(self, job):
                with open({str(pids)!r}, "a") as f:
                    f.write(f"{{os.getpid()}}\\n")
                yield from super().__call__(job)

        if __name__ == "__main__":
            LocalBackend(workers=2).run(
                jobs_named("hang-1", "hang-2"), Announce(), print, print
            )
        """
    )
    script = tmp_path / "driver.py"
    script.write_text(driver)
    proc = subprocess.Popen([sys.executable, str(script)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if pids.exists() and len(pids.read_text().split()) == 2:
            break
        time.sleep(0.1)
    worker_pids = [int(p) for p in pids.read_text().split()]
    assert len(worker_pids) == 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    alive = worker_pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.1)
    assert not alive, f"workers {alive} outlived their killed driver"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by init) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        # The process can vanish between the kill probe and the read.
        return False


def test_local_backend_rejects_zero_workers() -> None:
    with pytest.raises(ValueError, match="workers >= 1"):
        LocalBackend(workers=0)
