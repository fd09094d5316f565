"""Scores of found atoms against a reference (simulator truth or annotations)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree


def match_points(ref: np.ndarray, found: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches between ``ref`` (N, 2) and ``found`` (M, 2) within ``radius``.

    Pairs are taken closest first, so each point is used at most once. Returns index
    arrays ``(i_ref, i_found)`` of equal length. Units are those of the inputs.
    """
    ref, found = np.asarray(ref, float).reshape(-1, 2), np.asarray(found, float).reshape(-1, 2)
    if len(ref) == 0 or len(found) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    pairs = cKDTree(ref).sparse_distance_matrix(cKDTree(found), radius, output_type="ndarray")
    # exact coincidences have distance 0 and are kept by sparse_distance_matrix as entries
    order = np.argsort(pairs["v"], kind="stable")
    used_r = np.zeros(len(ref), bool)
    used_f = np.zeros(len(found), bool)
    out_r, out_f = [], []
    for k in order:
        i, j = pairs["i"][k], pairs["j"][k]
        if not used_r[i] and not used_f[j]:
            used_r[i] = used_f[j] = True
            out_r.append(i)
            out_f.append(j)
    return np.asarray(out_r, int), np.asarray(out_f, int)


def detection_scores(
    found: pd.DataFrame, truth: pd.DataFrame, pixel_size: float, radius_A: float = 0.5
) -> dict:
    """Precision, recall, F1 and localisation RMSE (Å) over all frames.

    ``found`` and ``truth`` are atom tables (``frame, y, x`` in pixels); matches are
    one-to-one within ``radius_A`` Å in the same frame.
    """
    tp = fp = fn = 0
    sq: list[np.ndarray] = []
    r = radius_A / pixel_size
    frames = set(truth["frame"].unique()) | set(found["frame"].unique())
    for t in frames:
        a = truth.loc[truth["frame"] == t, ["y", "x"]].to_numpy(float)
        b = found.loc[found["frame"] == t, ["y", "x"]].to_numpy(float)
        i, j = match_points(a, b, r)
        tp += len(i)
        fn += len(a) - len(i)
        fp += len(b) - len(j)
        if len(i):
            sq.append(np.sum((a[i] - b[j]) ** 2, axis=1) * pixel_size**2)
    prec = tp / max(tp + fp, 1)
    rec = tp / max(tp + fn, 1)
    rmse = float(np.sqrt(np.mean(np.concatenate(sq)))) if sq else float("nan")
    return {
        "precision": round(prec, 4),
        "recall": round(rec, 4),
        "f1": round(2 * prec * rec / max(prec + rec, 1e-12), 4),
        "rmse_A": round(rmse, 4),
        "true": tp + fn,
        "found": tp + fp,
        "matched": tp,
    }
