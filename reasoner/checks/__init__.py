"""Checks: reward specs as structured code.

A small typed vocabulary of differentiable rules over frames (colour masks,
regions, centroids, paths, counts, frame windows). A check is validated data,
never code: :func:`compile_check` turns it into torch operations through a
table keyed by the check's ``kind``.
"""

from reasoner.checks.compile import COMPILERS, CheckOutcome, CompiledCheck, compile_check
from reasoner.checks.vocabulary import (
    CHECK_KINDS,
    CHECK_MODELS,
    NAMED_COLORS,
    AvoidOverlap,
    BoxRegion,
    Check,
    ColorMask,
    FirstFrameColorRegion,
    FollowsPath,
    InsideRegion,
    MovesSmoothly,
    ObjectCount,
    OneMovesAtATime,
    OutsideRegion,
    Point,
    ReachByEnd,
    RegionUnchanged,
    StaysOneBlob,
    StaysSolid,
)

__all__ = [
    "CHECK_KINDS",
    "CHECK_MODELS",
    "COMPILERS",
    "NAMED_COLORS",
    "AvoidOverlap",
    "BoxRegion",
    "Check",
    "CheckOutcome",
    "ColorMask",
    "CompiledCheck",
    "FirstFrameColorRegion",
    "FollowsPath",
    "InsideRegion",
    "MovesSmoothly",
    "ObjectCount",
    "OneMovesAtATime",
    "OutsideRegion",
    "Point",
    "ReachByEnd",
    "RegionUnchanged",
    "StaysOneBlob",
    "StaysSolid",
    "compile_check",
]
