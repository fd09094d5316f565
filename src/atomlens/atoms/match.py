"""Matching detections to a reference (truth or annotations) and the usual scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


def match_atoms(
    pred_yx: np.ndarray, true_yx: np.ndarray, max_dist: float
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching within ``max_dist`` (same units as the positions).

    Hungarian assignment on the candidate pairs of each connected cluster (KD-tree
    neighbours), so it stays fast for thousands of atoms. Returns index arrays
    ``(i_pred, i_true)`` of the matched pairs.
    """
    pred_yx = np.asarray(pred_yx, float).reshape(-1, 2)
    true_yx = np.asarray(true_yx, float).reshape(-1, 2)
    if len(pred_yx) == 0 or len(true_yx) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    sdm = cKDTree(pred_yx).sparse_distance_matrix(
        cKDTree(true_yx), max_dist, output_type="coo_matrix"
    )
    if sdm.nnz == 0:
        return np.zeros(0, int), np.zeros(0, int)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_p = len(pred_yx)
    # bipartite graph -> components; solve each small assignment exactly
    graph = coo_matrix(
        (np.ones(sdm.nnz), (sdm.row, sdm.col + n_p)), shape=(n_p + len(true_yx),) * 2
    )
    _, comp = connected_components(graph, directed=False)
    ip, it = [], []
    rows, cols, d = sdm.row, sdm.col, sdm.data
    order = np.argsort(comp[rows], kind="stable")
    rows, cols, d = rows[order], cols[order], d[order]
    bounds = np.flatnonzero(np.diff(comp[rows])) + 1
    for r, c, dd in zip(np.split(rows, bounds), np.split(cols, bounds), np.split(d, bounds)):
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        cost = np.full((len(ur), len(uc)), 1e6)
        cost[ri, ci] = dd
        a, b = linear_sum_assignment(cost)
        ok = cost[a, b] <= max_dist
        ip.append(ur[a[ok]])
        it.append(uc[b[ok]])
    return np.concatenate(ip), np.concatenate(it)


def detection_scores(
    pred_yx: np.ndarray,
    true_yx: np.ndarray,
    max_dist: float,
    pred_cls: np.ndarray | None = None,
    true_cls: np.ndarray | None = None,
    species: str = "Si",
) -> dict[str, float]:
    """Precision, recall, F1, localisation RMSE of matches (position units), and, with
    classes, precision/recall of ``species`` (a true ``species`` atom counts as found when
    matched to a detection of that species)."""
    ip, it = match_atoms(pred_yx, true_yx, max_dist)
    n_p, n_t, m = len(np.atleast_2d(pred_yx)) if len(pred_yx) else 0, len(true_yx), len(ip)
    prec = m / n_p if n_p else float("nan")
    rec = m / n_t if n_t else float("nan")
    f1 = 2 * m / (n_p + n_t) if (n_p + n_t) else float("nan")
    d = np.asarray(pred_yx, float)[ip] - np.asarray(true_yx, float)[it] if m else np.zeros((0, 2))
    out = {
        "n_pred": float(n_p),
        "n_true": float(n_t),
        "n_matched": float(m),
        "precision": prec,
        "recall": rec,
        "f1": f1,
        "rmse": float(np.sqrt((d**2).sum(1).mean())) if m else float("nan"),
    }
    if pred_cls is not None and true_cls is not None:
        pc = np.asarray(pred_cls).astype(str)
        tc = np.asarray(true_cls).astype(str)
        tp = int(((pc[ip] == species) & (tc[it] == species)).sum())
        n_ps, n_ts = int((pc == species).sum()), int((tc == species).sum())
        out.update(
            {
                f"{species}_n_pred": float(n_ps),
                f"{species}_n_true": float(n_ts),
                f"{species}_precision": tp / n_ps if n_ps else float("nan"),
                f"{species}_recall": tp / n_ts if n_ts else float("nan"),
            }
        )
    return out


def table_scores(
    found: pd.DataFrame, truth: pd.DataFrame, pixel_size: float, radius_A: float = 0.5
) -> dict:
    """Precision, recall, F1 and localisation RMSE (Å) of two atom tables over all frames.

    ``found`` and ``truth`` hold ``frame, y, x`` in pixels; matches are one-to-one within
    ``radius_A`` Å in the same frame (:func:`match_atoms`).
    """
    tp = n_found = n_true = 0
    sq: list[np.ndarray] = []
    for t in sorted(set(truth["frame"].unique()) | set(found["frame"].unique())):
        a = truth.loc[truth["frame"] == t, ["y", "x"]].to_numpy(float)
        b = found.loc[found["frame"] == t, ["y", "x"]].to_numpy(float)
        ib, ia = match_atoms(b, a, radius_A / pixel_size)
        tp, n_found, n_true = tp + len(ib), n_found + len(b), n_true + len(a)
        if len(ib):
            sq.append(np.sum((a[ia] - b[ib]) ** 2, axis=1) * pixel_size**2)
    prec, rec = tp / max(n_found, 1), tp / max(n_true, 1)
    return {
        "precision": round(prec, 4),
        "recall": round(rec, 4),
        "f1": round(2 * tp / max(n_found + n_true, 1), 4),
        "rmse_A": round(float(np.sqrt(np.mean(np.concatenate(sq)))) if sq else float("nan"), 4),
        "true": n_true,
        "found": n_found,
        "matched": tp,
    }
