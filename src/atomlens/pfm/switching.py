"""Physical descriptors of wall-centred windows: switching degree, wall count, curvature.

Our reading of the skip-rVAE paper's Methods (PFM data analysis):

* **Switching degree** ``D = (A_s - A_u) / (A_s + A_u)``. A window is centred on a wall
  pixel found at frame ``t``; its (time-delayed) content is the same place at
  ``t + delta``. Every pixel is classified by the *median split*: above the threshold it
  is switched (the polarity the bias favours, "yellow"), otherwise unswitched ("blue").
  The threshold is the median value of the latent space, i.e. the median over the
  images decoded on the latent manifold (or, for raw windows, the median of the window
  stack; windows straddle a wall, so both give the level halfway between the domains).
  ``A_s``/``A_u`` are the switched/unswitched pixel counts. At ``t`` the wall passes
  through the centre (``D ≈ 0``, a static wall); when it advances by ``v * delta`` the
  switched area grows by ``~ 2 v delta / w`` of the window, so ``D > 0`` measures the
  local wall velocity. ``D(t + delta) - D(t)`` (two-channel windows) removes the offset
  that wall curvature gives a static wall.
* **Wall count**: connected wall segments in the window (the boundary of the median
  split, or Canny pixels), segments shorter than ``min_length`` pixels ignored.
* **Wall curvature** (1 / pixel) for windows with one or two walls, averaged over the
  walls (a parabola fitted along each wall's principal axis, evaluated next to the
  window centre; meant for gentle arcs, not closed loops); positive when the centre of
  curvature lies in the switched domain (a switched bulge, like a growing nucleus),
  negative when it lies in the unswitched one; ``NaN`` without walls and ``0`` with
  three or more, as in the paper.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from atomlens.pfm.simulate import wall_mask


def median_threshold(images: np.ndarray) -> float:
    """The median-split threshold: the median value of an image stack (any shape)."""
    arr = np.asarray(images, dtype=np.float64)
    if arr.size == 0:
        raise ValueError("cannot take the median of an empty image stack")
    return float(np.nanmedian(arr))


def switching_degree(images: np.ndarray, threshold: float) -> np.ndarray:
    """``D = (A_s - A_u) / (A_s + A_u)`` per image.

    Parameters
    ----------
    images : (N, h, w) windows (phase or decoded), or one (h, w) image.
    threshold : pixels above it count as switched (A_s), the others as unswitched (A_u).

    Returns
    -------
    (N,) float in [-1, 1] (a float for a single image).
    """
    arr = np.asarray(images, dtype=np.float32)
    single = arr.ndim == 2
    if single:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected (N, h, w) images, got shape {arr.shape}")
    a_s = (arr > threshold).sum(axis=(1, 2)).astype(np.float64)
    a_u = arr[0].size - a_s
    d = (a_s - a_u) / (a_s + a_u)
    return float(d[0]) if single else d


def _segments(walls: np.ndarray, min_length: int) -> list[np.ndarray]:
    """Connected (8-neighbour) wall segments as (n, 2) (y, x) pixel arrays."""
    lab, n = ndi.label(walls, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    ys, xs = np.nonzero(lab)
    ids = lab[ys, xs]
    order = np.argsort(ids, kind="stable")
    ys, xs, ids = ys[order], xs[order], ids[order]
    cuts = np.searchsorted(ids, np.arange(1, n + 1))
    out = []
    for k in range(n):
        lo = cuts[k]
        hi = cuts[k + 1] if k + 1 < n else len(ids)
        if hi - lo >= min_length:
            out.append(np.column_stack([ys[lo:hi], xs[lo:hi]]).astype(float))
    return out


def segment_curvature(pts: np.ndarray, switched: np.ndarray) -> float:
    """Signed curvature (1 / pixel) of one wall segment inside a window.

    ``pts`` (n, 2) wall pixels (y, x); ``switched`` the (h, w) bool switched mask of the
    window. The pixels are rotated onto their principal axis ``s`` (normal ``q``), a
    parabola ``q = a s^2 + b s + c`` is fitted, and the curvature is evaluated at the
    point nearest the window centre: ``2a / (1 + q'^2)^1.5``. Positive when the centre
    of curvature lies on the switched side.
    """
    if len(pts) < 4:
        return 0.0
    c = pts.mean(axis=0)
    rel = pts - c
    _, vecs = np.linalg.eigh(rel.T @ rel)
    u, n = vecs[:, 1], vecs[:, 0]  # along the wall, normal to it
    s_, q_ = rel @ u, rel @ n
    if np.ptp(s_) < 2:
        return 0.0
    a, b, c0 = np.polyfit(s_, q_, 2)
    h, w = switched.shape
    s0 = float(np.clip((np.array([(h - 1) / 2, (w - 1) / 2]) - c) @ u, s_.min(), s_.max()))
    slope = 2 * a * s0 + b
    kappa = 2 * a / (1 + slope**2) ** 1.5
    if abs(kappa) < 1e-4:
        return 0.0
    p0 = c + s0 * u + (a * s0**2 + b * s0 + c0) * n
    normal = (-slope * u + n) / np.hypot(slope, 1.0)  # towards +q
    d = normal * np.sign(a)  # towards the centre of curvature
    inside, outside = 0, 0
    for step in (2.0, 3.0, 4.0, 5.0):
        for sgn in (1, -1):
            py, px = np.rint(p0 + sgn * step * d).astype(int)
            if 0 <= py < h and 0 <= px < w:
                if bool(switched[py, px]) == (sgn > 0):
                    inside += 1
                else:
                    outside += 1
    sign = 1.0 if inside >= outside else -1.0
    return sign * abs(float(kappa))


def wall_descriptors(
    images: np.ndarray,
    threshold: float,
    edges: np.ndarray | None = None,
    min_length: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Wall count and curvature of each window.

    Parameters
    ----------
    images : (N, h, w) windows (phase or decoded images).
    threshold : the median-split threshold (switched above it).
    edges : optional (N, h, w) bool wall pixels (e.g. Canny); by default the boundary
        pixels of the median split are used (what one does with decoded images).
    min_length : wall segments with fewer pixels are noise and are ignored.

    Returns
    -------
    n_walls (N,) int and curvature (N,) float (1 / pixel; NaN without walls, 0 with
    three or more walls, otherwise the mean signed curvature of the one or two walls).
    """
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    switched = arr > threshold
    if edges is None:
        edges = wall_mask(np.where(switched, 1, -1))
    edges = np.asarray(edges, dtype=bool)
    if edges.shape != arr.shape:
        raise ValueError(f"edges {edges.shape} and images {arr.shape} differ in shape")
    n = len(arr)
    n_walls = np.zeros(n, dtype=np.int64)
    curv = np.full(n, np.nan)
    for i in range(n):
        segs = _segments(edges[i], min_length)
        n_walls[i] = len(segs)
        if len(segs) == 0:
            continue
        if len(segs) >= 3:
            curv[i] = 0.0
            continue
        curv[i] = float(np.mean([segment_curvature(s, switched[i]) for s in segs]))
    return n_walls, curv
