"""Colour keys: what each colour on screen means (pure: no Qt, no napari).

A :class:`ColourKey` is the legend of one coloured layer: a colour bar (name, units,
fixed limits, colormap) for a continuous feature such as ``z1`` or ``angle``, or a list
of swatches for categories (species, ring sizes, defect types). The same key is drawn
beside the napari canvas (the Colour key dock) and into exported movies
(:mod:`atomlens.viz.movie`), so a colour means one thing everywhere.

Atoms without a value (a latent is NaN when the atom's window crosses the frame edge)
are drawn in :data:`NEUTRAL_GREY`, never hidden; the key says how many.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from atomlens.viz.colours import ColourSpec

#: Face colour of atoms without a value for the coloured feature (e.g. no latent).
NEUTRAL_GREY = "#7f7f7f"

#: Units of well-known feature columns (shown in colour-bar titles).
UNITS: dict[str, str] = {
    "dx": "px",
    "dy": "px",
    "prob": "probability",
    "D": "switching degree",
    "coordination": "bonds",
    "length_A": "Å",
    "bond_length_pm": "pm",
    "size": "atoms per ring",
    "frame": "frame",
}


def feature_units(column: str, limits: tuple[float, float] | None = None) -> str:
    """Units of a feature column: angles in rad or degrees (from their period), latents
    ``z1, z2...`` in latent units (dimensionless), others from :data:`UNITS`."""
    name = column.lower()
    if name in ("angle", "theta", "orientation") or name.endswith("_angle"):
        if limits is not None and max(abs(limits[0]), abs(limits[1])) > 2 * np.pi + 1e-6:
            return "degrees"
        return "rad"
    if len(column) > 1 and column[0] == "z" and column[1:].isdigit():
        return "latent units"
    return UNITS.get(column, "")


@dataclass(frozen=True)
class ColourKey:
    """The legend of one coloured layer.

    ``kind`` ``"continuous"``: a colour bar from ``colormap`` over fixed ``limits``;
    ``"categorical"``: ``entries`` of ``(label, '#rrggbb')`` swatches. ``n_missing`` atoms
    have no value and are drawn in :data:`NEUTRAL_GREY`.
    """

    title: str
    kind: Literal["continuous", "categorical"]
    units: str = ""
    colormap: str = "viridis"
    limits: tuple[float, float] | None = None
    entries: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    n_missing: int = 0

    @property
    def label(self) -> str:
        """``z1 (latent units)``: the title with its units."""
        return f"{self.title} ({self.units})" if self.units else self.title

    def to_dict(self) -> dict[str, Any]:
        """Plain types (for layer metadata and JSON)."""
        d = asdict(self)
        d["entries"] = [list(e) for e in self.entries]
        d["limits"] = list(self.limits) if self.limits is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColourKey:
        """Inverse of :meth:`to_dict`."""
        return cls(
            title=str(d["title"]), kind=d["kind"], units=str(d.get("units", "")),
            colormap=str(d.get("colormap", "viridis")),
            limits=tuple(d["limits"]) if d.get("limits") is not None else None,
            entries=tuple((str(a), str(b)) for a, b in d.get("entries", ())),
            n_missing=int(d.get("n_missing", 0)),
        )  # fmt: skip


def _hex(colour: Any) -> str:
    from matplotlib.colors import to_hex

    return to_hex(colour, keep_alpha=False)


def key_for_spec(
    spec: ColourSpec, values: pd.Series | np.ndarray | None = None, title: str | None = None
) -> ColourKey:
    """The key of a :class:`~atomlens.viz.colours.ColourSpec` (``values``: the coloured
    column over all frames, to count atoms without a value)."""
    n_missing = 0
    if values is not None:
        n_missing = int(pd.isna(pd.Series(values)).sum())
    name = title or spec.column
    if spec.kind == "categorical":
        present = None if values is None else set(pd.Series(values).dropna().tolist())
        entries = tuple(
            (_category_label(spec.column, k), _hex(v))
            for k, v in sorted(spec.cycle.items(), key=lambda kv: str(kv[0]))
            if present is None or k in present
        )
        return ColourKey(
            _category_title(spec.column, name),
            "categorical",
            feature_units(spec.column) if spec.column == "coordination" else "",
            entries=entries,
            n_missing=n_missing,
        )
    limits = tuple(float(v) for v in spec.contrast_limits) if spec.contrast_limits else None
    return ColourKey(
        name,
        "continuous",
        feature_units(spec.column, limits),
        spec.colormap,
        limits,
        n_missing=n_missing,
    )


def _category_title(column: str, name: str) -> str:
    return {"cls": "species", "size": "ring size", "type": "defect type"}.get(column, name)


def _category_label(column: str, value: Any) -> str:
    if column == "selected":
        return "selected" if bool(value) else "not selected"
    return str(value)


def categorical_key(title: str, colours: dict[Any, Any], units: str = "") -> ColourKey:
    """A key of swatches from ``{value: colour}`` (any matplotlib colour, RGBA floats
    included), e.g. ring sizes or defect types drawn with direct colours."""
    entries = tuple((str(k), _hex(v)) for k, v in colours.items())
    return ColourKey(title, "categorical", units, entries=entries)


def rgba_colours(spec: ColourSpec, values: pd.Series | np.ndarray) -> np.ndarray:
    """``(N, 4)`` float RGBA per value, as drawn in napari: the colormap over the fixed
    limits (continuous) or the category colours; missing values in :data:`NEUTRAL_GREY`."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba

    grey = np.array(to_rgba(NEUTRAL_GREY))
    s = pd.Series(values).reset_index(drop=True)
    out = np.tile(grey, (len(s), 1))
    if spec.kind == "categorical":
        lut = {k: np.array(to_rgba(v)) for k, v in spec.cycle.items()}
        for i, v in enumerate(s.tolist()):
            if v in lut:
                out[i] = lut[v]
        return out
    lo, hi = spec.contrast_limits or (0.0, 1.0)
    v = s.to_numpy(dtype=float)
    ok = np.isfinite(v)
    t = np.clip((v[ok] - lo) / ((hi - lo) or 1.0), 0.0, 1.0)
    out[ok] = colormaps[spec.colormap](t)
    return out


def draw_key(ax: Any, key: ColourKey, text_colour: str = "#d0d0d0", fontsize: float = 8) -> None:
    """Draw ``key`` into a matplotlib axes: a vertical colour bar with its label and
    limits, or a column of labelled swatches (plus a grey 'no value' swatch when atoms
    lack a value)."""
    from matplotlib import colormaps
    from matplotlib.patches import Rectangle

    ax.clear()
    ax.set_facecolor("none")
    if key.kind == "continuous":
        lo, hi = key.limits or (0.0, 1.0)
        grad = np.linspace(0.0, 1.0, 256)[:, None]
        ax.imshow(
            grad,
            aspect="auto",
            origin="lower",
            cmap=colormaps[key.colormap],
            extent=(0.0, 1.0, lo, hi),
        )
        ax.set_xticks([])
        ax.yaxis.tick_right()
        ax.yaxis.set_label_position("right")
        ax.set_ylim(lo, hi)
        ax.set_yticks(np.linspace(lo, hi, 5))
        ax.yaxis.set_major_formatter(_fmt(lo, hi))
        ax.set_ylabel(key.label, color=text_colour, fontsize=fontsize)
        ax.tick_params(colors=text_colour, labelsize=fontsize)
        for spine in ax.spines.values():
            spine.set_color(text_colour)
        if key.n_missing:
            ax.text(
                0.0,
                -0.03,
                f"grey: no value ({key.n_missing})",
                transform=ax.transAxes,
                color=text_colour,
                fontsize=fontsize - 1,
                ha="left",
                va="top",
            )
        return
    entries = list(key.entries)
    if key.n_missing:
        entries.append((f"no value ({key.n_missing})", NEUTRAL_GREY))
    ncol = 1 if len(entries) <= 4 else 2  # many categories: two columns
    n = max(int(np.ceil(len(entries) / ncol)), 1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, n + 1)
    ax.axis("off")
    ax.text(
        0.0,
        n + 0.5,
        key.label,
        color=text_colour,
        fontsize=fontsize,
        va="center",
        fontweight="bold",
    )
    width = 1.0 / ncol
    for i, (label, colour) in enumerate(entries):
        col, row = divmod(i, n)
        x, y = col * width, n - row - 0.5
        ax.add_patch(
            Rectangle(
                (x, y - 0.3),
                0.15 * width,
                0.6,
                facecolor=colour,
                edgecolor=text_colour,
                linewidth=0.5,
            )
        )
        ax.text(x + 0.22 * width, y, label, color=text_colour, fontsize=fontsize, va="center")


def _fmt(lo: float, hi: float) -> Any:
    from matplotlib.ticker import FormatStrFormatter

    span = abs(hi - lo)
    decimals = 0 if span >= 20 else (1 if span >= 2 else (2 if span >= 0.2 else 3))
    return FormatStrFormatter(f"%.{decimals}f")


def render_key(
    key: ColourKey,
    height: int,
    width: int = 140,
    background: str = "#000000",
    text_colour: str = "#ffffff",
) -> np.ndarray:
    """``(height, width, 3)`` uint8 image of ``key`` (for exports), drawn with Agg."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=background)
    canvas = FigureCanvasAgg(fig)
    if key.kind == "continuous":
        ax = fig.add_axes((0.08, 0.12, 0.18, 0.8))
    else:
        ax = fig.add_axes((0.05, 0.05, 0.9, 0.9))
    draw_key(ax, key, text_colour, fontsize=max(6.0, min(10.0, height / 40)))
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
