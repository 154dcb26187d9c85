"""Checks on synthetic frames drawn here: verdicts, losses, gradient steps toward satisfaction."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args

import pytest
import torch
import torch.nn.functional as F
from pydantic import TypeAdapter

from reasoner.checks import CHECK_KINDS, CHECK_MODELS, COMPILERS, Check, compile_check, ops
from reasoner.checks.compile import first_frame_problems

SIZE = 32
FRAMES = 5
BG = (0.92, 0.92, 0.92)
RED = (0.9, 0.1, 0.1)
BLUE = (0.1, 0.2, 0.9)
GREEN = (0.1, 0.7, 0.2)
CHECK = TypeAdapter(Check)


def canvas(n: int = FRAMES) -> torch.Tensor:
    return torch.tensor(BG).view(1, 3, 1, 1).repeat(n, 1, SIZE, SIZE)


def _coverage(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ss: int = 4):
    """Anti-aliased coverage (H, W) of a shape given on relative sub-pixel centres."""
    coords = (torch.arange(SIZE * ss) + 0.5) / (SIZE * ss)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    return F.avg_pool2d(fn(xx, yy).float()[None, None], ss)[0, 0]


def paint(frame: torch.Tensor, coverage: torch.Tensor, color: tuple[float, ...]) -> None:
    c = torch.tensor(color).view(3, 1, 1)
    frame.mul_(1 - coverage).add_(coverage * c)


def disk(frame: torch.Tensor, x: float, y: float, r: float, color=RED) -> None:
    paint(frame, _coverage(lambda xx, yy: (xx - x) ** 2 + (yy - y) ** 2 <= r * r), color)


def rect(frame: torch.Tensor, box: tuple[float, float, float, float], color=BLUE) -> None:
    x0, y0, x1, y1 = box
    paint(frame, _coverage(lambda xx, yy: (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)), color)


def moving_ball(
    path: list[tuple[float, float]], r: float = 0.08, scene: Callable | None = None
) -> torch.Tensor:
    """A red ball at path[t] on frame t, over an optional static scene."""
    frames = canvas(len(path))
    for t, (x, y) in enumerate(path):
        if scene is not None:
            scene(frames[t])
        disk(frames[t], x, y, r)
    return frames


def line(x0: float, y0: float, x1: float, y1: float, n: int = FRAMES) -> list[tuple[float, float]]:
    return [(x0 + (x1 - x0) * t / (n - 1), y0 + (y1 - y0) * t / (n - 1)) for t in range(n)]


GOAL_BOX = (0.65, 0.65, 0.95, 0.95)
WALL = (0.45, 0.0, 0.55, 0.4)


def goal_scene(frame: torch.Tensor) -> None:
    rect(frame, GOAL_BOX, BLUE)


def wall_scene(frame: torch.Tensor) -> None:
    rect(frame, WALL, GREEN)


def two_balls() -> torch.Tensor:
    frames = moving_ball(line(0.2, 0.2, 0.2, 0.2))
    for f in frames:
        disk(f, 0.75, 0.75, 0.08)
    return frames


def split_ball() -> torch.Tensor:
    frames = moving_ball(line(0.3, 0.5, 0.3, 0.5), r=0.1)
    # frames 3-4: the ball breaks into two pieces
    for f in frames[3:]:
        f.copy_(canvas(1)[0])
        disk(f, 0.2, 0.5, 0.07)
        disk(f, 0.7, 0.5, 0.07)
    return frames


def smudged_corner() -> torch.Tensor:
    frames = moving_ball(line(0.2, 0.5, 0.5, 0.5))
    for f in frames[2:]:
        rect(f, (0.7, 0.0, 1.0, 0.3), GREEN)
    return frames


BLUE_255 = (26, 51, 230)
LEFT_SQUARE = (0.2, 0.4, 0.4, 0.6)
RIGHT_SQUARE = (0.6, 0.4, 0.8, 0.6)


def recoloured(patchwork: bool) -> torch.Tensor:
    """Two blue squares; the right one turns green at frame 2, wholly or (patchwork) by halves."""
    frames = canvas()
    for t, f in enumerate(frames):
        rect(f, LEFT_SQUARE, BLUE)
        rect(f, RIGHT_SQUARE, BLUE if t < 2 else GREEN)
        if patchwork and t == 2:
            rect(f, (0.6, 0.4, 0.7, 0.6), BLUE)
    return frames


def taking_turns(together: bool) -> torch.Tensor:
    """A red and a blue ball cross the frame: one after the other, or (together) at once."""
    red = line(0.2, 0.3, 0.8, 0.3, 3) + [(0.8, 0.3)] * 2  # on its way on frame 1
    blue = [(0.2, 0.7)] * 2 + line(0.2, 0.7, 0.8, 0.7, 3)  # on its way on frame 3
    if together:  # both on their way on frames 1-3
        red, blue = line(0.2, 0.3, 0.8, 0.3), line(0.2, 0.7, 0.8, 0.7)
    frames = moving_ball(red)
    for f, (x, y) in zip(frames, blue, strict=True):
        disk(f, x, y, 0.08, BLUE)
    return frames


# (check, video that satisfies it, video that violates it)
CASES: dict[str, tuple[dict[str, Any], Callable[[], torch.Tensor], Callable[[], torch.Tensor]]] = {
    "inside_region": (
        {
            "kind": "inside_region",
            "object": {"color": "red"},
            "region": {"type": "box", "x0": 0.0, "y0": 0.0, "x1": 0.5, "y1": 1.0},
        },
        lambda: moving_ball(line(0.15, 0.2, 0.35, 0.8)),
        lambda: moving_ball(line(0.15, 0.2, 0.8, 0.8)),
    ),
    "outside_region": (
        {
            "kind": "outside_region",
            "object": {"color": "red"},
            "region": {"type": "first_frame_color", "color": list(GREEN_255 := (26, 178, 51))},
        },
        lambda: moving_ball(line(0.15, 0.8, 0.85, 0.8), scene=wall_scene),
        lambda: moving_ball(line(0.15, 0.2, 0.85, 0.2), scene=wall_scene),
    ),
    "avoid_overlap": (
        {
            "kind": "avoid_overlap",
            "a": {"color": "red"},
            "b": {"type": "color", "color": list(GREEN_255)},
            "margin": 0.05,
        },
        lambda: moving_ball(line(0.15, 0.8, 0.85, 0.8), scene=wall_scene),
        lambda: moving_ball(line(0.15, 0.45, 0.85, 0.45), scene=wall_scene),
    ),
    "object_count": (
        {"kind": "object_count", "object": {"color": "red"}, "count": 1, "window": "all"},
        lambda: moving_ball(line(0.2, 0.2, 0.8, 0.8)),
        two_balls,
    ),
    "stays_one_blob": (
        {"kind": "stays_one_blob", "object": {"color": "red"}, "size_tolerance": 0.3},
        lambda: moving_ball(line(0.2, 0.5, 0.8, 0.5), r=0.1),
        split_ball,
    ),
    "stays_solid": (
        {
            "kind": "stays_solid",
            "objects": {"type": "first_frame_color", "color": list(BLUE_255), "tolerance": 0.12},
            "colors": [
                {"color": list(BLUE_255), "tolerance": 0.12},
                {"color": list(GREEN_255), "tolerance": 0.12},
            ],
        },
        lambda: recoloured(patchwork=False),
        lambda: recoloured(patchwork=True),
    ),
    "region_unchanged": (
        {
            "kind": "region_unchanged",
            "region": {"type": "box", "x0": 0.6, "y0": 0.0, "x1": 1.0, "y1": 0.4},
            "max_change": 0.03,
        },
        lambda: moving_ball(line(0.2, 0.5, 0.5, 0.5)),
        smudged_corner,
    ),
    "reach_by_end": (
        {
            "kind": "reach_by_end",
            "object": {"color": "red"},
            "target": {"type": "first_frame_color", "color": "blue", "tolerance": 0.3},
            "tolerance": 0.06,
        },
        lambda: moving_ball(line(0.15, 0.15, 0.8, 0.8), scene=goal_scene),
        lambda: moving_ball(line(0.15, 0.15, 0.35, 0.8), scene=goal_scene),
    ),
    "moves_smoothly": (
        {"kind": "moves_smoothly", "object": {"color": "red"}, "max_step": 0.2},
        lambda: moving_ball(line(0.2, 0.5, 0.8, 0.5)),  # 0.15 per frame
        # waits, then jumps 0.6 between frames 2 and 3
        lambda: moving_ball([(0.2, 0.5), (0.2, 0.5), (0.2, 0.5), (0.8, 0.5), (0.8, 0.5)]),
    ),
    "one_moves_at_a_time": (
        {
            "kind": "one_moves_at_a_time",
            "objects": [{"color": "red"}, {"color": list(BLUE_255)}],
        },
        lambda: taking_turns(together=False),
        lambda: taking_turns(together=True),
    ),
    "follows_path": (
        {
            "kind": "follows_path",
            "object": {"color": "red"},
            "waypoints": [{"x": 0.2, "y": 0.2}, {"x": 0.8, "y": 0.2}, {"x": 0.8, "y": 0.8}],
            "tolerance": 0.06,
        },
        # equal arc-length spacing: 1.2 of path over 4 steps -> 0.3 per frame
        lambda: moving_ball([(0.2, 0.2), (0.5, 0.2), (0.8, 0.2), (0.8, 0.5), (0.8, 0.8)]),
        lambda: moving_ball(line(0.2, 0.2, 0.8, 0.8)),
    ),
}


def test_every_kind_has_a_model_a_compiler_and_a_test_case() -> None:
    assert set(COMPILERS) == set(CHECK_KINDS) == set(CASES)
    union_members = set(get_args(get_args(Check)[0]))  # the discriminated union's classes
    assert union_members == set(CHECK_MODELS.values())
    for kind, model in CHECK_MODELS.items():
        assert model.model_fields["kind"].annotation.__args__ == (kind,)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_check_passes_on_a_satisfying_video_and_fails_on_a_violating_one(kind: str) -> None:
    spec, good, bad = CASES[kind]
    compiled = compile_check(CHECK.validate_python(spec), FRAMES)
    ok = compiled(good())
    assert ok.passed, ok.detail
    assert float(ok.loss) < 1e-3
    broken = compiled(bad())
    assert not broken.passed, broken.detail
    assert float(broken.loss) > 10 * max(float(ok.loss), 1e-4)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_gradient_steps_on_the_pixels_reduce_the_loss(kind: str) -> None:
    spec, _, bad = CASES[kind]
    compiled = compile_check(CHECK.validate_python(spec), FRAMES)
    # Optimise pixel logits so frames stay in [0, 1], as a decoder's output would.
    logits = torch.logit(bad().clamp(0.02, 0.98)).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=0.3)
    losses = []
    for _ in range(20):
        loss = compiled(torch.sigmoid(logits)).loss
        losses.append(float(loss.detach()))
        optimizer.zero_grad()
        loss.backward()
        assert logits.grad is not None and torch.isfinite(logits.grad).all()
        optimizer.step()
    losses.append(float(compiled(torch.sigmoid(logits)).loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_window_restricts_the_frames_a_check_sees() -> None:
    check = CHECK.validate_python(
        {
            "kind": "inside_region",
            "object": {"color": "red"},
            "region": {"type": "box", "x0": 0.0, "y0": 0.0, "x1": 0.5, "y1": 1.0},
            "window": {"kind": "first_n", "n": 2},
        }
    )
    frames = moving_ball(line(0.15, 0.5, 0.85, 0.5)).requires_grad_(True)
    outcome = compile_check(check, FRAMES)(frames)
    assert outcome.passed  # the ball leaves the box only after frame 1
    moving = moving_ball(line(0.15, 0.5, 0.85, 0.5)).requires_grad_(True)
    late = CHECK.validate_python({**check.model_dump(), "window": {"kind": "last_n", "n": 2}})
    compile_check(late, FRAMES)(moving).loss.backward()
    assert moving.grad is not None
    per_frame = moving.grad.abs().sum(dim=(1, 2, 3))
    assert (per_frame[:3] == 0).all() and (per_frame[3:] > 0).all()


# ---------------------------------------------------------------- measurements


def test_colour_distance_and_masks_by_hand() -> None:
    frame = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]).T.reshape(1, 3, 1, 3)
    rgb = ops.color_distance(frame, (1.0, 0.0, 0.0), "rgb")[0, 0]
    assert torch.allclose(rgb, torch.tensor([0.0, 0.5 / 3**0.5, 2**0.5 / 3**0.5]), atol=1e-5)
    # HSV mode: a darker red has the same hue and saturation; only value differs (weight 1/4).
    hsv = ops.color_distance(frame, (1.0, 0.0, 0.0), "hsv")[0, 0]
    assert torch.allclose(hsv[1], torch.tensor(0.25 * 0.5 / (1 + 0.25**2) ** 0.5), atol=1e-5)
    assert hsv[2] > 0.8
    soft = ops.soft_mask(rgb, 0.25)
    assert soft[0] > 0.999 and soft[2] < 1e-3
    assert ops.soft_mask(torch.tensor(0.25), 0.25) == 0.5


def test_centroid_area_and_blobs_by_hand() -> None:
    mask = torch.zeros(1, 4, 8)
    mask[0, 1:3, 1:3] = 1  # a 2x2 blob at columns 1-2
    mask[0, 0, 6] = 1  # a single pixel
    assert ops.area(mask).item() == 5
    labels = ops.components(mask)[0]
    assert labels[1:3, 1:3].unique().numel() == 1 and labels[0, 6] > 0
    assert labels[labels > 0].unique().numel() == 2 and (labels[mask[0] == 0] == 0).all()
    blob = mask.clone()
    blob[0, 0, 6] = 0
    cx, cy = ops.centroid(blob)[0].tolist()
    assert cx == pytest.approx(2.0 / 8) and cy == pytest.approx(2.0 / 4)
    # 8-connected: a diagonal line is one blob; a spiral needs many propagation steps.
    assert ops.components(torch.eye(6).unsqueeze(0)).unique().numel() == 2
    spiral = torch.zeros(1, 9, 9)
    spiral[0, 0, :] = spiral[0, :, 8] = spiral[0, 8, :] = spiral[0, 2:, 0] = 1
    spiral[0, 2, :7] = spiral[0, 2:7, 6] = spiral[0, 6, 2:7] = spiral[0, 4:7, 2] = 1
    assert ops.components(spiral).unique().numel() == 2


def test_specks_do_not_count_as_objects() -> None:
    check = CHECK.validate_python({"kind": "object_count", "object": {"color": "red"}, "count": 1})
    frames = moving_ball(line(0.3, 0.3, 0.3, 0.3), r=0.12)
    frames[-1, :, 30, 30] = torch.tensor(RED)  # one stray red pixel
    outcome = compile_check(check, FRAMES)(frames)
    assert outcome.passed and float(outcome.loss) == 0.0, outcome.detail


def test_path_targets_are_spaced_by_arc_length() -> None:
    from reasoner.checks.compile import _path_targets
    from reasoner.checks.vocabulary import Point

    pts = [Point(x=0, y=0), Point(x=0.2, y=0), Point(x=0.2, y=0.6)]
    targets = _path_targets(pts, 5, torch.zeros(1))
    expected = torch.tensor([[0, 0], [0.2, 0], [0.2, 0.2], [0.2, 0.4], [0.2, 0.6]])
    assert torch.allclose(targets, expected, atol=1e-6)


def test_missing_first_frame_colour_is_reported_for_the_teacher() -> None:
    check = CHECK.validate_python(
        {"kind": "stays_one_blob", "object": {"color": "magenta", "tolerance": 0.1}}
    )
    frames = moving_ball(line(0.2, 0.2, 0.8, 0.8))
    problem = first_frame_problems(check, frames[0])
    assert problem is not None and "no pixel of magenta" in problem
    outcome = compile_check(check, FRAMES)(frames.requires_grad_(True))
    assert not outcome.passed and float(outcome.loss.detach()) == 0.0
    outcome.loss.backward()  # still connected to the frames, with zero gradient
    assert frames.grad is not None and (frames.grad == 0).all()
    red = CHECK.validate_python({"kind": "stays_one_blob", "object": {"color": "red"}})
    assert first_frame_problems(red, frames[0]) is None


def test_stays_solid_fill_and_loss_by_hand() -> None:
    # One 4x4 blue square (16 px); on frame 1 four of its pixels turn grey, a shade far
    # from both allowed colours: that frame's fill is 12/16 = 0.75.
    frames = canvas(2)
    frames[:, :, 8:12, 8:12] = torch.tensor(BLUE).view(3, 1, 1)
    frames[1, :, 8, 8:12] = 0.5
    spec = {
        "kind": "stays_solid",
        "objects": {"type": "first_frame_color", "color": list(BLUE_255), "tolerance": 0.12},
        "colors": [
            {"color": list(BLUE_255), "tolerance": 0.12},
            {"color": "red", "tolerance": 0.12},
        ],
    }
    strict = compile_check(CHECK.validate_python(spec), num_frames=2)(frames)
    assert not strict.passed
    assert "0.75" in strict.detail and "frame 1" in strict.detail
    # Frame 0 is whole (no loss); frame 1 misses 0.9 by 0.15. Summed over frames, not
    # averaged: 0 + 0.15^2.
    assert strict.loss.item() == pytest.approx(0.15**2, abs=1e-3)
    lenient = compile_check(CHECK.validate_python({**spec, "min_fill": 0.7}), num_frames=2)(frames)
    assert lenient.passed and lenient.loss.item() == pytest.approx(0.0, abs=1e-6)


def test_moves_smoothly_measures_the_largest_step_by_hand() -> None:
    # A red ball at x = 0.2, 0.3, 0.6 (y fixed): steps 0.1 and 0.3; allowed 0.2.
    frames = moving_ball([(0.2, 0.5), (0.3, 0.5), (0.6, 0.5)])
    spec = {"kind": "moves_smoothly", "object": {"color": "red"}, "max_step": 0.2}
    outcome = compile_check(CHECK.validate_python(spec), num_frames=3)(frames)
    assert not outcome.passed and "into frame 2" in outcome.detail
    assert float(outcome.detail.split()[1]) == pytest.approx(0.3, abs=0.01)
    # Loss: only the second step is over: (0.3 - 0.2)^2, summed over the two steps.
    assert outcome.loss.item() == pytest.approx(0.1**2, abs=2e-3)
    lenient = compile_check(CHECK.validate_python({**spec, "max_step": 0.35}), num_frames=3)
    assert lenient(frames).passed


def squares(positions: dict[tuple[float, float, float], list[tuple[int, int]]]) -> torch.Tensor:
    """Exact 4 x 4 px squares, no anti-aliasing: colour -> (y, x) top-left per frame."""
    n = len(next(iter(positions.values())))
    frames = canvas(n)
    for color, track in positions.items():
        for f, (y, x) in enumerate(track):
            frames[f, :, y : y + 4, x : x + 4] = torch.tensor(color).view(3, 1, 1)
    return frames


def test_one_moves_at_a_time_share_and_loss_by_hand() -> None:
    check = compile_check(
        CHECK.validate_python(
            {
                "kind": "one_moves_at_a_time",
                "objects": [{"color": "red"}, {"color": list(BLUE_255)}],
                "min_change": 0.25,
            }
        ),
        3,
    )
    # Both slide 2 px on frame 1: 8 of 16 px left behind, 8 new -> 16 px differ from
    # frame 0 and 16 from frame 2, a share of 1.0 each; excess 0.75 each; loss 0.75^2.
    both = squares({RED: [(4, 0), (4, 2), (4, 4)], BLUE: [(20, 0), (20, 2), (20, 4)]})
    outcome = check(both)
    assert not outcome.passed
    assert "frame 1" in outcome.detail
    assert float(outcome.loss) == pytest.approx(0.75**2, abs=1e-3)
    # Red moves on frame 1 while blue waits; blue jumps on frame 2: at most one on its way.
    turns = squares({RED: [(4, 0), (4, 2), (4, 4)], BLUE: [(20, 0), (20, 0), (20, 4)]})
    outcome = check(turns)
    assert outcome.passed, outcome.detail
    assert float(outcome.loss) == pytest.approx(0.0, abs=1e-6)


def test_stays_one_blob_sizes_the_object_by_its_largest_first_frame_blob() -> None:
    """Same-coloured marks elsewhere (specks, too small to be objects) do not count in its
    size, as the pairs family's target corners do not."""
    check = compile_check(
        CHECK.validate_python(
            {"kind": "stays_one_blob", "object": {"color": "red"}, "size_tolerance": 0.3}
        ),
        2,
    )
    frames = squares({RED: [(4, 4), (4, 8)]})
    for y, x in ((20, 20), (20, 28), (28, 20), (28, 28)):  # four 3 px L-shaped marks
        for dy, dx in ((0, 0), (0, 1), (1, 0)):
            frames[:, :, y + dy, x + dx] = torch.tensor(RED)
    assert check(frames).passed  # 16 px vs 16 px, not vs the colour's 28
    frames[1, :, 4:8, 8:10] = torch.tensor(BG).view(3, 1, 1)  # frame 1 keeps half the square
    outcome = check(frames)
    assert not outcome.passed and "x0.50" in outcome.detail
