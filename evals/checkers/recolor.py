"""Rule checker for recolouring every square of one colour and leaving the others alone.

A square's region is the part of its cell it fills in the first frame.
Criteria (each in [0, 1]):

- `reached_goal`: fraction of the source-coloured squares whose region is at
  least 90 % the new colour in the last frame.
- `followed_rule`: every other square keeps at least 90 % of its region in
  its own colour in every frame.
- `object_intact`: fraction of frames in which every region is at least 90 %
  one object colour (no square missing, faded, split or moved away).
- `scene_preserved`: fraction of frames in which the background outside the
  squares stays unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evals.checkers.pixels import classify, label_of, scene_kept
from evals.tasks.geometry import Grid
from evals.tasks.palette import BACKGROUND, COLOR_NAMES, OBJECT_COLORS

FILL = 0.9


def measure(video: np.ndarray, hidden: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """Criteria and failure notes for a (F, H, W, 3) uint8 video of the right shape."""
    num_frames, size = video.shape[0], video.shape[1]
    grid = Grid.from_dict(hidden["geometry"])
    side = hidden["side"]
    squares = hidden["squares"]
    new_label = label_of(hidden["new_color"])
    object_labels = [label_of(c) for c in OBJECT_COLORS]
    labels = classify(video)

    regions = np.zeros((size, size), dtype=bool)
    fractions = []  # per square: (F, K) share of the region in each palette label
    for sq in squares:
        y, x = grid.box_origin(*sq["cell"], side)
        regions[y : y + side, x : x + side] = True
        patch = labels[:, y : y + side, x : x + side].reshape(num_frames, -1)
        fractions.append(
            np.stack([(patch == k).mean(axis=1) for k in range(len(COLOR_NAMES))], axis=1)
        )
    notes: list[str] = []

    sources = [i for i, sq in enumerate(squares) if sq["source"]]
    done = [i for i in sources if fractions[i][-1, new_label] >= FILL]
    reached = len(done) / len(sources)
    if len(done) < len(sources):
        notes.append(
            f"reached_goal: {len(sources) - len(done)} of {len(sources)} "
            f"{hidden['source_color']} squares are not {hidden['new_color']} at the end"
        )

    altered = [
        sq["color"]
        for i, sq in enumerate(squares)
        if not sq["source"] and (fractions[i][:, label_of(sq["color"])] < FILL).any()
    ]
    followed = float(not altered)
    if altered:
        notes.append(
            f"followed_rule: squares that should stay as they are change: {', '.join(altered)}"
        )

    solid = np.ones(num_frames, dtype=bool)
    for frac in fractions:
        solid &= frac[:, object_labels].max(axis=1) >= FILL
    intact = float(solid.mean())
    if not solid.all():
        notes.append(
            f"object_intact: a square is missing, faded or broken in {int((~solid).sum())} "
            f"of {num_frames} frames"
        )

    expected = np.full((size, size), label_of(BACKGROUND), dtype=np.int8)
    changed = [f for f in range(num_frames) if not scene_kept(labels[f], expected, regions)]
    scene = 1.0 - len(changed) / num_frames
    if changed:
        notes.append(f"scene_preserved: the background changes in {len(changed)} frames")

    criteria = {
        "reached_goal": reached,
        "followed_rule": followed,
        "object_intact": intact,
        "scene_preserved": scene,
    }
    return criteria, notes
