"""The shipped mini scorer: its recipe, its measured accuracy, and that it reads colours."""

from __future__ import annotations

import json

import pytest
import torch

from evals.mini.paths import MINI_SCORER_DIR
from evals.mini.train_scorer import CARD_NAME, ScorerTrainConfig
from evals.tasks import get_task
from evals.tasks.palette import OBJECT_COLORS
from reasoner.vqa import VQAScorer

pytestmark = pytest.mark.skipif(
    not MINI_SCORER_DIR.is_dir(),
    reason="the mini scorer is not shipped (python -m evals.mini.train_scorer)",
)


def test_shipped_folder_is_small_and_records_its_recipe_and_accuracy() -> None:
    files = [p for p in MINI_SCORER_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 10 * 2**20
    card = json.loads((MINI_SCORER_DIR / CARD_NAME).read_text())
    # The weights come from the documented default recipe: `python -m evals.mini.train_scorer`.
    assert card["recipe"] == ScorerTrainConfig().model_dump(mode="json")
    assert card["video_model_samples"] is True
    evaluation = card["evaluation"]
    assert evaluation["split"] == "test" and evaluation["rows"] > 1000
    assert 0.5 < evaluation["accuracy"]["all"] <= 1.0


def test_it_tells_the_colours_a_held_out_video_shows() -> None:
    scorer = VQAScorer.from_pretrained(str(MINI_SCORER_DIR))
    task = get_task("mini/recolor/2000000", num_frames=9)
    frames = torch.tensor(task.solution, dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
    shown = {c for c in OBJECT_COLORS if c in task.instruction}
    absent = [c for c in OBJECT_COLORS if c not in shown][:2]
    assert shown and absent
    questions = [f"Is anything {c} at some point in the video?" for c in (*shown, *absent)]
    with torch.no_grad():
        scores = scorer.score(frames, questions, normalize_yes_no=True)
    verdicts = [s.p_yes > 0.5 for s in scores]
    assert verdicts == [True] * len(shown) + [False] * len(absent)
