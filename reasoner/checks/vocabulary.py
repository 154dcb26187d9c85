"""The typed vocabulary of checks a reward spec may hold.

A check is data: a pydantic model picked by its ``kind``. Field descriptions are
written for the teacher model, which sees them in the spec's JSON schema.
Geometry is relative: x runs 0 (left) to 1 (right), y runs 0 (top) to 1
(bottom), so a check does not depend on the frame size.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasoner.spec_window import FrameWindow

# Named colours and the RGB (0-255) each stands for. Kept to common, distinct
# names so a model picks the intended one; any other colour is an RGB triple.
NAMED_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 200, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "orange": (255, 140, 0),
    "purple": (128, 0, 160),
    "cyan": (0, 255, 255),
    "magenta": (255, 0, 255),
    "pink": (255, 150, 200),
    "brown": (140, 80, 20),
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}
ColorName = Literal[
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "cyan",
    "magenta",
    "pink",
    "brown",
    "white",
    "black",
    "gray",
]
Channel = Annotated[int, Field(ge=0, le=255)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]

_FORBID = ConfigDict(extra="forbid")


class ColorMask(BaseModel):
    """The pixels of one colour: how an object is found in every frame."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"color": "red"}, {"color": [230, 40, 40], "tolerance": 0.2}]
        },
    )

    type: Literal["color"] = Field(
        "color", description="Always 'color' (needed only where a region may also be given)."
    )
    color: ColorName | tuple[Channel, Channel, Channel] = Field(
        description="A colour name, or [R, G, B] with 0-255 channels. Prefer the RGB the "
        "object has in the first frame when names are ambiguous."
    )
    space: Literal["rgb", "hsv"] = Field(
        "rgb",
        description="'rgb': plain colour distance. 'hsv': compares hue and saturation and "
        "cares less about brightness (use for shaded objects).",
    )
    tolerance: float = Field(
        0.25,
        ge=0.01,
        le=1.0,
        allow_inf_nan=False,
        description="How far (0.01-1) a pixel's colour may be from `color` and still count. "
        "0.25 suits flat colours; lower it when two objects have similar colours.",
    )

    def rgb01(self) -> tuple[float, float, float]:
        """The colour as floats in [0, 1]."""
        rgb = NAMED_COLORS[self.color] if isinstance(self.color, str) else self.color
        return (rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0)

    def describe(self) -> str:
        return self.color if isinstance(self.color, str) else "rgb" + str(tuple(self.color))


class BoxRegion(BaseModel):
    """A fixed rectangle, in relative coordinates."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"type": "box", "x0": 0.7, "y0": 0.7, "x1": 1.0, "y1": 1.0}]
        },
    )

    type: Literal["box"] = Field(description="Always 'box'.")
    x0: Fraction = Field(description="Left edge, 0 (left of frame) to 1 (right).")
    y0: Fraction = Field(description="Top edge, 0 (top of frame) to 1 (bottom).")
    x1: Fraction = Field(description="Right edge, greater than x0.")
    y1: Fraction = Field(description="Bottom edge, greater than y0.")

    @model_validator(mode="after")
    def _ordered(self) -> BoxRegion:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise ValueError(
                f"box needs x0 < x1 and y0 < y1, got x0={self.x0}, x1={self.x1}, y0={self.y0}, "
                f"y1={self.y1}; (x0, y0) is the top-left corner"
            )
        return self

    def describe(self) -> str:
        return f"box({self.x0:g},{self.y0:g},{self.x1:g},{self.y1:g})"


class FirstFrameColorRegion(BaseModel):
    """The place a colour occupies in the first frame (e.g. a goal square, a wall).

    The region stays where it was in the first frame even if the pixels later
    change, so it marks a fixed place in the scene.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"type": "first_frame_color", "color": "red", "grow": 0.02}]
        },
    )

    type: Literal["first_frame_color"] = Field(description="Always 'first_frame_color'.")
    color: ColorName | tuple[Channel, Channel, Channel] = Field(
        description="Colour name or [R, G, B] (0-255) of the thing in the first frame."
    )
    space: Literal["rgb", "hsv"] = Field("rgb", description="Colour space, as in a color mask.")
    tolerance: float = Field(
        0.25, ge=0.01, le=1.0, allow_inf_nan=False, description="Colour tolerance, 0.01-1."
    )
    grow: float = Field(
        0.0,
        ge=0.0,
        le=0.25,
        allow_inf_nan=False,
        description="Enlarge the region by this fraction of the frame size (0-0.25), e.g. "
        "0.03 to include its border.",
    )

    def color_mask(self) -> ColorMask:
        return ColorMask(color=self.color, space=self.space, tolerance=self.tolerance)

    def describe(self) -> str:
        return f"first-frame {self.color_mask().describe()}"


class Point(BaseModel):
    """A position in relative coordinates."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["point"] = Field(
        "point", description="Always 'point' (needed only where a region may also be given)."
    )
    x: Fraction = Field(description="0 (left) to 1 (right).")
    y: Fraction = Field(description="0 (top) to 1 (bottom).")

    def describe(self) -> str:
        return f"({self.x:g},{self.y:g})"


Region = Annotated[BoxRegion | FirstFrameColorRegion, Field(discriminator="type")]
Target = Annotated[BoxRegion | FirstFrameColorRegion | Point, Field(discriminator="type")]
MaskOrRegion = Annotated[ColorMask | BoxRegion | FirstFrameColorRegion, Field(discriminator="type")]


def _window(default: str, extra: str = "") -> object:
    return Field(
        default_factory=lambda: FrameWindow(kind=default),
        description=f"Frames the check applies to (default '{default}'). {extra}".strip(),
    )


class _CheckBase(BaseModel):
    """Fields every check has."""

    model_config = _FORBID

    name: str | None = Field(
        None,
        max_length=80,
        description="Optional short label shown in results, e.g. 'ball reaches goal'.",
    )
    role: Literal["goal", "process"] = Field(
        "process",
        description="'goal': about the end state, weighted with the goal query by lam. "
        "'process': about the whole trajectory, weighted with the process queries by 1 - lam.",
    )
    weight: float = Field(
        1.0,
        gt=0.0,
        le=10.0,
        allow_inf_nan=False,
        description="Importance relative to a query (a query counts 1.0) within its role.",
    )


class InsideRegion(_CheckBase):
    """The object stays inside a region on every frame of the window."""

    kind: Literal["inside_region"] = Field(description="Always 'inside_region' for this check.")
    object: ColorMask = Field(description="The object, found by its colour.")
    region: Region = Field(description="Where the object must be.")
    min_fraction: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Share (0-1] of the object's pixels that must lie inside the region.",
    )
    window: FrameWindow = _window("all")


class OutsideRegion(_CheckBase):
    """The object stays out of a region on every frame of the window."""

    kind: Literal["outside_region"] = Field(description="Always 'outside_region' for this check.")
    object: ColorMask = Field(description="The object, found by its colour.")
    region: Region = Field(description="Where the object must not be.")
    max_fraction: float = Field(
        0.05,
        ge=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="Largest share [0-1) of the object's pixels allowed inside the region.",
    )
    window: FrameWindow = _window("all")


class AvoidOverlap(_CheckBase):
    """Two things never touch or overlap (e.g. the ball and a wall, or two cars)."""

    kind: Literal["avoid_overlap"] = Field(description="Always 'avoid_overlap' for this check.")
    a: ColorMask = Field(description="The moving object, found by its colour.")
    b: MaskOrRegion = Field(
        description="The other thing: another colour ({'type': 'color', ...}) or a region "
        "({'type': 'box', ...} / {'type': 'first_frame_color', ...})."
    )
    margin: float = Field(
        0.03,
        ge=0.0,
        le=0.25,
        allow_inf_nan=False,
        description="Gap (fraction of frame size) that already counts as touching. Two "
        "colours cannot share a pixel, so keep it > 0 when `b` is a colour.",
    )
    window: FrameWindow = _window("all")


class ObjectCount(_CheckBase):
    """The number of separate blobs of a colour equals `count` on every frame of the window."""

    kind: Literal["object_count"] = Field(description="Always 'object_count' for this check.")
    object: ColorMask = Field(description="The colour whose blobs are counted.")
    count: int = Field(ge=0, le=32, description="Required number of separate blobs.")
    window: FrameWindow = _window("last", "Use 'all' if the count must hold throughout.")


class StaysOneBlob(_CheckBase):
    """The object stays one piece of about its first-frame size (no split, no vanishing)."""

    kind: Literal["stays_one_blob"] = Field(description="Always 'stays_one_blob' for this check.")
    object: ColorMask = Field(description="The object, found by its colour (present in frame 1).")
    size_tolerance: float = Field(
        0.5,
        gt=0.0,
        le=4.0,
        allow_inf_nan=False,
        description="Allowed relative change of its area vs the first frame (0.5 = +-50%).",
    )
    window: FrameWindow = _window("all")


class StaysSolid(_CheckBase):
    """Each object keeps one solid colour in every frame, though it may change colour.

    For objects that are recoloured in place: an object must never be a patchwork
    of two colours or an in-between shade, only wholly one of the allowed colours.
    """

    kind: Literal["stays_solid"] = Field(description="Always 'stays_solid' for this check.")
    objects: FirstFrameColorRegion = Field(
        description="Where the objects are in the first frame, by their colour there; each "
        "separate piece is one object, checked on its own."
    )
    colors: list[ColorMask] = Field(
        min_length=1,
        max_length=6,
        description="The colours an object may show (e.g. its old and its new colour). Use a "
        "tight tolerance (about 0.12) so an in-between shade matches none.",
    )
    min_fill: Fraction = Field(
        0.9, description="Share of an object's pixels that must be one allowed colour (0-1)."
    )
    window: FrameWindow = _window("all")


class RegionUnchanged(_CheckBase):
    """The pixels of a region stay as they are in the first frame (static background, walls)."""

    kind: Literal["region_unchanged"] = Field(
        description="Always 'region_unchanged' for this check."
    )
    region: Region = Field(description="The part of the frame that must not change.")
    max_change: float = Field(
        0.05,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Largest mean absolute colour change (0-1) allowed in the region.",
    )
    window: FrameWindow = _window("all")


class ReachByEnd(_CheckBase):
    """By the end, the object's centre is at the target."""

    kind: Literal["reach_by_end"] = Field(description="Always 'reach_by_end' for this check.")
    object: ColorMask = Field(description="The object, found by its colour.")
    target: Target = Field(
        description="A point {'type': 'point', 'x', 'y'} or a region (its centre is used)."
    )
    tolerance: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Largest distance (fraction of frame size) from the target's centre.",
    )
    window: FrameWindow = _window("last", "Frames on which the object must be at the target.")


class MovesSmoothly(_CheckBase):
    """The object never jumps: its centre moves at most `max_step` from one frame to the next."""

    kind: Literal["moves_smoothly"] = Field(description="Always 'moves_smoothly' for this check.")
    object: ColorMask = Field(description="The object, found by its colour.")
    max_step: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Largest move of its centre between consecutive frames of the window "
        "(fraction of frame size), e.g. a little more than the steadiest possible pace.",
    )
    window: FrameWindow = _window("all")


class FollowsPath(_CheckBase):
    """The object moves along waypoints in order, at a steady speed over the window."""

    kind: Literal["follows_path"] = Field(description="Always 'follows_path' for this check.")
    object: ColorMask = Field(description="The object, found by its colour.")
    waypoints: list[Point] = Field(
        min_length=2,
        max_length=16,
        description="2-16 points the path passes through in order; the first is where the "
        "object starts, the last where it ends.",
    )
    tolerance: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Largest distance (fraction of frame size) from the path at each frame.",
    )
    window: FrameWindow = _window("all")


class OneMovesAtATime(_CheckBase):
    """The objects take turns: at most one of them is on its way at any frame.

    An object is on its way on a frame when its pixels differ from both where it
    is on the window's first frame and where it is on the window's last frame.
    """

    kind: Literal["one_moves_at_a_time"] = Field(
        description="Always 'one_moves_at_a_time' for this check."
    )
    objects: list[ColorMask] = Field(
        min_length=2,
        max_length=6,
        description="The objects that must move one after the other, each by its colour.",
    )
    min_change: float = Field(
        0.2,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="An object is on its way when more than this share of its first-frame "
        "pixels (0-1] differs from both its first and its last frame; lower it for big "
        "objects that move only a little per frame.",
    )
    window: FrameWindow = _window("all")


Check = Annotated[
    InsideRegion
    | OutsideRegion
    | AvoidOverlap
    | ObjectCount
    | StaysOneBlob
    | StaysSolid
    | RegionUnchanged
    | ReachByEnd
    | MovesSmoothly
    | FollowsPath
    | OneMovesAtATime,
    Field(discriminator="kind"),
]

# kind -> model; the union above and this table list the same classes.
CHECK_MODELS: dict[str, type[BaseModel]] = {
    "inside_region": InsideRegion,
    "outside_region": OutsideRegion,
    "avoid_overlap": AvoidOverlap,
    "object_count": ObjectCount,
    "stays_one_blob": StaysOneBlob,
    "stays_solid": StaysSolid,
    "region_unchanged": RegionUnchanged,
    "reach_by_end": ReachByEnd,
    "moves_smoothly": MovesSmoothly,
    "follows_path": FollowsPath,
    "one_moves_at_a_time": OneMovesAtATime,
}
CHECK_KINDS: tuple[str, ...] = tuple(CHECK_MODELS)
