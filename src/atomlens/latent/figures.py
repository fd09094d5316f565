"""Figure helpers (matplotlib, Agg; no GUI): the latent manifold and latents against frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from atomlens.latent.encode import per_frame_histograms


def _figure(figsize: tuple[float, float]):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=100)  # no pyplot: no GUI backend, thread-safe


def plot_manifold(
    manifold: np.ndarray,
    n: int,
    extent: tuple[float, float, float, float] | None = None,
    path: str | Path | None = None,
    title: str = "rVAE latent manifold",
):
    """Show a tiled ``(n*h, n*w)`` manifold image with latent axes; save when ``path``."""
    fig = _figure((6, 6))
    ax = fig.add_subplot()
    ext = extent if extent is not None else (0, n, 0, n)
    ax.imshow(manifold, cmap="gnuplot2", extent=ext, origin="upper", aspect="auto")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title)
    if path is not None:
        fig.savefig(path, bbox_inches="tight")
    return fig


def plot_latent_vs_frame(
    atoms: pd.DataFrame,
    columns: list[str],
    bins: int = 60,
    n_frames: int | None = None,
    path: str | Path | None = None,
):
    """One panel per latent column: its per-frame histogram as an image (frame on x,
    latent value on y), the paper's Fig. 7. Saves when ``path`` is given."""
    fig = _figure((4.2 * len(columns), 3.6))
    for i, col in enumerate(columns):
        ax = fig.add_subplot(1, len(columns), i + 1)
        counts, edges = per_frame_histograms(atoms, col, bins, n_frames=n_frames)
        T = counts.shape[0]
        ax.imshow(counts.T, origin="lower", aspect="auto", cmap="viridis",
                  extent=(-0.5, T - 0.5, edges[0], edges[-1]))  # fmt: skip
        ax.set_xlabel("frame")
        ax.set_ylabel(f"{col}" + (" (rad)" if col == "angle" else ""))
        ax.set_title(f"{col} distribution per frame")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, bbox_inches="tight")
    return fig
