"""The papers' figures from pipeline results (matplotlib, no Qt, no pyplot).

Each function takes plain arrays/tables and returns a :class:`matplotlib.figure.Figure`
made without pyplot, so no backend is switched or needed (napari's Qt backend stays as
it is) and figures are not kept in pyplot's registry.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

SPECIES_COLOURS = {"C": "#00d8ff", "Si": "#ff7f0e", "Mo": "#1f77b4", "S": "#bcbd22"}
RING_COLOURS = {5: "#d62728", 6: "#2ca02c", 7: "#1f77b4", 8: "#9467bd"}


def _subplots(
    nrows: int = 1,
    ncols: int = 1,
    *,
    figsize: tuple[float, float],
    **kw: Any,
) -> tuple[Figure, Any]:
    """``plt.subplots`` without pyplot (``layout`` goes to the figure, the rest to
    ``Figure.subplots``)."""
    fig = Figure(figsize=figsize, layout=kw.pop("layout", None))
    return fig, fig.subplots(nrows, ncols, **kw)


def _show(ax: Any, img: np.ndarray, title: str) -> None:
    lo, hi = np.percentile(img, [1, 99.5])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def fig_maps(frame: np.ndarray, maps: np.ndarray | None, classes: list[str], t: int) -> Any:
    """Raw frame and its per-class probability maps ``maps`` (C, Y, X)."""
    shown = [i for i, c in enumerate(classes) if c != "background"] if maps is not None else []
    fig, axes = _subplots(1, 1 + len(shown), figsize=(3.2 * (1 + len(shown)), 3.4))
    axes = np.atleast_1d(axes)
    _show(axes[0], frame, f"frame {t}")
    for ax, i in zip(axes[1:], shown):
        ax.imshow(maps[i], cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"P({classes[i]})", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def fig_atoms(
    frame: np.ndarray,
    atoms: pd.DataFrame,
    bonds: pd.DataFrame,
    rings: pd.DataFrame,
    defects: pd.DataFrame,
    t: int,
) -> Any:
    """Detected atoms coloured by species with bonds, ring centres (by size) and defects."""
    fig, ax = _subplots(figsize=(6.4, 6.4))
    _show(ax, frame, f"frame {t}: atoms, bonds, rings, defects")
    a = atoms[atoms["frame"] == t]
    if len(bonds) and {"a", "b"}.issubset(bonds.columns):
        # bond ends are row positions in the atom table
        b = bonds[bonds["frame"] == t]
        pos = atoms[["y", "x"]].to_numpy()
        segs = np.stack([pos[b["a"].to_numpy()][:, ::-1], pos[b["b"].to_numpy()][:, ::-1]], axis=1)
        from matplotlib.collections import LineCollection

        ax.add_collection(LineCollection(segs, colors="#c6ff00", linewidths=0.6, alpha=0.7))
    for cls, grp in a.groupby("cls", observed=True):
        ax.scatter(
            grp["x"],
            grp["y"],
            s=14,
            c=SPECIES_COLOURS.get(str(cls), "#e377c2"),
            label=f"{cls} ({len(grp)})",
            edgecolors="none",
        )
    if len(rings):
        r = rings[(rings["frame"] == t) & (rings["size"] != 6)]
        for size, grp in r.groupby("size"):
            ax.scatter(
                grp["x"],
                grp["y"],
                s=30,
                marker="h",
                facecolors="none",
                edgecolors=RING_COLOURS.get(int(size), "k"),
                linewidths=1.2,
                label=f"{size}-ring ({len(grp)})",
            )
    if len(defects):
        d = defects[defects["frame"] == t]
        for _, row in d.iterrows():
            ax.annotate(
                str(row.get("type", "")),
                (row["x"], row["y"]),
                color="yellow",
                fontsize=7,
                ha="center",
                va="bottom",
            )
    ax.legend(loc="upper right", fontsize=7, framealpha=0.7)
    ax.set_xlim(-0.5, frame.shape[1] - 0.5)
    ax.set_ylim(frame.shape[0] - 0.5, -0.5)
    fig.tight_layout()
    return fig


def fig_latent_lattices(
    stack_frames: dict[int, np.ndarray], atoms: pd.DataFrame, columns: list[str]
) -> Any:
    """Atoms coloured by latent columns for a few frames (rows: frames, columns: latents).

    Colour limits are fixed over all frames so colours compare over time; ``angle`` uses
    a cyclic colormap.
    """
    frames = list(stack_frames)
    fig, axes = _subplots(
        len(frames),
        len(columns),
        figsize=(4.0 * len(columns), 3.6 * len(frames)),
        squeeze=False,
        layout="constrained",
    )
    for c, col in enumerate(columns):
        vals = atoms[col].to_numpy(dtype=float)
        finite = vals[np.isfinite(vals)]
        if col == "angle":
            cmap, lims = "twilight", (-np.pi, np.pi)
        else:
            cmap = "viridis"
            lims = tuple(np.percentile(finite, [1, 99])) if len(finite) else (0, 1)
        for r, t in enumerate(frames):
            ax = axes[r, c]
            _show(ax, stack_frames[t], f"frame {t}: {col}")
            a = atoms[(atoms["frame"] == t) & np.isfinite(atoms[col].astype(float))]
            sc = ax.scatter(
                a["x"],
                a["y"],
                c=a[col],
                cmap=cmap,
                vmin=lims[0],
                vmax=lims[1],
                s=18,
                edgecolors="none",
            )
        fig.colorbar(sc, ax=axes[:, c].tolist(), shrink=0.8, label=col)
    return fig


def fig_counts(atoms: pd.DataFrame, rings: pd.DataFrame) -> Any:
    """Atoms per frame by species, and ring-size counts per frame."""
    fig, axes = _subplots(1, 2, figsize=(9, 3.2))
    counts = atoms.groupby(["frame", "cls"], observed=True).size().unstack(fill_value=0)
    for cls in counts.columns:
        axes[0].plot(counts.index, counts[cls], label=str(cls), color=SPECIES_COLOURS.get(str(cls)))
    axes[0].set_xlabel("frame")
    axes[0].set_ylabel("atoms")
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    if len(rings):
        rc = rings.groupby(["frame", "size"]).size().unstack(fill_value=0)
        for size in rc.columns:
            axes[1].plot(
                rc.index, rc[size], label=f"{size}-rings", color=RING_COLOURS.get(int(size))
            )
        axes[1].set_xlabel("frame")
        axes[1].set_ylabel("rings")
        axes[1].set_yscale("log")
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig
