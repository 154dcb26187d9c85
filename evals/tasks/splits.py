"""Fixed seed ranges for the train / validation / test splits, kept apart by layout.

A seed names a task; its split is the range it falls in. Seed ranges alone do
not keep the splits apart — two seeds can draw the same layout — so layouts
are split too: a stable hash of the layout (positions and colours, independent
of frame size and phrasing) puts every possible layout in exactly one split,
and a generator redraws until the layout belongs to its seed's split. No test
layout can therefore appear in training, whatever the number of train seeds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

Split = Literal["train", "val", "test"]

SPLITS: dict[Split, range] = {
    "train": range(0, 1_000_000),
    "val": range(1_000_000, 1_000_200),
    "test": range(2_000_000, 2_000_500),
}
"""Seed range of each split (per family: `mini/<family>/<seed>`)."""

# Layout hash buckets (out of 10) that belong to each split: 80 / 10 / 10 %.
_BUCKETS: dict[Split, frozenset[int]] = {
    "train": frozenset(range(2, 10)),
    "val": frozenset({0}),
    "test": frozenset({1}),
}


def split_of_seed(seed: int) -> Split:
    """The split a seed belongs to; seeds outside every range count as train."""
    for name in ("val", "test"):
        if seed in SPLITS[name]:
            return name
    return "train"


def layout_split(layout: dict[str, Any]) -> Split:
    """The split that owns a layout, from a stable hash of its JSON form."""
    text = json.dumps(layout, sort_keys=True, separators=(",", ":"))
    bucket = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % 10
    for name, buckets in _BUCKETS.items():
        if bucket in buckets:
            return name
    raise AssertionError(f"bucket {bucket} belongs to no split")  # the buckets cover 0..9
