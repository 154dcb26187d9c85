"""The append-only results store: round trip, torn tails, latest-wins, one writer."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from evals.results import EvalRecord, Failure, ResultsError, ResultsStore


def record(instance: str, method: str, score: float | None = 0.5, **kw: object) -> EvalRecord:
    status = "failed" if "failure" in kw else "ok"
    return EvalRecord(
        suite="mini:test",
        instance_id=instance,
        family="grid",
        method=method,
        seed=7,
        status=status,
        score=score if status == "ok" else None,
        **kw,
    )


def test_records_round_trip_in_order(tmp_path: Path) -> None:
    written = [record("a", "base", 0.25), record("a", "teacher", 1.0), record("b", "base", 0.0)]
    with ResultsStore(tmp_path) as store:
        for r in written:
            store.append(r)
    read = list(ResultsStore(tmp_path).iter_records())
    assert read == written
    assert ResultsStore(tmp_path).finished_keys() == {
        ("a", "base"),
        ("a", "teacher"),
        ("b", "base"),
    }


def test_a_torn_last_line_is_dropped_and_repaired(tmp_path: Path) -> None:
    with ResultsStore(tmp_path) as store:
        store.append(record("a", "base"))
        store.append(record("b", "base"))
    # A writer killed mid-line leaves a prefix of a record without its newline.
    whole = (record("c", "base").model_dump_json() + "\n").encode()
    with open(tmp_path / "results.jsonl", "ab") as handle:
        handle.write(whole[: len(whole) // 2])
    assert [r.instance_id for r in ResultsStore(tmp_path).iter_records()] == ["a", "b"]
    with ResultsStore(tmp_path) as store:
        store.append(record("c", "base"))
    lines = (tmp_path / "results.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 4  # three whole lines, nothing torn
    assert [r.instance_id for r in ResultsStore(tmp_path).iter_records()] == ["a", "b", "c"]


def test_latest_record_wins_and_failures_are_retried_only_when_asked(tmp_path: Path) -> None:
    failure = Failure(kind="oom", message="CUDA out of memory")
    with ResultsStore(tmp_path) as store:
        store.append(record("a", "base", failure=failure))
        store.append(record("b", "base"))
    store = ResultsStore(tmp_path)
    assert store.finished_keys() == {("a", "base"), ("b", "base")}
    assert store.finished_keys(retry_failed=True) == {("b", "base")}
    with store:
        store.append(record("a", "base", 0.75))
    latest = ResultsStore(tmp_path).latest()
    assert latest[("a", "base")].status == "ok" and latest[("a", "base")].score == 0.75


def test_a_corrupt_middle_line_names_its_line(tmp_path: Path) -> None:
    good = record("a", "base").model_dump_json()
    (tmp_path / "results.jsonl").write_text(f"{good}\nnot json\n{good}\n")
    with pytest.raises(ResultsError, match="line 2 is not a valid record"):
        list(ResultsStore(tmp_path).iter_records())


def test_non_finite_losses_are_kept_as_null_steps() -> None:
    r = record("a", "teacher", loss_curve=[1.0, math.nan, 0.5, math.inf])
    assert r.loss_curve == [1.0, None, 0.5, None]
    assert EvalRecord.model_validate_json(r.model_dump_json()).loss_curve == [1.0, None, 0.5, None]


def test_comparable_leaves_out_only_timing(tmp_path: Path) -> None:
    a = record("a", "base", cost={"wall_seconds": 1.0, "vgm_forward_passes": 4}, seconds=1.2)
    b = record("a", "base", cost={"wall_seconds": 9.0, "vgm_forward_passes": 4}, seconds=9.9)
    assert a.comparable() == b.comparable()
    c = record("a", "base", cost={"wall_seconds": 1.0, "vgm_forward_passes": 5})
    assert a.comparable() != c.comparable()


def test_one_writer_at_a_time_and_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path).open_for_append()
    with pytest.raises(ResultsError, match="another batch is writing"):
        ResultsStore(tmp_path).open_for_append()
    store.close()
    # A writer killed with SIGKILL cannot release its lock itself; the kernel does.
    code = (
        "import os, signal, sys\n"
        "from evals.results import ResultsStore\n"
        f"ResultsStore({str(tmp_path)!r}).open_for_append()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False)
    assert done.returncode == -9
    ResultsStore(tmp_path).open_for_append().close()


def test_append_needs_an_open_store(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="open_for_append"):
        ResultsStore(tmp_path).append(record("a", "base"))


def test_progress_shows_counts_failures_rate_and_eta() -> None:
    import io
    import time

    from rich.console import Console

    from evals.batch.progress import BatchProgress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160, color_system=None)
    with BatchProgress(4, "eval mini:test", console=console) as progress:
        for ok in (True, False, True):
            time.sleep(0.05)
            progress.advance(ok)
    # The last state drawn (the terminal output ends with cursor control codes).
    text = [line for line in buffer.getvalue().splitlines() if "eval mini:test" in line][-1]
    assert "eval mini:test" in text and "3/4" in text and "1 failed" in text
    assert "rec/min" in text and "ETA" in text and "0:00:0" in text
