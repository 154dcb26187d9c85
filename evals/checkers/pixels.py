"""Pixel perception for the rule checkers: colour labels, blobs and their statistics.

Frames of the mini world are flat palette colours, so a pixel's meaning is the
nearest palette colour. Pixels far from every palette colour (codec noise,
a model's smudges) get the label -1 and match nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evals.tasks.palette import COLOR_NAMES, PALETTE_RGB

UNKNOWN = -1
MAX_COLOR_DISTANCE = 60.0
"""A pixel farther than this (RGB Euclidean) from every palette colour is unknown.

About half the distance between the two closest palette colours, so no pixel
can be close to two colours at once.
"""


def label_of(name: str) -> int:
    """The label index of a palette colour word."""
    return COLOR_NAMES.index(name)


def classify(video: np.ndarray) -> np.ndarray:
    """Label every pixel of a (..., 3) uint8 array with its nearest palette colour index."""
    pixels = video.astype(np.int32)[..., None, :]  # (..., 1, 3)
    dist2 = ((pixels - PALETTE_RGB.astype(np.int32)) ** 2).sum(-1)  # (..., K)
    labels = dist2.argmin(-1).astype(np.int8)
    labels[dist2.min(-1) > MAX_COLOR_DISTANCE**2] = UNKNOWN
    return labels


@dataclass(frozen=True)
class Blob:
    """What a checker needs to know about the pixels of one object in one frame."""

    area: int
    components: int
    height: int
    width: int
    centroid: tuple[float, float] | None

    @property
    def visible(self) -> bool:
        return self.area > 0


def count_components(mask: np.ndarray) -> int:
    """Number of 4-connected components of True pixels in a 2-D mask."""
    remaining = mask.copy()
    height, width = mask.shape
    count = 0
    for y, x in zip(*np.nonzero(mask), strict=True):
        if not remaining[y, x]:
            continue
        count += 1
        remaining[y, x] = False
        stack = [(y, x)]
        while stack:
            cy, cx = stack.pop()
            for ny, nx in ((cy - 1, cx), (cy + 1, cx), (cy, cx - 1), (cy, cx + 1)):
                if 0 <= ny < height and 0 <= nx < width and remaining[ny, nx]:
                    remaining[ny, nx] = False
                    stack.append((ny, nx))
    return count


def blob(mask: np.ndarray) -> Blob:
    """Area, component count, bounding box and centroid of a 2-D mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return Blob(0, 0, 0, 0, None)
    return Blob(
        area=int(ys.size),
        components=count_components(mask),
        height=int(ys.max() - ys.min() + 1),
        width=int(xs.max() - xs.min() + 1),
        centroid=(float(ys.mean()), float(xs.mean())),
    )


def is_solid_square(b: Blob, side: int) -> bool:
    """One piece, about `side`² pixels, no wider or taller than the square it should be."""
    return (
        b.components == 1
        and 0.5 * side * side <= b.area <= 1.5 * side * side
        and b.height <= side + 1
        and b.width <= side + 1
    )


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    """Grow a 2-D mask by `radius` pixels (square neighbourhood)."""
    out = mask.copy()
    height, width = mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            ys = slice(max(dy, 0), height + min(dy, 0))
            xs = slice(max(dx, 0), width + min(dx, 0))
            yd = slice(max(-dy, 0), height + min(-dy, 0))
            xd = slice(max(-dx, 0), width + min(-dx, 0))
            out[yd, xd] |= mask[ys, xs]
    return out


def chebyshev(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(abs(a[0] - b[0]), abs(a[1] - b[1]))


def euclid(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(np.hypot(a[0] - b[0], a[1] - b[1]))


SCENE_TOLERANCE = 0.005
"""A frame keeps its scene when at most this fraction of the checked pixels changed."""


def scene_kept(labels: np.ndarray, expected: np.ndarray, ignore: np.ndarray) -> bool:
    """Whether a frame's labels match the expected static scene outside `ignore`."""
    checked = ~ignore
    total = int(checked.sum())
    if total == 0:
        return True
    wrong = int(((labels != expected) & checked).sum())
    return wrong <= SCENE_TOLERANCE * total
