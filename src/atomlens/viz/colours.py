"""How a feature column of the atom table is coloured (pure: no Qt, no napari).

Species get a fixed categorical map (C grey, Si orange-red) so colours mean the same in
every layer and every session. Angles get a cyclic colormap ('twilight') over their full
period. Any other number gets 'viridis' with contrast limits computed once over *all*
frames, so a colour means the same value at every time step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

#: Fixed species colours (hex); any other class name gets a colour from ``_PALETTE``.
SPECIES_COLOURS: dict[str, str] = {
    "C": "#a6a6a6",
    "Si": "#ff5a1f",
    "background": "#1f3a93",
    "N": "#3cb44b",
    "O": "#e6194b",
    "Mo": "#4363d8",
    "S": "#ffe119",
    "W": "#911eb4",
    "Se": "#46f0f0",
}
_PALETTE = ("#4daf4a", "#984ea3", "#377eb8", "#ffff33", "#a65628", "#f781bf", "#66c2a5")
#: Colours of a boolean ``selected`` feature: unselected keep a dim grey, selected glow.
SELECTED_COLOURS: dict[bool, str] = {False: "#5a5a5a", True: "#ffff00"}
#: Ring sizes (a ``size`` column of ring centres): 5 red, 6 grey, 7 blue, 8 green.
RING_SIZE_COLOURS: dict[int, str] = {
    3: "#ffe119", 4: "#911eb4", 5: "#e6194b", 6: "#a6a6a6", 7: "#4363d8", 8: "#3cb44b",
    9: "#f58231", 10: "#f58231", 11: "#f58231", 12: "#f58231",
}  # fmt: skip
#: Integer columns with at most this many distinct values are coloured as categories
#: (coordination, ring counts, ring size...).
MAX_INT_CATEGORIES = 12
#: Columns that hold an angle; they get a cyclic colormap.
ANGLE_COLUMNS = ("angle", "theta", "orientation")


@dataclass(frozen=True)
class ColourSpec:
    """How to colour points by one feature column.

    ``kind`` is ``"categorical"`` (then ``cycle`` maps each value to a colour) or
    ``"continuous"`` (then ``colormap`` and fixed ``contrast_limits`` apply).
    """

    column: str
    kind: Literal["categorical", "continuous"]
    colormap: str = "viridis"
    contrast_limits: tuple[float, float] | None = None
    cycle: dict = field(default_factory=dict)

    def points_kwargs(self) -> dict:
        """Keyword arguments for a napari Points layer (or ``layer.face_color*`` attributes)."""
        if self.kind == "categorical":
            return {"face_color": self.column, "face_color_cycle": dict(self.cycle)}
        return {
            "face_color": self.column,
            "face_colormap": self.colormap,
            "face_contrast_limits": self.contrast_limits,
        }


def species_colour_cycle(names: list | tuple | np.ndarray | pd.Series) -> dict[str, str]:
    """A fixed colour per species name: the known ones from :data:`SPECIES_COLOURS`,
    unknown ones from a palette in sorted-name order (stable between sessions)."""
    out: dict[str, str] = {}
    unknown = sorted({str(n) for n in names} - set(SPECIES_COLOURS))
    for name in {str(n) for n in names}:
        if name in SPECIES_COLOURS:
            out[name] = SPECIES_COLOURS[name]
    for i, name in enumerate(unknown):
        out[name] = _PALETTE[i % len(_PALETTE)]
    # napari maps by value; keep the known species present even if absent now, so atoms
    # added later (e.g. a Si found by hand) still get the fixed colour.
    for name in ("C", "Si"):
        out.setdefault(name, SPECIES_COLOURS[name])
    return out


def is_angle_column(column: str) -> bool:
    """Whether a column holds an angle (coloured with a cyclic map)."""
    name = column.lower()
    return name in ANGLE_COLUMNS or name.endswith("_angle")


def angle_limits(values: np.ndarray) -> tuple[float, float]:
    """The full period that holds ``values``: (-π, π), (0, 2π), (-180, 180) or (0, 360).

    A cyclic colormap only wraps correctly when its limits are one whole period.
    """
    v = values[np.isfinite(values)]
    if v.size == 0:
        return (-math.pi, math.pi)
    lo, hi = float(v.min()), float(v.max())
    eps = 1e-6
    for period in ((-math.pi, math.pi), (0.0, 2 * math.pi), (-180.0, 180.0), (0.0, 360.0)):
        if lo >= period[0] - eps and hi <= period[1] + eps:
            return period
    return (lo, hi)


def robust_limits(
    values: np.ndarray, percentiles: tuple[float, float] = (1.0, 99.0)
) -> tuple[float, float]:
    """Contrast limits over all values (all frames): the given percentiles, never empty."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(p) for p in np.percentile(v, percentiles))
    if not hi > lo:
        lo, hi = float(v.min()), float(v.max())
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return (lo, hi)


def colour_spec(column: str, values: pd.Series | np.ndarray) -> ColourSpec:
    """Decide how to colour points by ``column`` given all its values (every frame).

    Strings, categoricals and booleans are categorical (species get their fixed colours,
    ``selected`` gets dim/bright), as are integers with few values (coordination, ring
    size: fixed colours per value); angles get 'twilight' over one whole period; other
    numbers get 'viridis' with 1-99 % limits over all frames.
    """
    s = pd.Series(values)
    if (
        s.dtype == bool
        or isinstance(s.dtype, pd.CategoricalDtype)
        or s.dtype == object
        or pd.api.types.is_string_dtype(s.dtype)
    ):
        uniq = pd.unique(s.dropna())
        if s.dtype == bool or set(uniq) <= {True, False}:
            return ColourSpec(column, "categorical", cycle=dict(SELECTED_COLOURS))
        return ColourSpec(column, "categorical", cycle=species_colour_cycle(list(uniq)))
    if pd.api.types.is_integer_dtype(s.dtype) and s.nunique() <= MAX_INT_CATEGORIES:
        values = sorted(int(u) for u in pd.unique(s.dropna()))
        if column == "size":
            cycle = {u: RING_SIZE_COLOURS.get(u, _PALETTE[0]) for u in values}
        else:
            cycle = {u: _PALETTE[i % len(_PALETTE)] for i, u in enumerate(values)}
        return ColourSpec(column, "categorical", cycle=cycle)
    v = s.to_numpy(dtype=float)
    if is_angle_column(column):
        return ColourSpec(column, "continuous", "twilight", angle_limits(v))
    return ColourSpec(column, "continuous", "viridis", robust_limits(v))
