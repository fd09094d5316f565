"""Domain walls in PFM phase movies: Canny edges, wall-pixel sampling, wall windows.

Following the skip-rVAE paper's Methods: a Canny filter on the phase images finds the
180° walls, a chosen number of wall pixels per frame become window centres, and the
windows (optionally time-delayed: the same place at ``t`` and ``t + delta``) are the
descriptors for the rVAE.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from skimage.feature import canny

from atomlens.descriptors import Subimages, extract_time_delayed, extract_windows
from atomlens.errors import AtomLensError


class WallError(AtomLensError):
    """Bad input for wall detection or sampling; the message names the fix."""


def _as_movie(phase: np.ndarray) -> np.ndarray:
    arr = np.asarray(getattr(phase, "data", phase), dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise WallError(f"expected a (T, Y, X) phase movie, got shape {arr.shape}")
    return arr


def detect_walls(
    phase: np.ndarray,
    sigma: float = 2.0,
    low_threshold: float | None = 0.1,
    high_threshold: float | None = 0.2,
    use_quantiles: bool = False,
) -> np.ndarray:
    """Domain walls as Canny edges of each frame.

    Parameters
    ----------
    phase : (T, Y, X) (or (Y, X)) phase images; each frame is scaled to [0, 1] (1st-99th
        percentile) first, so the thresholds are fractions of the phase contrast.
    sigma : Gaussian smoothing of the Canny filter, pixels (raise it for noisy data).
    low_threshold, high_threshold : hysteresis thresholds on the gradient magnitude of
        the scaled image (or quantiles of it with ``use_quantiles``).

    Returns
    -------
    (T, Y, X) bool wall-pixel masks.
    """
    arr = _as_movie(phase)
    out = np.zeros(arr.shape, dtype=bool)
    for t, frame in enumerate(arr):
        lo, hi = np.percentile(frame, [1, 99])
        scaled = np.clip((frame - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
        out[t] = canny(
            scaled,
            sigma=sigma,
            low_threshold=low_threshold,
            high_threshold=high_threshold,
            use_quantiles=use_quantiles,
        )
    return out


def sample_wall_pixels(
    walls: np.ndarray,
    n_per_frame: int = 80,
    window: int = 40,
    seed: int = 0,
    frames: np.ndarray | None = None,
) -> pd.DataFrame:
    """Pick up to ``n_per_frame`` wall pixels per frame as window centres.

    Pixels closer than ``window // 2`` to the frame edge are skipped (their window would
    not fit). Picks are spread along the walls: the candidates are ordered randomly and
    taken greedily with a minimum spacing that is halved until enough are found.

    Returns
    -------
    Table with ``frame`` (int), ``y``, ``x`` (float pixels) and ``wall_pixels`` (how many
    wall pixels the frame had).
    """
    walls = np.asarray(walls, dtype=bool)
    if walls.ndim == 2:
        walls = walls[None]
    if n_per_frame < 1:
        raise WallError(f"n_per_frame must be >= 1, got {n_per_frame}")
    rng = np.random.default_rng(seed)
    half = window // 2
    Y, X = walls.shape[1:]
    if 2 * half >= min(Y, X):
        raise WallError(f"window {window} does not fit in {Y}x{X} frames; use a smaller one")
    rows = []
    frame_ids = range(len(walls)) if frames is None else [int(f) for f in frames]
    for t in frame_ids:
        ys, xs = np.nonzero(walls[t])
        n_wall = len(ys)
        keep = (ys >= half) & (ys < Y - half) & (xs >= half) & (xs < X - half)
        ys, xs = ys[keep], xs[keep]
        if len(ys) == 0:
            continue
        order = rng.permutation(len(ys))
        ys, xs = ys[order], xs[order]
        spacing = max(1.0, np.sqrt(len(ys) / n_per_frame))
        chosen = np.zeros(len(ys), dtype=bool)
        while True:
            chosen[:] = False
            picked_y: list[int] = []
            picked_x: list[int] = []
            for i in range(len(ys)):
                if picked_y:
                    d2 = (np.asarray(picked_y) - ys[i]) ** 2 + (np.asarray(picked_x) - xs[i]) ** 2
                    if d2.min() < spacing**2:
                        continue
                chosen[i] = True
                picked_y.append(int(ys[i]))
                picked_x.append(int(xs[i]))
                if len(picked_y) == n_per_frame:
                    break
            if len(picked_y) >= min(n_per_frame, len(ys)) or spacing <= 1.0:
                break
            spacing = max(1.0, spacing / 2)
        for y, x in zip(picked_y, picked_x):
            rows.append((t, float(y), float(x), n_wall))
    return pd.DataFrame(rows, columns=["frame", "y", "x", "wall_pixels"]).astype(
        {"frame": np.int64, "wall_pixels": np.int64}
    )


def wall_windows(
    phase: np.ndarray,
    centres: pd.DataFrame,
    window: int = 40,
    delta: int = 0,
    both: bool = False,
) -> Subimages:
    """Windows of the phase movie centred on wall pixels.

    Parameters
    ----------
    phase : (T, Y, X) phase movie.
    centres : table with ``frame``, ``y``, ``x`` (wall pixels found at frame t).
    window : window side, pixels.
    delta : time delay in frames. ``0``: the window at the wall's own frame t.
        ``delta > 0``: the time-delayed descriptor of the paper, the same place in frame
        ``t + delta`` (the wall found at t has moved on by then); centres without a frame
        ``t + delta`` are left out.
    both : with ``delta > 0``, stack frames t and t + delta as two channels
        (N, 2, h, w) instead of returning only the later frame (N, h, w).

    Returns
    -------
    :class:`atomlens.descriptors.Subimages` with ``index`` into ``centres``.
    """
    arr = _as_movie(phase)
    if delta < 0:
        raise WallError(f"delta must be >= 0 frames, got {delta}")
    if delta == 0:
        return extract_windows(arr, centres, window, border="drop")
    delays = (0, delta) if both else (delta,)
    return extract_time_delayed(arr, centres, window, delays=delays, border="drop")
