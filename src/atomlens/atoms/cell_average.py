"""Where each basis site of a crystal actually shows in the image: the unit-cell average.

A lattice fit places the second and further sites of a basis (the S2 column of MoS2 at
(1/3, 2/3)) at their ideal fractional offsets from the brightest sublattice. A small
specimen tilt or an asymmetric probe (coma) moves the image of a dim column relative to
its bright neighbours by a constant vector (a few 0.1 Å on the 60 kV MoS2 images), so a
site placed by geometry is off the peak a user would click.

:func:`cell_average` averages the image over all unit cells, registered on the measured
positions of the bright columns (the lattice fit's displacement field and centring are
already in those positions), so the noise falls by the square root of the number of
cells; :func:`fit_basis_offsets` fits the average with one Gaussian per site and its
lattice images (bright site, free centre; every other site, free offset, amplitude and
width; a constant), which keeps the bright neighbours' tails (1.8 Å from an S2 column in
MoS2) from pulling the dim site's peak, as a centroid or a peak search in the average
would be pulled.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import least_squares


def cell_average(
    image: np.ndarray, centres: np.ndarray, radius_px: float, step_px: float = 0.5
) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean of the image around every centre (a unit-cell average when the centres are
    one site per cell).

    Parameters
    ----------
    image : (Y, X) frame.
    centres : (N, 2) positions (y, x), pixels; those within ``radius_px`` of the edge
        are skipped.
    radius_px : half-size of the square window, pixels.
    step_px : sampling step of the window (bilinear interpolation), pixels.

    Returns
    -------
    (avg, grid, n): the average (M, M), the (M, M, 2) offsets (y, x) in pixels from the
    centre at which it is sampled, and the number of centres averaged.
    """
    img = np.asarray(image, np.float64)
    h, w = img.shape
    c = np.asarray(centres, float).reshape(-1, 2)
    r = float(radius_px)
    inside = (c[:, 0] >= r) & (c[:, 1] >= r) & (c[:, 0] <= h - 1 - r) & (c[:, 1] <= w - 1 - r)
    c = c[inside]
    k = int(np.floor(r / step_px))
    o = np.arange(-k, k + 1) * step_px
    grid = np.stack(np.meshgrid(o, o, indexing="ij"), -1)
    if len(c) == 0:
        return np.full(grid.shape[:2], np.nan), grid, 0
    acc = np.zeros(grid.shape[:2])
    flat = grid.reshape(-1, 2)
    for start in range(0, len(c), 256):  # bounded memory
        pts = (c[start : start + 256, None, :] + flat[None]).reshape(-1, 2)
        v = ndi.map_coordinates(img, pts.T, order=1, mode="nearest")
        acc += v.reshape(-1, *grid.shape[:2]).sum(0)
    return acc / len(c), grid, int(len(c))


def mean_basis(centres: np.ndarray, basis_guess: np.ndarray, tol: float = 0.25) -> np.ndarray:
    """The mean lattice basis (rows a1, a2, pixels) of one sublattice's sites.

    Every vector between two sites (``centres`` (N, 2), pixels) up to 1.5 lattice
    constants long is indexed on ``basis_guess`` (rounded fractional coordinates, kept
    when within ``tol`` of an integer pair); the basis is the least-squares solution of
    ``n @ B = v`` over those pairs. So a global fit that is a few percent off (an FFT
    spot misplaced, a lattice the displacement field bends) is replaced by the lattice
    the sites themselves form. Fewer than 6 indexed pairs: ``basis_guess`` unchanged.
    """
    from scipy.spatial import cKDTree

    g = np.asarray(basis_guess, float)
    c = np.asarray(centres, float).reshape(-1, 2)
    if len(c) < 3:
        return g
    pairs = cKDTree(c).query_pairs(
        1.5 * float(np.linalg.norm(g, axis=1).max()), output_type="ndarray"
    )
    if len(pairs) < 6:
        return g
    v = c[pairs[:, 1]] - c[pairs[:, 0]]
    f = v @ np.linalg.inv(g)
    n = np.round(f)
    ok = (np.abs(f - n).max(1) < tol) & (np.abs(n).sum(1) > 0)
    if ok.sum() < 6:
        return g
    b, *_ = np.linalg.lstsq(n[ok], v[ok], rcond=None)
    return b


def _images(basis: np.ndarray, reach: float) -> np.ndarray:
    """Lattice vectors n1 a1 + n2 a2 (pixels, rows) shorter than ``reach``."""
    n = int(np.ceil(reach / np.linalg.norm(basis, axis=1).min())) + 1
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    v = np.column_stack([i.ravel(), j.ravel()]) @ basis
    return v[np.hypot(*v.T) <= reach]


def fit_basis_offsets(
    avg: np.ndarray,
    grid: np.ndarray,
    basis: np.ndarray,
    offsets: Sequence[np.ndarray],
    sigma_px: float,
) -> dict:
    """Fit a cell average (:func:`cell_average` centred on the first site) with Gaussians.

    Model: ``c + sum_k A_k sum_n exp(-|r - p_k - n|^2 / 2 s_k^2)`` over the sites ``k`` of
    the basis and the lattice vectors ``n`` (rows of ``basis``, pixels) that reach the
    window; ``p_0`` (near 0) and each ``p_k = offsets[k] @ basis + d_k`` free, amplitudes
    and widths free (start: ``sigma_px``). Returns ``{"centre": p_0, "offsets_px":
    [p_k - p_0 ...] for k >= 1, "shift_px": [d_k ...] for k >= 1 (where site k shows
    minus where the ideal offset from the window centre puts it, pixels: the correction
    for sites placed from the centring positions), "amplitudes", "sigmas_px",
    "rms_rel"}`` (rms residual / amplitude range of the average).
    """
    basis = np.asarray(basis, float)
    ideal = [np.asarray(o, float) @ basis for o in offsets]
    y = avg.ravel()
    pts = grid.reshape(-1, 2)
    reach = np.abs(grid).max() * np.sqrt(2) + 4 * sigma_px + np.linalg.norm(basis, axis=1).max()
    lat = _images(basis, reach)
    ns = len(ideal)
    span = float(y.max() - y.min()) or 1.0

    def model(p: np.ndarray) -> np.ndarray:
        out = np.full(len(pts), p[0])
        for k in range(ns):
            a, s, dy, dx = p[1 + 4 * k : 5 + 4 * k]
            centre = ideal[k] + np.array([dy, dx])
            d = pts[:, None, :] - (centre + lat)[None]
            out += a * np.exp(-(d**2).sum(-1) / (2 * s * s)).sum(1)
        return out

    p0 = [float(np.median(y))]
    lo, hi = [-np.inf], [np.inf]
    for k in range(ns):
        near = np.argmin(np.hypot(*(pts - ideal[k]).T))
        p0 += [max(float(y[near] - p0[0]), 1e-3 * span), sigma_px, 0.0, 0.0]
        lo += [0.0, 0.3 * sigma_px, -0.25 * reach, -0.25 * reach]
        hi += [np.inf, 3 * sigma_px, 0.25 * reach, 0.25 * reach]
    res = least_squares(lambda p: model(p) - y, p0, bounds=(lo, hi), x_scale="jac")
    p = res.x
    centres = [ideal[k] + p[3 + 4 * k : 5 + 4 * k] for k in range(ns)]
    return {
        "centre": centres[0],
        "offsets_px": [centres[k] - centres[0] for k in range(1, ns)],
        "shift_px": [p[3 + 4 * k : 5 + 4 * k].copy() for k in range(1, ns)],
        "amplitudes": [float(p[1 + 4 * k]) for k in range(ns)],
        "sigmas_px": [float(p[2 + 4 * k]) for k in range(ns)],
        "rms_rel": float(np.sqrt(np.mean(res.fun**2)) / span),
    }


__all__ = ["cell_average", "fit_basis_offsets", "mean_basis"]
