"""Measurements on frames: colour masks, areas, centroids, blobs.

Frames are ``(N, 3, H, W)`` in [0, 1]; masks are ``(N, H, W)`` in [0, 1]. Every
measurement works on soft masks (smooth in the pixels, for the loss) and on hard
0/1 masks (for the pass/fail verdict) with the same formula, so loss and
verdict agree up to the softness of the mask. Blob labelling runs on hard masks
only (it picks which pixels belong together; the amounts stay soft).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# A soft mask goes from 0.9997 to 0.0003 over +-tolerance/4 around the tolerance
# (logistic width tolerance/32). Measured on anti-aliased, noisy synthetic
# blobs: softer masks let background within ~2x the tolerance leak into areas
# and blob counts (tens of phantom blobs at width tolerance/8); this width keeps
# soft counts within 0.1 of the hard ones while every pixel still gets gradient.
_SOFTNESS = 1.0 / 32.0
# Logistic width (in colour distance) of the surrogate gradient: reaches pixels
# across the whole colour range, not just near the tolerance.
_SURROGATE_WIDTH = 0.15
# HSV mode: brightness counts a quarter as much as hue and saturation, so a
# shaded object still matches its colour.
_HSV_VALUE_WEIGHT = 0.25
# Dark pixels have unstable hue; this floor on the value fades them to grey.
_HSV_VALUE_FLOOR = 0.25
_SQRT3 = math.sqrt(3.0)


def _chroma_plane(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hexagonal hue/chroma coordinates and value of ``(..., 3, H, W)`` RGB."""
    r, g, b = rgb.unbind(dim=-3)
    alpha = r - 0.5 * (g + b)
    beta = 0.5 * _SQRT3 * (g - b)
    value = rgb.amax(dim=-3)
    return alpha, beta, value


def color_distance(
    frames: torch.Tensor, rgb: tuple[float, float, float], space: str
) -> torch.Tensor:
    """Distance in [0, 1] of every pixel to a colour; ``(N, 3, H, W)`` -> ``(N, H, W)``.

    ``rgb``: Euclidean RGB distance over sqrt(3). ``hsv``: distance of hue and
    saturation (the chroma plane scaled by 1/value: unit disc, so /2), plus a
    quarter weight on value; robust to shading.
    """
    ref = frames.new_tensor(rgb).view(1, 3, 1, 1)
    if space == "rgb":
        return (frames - ref).pow(2).sum(dim=1).add(1e-12).sqrt() / _SQRT3
    a, b, v = _chroma_plane(frames)
    ra, rb, rv = _chroma_plane(ref)
    scale, ref_scale = v.clamp_min(_HSV_VALUE_FLOOR), rv.clamp_min(_HSV_VALUE_FLOOR)
    hue_sat = ((a / scale - ra / ref_scale).pow(2) + (b / scale - rb / ref_scale).pow(2)) / 4.0
    dist2 = hue_sat + (_HSV_VALUE_WEIGHT * (v - rv)).pow(2)
    return (dist2.add(1e-12).sqrt() / math.sqrt(1.0 + _HSV_VALUE_WEIGHT**2)).clamp(max=1.0)


def soft_mask(distance: torch.Tensor, tolerance: float) -> torch.Tensor:
    """Smooth "within tolerance" membership: 0.5 exactly at the tolerance.

    The value is a sharp sigmoid (accurate areas and centroids). Its gradient is
    that of the sharp sigmoid plus a wide one (a surrogate gradient): a sharp
    sigmoid alone is flat a few tolerance-widths away, so a pixel that should
    become (or stop being) the object's colour would get no signal.
    """
    sharp = torch.sigmoid((tolerance - distance) / (tolerance * _SOFTNESS))
    wide = torch.sigmoid((tolerance - distance) / _SURROGATE_WIDTH)
    return sharp + (wide - wide.detach())


def hard_mask(distance: torch.Tensor, tolerance: float) -> torch.Tensor:
    """0/1 membership, the limit of :func:`soft_mask` (float, no gradient)."""
    return (distance.detach() < tolerance).to(distance.dtype)


def area(mask: torch.Tensor) -> torch.Tensor:
    """Pixels inside, per frame: ``(N, H, W)`` -> ``(N,)``."""
    return mask.sum(dim=(-2, -1))


def centroid(mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mask-weighted mean position, relative (x, y) in [0, 1]: ``(N, H, W)`` -> ``(N, 2)``.

    Pixel centres sit at ((j + 0.5) / W, (i + 0.5) / H). An empty mask gives the
    frame centre (callers add a presence penalty for that case).
    """
    height, width = mask.shape[-2:]
    xs = (torch.arange(width, dtype=mask.dtype, device=mask.device) + 0.5) / width
    ys = (torch.arange(height, dtype=mask.dtype, device=mask.device) + 0.5) / height
    total = area(mask) + eps
    cx = (mask.sum(dim=-2) * xs).sum(dim=-1) + 0.5 * eps
    cy = (mask.sum(dim=-1) * ys).sum(dim=-1) + 0.5 * eps
    return torch.stack([cx / total, cy / total], dim=-1)


def components(hard: torch.Tensor) -> torch.Tensor:
    """Label 8-connected blobs of a 0/1 mask ``(N, H, W)``: 0 is background, blobs get ids > 0.

    Each pixel starts with its own id; ids spread to neighbours by 3x3 max
    filtering inside the mask until nothing changes, so every blob ends up with
    the largest id it contains.
    """
    height, width = hard.shape[-2:]
    dtype = torch.float32 if height * width < 2**24 else torch.float64
    ids = torch.arange(1, height * width + 1, dtype=dtype, device=hard.device).view(
        1, height, width
    )
    inside = hard.detach().to(dtype)
    labels = ids * inside
    while True:
        previous = labels
        for _ in range(8):  # compare only every few steps: equality checks are the slow part
            labels = dilate(labels, 1) * inside
        if torch.equal(labels, previous):
            return labels.long()


def dilate(mask: torch.Tensor, radius_px: int) -> torch.Tensor:
    """Grow a mask by ``radius_px`` pixels (square max filter); identity for 0."""
    if radius_px <= 0:
        return mask
    k = 2 * radius_px + 1
    return F.max_pool2d(mask.unsqueeze(1), kernel_size=k, stride=1, padding=radius_px).squeeze(1)


def box_mask(
    box: tuple[float, float, float, float], height: int, width: int, like: torch.Tensor
) -> torch.Tensor:
    """0/1 ``(H, W)`` mask of the pixels whose centres lie in a relative (x0, y0, x1, y1) box."""
    x0, y0, x1, y1 = box
    xs = (torch.arange(width, dtype=like.dtype, device=like.device) + 0.5) / width
    ys = (torch.arange(height, dtype=like.dtype, device=like.device) + 0.5) / height
    in_x = (xs >= x0) & (xs <= x1)
    in_y = (ys >= y0) & (ys <= y1)
    return (in_y[:, None] & in_x[None, :]).to(like.dtype)


def radius_px(fraction: float, height: int, width: int) -> int:
    """A distance given as a fraction of the larger frame side, in whole pixels."""
    return round(fraction * max(height, width))
