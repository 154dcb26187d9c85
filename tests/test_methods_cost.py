"""Cost records add up over a batch, and the meters count what really ran."""

from __future__ import annotations

import time

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reasoner.cost import CostMeter, CostRecord, ForwardCounter, TeacherUsage

records = st.builds(
    CostRecord,
    wall_seconds=st.integers(0, 10**6).map(lambda ms: ms / 1000),
    vgm_forward_passes=st.integers(0, 10**6),
    teacher_calls=st.integers(0, 1000),
    teacher_prompt_tokens=st.integers(0, 10**7),
    teacher_completion_tokens=st.integers(0, 10**7),
    optimization_steps=st.integers(0, 1000),
    samples=st.integers(0, 100),
)


def test_batch_sum_equals_hand_computed_totals() -> None:
    batch = [
        CostRecord(wall_seconds=1.5, vgm_forward_passes=4, samples=1),
        CostRecord(
            wall_seconds=2.0,
            vgm_forward_passes=20,
            teacher_calls=2,
            teacher_prompt_tokens=300,
            teacher_completion_tokens=50,
            optimization_steps=6,
            samples=1,
        ),
        CostRecord(wall_seconds=0.25, teacher_calls=1, teacher_prompt_tokens=10),
    ]
    total = sum(batch)
    assert total == CostRecord(
        wall_seconds=3.75,
        vgm_forward_passes=24,
        teacher_calls=3,
        teacher_prompt_tokens=310,
        teacher_completion_tokens=50,
        optimization_steps=6,
        samples=2,
    )
    assert total.teacher_tokens == 360
    assert total.to_dict()["teacher_tokens"] == 360


@given(st.lists(records, max_size=8))
def test_sum_is_fieldwise_and_order_free(batch: list[CostRecord]) -> None:
    total = sum(batch, CostRecord())
    assert total.vgm_forward_passes == sum(r.vgm_forward_passes for r in batch)
    assert total.teacher_calls == sum(r.teacher_calls for r in batch)
    assert total.samples == sum(r.samples for r in batch)
    assert total.wall_seconds == pytest.approx(sum(r.wall_seconds for r in batch))
    reversed_total = sum(reversed(batch), CostRecord())
    assert reversed_total.vgm_forward_passes == total.vgm_forward_passes
    assert reversed_total.teacher_tokens == total.teacher_tokens


def test_adding_anything_but_a_record_is_an_error() -> None:
    with pytest.raises(TypeError):
        CostRecord() + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        5 + CostRecord()  # type: ignore[operator]


def test_forward_counter_counts_only_while_active() -> None:
    layer = torch.nn.Linear(3, 2)
    x = torch.ones(1, 3)
    layer(x)
    with ForwardCounter(layer) as counter:
        for _ in range(4):
            layer(x)
    layer(x)
    assert counter.count == 4
    assert not layer._forward_pre_hooks  # the hook is gone afterwards


class _CountingTeacher:
    """A usage reporter whose totals move as it is called (no model needed)."""

    def __init__(self) -> None:
        self.total = TeacherUsage()

    @property
    def usage(self) -> TeacherUsage:
        return self.total

    def ask(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.total = self.total + TeacherUsage(1, prompt_tokens, completion_tokens)


def test_cost_meter_bills_only_the_block() -> None:
    layer = torch.nn.Linear(3, 2)
    teacher = _CountingTeacher()
    teacher.ask(100, 100)  # before the block: not billed
    with CostMeter(layer, teachers=[teacher]) as meter:
        layer(torch.ones(1, 3))
        layer(torch.ones(1, 3))
        teacher.ask(12, 3)
        teacher.ask(8, 2)
        time.sleep(0.01)
    teacher.ask(50, 50)  # after the block: not billed
    record = meter.record(optimization_steps=3, samples=1)
    assert record.vgm_forward_passes == 2
    assert (record.teacher_calls, record.teacher_prompt_tokens) == (2, 20)
    assert record.teacher_completion_tokens == 5
    assert record.optimization_steps == 3 and record.samples == 1
    assert record.wall_seconds >= 0.01


def test_cost_meter_record_before_exit_is_an_error() -> None:
    meter = CostMeter(torch.nn.Linear(1, 1))
    with pytest.raises(RuntimeError, match="after the `with` block"):
        meter.record()
