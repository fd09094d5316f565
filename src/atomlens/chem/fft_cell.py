"""The reciprocal lattice an image's FFT spots generate, for the square-lattice calibration.

A square lattice (a cubic perovskite such as SrTiO3 seen along [001]: A columns at the
corners, BO columns at the cell centres) has the same order ambiguity as graphene's √3:
its (110) spots at √2/a are usually brighter than the (100) spots at 1/a (the (100)
amplitude is the A - BO difference, the (110) their sum), and the (200) spots at 2/a
can be strong in ABF (O columns at the edge centres). In real space the three readings
(A columns alone, period a; A + BO, a/√2; all columns, a/2) are all square lattices, so
atom geometry cannot settle the order as it does for the honeycomb. Reciprocal space
can: every lattice spot is an integer combination of the two shortest reciprocal
vectors, so the lattice that the significant spots *generate* (the smallest cell that
indexes them all, :func:`generated_lattice`) is the image's true period, provided the
spots that make it that fine (for [001] the (100) family) are seen at all. How strongly
they are seen, against the strength at the positions that a √2 or 2x larger cell would
add, is the evidence reported.

All vectors are (y, x) in FFT bins of a centred ``n`` x ``n`` spectrum unless named.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from atomlens.atoms.lattice_reference import subbin_centroids

#: Whitened (ring-median) spot strength that noise alone does not reach: pure white
#: noise peaks at ~15 in one 256-1024 px frame (smoothed at half the window's lobe).
MIN_STRENGTH = 40.0
#: Largest distance (index units) of a spot from its integer index to count as indexed.
INDEX_TOL = 0.15

#: Projected reciprocal cells of a cubic lattice (constant a) by zone axis: lengths of
#: the reduced basis (b1 <= b2) in units of 1/a; both zones are rectangular (90°).
ZONES: dict[str, tuple[float, float]] = {"[001]": (1.0, 1.0), "[110]": (1.0, float(np.sqrt(2)))}


def ring_whitened(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A centred (m, m) power spectrum divided by its median over each 1-bin ring
    (robust to the spots themselves): ``(white, r, yy, xx)``, offsets from ``m // 2``."""
    m = spec.shape[0]
    yy, xx = np.mgrid[:m, :m] - m // 2
    r = np.hypot(yy, xx)
    ri = r.astype(np.int64).ravel()
    order = np.argsort(ri, kind="stable")
    rs, vals = ri[order], spec.ravel()[order]
    bounds = np.searchsorted(rs, np.arange(int(ri.max()) + 2))
    med = np.ones(int(ri.max()) + 1)
    for k in range(len(med)):
        if bounds[k + 1] > bounds[k]:
            med[k] = np.median(vals[bounds[k] : bounds[k + 1]])
    return spec / np.maximum(med[r.astype(np.int64)], 1e-30), r, yy, xx


def spectrum_spots(
    spec: np.ndarray,
    frame_px: int,
    lo: float,
    hi: float,
    max_spots: int = 24,
) -> dict:
    """Significant spots of a centred (n, n) power spectrum between radii ``lo`` and
    ``hi`` bins (upper half plane; the lower half is its mirror).

    Strength is the whitened spectrum (ring median), smoothed at half the window's
    main lobe (``n / frame_px`` bins), at a local maximum; positions are power-weighted
    centroids (sub-bin). Spots are kept when they reach :data:`MIN_STRENGTH` and 2 %
    of the strongest, and lie within 3.2x the radius of the innermost spot that reaches
    10 % of the strongest (the lattice's low orders: scan-line streaks far out are
    left out), strongest first, at most ``max_spots``.

    Returns ``{"vec": (N, 2) bins, "strength": (N,), "smooth": whitened smoothed
    spectrum (cropped), "c": its centre index, "hw": centroid half-width}``.
    """
    n = spec.shape[0]
    c = n // 2
    half = int(min(c - 1, np.ceil(hi) + 8))
    sub = spec[c - half : c + half + 1, c - half : c + half + 1]
    white, r, yy, xx = ring_whitened(sub)
    lobe = n / float(frame_px)
    smooth = ndi.gaussian_filter(white, max(0.5, 0.5 * lobe))
    upper = (yy > 0) | ((yy == 0) & (xx > 0))
    w = np.where((r >= lo) & (r <= hi) & upper, smooth, 0.0)
    size = 2 * max(2, int(round(2 * lobe))) + 1
    peak = (w == ndi.maximum_filter(w, size)) & (w >= MIN_STRENGTH)
    py, px = np.nonzero(peak)
    strength = w[py, px]
    vec = np.column_stack([py - half, px - half]).astype(float)
    out = {"vec": vec[:0], "strength": strength[:0], "smooth": smooth, "c": half}
    hw = max(2, int(round(1.5 * lobe)))
    out["hw"] = hw
    if not len(vec):
        return out
    radius = np.hypot(vec[:, 0], vec[:, 1])
    top = strength.max()
    cap = 3.2 * radius[strength >= 0.1 * top].min()
    keep = (strength >= 0.02 * top) & (radius <= cap)
    order = np.argsort(strength[keep])[::-1][:max_spots]
    vec, strength = vec[keep][order], strength[keep][order]
    out["vec"], out["strength"] = subbin_centroids(sub, vec, half, hw), strength
    return out


def reduce_basis(b: np.ndarray) -> np.ndarray:
    """Lagrange-Gauss reduction of a 2-D lattice basis (rows): the two shortest
    independent vectors, ``|b1| <= |b2|``, angle between 60° and 120°."""
    b1, b2 = np.asarray(b[0], float), np.asarray(b[1], float)
    for _ in range(100):
        if b2 @ b2 < b1 @ b1:
            b1, b2 = b2, b1
        m = round(float(b1 @ b2 / (b1 @ b1)))
        if m == 0:
            break
        b2 = b2 - m * b1
    return np.stack([b1, b2])


def index_spots(vec: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer indices (N, 2) of spots ``vec`` in ``basis`` (rows) and their distance
    from those integers (N,), index units."""
    h = vec @ np.linalg.inv(basis)
    hi = np.round(h)
    return hi.astype(int), np.abs(h - hi).max(axis=1)


def generated_lattice(
    vec: np.ndarray, strength: np.ndarray, min_len: float, required_rel: float = 0.05
) -> np.ndarray | None:
    """The reduced basis (2, 2) of the smallest-cell lattice that indexes (within
    :data:`INDEX_TOL`) every spot reaching ``required_rel`` of the strongest; candidate
    basis vectors are the spots and their sums and differences (all lattice vectors),
    at least ``min_len`` bins long. ``None`` when no pair of candidates does."""
    vec = np.asarray(vec, float)
    if len(vec) < 2:
        return None
    required = vec[strength >= required_rel * strength.max()]
    top = vec[:12]
    i, j = np.triu_indices(len(top), 1)
    cand = np.concatenate([top, top[i] - top[j], top[i] + top[j]])
    cand = cand[np.hypot(cand[:, 0], cand[:, 1]) >= min_len]
    if len(cand) < 2:
        return None
    p, q = np.triu_indices(len(cand), 1)
    u, v = cand[p], cand[q]
    det = u[:, 0] * v[:, 1] - u[:, 1] * v[:, 0]
    sin = np.abs(det) / (np.hypot(*u.T) * np.hypot(*v.T))
    ok = sin > 0.5  # 30°-150° apart
    order = np.argsort(np.abs(det[ok]))
    p, q = p[ok][order], q[ok][order]
    for s in range(0, len(p), 512):
        pp, qq = p[s : s + 512], q[s : s + 512]
        basis = np.stack([cand[pp], cand[qq]], axis=1)  # (m, 2, 2)
        h = np.einsum("nk,mkl->mnl", required, np.linalg.inv(basis))
        err = np.abs(h - np.round(h)).max(axis=(1, 2))
        hit = np.nonzero(err < INDEX_TOL)[0]
        if len(hit):
            return reduce_basis(basis[hit[0]])
    return None


def refine_basis(vec: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares basis from every spot it indexes: ``(basis, indices, indexed)``
    with ``indexed`` the (N,) bool of spots used."""
    for _ in range(2):
        idx, err = index_spots(vec, basis)
        used = (err < INDEX_TOL) & (np.abs(idx).sum(1) > 0)
        if used.sum() < 2 or np.linalg.matrix_rank(idx[used]) < 2:
            break
        basis = np.linalg.lstsq(idx[used].astype(float), vec[used], rcond=None)[0]
    idx, err = index_spots(vec, basis)
    return basis, idx, (err < INDEX_TOL) & (np.abs(idx).sum(1) > 0)


def match_zone(basis: np.ndarray, zones: tuple[str, ...]) -> tuple[str | None, float, float]:
    """``(zone, length ratio |b2|/|b1|, angle °)`` of a reduced basis: the zone of
    :data:`ZONES` (among ``zones``) whose cell it matches (ratio within 10 %, angle
    within 8° of 90°), else ``None``."""
    l1, l2 = np.hypot(*basis[0]), np.hypot(*basis[1])
    ratio = float(l2 / l1)
    cos = abs(float(basis[0] @ basis[1] / (l1 * l2)))
    angle = float(np.degrees(np.arccos(np.clip(cos, 0, 1))))
    best = None
    for z in zones:
        want = ZONES[z][1] / ZONES[z][0]
        dev = abs(ratio / want - 1)
        if dev <= 0.10 and abs(angle - 90.0) <= 8.0 and (best is None or dev < best[1]):
            best = (z, dev)
    return (best[0] if best else None), ratio, angle


def strength_at(smooth: np.ndarray, c: int, g: np.ndarray, hw: int) -> float:
    """Strength of a spot at position ``g`` (or ``-g``, its mirror) from the centre
    ``c``: the smoothed whitened spectrum's largest value within ``hw`` bins when it is
    a peak there (inside the window, not a slope into it, such as the tail of the
    central peak or of a neighbouring spot), else 1 (the ring median: no spot)."""
    best = 1.0
    for s in (1, -1):
        y, x = (np.round(s * np.asarray(g)) + c).astype(int)
        if min(y, x) - hw < 0 or max(y, x) + hw >= smooth.shape[0]:
            continue
        win = smooth[y - hw : y + hw + 1, x - hw : x + hw + 1]
        iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
        if 0 < iy < 2 * hw and 0 < ix < 2 * hw:
            best = max(best, float(win[iy, ix]))
    return best
