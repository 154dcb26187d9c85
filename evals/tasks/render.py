"""Drawing flat-coloured boxes into frames, and timing motion over a video.

Generators build a static canvas once (background, walls, goals, targets) and
draw the moving or changing objects of each frame on a copy of it. Nothing is
blended: every pixel is exactly one palette colour, which keeps the videos
learnable at 32 px and lets the checkers classify pixels by nearest colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from evals.tasks.palette import BACKGROUND, rgb


@dataclass(frozen=True)
class Box:
    """An axis-aligned filled rectangle of one palette colour, in pixels."""

    color: str
    y: int
    x: int
    h: int
    w: int


def blank(size: int) -> np.ndarray:
    """A `size` × `size` frame of background colour, (H, W, 3) uint8."""
    frame = np.empty((size, size, 3), dtype=np.uint8)
    frame[:] = rgb(BACKGROUND)
    return frame


def fill(frame: np.ndarray, y0: int, x0: int, y1: int, x1: int, color: str) -> None:
    """Paint the rectangle [y0, y1) × [x0, x1), clipped to the frame."""
    height, width = frame.shape[:2]
    y0, x0 = max(y0, 0), max(x0, 0)
    y1, x1 = min(y1, height), min(x1, width)
    if y0 < y1 and x0 < x1:
        frame[y0:y1, x0:x1] = rgb(color)


def draw(frame: np.ndarray, boxes: Sequence[Box]) -> None:
    """Paint boxes in order (later ones on top)."""
    for box in boxes:
        fill(frame, box.y, box.x, box.y + box.h, box.x + box.w, box.color)


def compose(static: np.ndarray, boxes_per_frame: Sequence[Sequence[Box]]) -> np.ndarray:
    """A video (F, H, W, 3) uint8: the static canvas with each frame's boxes on top."""
    video = np.repeat(static[None], len(boxes_per_frame), axis=0)
    for frame, boxes in zip(video, boxes_per_frame, strict=True):
        draw(frame, boxes)
    return video


def progress(num_frames: int) -> np.ndarray:
    """Fraction of the motion done at each frame: 0 at frame 0, 1 from frame F-2 on.

    The last frame repeats the end state so "where does it end" has one clear
    answer even for a checker that looks at the final frame only.
    """
    moving = max(num_frames - 2, 1)
    return np.minimum(np.arange(num_frames) / moving, 1.0)


def point_on_path(path: Sequence[Sequence[int]], s: float) -> tuple[float, float]:
    """Position (row, col) after travelling `s` unit steps along a cell path."""
    if len(path) == 1 or s <= 0:
        return float(path[0][0]), float(path[0][1])
    last = len(path) - 1
    if s >= last:
        return float(path[-1][0]), float(path[-1][1])
    i = int(np.floor(s))
    frac = s - i
    (r0, c0), (r1, c1) = path[i], path[i + 1]
    return r0 + (r1 - r0) * frac, c0 + (c1 - c0) * frac


def split_box(box: Box, vertical: bool) -> tuple[Box, Box]:
    """Cut a box into two halves: left/right when `vertical`, else top/bottom."""
    if vertical:
        left = box.w // 2
        return (
            Box(box.color, box.y, box.x, box.h, left),
            Box(box.color, box.y, box.x + left, box.h, box.w - left),
        )
    top = box.h // 2
    return (
        Box(box.color, box.y, box.x, top, box.w),
        Box(box.color, box.y + top, box.x, box.h - top, box.w),
    )
