"""Probability maps -> atom candidates (positions on the map grid, species, probability)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi


def find_atoms(
    maps: np.ndarray,
    classes: Sequence[str],
    threshold: float = 0.5,
    *,
    method: str = "components",
    min_area: int = 2,
    log_sigma: tuple[float, float] = (1.0, 3.0),
) -> dict[str, np.ndarray]:
    """Atom candidates in one frame's maps.

    Parameters
    ----------
    maps : (C, Y, X) softmax probabilities; class 0 is the background.
    classes : C class names.
    threshold : a pixel belongs to an atom where ``1 - p(background) > threshold``.
    method : ``"components"`` (connected components, probability-weighted centroids) or
        ``"log"`` (Laplacian-of-Gaussian blobs on the foreground map).
    min_area : components smaller than this (pixels) are dropped.

    Returns
    -------
    dict of arrays, one entry per atom: ``y``, ``x`` (map pixels), ``cls`` (str: the
    argmax of the mean class probability inside the blob), ``prob`` (mean foreground
    probability inside the blob), ``area`` (pixels).
    """
    if maps.ndim != 3 or maps.shape[0] != len(classes):
        raise ValueError(
            f"maps of shape {maps.shape} do not match {len(classes)} classes {list(classes)}"
        )
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    fg = 1.0 - maps[0]
    if method == "components":
        lab, n = ndi.label(fg > threshold)
        if n == 0:
            return _empty()
        flat = lab.ravel()
        area = np.bincount(flat, minlength=n + 1)[1:]
        w = np.bincount(flat, fg.ravel(), minlength=n + 1)[1:]
        yy, xx = np.indices(fg.shape)
        y = np.bincount(flat, (fg * yy).ravel(), minlength=n + 1)[1:] / w
        x = np.bincount(flat, (fg * xx).ravel(), minlength=n + 1)[1:] / w
        cp = np.stack(
            [
                np.bincount(flat, maps[c].ravel(), minlength=n + 1)[1:]
                for c in range(1, len(classes))
            ]
        )
        prob = w / area
        keep = area >= min_area
        y, x, cp, prob, area = y[keep], x[keep], cp[:, keep], prob[keep], area[keep]
    elif method == "log":
        from skimage.feature import blob_log

        blobs = blob_log(
            fg,
            min_sigma=log_sigma[0],
            max_sigma=log_sigma[1],
            num_sigma=5,
            threshold=threshold * 0.1,
        )
        if len(blobs) == 0:
            return _empty()
        iy = np.clip(np.round(blobs[:, 0]).astype(int), 0, fg.shape[0] - 1)
        ix = np.clip(np.round(blobs[:, 1]).astype(int), 0, fg.shape[1] - 1)
        keep = fg[iy, ix] > threshold
        y, x, iy, ix = blobs[keep, 0], blobs[keep, 1], iy[keep], ix[keep]
        sm = np.stack([ndi.uniform_filter(maps[c], 3) for c in range(len(classes))])
        cp = sm[1:, iy, ix]
        prob = 1 - sm[0, iy, ix]
        area = np.full(len(y), np.nan)
    else:
        raise ValueError(f"method must be 'components' or 'log', got {method!r}")
    names = np.asarray(classes[1:], dtype=object)
    cls = names[np.argmax(cp, axis=0)] if len(y) else np.zeros(0, object)
    return {
        "y": np.asarray(y, float),
        "x": np.asarray(x, float),
        "cls": cls.astype(str),
        "prob": np.asarray(prob, float),
        "area": np.asarray(area, float),
    }


def _empty() -> dict[str, np.ndarray]:
    return {
        "y": np.zeros(0),
        "x": np.zeros(0),
        "cls": np.zeros(0, dtype=str),
        "prob": np.zeros(0),
        "area": np.zeros(0),
    }
