"""Resumable batches and the Ray backend.

A real batch is killed at random and restarted; the same batch on a local Ray
instance (2 CPUs) must give the same records. One module-scoped Ray instance
serves every test here; it is shut down after.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (make test installs it)")

from test_runner_backends import jobs_named, run  # noqa: E402
from test_runner_methods import FACTORIES, eval_config  # noqa: E402

from evals.backends import RayBackend  # noqa: E402
from evals.batch.runner import run_batch  # noqa: E402
from evals.results import EvalRecord, ResultsStore  # noqa: E402
from evals.tasks import FAMILIES  # noqa: E402

TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    # Ray workers import the jobs' modules by name: give them this folder and the repo.
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_runs_one_task_per_job_and_contains_failures(local_ray: None) -> None:
    jobs = jobs_named("ok-1", "raise-2", "die-3", "ok-4")
    records, failed = run(RayBackend(num_cpus_per_task=1), jobs)
    done = sorted((r.instance_id, r.method) for r in records)
    # A Ray task returns its records at the end: a job that fails loses them all.
    assert done == [(i, m) for i in ("ok-1", "ok-4") for m in ("base", "teacher")]
    kinds = {job.instance_id: failure.kind for job, failure in failed}
    assert kinds == {"raise-2": "error", "die-3": "worker_died"}
    assert os.getpid() not in {r.details["pid"] for r in records}
    assert ray.is_initialized()  # a Ray the caller started is left running


# ------------------------------------------------------------------ 40 instances x 3 methods
# The Done-when of the batch runner: a batch of 40 mini-world instances x 3 methods,
# SIGKILLed twice at random points and restarted, ends with every record exactly
# once and the same records as an uninterrupted run; the uninterrupted run here is
# the same batch on Ray, so the comparison also shows Ray == local.
INSTANCES = 40
METHODS = ("base", "best_of_n", "teacher")
DRIVER = """
import sys
from pathlib import Path

sys.path[:0] = [{tests!r}]
from test_runner_methods import FACTORIES, eval_config

from evals.batch.runner import run_batch

if __name__ == "__main__":
    config = eval_config(Path({out!r}), limit={limit}, workers=2, backend="local")
    run_batch(config, FACTORIES, show_progress=False)
"""


def _records_in(out: Path) -> list[dict]:
    path = out / "results.jsonl"
    if not path.exists():
        return []
    # Complete lines only: the kill may have torn the last one.
    return [json.loads(line) for line in path.read_bytes().split(b"\n")[:-1] if line]


def _start(script: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def killed_batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    out = tmp_path_factory.mktemp("killed") / "batch"
    script = out.parent / "driver.py"
    script.write_text(DRIVER.format(tests=str(TESTS), out=str(out), limit=INSTANCES))
    rng = np.random.default_rng(20260602)
    total = INSTANCES * len(METHODS)
    kills: list[int] = []
    for _ in range(2):
        before = len(_records_in(out))
        # Somewhere in the next stretch of the batch, plus a random fraction of a
        # record's time, so the kill can land mid-job or mid-write.
        threshold = before + int(rng.integers(5, 35))
        proc = _start(script)
        deadline = time.monotonic() + 240
        while len(_records_in(out)) < threshold:
            assert proc.poll() is None, f"the batch ended early: {proc.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "the batch made no progress"
            time.sleep(0.02)
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = _records_in(out)
        kills.append(len(seen))
        assert len(seen) < total, "killed too late to test anything"
        keys = [(r["instance_id"], r["method"]) for r in seen]
        assert len(keys) == len(set(keys)), "a record was written twice before the kill"
    proc = _start(script)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    return out, kills


def test_a_batch_killed_twice_ends_with_every_record_exactly_once(
    killed_batch: tuple[Path, list[int]],
) -> None:
    out, kills = killed_batch
    assert kills[0] < kills[1] < INSTANCES * len(METHODS)
    lines = (out / "results.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""  # no torn line left behind
    records = [EvalRecord.model_validate_json(line) for line in lines[:-1]]
    keys = [r.key for r in records]
    expected = {
        (f"mini/{f}/{2_000_000 + s}", m) for s in range(10) for f in FAMILIES for m in METHODS
    }
    assert len(keys) == len(set(keys)) == INSTANCES * len(METHODS)
    assert set(keys) == expected
    assert all(r.status == "ok" for r in records)


def test_the_same_batch_on_ray_gives_the_same_records(
    local_ray: None, killed_batch: tuple[Path, list[int]], tmp_path: Path
) -> None:
    killed_out, _ = killed_batch
    out = tmp_path / "ray"
    config = eval_config(out, limit=INSTANCES, backend="ray")
    summary = run_batch(config, FACTORIES, show_progress=False)
    assert (summary.ok, summary.failed) == (INSTANCES * len(METHODS), 0)
    on_ray = ResultsStore(out).latest()
    local = ResultsStore(killed_out).latest()
    assert set(on_ray) == set(local)
    for key, record in on_ray.items():
        # Scores, sub-scores, steps, loss curves, exit reasons, seeds, paths: all equal.
        assert record.comparable() == local[key].comparable(), key
    # The videos themselves are byte-identical.
    for key, record in list(on_ray.items())[:: len(METHODS) * 4]:
        assert (out / record.video).read_bytes() == (killed_out / local[key].video).read_bytes()
