"""The visible atom columns of a crystal on a square (or scan-sheared) lattice, from its FFT.

A detector-free reference for perovskites along [001] (and any crystal whose columns
sit on a square lattice with an optional centred, edge-centred basis):

1. **Lattice.** The innermost pair of strong orthogonal first-order spots of the
   whitened power spectrum (periods 1.5-6.5 Å, lengths within a factor 1.25: a square
   lattice, mildly distorted) or, failing that, the innermost pair 60-120° apart (a cell
   sheared by scan distortion, as in the SrTiO3 ABF movie) gives the reciprocal basis;
   its inverse is the real-space basis (distortion kept).
2. **Drift.** Geometric phase analysis (:func:`atomlens.atoms.lattice_reference.bragg_phasors`)
   moves every site with the slowly varying lattice displacement.
3. **Basis.** The brightest site (origin) is found by scanning one cell; the centre
   (1/2, 1/2) and edge centres (1/2, 0), (0, 1/2) are kept as columns when their smoothed
   intensity reaches ``min_contrast`` of the way from the darkest point of the cell to
   the origin's (SrTiO3 HAADF: Sr corners and Ti-O centres; O only where it shows).
4. **Dark atoms** (ABF/BF): pass ``bright=False``; the image is inverted first.

:func:`lattice_scores` then asks how many detections lie on a site (precision) and how
many sites have a detection (recall), one-to-one within a radius.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from atomlens.atoms.lattice_reference import (
    _cells,
    _displace,
    _mean_at,
    bragg_phasors,
    fill_site_gaps,
    snap_to_sites,
    whitened_spectrum,
)


@dataclass
class SquareLatticeFit:
    """A fitted square lattice.

    basis : (2, 2) rows a1, a2 in (y, x) pixels; origin : (2,) pixels.
    decorations : fractional offsets of the basis sites kept (always includes (0, 0)).
    contrast : {offset: contrast} of each candidate site.
    period_A : mean |a| in Å at the given pixel size.
    sites : (N, 2) site positions in pixels (drift-corrected, inside the image).
    spacing_px : nearest distance between two sites, pixels.
    """

    basis: np.ndarray
    origin: np.ndarray
    decorations: list[tuple[float, float]]
    contrast: dict
    period_A: float
    sites: np.ndarray
    spacing_px: float


def _spots(
    img: np.ndarray,
    pixel_size: float,
    period_A: tuple[float, float] = (1.5, 6.5),
    min_rel: float = 0.15,
    pad: int = 1024,
    max_ratio: float = 1.25,
    square: bool = True,
) -> np.ndarray:
    pad = max(pad, *img.shape)
    _, white, r, yy, xx = whitened_spectrum(img, pad)
    c = pad // 2
    rmin = pixel_size / period_A[1] * pad
    rmax = pixel_size / period_A[0] * pad
    white = np.where((r >= max(rmin, 4)) & (r <= rmax) & (yy >= 0), white, 0.0)
    peak = (white == ndi.maximum_filter(white, 2 * max(2, int(0.08 * rmin)) + 1)) & (white > 0)
    py, px = np.nonzero(peak)
    order = np.argsort(white[py, px])[::-1][:12]
    if len(order) < 2:
        raise ValueError("no lattice spots in the FFT: check the pixel size")
    strength = white[py[order], px[order]]
    vec = np.column_stack([py[order] - c, px[order] - c]).astype(float)
    strong = strength >= min_rel * strength[0]
    best = None
    for i in range(len(vec)):
        for j in range(i + 1, len(vec)):
            if not (strong[i] and strong[j]):
                continue
            ri_, rj_ = np.linalg.norm(vec[i]), np.linalg.norm(vec[j])
            if max(ri_, rj_) / min(ri_, rj_) > max_ratio:
                continue
            ang = np.degrees(np.arccos(np.clip(vec[i] @ vec[j] / (ri_ * rj_), -1, 1)))
            ok = abs(ang - 90) < 8 if square else 60 <= ang <= 120
            if ok:
                key = (ri_ + rj_) / 2
                if best is None or key < best[0] - 1e-9:
                    best = (key, vec[i], vec[j])
    if best is None:
        if square:  # strongly sheared by scan distortion: any reduced 2-D cell
            return _spots(img, pixel_size, period_A, min_rel, pad, max_ratio, square=False)
        raise ValueError("no pair of FFT spots 60-120° apart: no lattice?")
    return np.stack([best[1], best[2]]) / pad


def fit_square_lattice(
    image: np.ndarray,
    pixel_size: float,
    *,
    bright: bool = True,
    min_contrast: float = 0.35,
    border_px: float = 4.0,
) -> SquareLatticeFit:
    """Fit the visible columns of a (Y, X) image at ``pixel_size`` Å/px (see module doc)."""
    img = np.asarray(image, np.float64)
    if not bright:
        img = -img
    g = _spots(img, pixel_size)
    basis = np.linalg.inv(g).T
    u = bragg_phasors(img, g)
    a_px = float(np.mean(np.linalg.norm(basis, axis=1)))
    a_min = float(np.linalg.norm(basis, axis=1).min())
    smooth = ndi.gaussian_filter(img, max(0.8, 0.25 / pixel_size))
    cells = _cells(basis, np.zeros(2), img.shape)

    def mean_at(frac: np.ndarray, origin: np.ndarray) -> float:
        return _mean_at(smooth, _displace(u, g, (cells + frac) @ basis + origin))

    n = 16
    grid = [np.array([i, j], float) / n for i in range(n) for j in range(n)]
    vals = [mean_at(np.zeros(2), f @ basis) for f in grid]
    origin = grid[int(np.argmax(vals))] @ basis
    # the darkest point of the cell (relative to the origin) is the reference "hollow"
    rel = [mean_at(f, origin) for f in grid]
    top, low = max(rel), min(rel)
    contrast = {}
    decorations = [(0.0, 0.0)]
    for off in ((0.5, 0.5), (0.5, 0.0), (0.0, 0.5)):
        cval = (mean_at(np.array(off), origin) - low) / max(top - low, 1e-12)
        contrast[off] = float(cval)
        if cval >= min_contrast:
            decorations.append(off)
    h, w = img.shape
    parts = []
    for d in decorations:  # each sublattice: cells snapped onto sites, then its gaps filled
        o_d = origin + np.array(d) @ basis
        sub = snap_to_sites(u, g, o_d, (cells + d) @ basis + origin)
        sub = sub[np.all((sub >= border_px) & (sub <= np.array([h, w]) - 1 - border_px), axis=1)]
        parts.append(fill_site_gaps(_dedupe(sub, 0.5 * a_min), u, g, o_d, basis, (h, w), border_px))
    sites = np.concatenate(parts)
    from scipy.spatial import cKDTree

    # displacement is known modulo a lattice vector: two cells can land on one site
    sites = _dedupe(
        sites,
        0.5 * min([a_min] + [float(np.linalg.norm(np.array(d) @ basis)) for d in decorations[1:]]),
    )

    d, _ = cKDTree(sites).query(sites, k=2) if len(sites) > 1 else (np.array([[0, a_px]]), None)
    return SquareLatticeFit(
        basis, origin, decorations, contrast, a_px * pixel_size, sites, float(np.median(d[:, 1]))
    )


def _dedupe(sites: np.ndarray, dmin: float) -> np.ndarray:
    """Sites (N, 2) with the later of every pair closer than ``dmin`` pixels dropped."""
    from scipy.spatial import cKDTree

    if len(sites) < 2:
        return sites
    keep = np.ones(len(sites), bool)
    for i, j in sorted(cKDTree(sites).query_pairs(dmin)):
        if keep[i] and keep[j]:
            keep[j] = False
    return sites[keep]


def lattice_scores(
    pred_yx: np.ndarray,
    fit: SquareLatticeFit,
    shape: tuple[int, int],
    *,
    radius_frac: float = 0.35,
    border_px: float | None = None,
) -> dict:
    """Share of detections on a site and of sites with a detection (one-to-one within
    ``radius_frac`` x the site spacing), both away from the border."""
    from atomlens.atoms.match import match_atoms

    border = fit.spacing_px * 0.5 if border_px is None else border_px
    pred = np.asarray(pred_yx, float).reshape(-1, 2)
    h, w = shape

    def inner(p: np.ndarray) -> np.ndarray:
        return np.all((p >= border) & (p <= np.array([h, w]) - 1 - border), axis=1)

    sites = fit.sites[inner(fit.sites)]
    r = radius_frac * fit.spacing_px
    pi, si = match_atoms(pred, fit.sites, r)
    on = np.zeros(len(pred), bool)
    on[pi] = True
    found = np.zeros(len(fit.sites), bool)
    found[si] = True
    pin = inner(pred)
    sin = inner(fit.sites)
    return {
        "on_lattice": float(on[pin].mean()) if pin.any() else 0.0,
        "sites_found": float(found[sin].mean()) if sin.any() else 0.0,
        "n_detections": int(pin.sum()),
        "n_sites": int(len(sites)),
        "radius_px": round(float(r), 2),
        "period_A": round(fit.period_A, 3),
        "basis_sites": [list(d) for d in fit.decorations],
    }


__all__ = ["SquareLatticeFit", "fit_square_lattice", "lattice_scores"]
