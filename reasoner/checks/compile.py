"""Compile a check into a torch loss and a pass/fail verdict.

Each kind has one compiler, looked up in :data:`COMPILERS` by the check's
``kind``. A compiled check maps frames ``(K, 3, H, W)`` in [0, 1] to a
:class:`CheckOutcome`: a scalar loss that is 0 when the rule holds and grows
smoothly (squared hinge) with the violation, averaged over the window's frames,
and a verdict computed on hard masks with the same measurement.

"The first frame" is frame 0 of the K frames the reward sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from reasoner.checks import ops
from reasoner.checks.vocabulary import (
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

# Fewer pixels than this (soft area) counts as "the object is missing".
_MIN_OBJECT_PX = 2.0
# A blob smaller than this share of the largest blob of its colour is a speck,
# not an object (generated frames have stray pixels of every colour).
_SPECK_SHARE = 0.2
# Loss per missing blob in a count; about a half-violated hinge.
_MISSING_BLOB_COST = 0.25


@dataclass(frozen=True)
class CheckOutcome:
    """What one check says about one video."""

    loss: torch.Tensor  # scalar, differentiable in the frames
    passed: bool
    detail: str  # the worst measurement, for the teacher to read


Evaluator = Callable[[torch.Tensor, Sequence[int]], CheckOutcome]


@dataclass(frozen=True)
class CompiledCheck:
    """A check bound to the frame indices of its window."""

    check: Check
    indices: tuple[int, ...]
    evaluate: Evaluator

    def __call__(self, frames: torch.Tensor) -> CheckOutcome:
        return self.evaluate(frames, self.indices)


# --------------------------------------------------------------------------- helpers


def _masks(obj: ColorMask, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft and hard masks ``(N, H, W)`` of a colour."""
    dist = ops.color_distance(frames, obj.rgb01(), obj.space)
    return ops.soft_mask(dist, obj.tolerance), ops.hard_mask(dist, obj.tolerance)


def _region(region: BoxRegion | FirstFrameColorRegion, frames: torch.Tensor) -> torch.Tensor:
    """0/1 ``(H, W)`` mask of a region; fixed, so no gradient flows through it."""
    height, width = frames.shape[-2:]
    if isinstance(region, BoxRegion):
        return ops.box_mask((region.x0, region.y0, region.x1, region.y1), height, width, frames)
    _, hard = _masks(region.color_mask(), frames[:1].detach())
    return ops.dilate(hard, ops.radius_px(region.grow, height, width))[0]


def _hinge2(x: torch.Tensor) -> torch.Tensor:
    """Squared hinge: 0 for x <= 0, smooth at 0, growing quadratically."""
    return F.relu(x).pow(2)


def _presence(soft_area: torch.Tensor) -> torch.Tensor:
    return _hinge2(1.0 - soft_area / _MIN_OBJECT_PX)


def _zero(frames: torch.Tensor) -> torch.Tensor:
    # Keeps the graph connected so a total made only of such terms can still backward.
    return frames.sum() * 0.0


def _worst(values: torch.Tensor, indices: Sequence[int], largest: bool) -> tuple[float, int]:
    i = int(values.argmax() if largest else values.argmin())
    return float(values[i]), indices[i]


def _share(mask: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of a mask's mass inside a region, per frame."""
    return (mask * region).sum(dim=(-2, -1)) / (ops.area(mask) + 1e-6)


def _target_xy(
    target: Point | BoxRegion | FirstFrameColorRegion, frames: torch.Tensor
) -> torch.Tensor | None:
    """Target centre as a (2,) tensor, or None if a first-frame colour is absent."""
    if isinstance(target, Point):
        return frames.new_tensor([target.x, target.y])
    if isinstance(target, BoxRegion):
        return frames.new_tensor([(target.x0 + target.x1) / 2, (target.y0 + target.y1) / 2])
    region = _region(target, frames)
    if region.sum() < 1:
        return None
    return ops.centroid(region.unsqueeze(0))[0]


def _path_targets(waypoints: Sequence[Point], n: int, like: torch.Tensor) -> torch.Tensor:
    """``n`` points spaced evenly by arc length along the waypoint polyline: ``(n, 2)``."""
    pts = like.new_tensor([[p.x, p.y] for p in waypoints])
    seg = (pts[1:] - pts[:-1]).norm(dim=-1)
    cum = torch.cat([seg.new_zeros(1), seg.cumsum(0)])
    total = float(cum[-1])
    if total <= 0:  # every waypoint is the same point
        return pts[:1].expand(n, 2)
    fractions = (
        torch.linspace(0, 1, n, dtype=like.dtype, device=like.device)
        if n > 1
        else (like.new_ones(1))
    )
    out = []
    for s in (fractions * total).tolist():
        k = min(int(torch.searchsorted(cum, like.new_tensor(s), right=True)) - 1, len(seg) - 1)
        t = 0.0 if seg[k] <= 0 else (s - float(cum[k])) / float(seg[k])
        out.append(pts[k] + (pts[k + 1] - pts[k]) * min(max(t, 0.0), 1.0))
    return torch.stack(out)


def _distances(points: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (points - targets).pow(2).sum(dim=-1).add(1e-12).sqrt()


# ------------------------------------------------------------------------- compilers


def _inside_region(check: InsideRegion) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        region = _region(check.region, frames)
        soft, hard = _masks(check.object, frames[list(idx)])
        share = _share(soft, region)
        loss = (_hinge2(check.min_fraction - share) + _presence(ops.area(soft))).mean()
        hard_share = _share(hard, region) * (ops.area(hard) >= 1)
        worst, frame = _worst(hard_share, idx, largest=False)
        return CheckOutcome(
            loss,
            worst >= check.min_fraction,
            f"lowest share inside {worst:.2f} (needs >= {check.min_fraction:g}) at frame {frame}",
        )

    return evaluate


def _outside_region(check: OutsideRegion) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        region = _region(check.region, frames)
        soft, hard = _masks(check.object, frames[list(idx)])
        loss = _hinge2(_share(soft, region) - check.max_fraction).mean()
        worst, frame = _worst(_share(hard, region), idx, largest=True)
        return CheckOutcome(
            loss,
            worst <= check.max_fraction,
            f"highest share inside {worst:.2f} (allowed <= {check.max_fraction:g}) "
            f"at frame {frame}",
        )

    return evaluate


def _avoid_overlap(check: AvoidOverlap) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        window = frames[list(idx)]
        r = ops.radius_px(check.margin, *frames.shape[-2:])
        soft_a, hard_a = _masks(check.a, window)
        if isinstance(check.b, ColorMask):
            soft_b, hard_b = _masks(check.b, window)
        else:
            soft_b = hard_b = _region(check.b, frames).expand_as(soft_a)
        # Growing `a` by the margin makes "closer than the margin" count as contact.
        contact = (ops.dilate(soft_a, r) * soft_b).sum(dim=(-2, -1)) / (ops.area(soft_a) + 1e-6)
        hard_contact = (ops.dilate(hard_a, r) * hard_b).sum(dim=(-2, -1))
        touching = [i for i, c in zip(idx, hard_contact.tolist(), strict=True) if c > 0]
        return CheckOutcome(
            contact.pow(2).mean(),
            not touching,
            f"touching on frames {touching[:8]}" if touching else "never touching",
        )

    return evaluate


def _blobs(soft: torch.Tensor, hard: torch.Tensor, frame: int) -> tuple[torch.Tensor, list[int]]:
    """Soft areas of the counted blobs of one frame, largest first, and their hard areas.

    Blobs are found on the hard mask; a blob counts if it has at least
    ``_MIN_OBJECT_PX`` pixels and ``_SPECK_SHARE`` of the largest blob's area
    (stray specks of the colour are not objects). Its soft area is summed over
    the blob grown by one pixel, so its anti-aliased rim is part of it.
    """
    labels = ops.components(hard[frame : frame + 1])[0]
    ids, hard_areas = labels[labels > 0].unique(return_counts=True)
    if ids.numel() == 0:
        return soft.new_zeros(0), []
    order = hard_areas.argsort(descending=True)
    ids, hard_areas = ids[order], hard_areas[order]
    keep = hard_areas >= max(_MIN_OBJECT_PX, _SPECK_SHARE * float(hard_areas[0]))
    ids, hard_areas = ids[keep], hard_areas[keep]
    if ids.numel() == 0:  # only specks below _MIN_OBJECT_PX
        return soft.new_zeros(0), []
    grown = ops.dilate(labels.unsqueeze(0).to(soft.dtype), 1)[0]
    soft_areas = torch.stack([(soft[frame] * (grown == i)).sum() for i in ids.tolist()])
    return soft_areas, hard_areas.tolist()


def _count_loss(
    soft_areas: torch.Tensor, colour_area: torch.Tensor, count: int, ref_area: float
) -> torch.Tensor:
    """0 when there are ``count`` blobs; pushes extra blobs to vanish, missing ones to appear.

    Extra blobs (the smallest) are penalised by how far they are above the speck
    threshold, so the loss reaches 0 exactly as they stop counting. Missing blobs
    cost a constant per blob plus the shortfall of the colour's total (soft) area
    ``colour_area`` against ``count`` blobs of ``ref_area`` pixels, the only
    handle a gradient has on blobs that do not exist yet.
    """
    n = soft_areas.numel()
    if n > count:
        largest = soft_areas[0].detach().clamp_min(1.0)
        return _hinge2(soft_areas[count:] / largest - _SPECK_SHARE).sum()
    if n < count:
        shortfall = _hinge2(1.0 - colour_area / (count * ref_area))
        return (count - n) * _MISSING_BLOB_COST + shortfall
    return colour_area * 0.0  # satisfied; kept in the graph


def _object_count(check: ObjectCount) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        soft, hard = _masks(check.object, frames[list(idx)])
        # A missing blob is taken to be about as big as the largest one in view, or
        # 1% of the frame when none is.
        default_area = 0.01 * frames.shape[-1] * frames.shape[-2]
        losses, wrong = [], []
        for t, i in enumerate(idx):
            areas, _ = _blobs(soft, hard, t)
            ref = max(float(areas[0].detach()), default_area) if areas.numel() else default_area
            losses.append(_count_loss(areas, soft[t].sum(), check.count, ref))
            if areas.numel() != check.count:
                wrong.append((i, areas.numel()))
        detail = (
            f"counted {wrong[0][1]} (needs {check.count}) at frame {wrong[0][0]}"
            if wrong
            else f"counted {check.count} on every frame"
        )
        return CheckOutcome(torch.stack(losses).mean(), not wrong, detail)

    return evaluate


def _stays_one_blob(check: StaysOneBlob) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        # The object is the largest blob of its colour in the first frame: marks or
        # specks of the same colour elsewhere are not part of its size.
        _, hard0 = _masks(check.object, frames[:1].detach())
        _, first_blobs = _blobs(hard0, hard0, 0)
        ref_area = float(first_blobs[0]) if first_blobs else 0.0
        if ref_area < 1:
            return CheckOutcome(
                _zero(frames),
                False,
                f"no {check.object.describe()} pixel in the first frame: pick the colour the "
                "object has there, or raise its tolerance",
            )
        soft, hard = _masks(check.object, frames[list(idx)])
        losses, bad = [], []
        for t, i in enumerate(idx):
            areas, hard_areas = _blobs(soft, hard, t)
            losses.append(_count_loss(areas, soft[t].sum(), 1, ref_area))
            if areas.numel():  # the largest piece keeps about its first-frame size
                losses[-1] = losses[-1] + _hinge2(
                    (areas[0] / ref_area - 1).abs() - check.size_tolerance
                )
            ratio = hard_areas[0] / ref_area if hard_areas else 0.0
            if len(hard_areas) != 1 or abs(ratio - 1) > check.size_tolerance:
                bad.append(f"frame {i}: {len(hard_areas)} blobs, size x{ratio:.2f}")
        return CheckOutcome(
            torch.stack(losses).mean(),
            not bad,
            bad[0] if bad else "one blob of about its first-frame size throughout",
        )

    return evaluate


def _stays_solid(check: StaysSolid) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        # Each 8-connected piece of the first-frame region is one object (N_obj, H, W).
        _, hard0 = _masks(check.objects.color_mask(), frames[:1].detach())
        labels = ops.components(hard0)[0]
        ids = labels[labels > 0].unique()
        if ids.numel() == 0:
            return CheckOutcome(
                _zero(frames), False, f"no {check.objects.describe()} object in the first frame"
            )
        pieces = torch.stack([(labels == i).to(frames.dtype) for i in ids.tolist()])
        sizes = pieces.sum(dim=(-2, -1))  # (N_obj,)
        window = frames[list(idx)]

        def fills(masks: list[torch.Tensor]) -> torch.Tensor:
            # (T, N_obj) share of each object's pixels in its best-matching colour.
            per_color = torch.stack(
                [(m.unsqueeze(1) * pieces).sum(dim=(-2, -1)) / sizes for m in masks]
            )
            return per_color.amax(dim=0)

        masks = [_masks(c, window) for c in check.colors]
        soft_fill = fills([soft for soft, _ in masks])
        hard_fill = fills([hard for _, hard in masks])
        worst, frame = _worst(hard_fill.amin(dim=1), idx, largest=False)
        # Summed over frames, not averaged: a recolouring goes wrong on one or two
        # frames, and a mean over the window would make that loss vanishingly small.
        return CheckOutcome(
            _hinge2(check.min_fill - soft_fill).sum(dim=0).mean(),
            worst >= check.min_fill,
            f"an object is {worst:.2f} one colour (needs >= {check.min_fill:g}) at frame {frame}",
        )

    return evaluate


def _region_unchanged(check: RegionUnchanged) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        region = _region(check.region, frames)
        pixels = region.sum()
        if pixels < 1:
            return CheckOutcome(_zero(frames), False, "the region covers no pixel; enlarge it")
        ref = frames[:1].detach()
        # Smooth |x| so the gradient is defined where a pixel is exactly unchanged.
        diff = ((frames[list(idx)] - ref).pow(2) + 1e-8).sqrt().mean(dim=1)
        change = (diff * region).sum(dim=(-2, -1)) / pixels
        worst, frame = _worst(change.detach(), idx, largest=True)
        return CheckOutcome(
            _hinge2(change - check.max_change).mean(),
            worst <= check.max_change,
            f"largest mean change {worst:.3f} (allowed <= {check.max_change:g}) at frame {frame}",
        )

    return evaluate


def _centre_near(
    mask: ColorMask,
    frames: torch.Tensor,
    idx: Sequence[int],
    targets: torch.Tensor,
    tolerance: float,
) -> tuple[torch.Tensor, float, int]:
    """Loss, worst hard distance and its frame for "the object's centre is within
    `tolerance` of `targets`" (one point, or one per window frame): the soft loss adds
    the presence term; an invisible object is infinitely far."""
    soft, hard = _masks(mask, frames[list(idx)])
    dist = _distances(ops.centroid(soft), targets)
    loss = (_hinge2(dist - tolerance) + _presence(ops.area(soft))).mean()
    hard_dist = torch.where(ops.area(hard) >= 1, _distances(ops.centroid(hard), targets), torch.inf)
    worst, frame = _worst(hard_dist, idx, largest=True)
    return loss, worst, frame


def _reach_by_end(check: ReachByEnd) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        target = _target_xy(check.target, frames)
        if target is None:
            return CheckOutcome(
                _zero(frames), False, "the target colour is not in the first frame; fix the target"
            )
        loss, worst, frame = _centre_near(check.object, frames, idx, target, check.tolerance)
        return CheckOutcome(
            loss,
            worst <= check.tolerance,
            f"centre {worst:.3f} from the target (needs <= {check.tolerance:g}) at frame {frame}"
            if worst < float("inf")
            else f"object not visible at frame {frame}",
        )

    return evaluate


def _moves_smoothly(check: MovesSmoothly) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        if len(idx) < 2:
            return CheckOutcome(_zero(frames), True, "one frame: nothing can jump")
        soft, hard = _masks(check.object, frames[list(idx)])
        xy = ops.centroid(soft)
        steps = _distances(xy[1:], xy[:-1])
        # Summed over the frame pairs, not averaged: a jump happens between two frames,
        # and a mean over the window would make its loss vanishingly small.
        loss = _hinge2(steps - check.max_step).sum() + _presence(ops.area(soft)).mean()
        visible = ops.area(hard) >= 1
        hard_xy = ops.centroid(hard)
        hard_steps = torch.where(
            visible[1:] & visible[:-1], _distances(hard_xy[1:], hard_xy[:-1]), torch.inf
        )
        worst, frame = _worst(hard_steps, idx[1:], largest=True)
        return CheckOutcome(
            loss,
            worst <= check.max_step,
            f"moves {worst:.3f} into frame {frame} (allowed <= {check.max_step:g})"
            if worst < float("inf")
            else f"object not visible around frame {frame}",
        )

    return evaluate


def _follows_path(check: FollowsPath) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        targets = _path_targets(check.waypoints, len(idx), frames)
        loss, worst, frame = _centre_near(check.object, frames, idx, targets, check.tolerance)
        return CheckOutcome(
            loss,
            worst <= check.tolerance,
            f"{worst:.3f} off the path (needs <= {check.tolerance:g}) at frame {frame}"
            if worst < float("inf")
            else f"object not visible at frame {frame}",
        )

    return evaluate


def _on_the_way(masks: torch.Tensor, size: float) -> torch.Tensor:
    """Per frame, the share of an object's ``size`` pixels that differ from both the
    window's first and last frame (0 while it has not left or has arrived)."""
    # Smooth |x| so the gradient is defined where a pixel is exactly unchanged.
    from_first = ((masks - masks[:1]).pow(2) + 1e-12).sqrt().sum(dim=(-2, -1))
    from_last = ((masks - masks[-1:]).pow(2) + 1e-12).sqrt().sum(dim=(-2, -1))
    return torch.minimum(from_first, from_last) / size


def _one_moves_at_a_time(check: OneMovesAtATime) -> Evaluator:
    def evaluate(frames: torch.Tensor, idx: Sequence[int]) -> CheckOutcome:
        window = frames[list(idx)]
        soft_ways, hard_ways = [], []
        for obj in check.objects:
            soft, hard = _masks(obj, window)
            size = float(hard[0].sum())
            if size < 1:
                return CheckOutcome(
                    _zero(frames),
                    False,
                    f"no {obj.describe()} pixel on the window's first frame; use the colour "
                    "the object has there, or raise its tolerance",
                )
            soft_ways.append(_on_the_way(soft, size))
            hard_ways.append(_on_the_way(hard, size))
        # (N objects, T frames): how far past the threshold each object is on its way.
        excess = F.relu(torch.stack(soft_ways) - check.min_change)
        # Every pair of objects on their way together costs the product of their
        # excesses, summed over frames: the rule breaks on a few frames, and a mean
        # over the window would make that loss vanish.
        pairs = (excess.sum(dim=0).pow(2) - excess.pow(2).sum(dim=0)) / 2
        moving = torch.stack(hard_ways) > check.min_change
        together = [t for t in range(len(idx)) if int(moving[:, t].sum()) > 1]
        if not together:
            return CheckOutcome(pairs.sum(), True, "at most one object on its way on every frame")
        first = together[0]
        names = [o.describe() for o, m in zip(check.objects, moving[:, first], strict=True) if m]
        return CheckOutcome(
            pairs.sum(),
            False,
            f"{' and '.join(names)} are on their way together on {len(together)} frame(s), "
            f"first at frame {idx[first]}",
        )

    return evaluate


COMPILERS: dict[str, Callable[[Any], Evaluator]] = {
    "inside_region": _inside_region,
    "outside_region": _outside_region,
    "avoid_overlap": _avoid_overlap,
    "object_count": _object_count,
    "stays_one_blob": _stays_one_blob,
    "stays_solid": _stays_solid,
    "region_unchanged": _region_unchanged,
    "reach_by_end": _reach_by_end,
    "moves_smoothly": _moves_smoothly,
    "follows_path": _follows_path,
    "one_moves_at_a_time": _one_moves_at_a_time,
}


def first_frame_problems(check: Check, first_frame: torch.Tensor) -> str | None:
    """Why ``check`` cannot work with this first frame ``(3, H, W)``, or None.

    Catches a colour the check relies on being found in the first frame (a
    first-frame region, or the object of ``stays_one_blob``) that is not there,
    so the teacher hears about it when writing the spec, not after optimising.
    """
    frame = first_frame.detach().unsqueeze(0)
    needed = [
        (name, value.color_mask())
        for name, value in ((n, getattr(check, n)) for n in type(check).model_fields)
        if isinstance(value, FirstFrameColorRegion)
    ]
    if isinstance(check, StaysOneBlob):
        needed.append(("object", check.object))
    if isinstance(check, OneMovesAtATime):
        needed += [(f"objects[{i}]", obj) for i, obj in enumerate(check.objects)]
    for name, mask in needed:
        _, hard = _masks(mask, frame)
        if hard.sum() < 1:
            return (
                f"{name}: no pixel of {mask.describe()} (tolerance {mask.tolerance:g}) in the "
                "first frame; use the colour as it appears there or raise the tolerance"
            )
    return None


def compile_check(check: Check, num_frames: int) -> CompiledCheck:
    """Bind a validated check to ``num_frames`` frames (raises ``SpecError`` for a bad window)."""
    indices = tuple(check.window.indices(num_frames))
    return CompiledCheck(check=check, indices=indices, evaluate=COMPILERS[check.kind](check))
