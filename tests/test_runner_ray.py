"""The Ray backend on a local Ray instance (2 CPUs): one task per job, failures contained.

One module-scoped Ray instance serves every test here; it is shut down after.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the `ray` extra is not installed (make test installs it)")

from test_runner_backends import jobs_named, run  # noqa: E402

from evals.backends import RayBackend  # noqa: E402

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
