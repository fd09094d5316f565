"""Latent trajectories: one tracked atom's path over the frames on the latent plane.

As in the skip-rVAE paper (Fig. 5), a Si atom traced from frame to frame moves across
the latent plane; drawn over the chemical-space map (or the decoded manifold) its path
reads as a sequence of chemical neighbourhoods (3-fold Si -> 4-fold Si -> ...), and the
decoder shows the neighbourhood at chosen frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.errors import AtomLensError


class TrajectoryError(AtomLensError):
    """Bad input for a latent trajectory; the message names the fix."""


def longest_track(table: pd.DataFrame, track_col: str = "track_id", cls: str | None = "Si") -> int:
    """The id of the track seen in the most frames (optionally only atoms of ``cls``)."""
    if track_col not in table.columns:
        raise TrajectoryError(
            f"the table has no '{track_col}' column; track atoms first (atomlens.chem) or "
            "use track_col='atom_id' with simulator truth"
        )
    sel = table if cls is None or "cls" not in table.columns else table[table["cls"] == cls]
    sel = sel[sel[track_col] >= 0]
    if sel.empty:
        raise TrajectoryError(f"no tracked atoms{'' if cls is None else f' of class {cls}'}")
    return int(sel.groupby(track_col)["frame"].nunique().idxmax())


def latent_trajectory(
    table: pd.DataFrame,
    track: int,
    track_col: str = "track_id",
    zcols: Sequence[str] = ("z1", "z2"),
) -> pd.DataFrame:
    """One atom's rows, one per frame, sorted by frame.

    Parameters
    ----------
    table : atom table with latents (``frame``, ``y``, ``x``, ``z1``, ``z2``, ...) and a
        track column.
    track : the track id.

    Returns
    -------
    The atom's rows (all columns) sorted by ``frame``, plus ``step`` (latent distance
    moved since the previous frame, latent units; NaN for the first row).
    """
    missing = {track_col, "frame", *zcols} - set(table.columns)
    if missing:
        raise TrajectoryError(f"the table lacks {sorted(missing)}; encode the atoms first")
    rows = table[table[track_col] == track].sort_values("frame")
    if rows.empty:
        raise TrajectoryError(f"no atom with {track_col} = {track}")
    rows = rows.drop_duplicates("frame").reset_index(drop=True)
    z = rows[list(zcols)].to_numpy(dtype=float)
    step = np.full(len(rows), np.nan)
    step[1:] = (
        np.hypot(*(np.diff(z, axis=0).T))
        if z.shape[1] == 2
        else np.linalg.norm(np.diff(z, axis=0), axis=1)
    )
    return rows.assign(step=step)


def trajectory_neighbourhoods(
    model: Any, traj: pd.DataFrame, frames: Sequence[int], zcols: Sequence[str] = ("z1", "z2")
) -> np.ndarray:
    """Decoded neighbourhoods (n, h, w) at the given frames of a trajectory (angle 0,
    no shift: the canonical orientation the rVAE learned)."""
    sel = traj.set_index("frame").loc[list(frames)]
    return np.asarray(model.decode(np.array(sel[list(zcols)].to_numpy(dtype=np.float32))))


def pick_frames(traj: pd.DataFrame, n: int = 5, labels: pd.DataFrame | None = None) -> list[int]:
    """Frames worth showing: where the map label changes (when ``labels`` is given,
    one row per trajectory row) or the largest latent jumps, plus the first frame."""
    frames = traj["frame"].to_numpy()
    if labels is not None and len(labels) == len(traj):
        key = labels.astype(str).agg("/".join, axis=1).to_numpy()
        change = np.flatnonzero(key[1:] != key[:-1]) + 1
        picks = [0, *change.tolist()]
    else:
        picks = [0]
    if len(picks) < n:
        order = np.argsort(-np.nan_to_num(traj["step"].to_numpy(), nan=-1.0))
        picks += [int(i) for i in order if int(i) not in picks][: n - len(picks)]
    return sorted(int(frames[i]) for i in sorted(set(picks))[:n])


def plot_trajectory(
    traj: pd.DataFrame,
    background: Any = None,
    model: Any = None,
    frames: Sequence[int] | None = None,
    path: str | Path | None = None,
    zcols: Sequence[str] = ("z1", "z2"),
    title: str = "latent trajectory",
) -> Any:
    """Figure: the path on the latent plane with frame numbers, over ``background`` (a
    :class:`~atomlens.latent.chemspace.ChemSpaceMap` overlay, or a dict with ``z1``,
    ``z2``, ``images`` (G, G, h, w) manifold), and below it the decoded neighbourhoods
    at ``frames`` (needs ``model``). Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from atomlens.latent.chemspace import ChemSpaceMap

    z = traj[list(zcols)].to_numpy(dtype=float)
    fr = traj["frame"].to_numpy()
    labels = None
    if isinstance(background, ChemSpaceMap):
        labels = background.lookup(z)[["ring5", "ring6", "ring7"]]
    if frames is None:
        frames = pick_frames(traj, 5, labels)
    n_dec = len(frames) if model is not None else 0
    fig = plt.figure(figsize=(max(7, 2.2 * n_dec), 9 if n_dec else 6.5))
    ax = fig.add_axes([0.1, 0.35, 0.8, 0.6] if n_dec else [0.1, 0.1, 0.8, 0.8])
    if isinstance(background, ChemSpaceMap):
        codes, keys = background.labels()
        ext = (background.z1[0], background.z1[-1], background.z2[0], background.z2[-1])
        cols = ["#202020"] + [plt.cm.tab20(k % 20) for k in range(len(keys))]
        ax.imshow(codes, origin="lower", extent=ext, aspect="auto", cmap=ListedColormap(cols),
                  vmin=-1.5, vmax=len(keys) - 0.5, interpolation="nearest", alpha=0.8)  # fmt: skip
    elif isinstance(background, dict) and "images" in background:
        imgs = np.asarray(background["images"])
        if imgs.ndim == 5:
            imgs = imgs[:, :, -1]
        g2, g1, h, w = imgs.shape
        mosaic = imgs[::-1].transpose(0, 2, 1, 3).reshape(g2 * h, g1 * w)
        ext = (background["z1"][0], background["z1"][-1], background["z2"][0], background["z2"][-1])
        ax.imshow(mosaic, cmap="gray", extent=ext, aspect="auto")
    ax.plot(z[:, 0], z[:, 1], "-", color="white", lw=2.5, alpha=0.7)
    sc = ax.scatter(z[:, 0], z[:, 1], c=fr, cmap="plasma", s=30, zorder=3, edgecolors="k")
    for (x, y), f in zip(z, fr):
        ax.annotate(str(int(f)), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7,
                    color="white" if background is not None else "black")  # fmt: skip
    fig.colorbar(sc, ax=ax, label="frame", shrink=0.8)
    ax.set(xlabel=zcols[0], ylabel=zcols[1], title=title)
    if n_dec:
        dec = trajectory_neighbourhoods(model, traj, frames, zcols)
        if dec.ndim == 4:
            dec = dec.sum(axis=1)
        look = labels.set_index(fr) if labels is not None else None
        for k, (f, img) in enumerate(zip(frames, dec)):
            a = fig.add_axes([0.05 + k * 0.9 / n_dec, 0.03, 0.9 / n_dec - 0.01, 0.24])
            a.imshow(img, cmap="gray")
            text = f"frame {f}"
            if look is not None:
                text += "\n5/6/7: " + "/".join(str(int(v)) for v in look.loc[f])
            a.set_title(text, fontsize=8)
            a.set(xticks=[], yticks=[])
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
