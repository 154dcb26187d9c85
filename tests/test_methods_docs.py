"""The Python snippets of docs/methods.md run as written on the tiny config."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest
import torch
from tiny_wan import one_torch_thread

from reasoner.cost import CostRecord

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods.md"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_docs_snippets_run_and_give_every_method(tmp_path: Path) -> None:
    first, loop = snippets()
    # The second snippet continues the first, as a reader would run them.
    script = tmp_path / "methods_snippet.py"
    script.write_text(first + "\n" + loop)
    namespace = runpy.run_path(str(script), run_name="__docs__")

    outputs = namespace["outputs"]
    assert list(outputs) == ["base", "best_of_n", "solver", "teacher"]
    for out in outputs.values():
        assert out.video.shape == (5, 3, 16, 16)
        assert float(out.video.min()) >= 0.0 and float(out.video.max()) <= 1.0
    assert isinstance(namespace["total"], CostRecord)
    assert namespace["total"].samples == 1 + 4 + 2 + 1

    teacher = outputs["teacher"].details["history"]
    assert len(teacher) > 1 and teacher[-1]["loss"] < teacher[0]["loss"]

    result = namespace["result"]
    assert [r.spec_version for r in result.history] == [1, 1, 1, 2, 2, 2]
    assert [r.action for r in result.history] == ["step"] * 6
    assert result.video is not None and result.video.shape == (5, 3, 16, 16)
    lora_b = [p for n, p in namespace["reasoner"].transformer.named_parameters() if ".lora_B." in n]
    assert all(bool((p == 0).all()) for p in lora_b)
    assert torch.is_tensor(namespace["frames"])
