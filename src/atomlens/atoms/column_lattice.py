"""The visible atom columns of a crystal on a square or rectangular lattice, from its FFT.

A detector-free reference for perovskites along [001] and [110] (and any crystal whose
columns sit on a square or rectangular lattice with an optional centred, edge-centred
basis):

1. **Lattice.** The innermost pair of strong orthogonal first-order spots of the
   whitened power spectrum (periods 1.5-6.5 Å, lengths within a factor 1.25), kept
   only if it indexes the strong spots no farther out than itself (integer
   combinations within 3 bins). Otherwise (a rectangular cell such as [110]'s a/sqrt2 x
   a, whose a-axis spot is weak; the SrO+O centred cell that the innermost spots give
   leaves the Ti columns out) the coarsest cell whose integer combinations index 85 % of
   the strong spots' power, from the spots and their differences
   (:func:`_indexing_cell`); failing that, the innermost pair 60-120° apart.
2. **Drift.** Geometric phase analysis (:func:`atomlens.atoms.lattice_reference.bragg_phasors`)
   on a pair of strong spots (the lattice's own vectors, or, when one is weak, the pair
   that registers the sharpest cell average); the lattice is refined to the frame's mean
   by the phases' gradients (:func:`atomlens.atoms.lattice_reference.refine_spots`).
3. **Basis.** The brightest site (origin) is found by scanning one cell; the centre
   (1/2, 1/2) and edge centres (1/2, 0), (0, 1/2) are kept as columns when their smoothed
   intensity reaches ``min_contrast`` of the way from the darkest point of the cell to
   the origin's (SrTiO3 [001] HAADF: Sr corners and Ti-O centres; O only where it shows;
   [110] ABF: SrO, Ti and O).
4. **Sites.** Each sublattice's cells are snapped onto the sites their local Bragg
   phases define and the sites no cell reached (where the frame holds a row more than
   the mean lattice) are filled from their neighbours
   (:func:`atomlens.atoms.lattice_reference.snap_to_sites`, ``fill_site_gaps``); with
   ``centre`` each site then moves to the centroid of its column (smoothed image above
   its local level, within a quarter of the site spacing): the Bragg phases are least
   sure near the frame edges.
5. **Dark atoms** (ABF/BF): pass ``bright=False``; the image is inverted first.

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
    refine_spots,
    snap_to_sites,
    whitened_spectrum,
)
from atomlens.atoms.refine import refine_com


@dataclass
class SquareLatticeFit:
    """A fitted square lattice.

    basis : (2, 2) rows a1, a2 in (y, x) pixels; origin : (2,) pixels.
    decorations : fractional offsets of the basis sites kept (always includes (0, 0)).
    contrast : {offset: contrast} of each candidate site.
    period_A : mean |a| in Å at the given pixel size.
    sites : (N, 2) site positions in pixels (drift-corrected, inside the image).
    spacing_px : nearest distance between two sites, pixels.
    site_kind : (N,) index into ``decorations`` of each site (its sublattice).
    """

    basis: np.ndarray
    origin: np.ndarray
    decorations: list[tuple[float, float]]
    contrast: dict
    period_A: float
    sites: np.ndarray
    spacing_px: float
    site_kind: np.ndarray | None = None


def _spots(
    img: np.ndarray,
    pixel_size: float,
    period_A: tuple[float, float] = (1.5, 6.5),
    min_rel: float = 0.15,
    pad: int = 1024,
    max_ratio: float = 1.25,
    square: bool = True,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Reciprocal basis (rows g1, g2, cycles/px) of the column lattice and candidate pairs
    of spots (same form) whose Bragg phases follow its distortion (the basis itself
    unless a basis vector is a weak spot; :func:`fit_square_lattice` keeps the pair
    that registers the sharpest cell)."""
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
    if best is None and square:  # not square: the cell that indexes the strong spots
        g = _indexing_cell(vec[strong], strength[strong], max(rmin, 4.0))
        if g is not None:
            return g / pad, [q / pad for q in _phase_pairs(g, vec[strong], strength[strong])]
        return _spots(img, pixel_size, period_A, min_rel, pad, max_ratio, square=False)
    if best is None:
        raise ValueError("no pair of FFT spots 60-120° apart: no lattice?")
    g = np.stack([best[1], best[2]]) / pad
    return g, [g]


def _phase_pairs(g: np.ndarray, vec: np.ndarray, strength: np.ndarray) -> list[np.ndarray]:
    """Candidate pairs of strong spots (rows, bins) for the Bragg phases of a lattice
    ``g`` (bins) whose own vectors may be weak spots: the pairs whose integer indices
    have determinant +-1 (a basis of the lattice itself: a pair that spans a sublattice,
    e.g. 200 and 110, leaves a half-cell ambiguity that sends one species' sites onto
    another's), or, when there is none, the two strongest non-collinear spots.
    :func:`fit_square_lattice` keeps the pair that registers the sharpest cell average."""
    idx = np.round(vec @ np.linalg.inv(g))
    ok = np.linalg.norm(vec - idx @ g, axis=1) <= _tolerance(vec)
    basis_pairs, first = [], None
    for i in range(len(vec)):
        for j in range(i + 1, len(vec)):
            pair = vec[[i, j]]
            collinear = abs(np.linalg.det(pair)) < 0.3 * np.prod(np.linalg.norm(pair, axis=1))
            if not (ok[i] and ok[j]) or collinear:
                continue
            first = pair if first is None else first  # spots come strongest first
            if abs(round(np.linalg.det(idx[[i, j]]))) == 1:
                basis_pairs.append(pair)
    return basis_pairs or ([first] if first is not None else [g])


def _tolerance(vec: np.ndarray) -> np.ndarray:
    """How far (FFT bins) a spot may lie from a lattice point and still be indexed by it:
    3 bins (a peak split in two by noise) or 8 % of its radius (a few % of scan
    distortion moves the outer spots farther), whichever is more; (N,)."""
    return np.maximum(3.0, 0.08 * np.linalg.norm(vec, axis=1))


def _indexed_share(g: np.ndarray, vec: np.ndarray, strength: np.ndarray) -> float:
    """Share of the spots' strength (``vec`` (N, 2), FFT bins) within :func:`_tolerance`
    of an integer combination of the rows of ``g`` (bins); the tolerance is the spot's,
    not the basis', so every basis of one lattice indexes the same spots."""
    m = vec @ np.linalg.inv(g)
    resid = np.linalg.norm(vec - np.round(m) @ g, axis=1)
    tol = _tolerance(vec)
    return float(strength[resid <= tol].sum() / max(float(strength.sum()), 1e-30))


def _indexing_cell(
    vec: np.ndarray,
    strength: np.ndarray,
    rmin: float,
    min_indexed: float = 0.6,
    window: float = 0.05,
) -> np.ndarray | None:
    """The primitive reciprocal cell (rows g1, g2, FFT bins) of the strong spots.

    Candidates are the spots (``vec`` (N, 2), bins, half plane) and their pairwise
    differences at least ``rmin`` long; a pair indexes a spot when the spot lies within
    :func:`_tolerance` of an integer combination. Of the pairs that
    index within ``window`` of the best share of the spots' strength (and at least
    ``min_indexed``; scan-noise spots index with nothing), the one with the largest
    reciprocal cell, i.e. the smallest real-space cell that still holds every column, is
    returned: e.g. the a/sqrt2 x a cell of a perovskite along [110], where the SrO and O
    columns alone form a centred cell that misses the a/sqrt2 spots. Reduced to its
    shortest basis and refined by least squares on the spots it indexes; None when no
    pair qualifies.
    """
    v = np.concatenate([vec, -vec])
    cand = np.concatenate([v, (v[:, None] - v[None]).reshape(-1, 2)])
    cand = cand[np.linalg.norm(cand, axis=1) >= rmin]
    cand = cand[(cand[:, 0] > 0) | ((cand[:, 0] == 0) & (cand[:, 1] > 0))]
    if len(cand) < 2:
        return None
    cand = np.unique(np.round(cand, 1), axis=0)
    scored = []
    for i in range(len(cand)):
        for j in range(i + 1, len(cand)):
            g = np.stack([cand[i], cand[j]])
            area = abs(np.linalg.det(g))
            if area < 0.3 * np.linalg.norm(g[0]) * np.linalg.norm(g[1]):
                continue  # nearly collinear
            scored.append((_indexed_share(g, vec, strength), area, g))
    if not scored:
        return None
    top = max(sc for sc, _, _ in scored)
    ok = [(area, g) for sc, area, g in scored if sc >= max(min_indexed, top - window)]
    if not ok:
        return None
    best = max(ok, key=lambda t: t[0])
    g = best[1].copy()
    for _ in range(10):  # Gauss reduction: shortest basis of the same lattice
        if np.linalg.norm(g[1]) < np.linalg.norm(g[0]):
            g = g[::-1].copy()
        k = np.round(g[0] @ g[1] / (g[0] @ g[0]))
        if k == 0:
            break
        g[1] = g[1] - k * g[0]
    # least squares over every spot it indexes (a difference of two spots is only good
    # to a few bins; split spots average out)
    idx = np.round(vec @ np.linalg.inv(g))
    near = np.linalg.norm(vec - idx @ g, axis=1) <= _tolerance(vec)
    if near.sum() >= 3 and np.linalg.matrix_rank(idx[near]) == 2:
        w = np.sqrt(strength[near])[:, None]
        g = np.linalg.lstsq(idx[near] * w, vec[near] * w, rcond=None)[0]
    return g


def fit_square_lattice(
    image: np.ndarray,
    pixel_size: float,
    *,
    bright: bool = True,
    min_contrast: float = 0.35,
    border_px: float = 4.0,
    centre: bool = True,
) -> SquareLatticeFit:
    """Fit the visible columns of a (Y, X) image at ``pixel_size`` Å/px (see module doc)."""
    img = np.asarray(image, np.float64)
    if not bright:
        img = -img
    g0, pairs = _spots(img, pixel_size)
    smooth = ndi.gaussian_filter(img, max(0.8, 0.25 / pixel_size))
    best = None
    for hs in pairs:  # the phase pair that registers the sharpest (most varied) cell average
        reg = _register(img, smooth, g0, hs)
        if best is None or reg["range"] > best["range"]:
            best = reg
    g, hs, u, basis = best["g"], best["hs"], best["u"], best["basis"]
    origin, mean_at, top, low = best["origin"], best["mean_at"], best["top"], best["low"]
    cells = best["cells"]
    a_px = float(np.mean(np.linalg.norm(basis, axis=1)))
    a_min = float(np.linalg.norm(basis, axis=1).min())
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
        sub = snap_to_sites(u, hs, o_d, (cells + d) @ basis + origin, lattice=g)
        sub = sub[np.all((sub >= border_px) & (sub <= np.array([h, w]) - 1 - border_px), axis=1)]
        sub = _dedupe(sub, 0.5 * a_min)
        parts.append(fill_site_gaps(sub, u, hs, o_d, basis, (h, w), border_px, lattice=g))
    sites = np.concatenate(parts)
    kind = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
    from scipy.spatial import cKDTree

    # displacement is known modulo a lattice vector: two cells can land on one site
    keep = _dedupe(
        sites,
        0.5 * min([a_min] + [float(np.linalg.norm(np.array(d) @ basis)) for d in decorations[1:]]),
        index=True,
    )
    sites, kind = sites[keep], kind[keep]

    d, _ = cKDTree(sites).query(sites, k=2) if len(sites) > 1 else (np.array([[0, a_px]]), None)
    if centre and len(sites):
        # each site onto its column (the phases near the frame edges are the least sure):
        # centroid of the smoothed image above its local level within a quarter spacing,
        # kept when it moved less than that
        sp = float(np.median(d[:, 1]))
        level = ndi.gaussian_filter(img, sp)
        new = refine_com(smooth - level, sites, 0.25 * sp)
        ok = np.hypot(*(new - sites).T) <= 0.25 * sp
        sites = np.where(ok[:, None], new, sites)
    return SquareLatticeFit(
        basis,
        origin,
        decorations,
        contrast,
        a_px * pixel_size,
        sites,
        float(np.median(d[:, 1])),
        kind,
    )


def _register(img: np.ndarray, smooth: np.ndarray, g0: np.ndarray, hs: np.ndarray) -> dict:
    """Lattice ``g0`` (cycles/px) refined through the phase spots ``hs`` (rows, integer
    combinations of ``g0``), Bragg phases, origin (brightest sublattice, one cell scanned
    on a 16 x 16 grid) and the cell average's extremes ``top``, ``low``; ``range``: the
    cell average's standard deviation over the grid (a misregistered lattice blurs it)."""
    m = np.round(hs @ np.linalg.inv(g0))  # hs = m g, integers
    # the spots are known to the FFT bin (a split spot to ~3): refined to the frame's
    # mean lattice (by 3 bins at most, or the spot is too weak to say)
    hs = refine_spots(img, hs, max_shift=3.0 / max(1024, *img.shape))
    g = np.linalg.inv(m) @ hs
    basis = np.linalg.inv(g).T
    u = bragg_phasors(img, hs)
    cells = _cells(basis, np.zeros(2), img.shape)

    def mean_at(frac: np.ndarray, origin: np.ndarray) -> float:
        return _mean_at(smooth, _displace(u, hs, (cells + frac) @ basis + origin))

    n = 16
    grid = [np.array([i, j], float) / n for i in range(n) for j in range(n)]
    vals = [mean_at(np.zeros(2), f @ basis) for f in grid]
    origin = grid[int(np.argmax(vals))] @ basis
    # the darkest point of the cell (relative to the origin) is the reference "hollow"
    rel = [mean_at(f, origin) for f in grid]
    top, low = max(rel), min(rel)
    return {
        "g": g,
        "hs": hs,
        "u": u,
        "basis": basis,
        "cells": cells,
        "origin": origin,
        "mean_at": mean_at,
        "top": top,
        "low": low,
        "range": float(np.std(rel)),
    }


def _dedupe(sites: np.ndarray, dmin: float, index: bool = False) -> np.ndarray:
    """Sites (N, 2) with the later of every pair closer than ``dmin`` pixels dropped (or,
    with ``index``, the boolean mask of the sites kept)."""
    from scipy.spatial import cKDTree

    keep = np.ones(len(sites), bool)
    if len(sites) >= 2:
        for i, j in sorted(cKDTree(sites).query_pairs(dmin)):
            if keep[i] and keep[j]:
                keep[j] = False
    return keep if index else sites[keep]


def lattice_scores(
    pred_yx: np.ndarray,
    fit: SquareLatticeFit,
    shape: tuple[int, int],
    *,
    radius_frac: float = 0.35,
    border_px: float | None = None,
) -> dict:
    """Share of detections on a site and of sites with a detection (one-to-one within
    ``radius_frac`` x the site spacing), both away from the border; ``sites_found_by_kind``
    splits the second by sublattice (``"f1,f2"`` fractional offset: share found)."""
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
        "sites_found_by_kind": {
            f"{d[0]:g},{d[1]:g}": round(float(found[sin & (fit.site_kind == k)].mean()), 4)
            for k, d in enumerate(fit.decorations)
            if fit.site_kind is not None and (sin & (fit.site_kind == k)).any()
        },
    }


__all__ = ["SquareLatticeFit", "fit_square_lattice", "lattice_scores"]
