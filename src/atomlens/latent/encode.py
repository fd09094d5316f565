"""Latents back on atoms, manifold traversal and per-frame latent statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from atomlens.descriptors import extract_windows
from atomlens.models.base import LatentModel, ModelError


def encode_atoms(
    model: LatentModel,
    data: Any,
    atoms: pd.DataFrame,
    window: int | Sequence[int] | None = None,
    border: str = "drop",
    channels: int | Sequence[int] | None = None,
    batch_size: int = 2048,
    prefix: str = "",
) -> pd.DataFrame:
    """Encode the window around every atom and add the latents as columns.

    ``data`` is used as given: to prepare it as the model was trained (binning and scaling
    recorded in its card), use :func:`atomlens.workflows.encode.run` instead.

    Parameters
    ----------
    model : a fitted latent model (rVAE: ``angle, dx, dy, z1, z2, ...``).
    data : (T, Y, X) stack or (T, C, Y, X) maps, prepared the same way as for training.
    atoms : table with ``frame``, ``y``, ``x`` (pixels); any other columns are kept.
    window : window size; defaults to the model's (a different size raises).
    border : ``"drop"`` (atoms too close to the edge get NaN latents) or ``"pad"``.
    prefix : prepended to the new column names (e.g. ``"vae_"``).

    Returns a copy of ``atoms`` with one column per latent (NaN where no window).
    """
    model.check_fitted()
    win = model.window if window is None else window
    if win is None:
        raise ModelError("the model has no window size yet; pass window=")
    subs = extract_windows(data, atoms, win, border=border, channels=channels)
    out = atoms.copy()
    names = [prefix + n for n in model.latent_names()]
    for name in names:
        out[name] = np.nan
    if len(subs):
        lat = model.transform(subs, batch_size=batch_size)
        lat.columns = names
        cols = [out.columns.get_loc(n) for n in names]
        out.iloc[subs.index, cols] = lat.to_numpy(dtype=np.float64)
        if "cluster" in model.latent_names():  # GMM label stays integer-like
            out[prefix + "cluster"] = out[prefix + "cluster"].astype("Int64")
    return out


def content_columns(model: LatentModel) -> list[str]:
    """The content latents of a model (``z1, z2, ...``)."""
    return [n for n in model.latent_names() if n.startswith("z")]


def decode_manifold(
    model: LatentModel,
    n: int = 10,
    extent: tuple[float, float, float, float] | None = None,
    latents: pd.DataFrame | None = None,
    dims: tuple[int, int] = (0, 1),
    channel: int = 0,
) -> np.ndarray:
    """Decoded images on an ``n x n`` grid of two content latents, tiled into one
    ``(n*h, n*w)`` image (rVAE at angle 0 and no shift).

    ``extent`` is ``(z1_min, z1_max, z2_min, z2_max)``; by default the 2nd-98th
    percentiles of ``latents`` (a ``transform`` table) if given, else ``(-2, 2, -2, 2)``.
    Other content latents are held at 0 (or their median in ``latents``). Rows of the
    tiling run from high ``z2`` (top) to low ``z2``; columns from low to high ``z1``.
    """
    names = content_columns(model)
    if len(names) < 1 or not hasattr(model, "decode"):
        raise ModelError(f"a {model.kind} model has no content latents to traverse")
    if len(names) == 1:
        dims = (0, 0)
    d1, d2 = dims
    if extent is None:
        if latents is not None:
            lo1, hi1 = np.nanpercentile(latents[names[d1]], [2, 98])
            lo2, hi2 = np.nanpercentile(latents[names[d2]], [2, 98])
            extent = (float(lo1), float(hi1), float(lo2), float(hi2))
        else:
            extent = (-2.0, 2.0, -2.0, 2.0)
    base = np.zeros(len(names), np.float32)
    if latents is not None:
        base = np.nan_to_num(np.nanmedian(latents[names].to_numpy(), 0)).astype(np.float32)
    g1 = np.linspace(extent[0], extent[1], n)
    g2 = np.linspace(extent[3], extent[2], n)  # top row = high z2
    z = np.tile(base, (n * n, 1))
    zz2, zz1 = np.meshgrid(g2, g1, indexing="ij")
    z[:, d1] = zz1.ravel()
    if len(names) > 1:
        z[:, d2] = zz2.ravel()
    imgs = model.decode(z)
    if imgs.ndim == 4:
        imgs = imgs[:, channel]
    h, w = imgs.shape[1:]
    return imgs.reshape(n, n, h, w).transpose(0, 2, 1, 3).reshape(n * h, n * w)


def per_frame_histograms(
    atoms: pd.DataFrame,
    column: str,
    bins: int | Sequence[float] = 50,
    range: tuple[float, float] | None = None,  # noqa: A002 - mirrors numpy.histogram
    n_frames: int | None = None,
    density: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of one latent column in every frame (the paper's Fig. 7).

    Returns ``(counts, edges)``: counts (T, bins) (rows = frames 0..T-1, empty frames
    zero; ``density=True`` normalises each row to unit area) and the bin edges
    (bins + 1,). NaN values are ignored. For ``angle`` the default range is (-pi, pi].
    """
    if column not in atoms.columns:
        raise ModelError(f"the atom table has no column {column!r}; encode the atoms first")
    values = atoms[column].to_numpy(dtype=np.float64)
    frames = atoms["frame"].to_numpy().astype(np.int64)
    ok = np.isfinite(values)
    values, frames = values[ok], frames[ok]
    if range is None:
        if column == "angle":
            range = (-np.pi, np.pi)
        elif len(values):
            range = (float(values.min()), float(values.max()) or 1.0)
        else:
            range = (0.0, 1.0)
    edges = np.histogram_bin_edges(values, bins=bins, range=range)
    T = int(n_frames if n_frames is not None else (atoms["frame"].max() + 1 if len(atoms) else 0))
    nb = len(edges) - 1
    idx = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, nb - 1)
    inside = (values >= edges[0]) & (values <= edges[-1]) & (frames < T)
    counts = np.zeros((T, nb), np.float64)
    np.add.at(counts, (frames[inside], idx[inside]), 1.0)
    if density:
        widths = np.diff(edges)
        tot = counts.sum(1, keepdims=True)
        counts = np.divide(counts, tot * widths[None], out=np.zeros_like(counts), where=tot > 0)
    return counts, edges


def per_frame_stats(atoms: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Mean, SD and count of latent columns per frame (one row per frame)."""
    g = atoms.groupby("frame")[list(columns)]
    out = g.agg(["mean", "std", "count"])
    out.columns = [f"{c}_{s}" for c, s in out.columns]
    return out.reset_index()


def circular_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Circular correlation coefficient (Fisher & Lee) of two angle arrays (rad)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a0 = np.angle(np.exp(1j * a).mean())
    b0 = np.angle(np.exp(1j * b).mean())
    sa, sb = np.sin(a - a0), np.sin(b - b0)
    den = np.sqrt((sa**2).sum() * (sb**2).sum())
    return float((sa * sb).sum() / den) if den > 0 else 0.0


def threshold_accuracy(values: np.ndarray, labels: np.ndarray) -> float:
    """Best accuracy of one threshold on ``values`` for binary ``labels`` (either side of
    the threshold may be the positive class); 0.5 means no separation."""
    best = 0.5
    for thr in np.quantile(values, np.linspace(0.02, 0.98, 49)):
        acc = float(((values > thr) == labels).mean())
        best = max(best, acc, 1 - acc)
    return best
