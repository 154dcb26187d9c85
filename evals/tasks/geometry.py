"""Where grid cells lie in pixels, shared by the renderers and the checkers.

Families lay their objects out on a coarse grid (layouts are size-independent)
and render it at any frame size that is a multiple of 8. A `Grid` turns cell
coordinates into pixel rectangles for one size.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Grid:
    """A `rows` × `cols` grid of square cells, `cell` px wide, starting `origin` px in."""

    rows: int
    cols: int
    cell: int
    origin: int

    def rect(self, row: int, col: int) -> tuple[int, int, int, int]:
        """Pixel rectangle `(y0, x0, y1, x1)` (end-exclusive) of cell (row, col)."""
        y0 = self.origin + row * self.cell
        x0 = self.origin + col * self.cell
        return y0, x0, y0 + self.cell, x0 + self.cell

    def center(self, row: float, col: float) -> tuple[float, float]:
        """Centroid, in pixel-index coordinates, of cell (row, col) (fractions allowed)."""
        half = (self.cell - 1) / 2
        return self.origin + row * self.cell + half, self.origin + col * self.cell + half

    def box_origin(self, row: float, col: float, side: int) -> tuple[int, int]:
        """Top-left pixel of a `side`-px square centred in the cell at (row, col).

        Fractional positions (an object between two cells) round to whole pixels,
        so a frame stays flat-coloured with no anti-aliasing.
        """
        inset = (self.cell - side) // 2
        y = self.origin + round(row * self.cell) + inset
        x = self.origin + round(col * self.cell) + inset
        return y, x

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> Grid:
        return cls(rows=data["rows"], cols=data["cols"], cell=data["cell"], origin=data["origin"])


def manhattan(a: tuple[int, int] | list[int], b: tuple[int, int] | list[int]) -> int:
    """Grid distance between two cells for 4-connected moves."""
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def corner_rects(grid: Grid, row: int, col: int) -> list[tuple[int, int, int, int]]:
    """Rectangles `(y0, x0, y1, x1)` of the four L-shaped corner marks of a target cell.

    Each arm is a quarter cell long and an eighth of a cell thick (at least 1 px).
    A square of half a cell, centred in the cell, never touches them, nor does
    it touch the marks of the cells it slides through.
    """
    y0, x0, y1, x1 = grid.rect(row, col)
    arm = max(1, grid.cell // 4)
    thick = max(1, grid.cell // 8)
    rects = []
    for ys, xs in ((y0, x0), (y0, x1 - arm), (y1 - arm, x0), (y1 - arm, x1 - arm)):
        top = ys if ys == y0 else y1 - thick
        left = xs if xs == x0 else x1 - thick
        rects.append((top, xs, top + thick, xs + arm))  # horizontal arm
        rects.append((ys, left, ys + arm, left + thick))  # vertical arm
    return rects
