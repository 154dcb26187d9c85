"""Rule checker for moving two squares onto the targets of their own colour, one at a time.

Criteria (each in [0, 1]):

- `reached_goal`: fraction of the two squares whose centroid ends within a
  quarter cell of the centre of their own colour's target.
- `followed_rule`: the squares move one after the other: in no frame are both
  "in transit" (more than half a pixel from where they start and from where
  they end up), and no square jumps farther between two frames than twice
  the solution's speed.
- `object_intact`: fraction of frames in which both squares are each one
  solid square of the right size.
- `scene_preserved`: fraction of frames in which background and target
  corner marks are unchanged wherever the squares are not.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from evals.checkers.pixels import (
    Blob,
    blob,
    chebyshev,
    classify,
    dilate,
    euclid,
    is_solid_square,
    label_of,
    scene_kept,
)
from evals.tasks.geometry import Grid, corner_rects, manhattan
from evals.tasks.palette import BACKGROUND

MOVE_PX = 0.5


def _corners(grid: Grid, cell: list[int], size: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    for y0, x0, y1, x1 in corner_rects(grid, *cell):
        mask[y0:y1, x0:x1] = True
    return mask


def measure(video: np.ndarray, hidden: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """Criteria and failure notes for a (F, H, W, 3) uint8 video of the right shape."""
    num_frames, size = video.shape[0], video.shape[1]
    grid = Grid.from_dict(hidden["geometry"])
    side = hidden["side"]
    objects = hidden["objects"]
    labels = classify(video)

    expected = np.full((size, size), label_of(BACKGROUND), dtype=np.int8)
    masks, blobs = [], []
    for obj in objects:
        corners = _corners(grid, obj["target"], size)
        expected[corners] = label_of(obj["color"])
        # The target's own corner marks share the square's colour: leave them out.
        mask = (labels == label_of(obj["color"])) & ~corners
        masks.append(mask)
        blobs.append([blob(mask[f]) for f in range(num_frames)])
    notes: list[str] = []

    # Goal: each square on its own target in the last frame.
    on_target = 0
    for obj, track in zip(objects, blobs, strict=True):
        final: Blob = track[-1]
        if final.centroid is None:
            notes.append(f"reached_goal: no {obj['color']} square in the last frame")
            continue
        off = chebyshev(final.centroid, grid.center(*obj["target"]))
        if off <= grid.cell / 4:
            on_target += 1
        else:
            notes.append(
                f"reached_goal: the {obj['color']} square ends {off:.1f} px from the "
                f"{obj['color']} target (at most {grid.cell / 4:.1f} allowed)"
            )
    reached = on_target / len(objects)

    # Rule: one square at a time, and no jumps. A square is "in transit" in a frame
    # when it is neither where it started nor where it ends up; both in transit at
    # once breaks the rule. (Comparing frame-to-frame steps instead would miss two
    # slow squares whose whole-pixel steps happen to alternate.)
    total_px = sum(manhattan(o["start"], o["target"]) for o in objects) * grid.cell
    max_step = max(grid.cell, 2 * total_px / max(num_frames - 2, 1)) + 1
    transit = np.zeros((len(objects), num_frames), dtype=bool)
    jumps = []
    for i, (obj, track) in enumerate(zip(objects, blobs, strict=True)):
        seen = [(f, b.centroid) for f, b in enumerate(track) if b.centroid is not None]
        if not seen:
            continue
        first, last = seen[0][1], seen[-1][1]
        for f, c in seen:
            transit[i, f] = euclid(c, first) > MOVE_PX and euclid(c, last) > MOVE_PX
        for (_, before), (f, after) in itertools.pairwise(seen):
            if euclid(before, after) > max_step:
                jumps.append(f"{obj['color']} into frame {f}")
    together = [int(f) for f in np.flatnonzero(transit.all(axis=0))]
    followed = float(not together and not jumps)
    if together:
        notes.append(
            f"followed_rule: both squares are on their way at once in frames {together[:6]}"
        )
    if jumps:
        notes.append(f"followed_rule: jumps of more than {max_step:.1f} px: {', '.join(jumps[:4])}")

    # Intact: both squares solid in every frame.
    broken = [f for f in range(num_frames) if not all(is_solid_square(t[f], side) for t in blobs)]
    intact = 1.0 - len(broken) / num_frames
    if broken:
        notes.append(
            f"object_intact: a square is missing, misshapen or in pieces in {len(broken)} "
            f"of {num_frames} frames"
        )

    # Scene: background and targets unchanged.
    changed = [
        f
        for f in range(num_frames)
        if not scene_kept(labels[f], expected, dilate(masks[0][f] | masks[1][f], 1))
    ]
    scene = 1.0 - len(changed) / num_frames
    if changed:
        notes.append(f"scene_preserved: the scene changes in {len(changed)} frames")

    criteria = {
        "reached_goal": reached,
        "followed_rule": followed,
        "object_intact": intact,
        "scene_preserved": scene,
    }
    return criteria, notes
