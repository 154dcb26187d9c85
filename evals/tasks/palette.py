"""The mini world's colours: a small, fixed vocabulary of flat, saturated RGB values.

Instructions name colours only with these words, so an offline teacher can turn
"red" into a colour mask by looking the word up here. The values are far apart
(closest pair, blue/purple, is ~139 apart in RGB) so a checker can classify a
pixel by its nearest palette colour even after a lossy video codec.
"""

from __future__ import annotations

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (245, 205, 20),
    "purple": (170, 50, 190),
    "cyan": (20, 200, 210),
}
"""Every colour a mini-world frame contains, by the word instructions use for it."""

BACKGROUND = "white"
"""The plain background of every family."""

WALL = "black"
"""Obstacles (navigate) and maze walls."""

OBJECT_COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "cyan")
"""Colours an object, goal or target may take."""

COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
"""Palette order; `COLOR_NAMES[i]` is the colour of label `i` in a classified frame."""

PALETTE_RGB = np.array([COLORS[name] for name in COLOR_NAMES], dtype=np.uint8)
"""(K, 3) uint8 array of the palette in `COLOR_NAMES` order."""


def rgb(name: str) -> np.ndarray:
    """The uint8 RGB triple of a palette colour; a clear error for an unknown word."""
    if name not in COLORS:
        raise KeyError(f"unknown colour {name!r}; the mini world uses {', '.join(COLOR_NAMES)}")
    return np.array(COLORS[name], dtype=np.uint8)
