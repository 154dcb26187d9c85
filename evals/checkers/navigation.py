"""Rule checker for moving one square to a goal without entering blocked cells.

Used by the `navigate` (black obstacles) and `maze` (black walls) families.
Criteria (each in [0, 1]):

- `reached_goal`: in the last frame the agent's centroid lies within half a
  cell of the goal cell's centre.
- `followed_rule`: in no frame do the agent's pixels cover a blocked cell (or
  the maze's outer wall) by more than 1/8 of a cell, and the agent never jumps
  farther between two frames than twice the solution's speed (a jump would
  skip over a wall).
- `object_intact`: fraction of frames in which the agent is one solid square
  of the right size (not missing, not in pieces, not smeared).
- `scene_preserved`: fraction of frames in which background, blocked cells
  and goal are unchanged wherever the agent is not.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evals.checkers.pixels import (
    blob,
    chebyshev,
    classify,
    dilate,
    euclid,
    is_solid_square,
    label_of,
    scene_kept,
)
from evals.tasks.geometry import Grid
from evals.tasks.palette import BACKGROUND, WALL


def blocked_mask(hidden: dict[str, Any], size: int) -> np.ndarray:
    """(H, W) bool: pixels the agent must not enter."""
    grid = Grid.from_dict(hidden["geometry"])
    mask = np.zeros((size, size), dtype=bool)
    if hidden["outside_blocked"]:
        mask[:] = True
        span = grid.origin + grid.rows * grid.cell
        mask[grid.origin : span, grid.origin : span] = False
    for row, col in hidden["blocked"]:
        y0, x0, y1, x1 = grid.rect(row, col)
        mask[y0:y1, x0:x1] = True
    return mask


def _frames(indices: list[int]) -> str:
    shown = ", ".join(str(i) for i in indices[:6])
    return shown + (" …" if len(indices) > 6 else "")


def measure(video: np.ndarray, hidden: dict[str, Any]) -> tuple[dict[str, float], list[str]]:
    """Criteria and failure notes for a (F, H, W, 3) uint8 video of the right shape."""
    num_frames, size = video.shape[0], video.shape[1]
    grid = Grid.from_dict(hidden["geometry"])
    side = grid.cell
    agent_word, goal_word = hidden["agent_color"], hidden["goal_color"]
    labels = classify(video)
    agent = labels == label_of(agent_word)
    blocked = blocked_mask(hidden, size)
    goal_rect = grid.rect(*hidden["goal"])

    expected = np.full((size, size), label_of(BACKGROUND), dtype=np.int8)
    expected[blocked] = label_of(WALL)
    expected[goal_rect[0] : goal_rect[2], goal_rect[1] : goal_rect[3]] = label_of(goal_word)

    blobs = [blob(agent[f]) for f in range(num_frames)]
    notes: list[str] = []

    # Goal: where the agent is in the last frame.
    goal_center = grid.center(*hidden["goal"])
    final = blobs[-1]
    if final.centroid is None:
        reached = 0.0
        notes.append(f"reached_goal: no {agent_word} square in the last frame")
    else:
        off = chebyshev(final.centroid, goal_center)
        reached = float(off <= side / 2)
        if not reached:
            notes.append(
                f"reached_goal: the {agent_word} square ends {off:.1f} px from the "
                f"{goal_word} square (at most {side / 2:.1f} allowed)"
            )

    # Rule: never inside a blocked cell, never a jump over one.
    word = hidden["blocked_word"]
    limit = max(2, side * side // 8)
    touched = [f for f in range(num_frames) if int((agent[f] & blocked).sum()) >= limit]
    path_px = (len(hidden["path"]) - 1) * grid.cell
    max_step = max(grid.cell, 2 * path_px / max(num_frames - 2, 1)) + 1
    jumps = []
    previous = None
    for f, b in enumerate(blobs):
        if b.centroid is None:
            continue
        if previous is not None and euclid(previous[1], b.centroid) > max_step:
            jumps.append(f)
        previous = (f, b.centroid)
    followed = float(not touched and not jumps)
    if touched:
        notes.append(
            f"followed_rule: the {agent_word} square enters a black {word} in frames "
            f"{_frames(touched)}"
        )
    if jumps:
        notes.append(
            f"followed_rule: the {agent_word} square jumps more than {max_step:.1f} px "
            f"into frames {_frames(jumps)}"
        )

    # Intact: one solid agent-sized square in every frame.
    broken = [f for f, b in enumerate(blobs) if not is_solid_square(b, side)]
    intact = 1.0 - len(broken) / num_frames
    if broken:
        missing = [f for f in broken if not blobs[f].visible]
        notes.append(
            f"object_intact: the {agent_word} square is missing in {len(missing)} and "
            f"misshapen or in pieces in {len(broken) - len(missing)} of {num_frames} frames"
        )

    # Scene: background, blocked cells and goal stay as they were.
    changed = [
        f for f in range(num_frames) if not scene_kept(labels[f], expected, dilate(agent[f], 1))
    ]
    scene = 1.0 - len(changed) / num_frames
    if changed:
        notes.append(f"scene_preserved: the scene changes in frames {_frames(changed)}")

    criteria = {
        "reached_goal": reached,
        "followed_rule": followed,
        "object_intact": intact,
        "scene_preserved": scene,
    }
    return criteria, notes
