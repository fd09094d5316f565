"""Scoring a live watch against the simulator's truth: drift and Si hops.

Used by ``bench/live.py`` and the tests. Truth comes from
:class:`atomlens.simulate.SimulatedMovie` tables, where ``atom_id`` follows an atom
(a Si hop swaps the Si with a neighbouring C, ids and all) and ``y, x`` are where the
atom appears in the image (pixels, after drift and jitter).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment


def truth_drift(atoms: pd.DataFrame) -> np.ndarray:
    """(T, 2) px: median displacement since frame 0 of the truth atoms present in both
    frames (matched by ``atom_id``): the drift the image shows (thermal and scan
    jitter average out over the atoms)."""
    frames = np.sort(atoms["frame"].unique())
    first = atoms[atoms["frame"] == frames[0]].set_index("atom_id")[["y", "x"]]
    out = []
    for t in frames:
        cur = atoms[atoms["frame"] == t].set_index("atom_id")[["y", "x"]]
        common = first.index.intersection(cur.index)
        out.append(np.median(cur.loc[common].to_numpy() - first.loc[common].to_numpy(), axis=0))
    return np.array(out)


def drift_rms(drift: np.ndarray, truth: np.ndarray) -> float:
    """RMS (px) of the 2-D drift error over frames."""
    d = np.asarray(drift, float) - np.asarray(truth, float)
    return float(np.sqrt((d**2).sum(axis=1).mean()))


def truth_hops(
    atoms: pd.DataFrame,
    pixel_size: float,
    species: str = "Si",
    threshold_A: float = 0.7,
    drift: np.ndarray | None = None,
    margin_px: float = 0.0,
) -> pd.DataFrame:
    """Hops of the truth: a ``species`` atom (by ``atom_id``) whose drift-corrected
    position moved more than ``threshold_A`` between consecutive frames. Returns
    ``frame, y, x`` (pixels, the new position), ``atom_id``, ``step_A``. Hops closer
    than ``margin_px`` to the frame edge (where detection cannot see the neighbours)
    are dropped when ``margin_px`` > 0 and the frame size is in ``atoms.attrs``."""
    drift = truth_drift(atoms) if drift is None else np.asarray(drift, float)
    s = atoms[atoms["cls"].astype(str) == species]
    rows = []
    frames = np.sort(atoms["frame"].unique())
    for k in range(1, len(frames)):
        a = s[s["frame"] == frames[k - 1]].set_index("atom_id")
        b = s[s["frame"] == frames[k]].set_index("atom_id")
        common = a.index.intersection(b.index)
        if not len(common):
            continue
        ya = a.loc[common, ["y", "x"]].to_numpy() - drift[k - 1]
        yb = b.loc[common, ["y", "x"]].to_numpy() - drift[k]
        step = np.hypot(*(yb - ya).T) * pixel_size
        for i in np.flatnonzero(step > threshold_A):
            y, x = b.loc[common[i], ["y", "x"]]
            rows.append((int(frames[k]), float(y), float(x), int(common[i]), float(step[i])))
    out = pd.DataFrame(rows, columns=["frame", "y", "x", "atom_id", "step_A"])
    shape = atoms.attrs.get("shape")
    if margin_px > 0 and shape is not None and len(out):
        ny, nx = shape
        inside = (
            (out["y"] >= margin_px)
            & (out["y"] < ny - margin_px)
            & (out["x"] >= margin_px)
            & (out["x"] < nx - margin_px)
        )
        out = out[inside].reset_index(drop=True)
    return out


def match_events(found: pd.DataFrame, truth: pd.DataFrame, radius_px: float) -> dict:
    """One-to-one matching of found and true events of the same frame within
    ``radius_px`` (pixels). Returns ``tp, fp, fn, recall, precision``."""
    tp = 0
    for f in np.union1d(found["frame"].unique(), truth["frame"].unique()):
        a = found[found["frame"] == f][["y", "x"]].to_numpy(float)
        b = truth[truth["frame"] == f][["y", "x"]].to_numpy(float)
        if not len(a) or not len(b):
            continue
        d = np.hypot(a[:, None, 0] - b[None, :, 0], a[:, None, 1] - b[None, :, 1])
        cost = np.where(d <= radius_px, d, 1e6)
        r, c = linear_sum_assignment(cost)
        tp += int((cost[r, c] < 1e6).sum())
    fp, fn = len(found) - tp, len(truth) - tp
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "recall": tp / len(truth) if len(truth) else float("nan"),
        "precision": tp / len(found) if len(found) else float("nan"),
    }


__all__ = ["drift_rms", "match_events", "truth_drift", "truth_hops"]
