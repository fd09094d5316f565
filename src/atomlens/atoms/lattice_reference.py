"""A reproducible "corrected" atom set for a crystalline 2-D lattice (2H MoS2 and kin).

On a clean crystal a careful user's corrections amount to: every lattice site that shows
an atom column is clicked on its centre, every site without one (a vacancy, a hole) is
left empty, and nothing is clicked between sites. :func:`lattice_reference` builds that
set without a detector:

1. **Lattice from the FFT.** Two first-order spots 60° apart in the power spectrum
   (:func:`first_order_spots`: the innermost such pair, so a brighter √3 order is not
   taken for the first), refined by their Bragg phases (:func:`refine_spots`), give the
   reciprocal basis; its inverse is the real-space basis
   (a1, a2), so anisotropic scan distortion is kept, not forced hexagonal. The pixel
   size follows from the lattice constant.
2. **Distortion.** Geometric phase analysis (:func:`bragg_phasors`,
   :func:`displacement_at`) gives the slowly varying displacement of the lattice over
   the image (scan distortion, drift); every site is moved by it.
3. **Sites.** The brightest sublattice is found by scanning the origin over one unit
   cell (mean smoothed intensity at the displaced sites); for a honeycomb basis
   (``("Mo", 0, 0), ("S", 1/3, 2/3)``) the second site is tried at (1/3, 2/3) and
   (2/3, 1/3) and the brighter kept (the other one is the hollow).
4. **Centre and drop.** Sites of the bright species (Mo) are centred on the image
   (brightest pixel within 0.8 Å of the site, then the centroid within 0.6 Å, on the
   lightly smoothed image: this follows scan glitches that shift whole lines); faint
   S2 columns move with their Mo neighbours (mean shift), see ``refine``. A site is
   kept when its contrast (smoothed intensity above the lattice-period mean) reaches
   ``min_contrast`` of the way from the hollow sites' median to its species' median:
   sites without signal (vacancies, holes, under thick contamination) are dropped, as
   a user would.
5. **Measured basis offsets.** Step 4 puts an S2 site where the lattice puts it, the
   ideal (1/3, 2/3) offset from its Mo neighbours; it never looks at the S2 column. A
   small specimen tilt or an asymmetric probe (coma) moves the image of the dim S2
   column relative to Mo by a constant vector, and a user clicking would click the S2
   peak. So the image is averaged over all unit cells, registered on the centred Mo
   columns (the displacement field and the centring are in those positions; noise down
   by the square root of the ~400-900 cells), and the average is fitted with one
   Gaussian per basis site and its lattice images (:mod:`atomlens.atoms.cell_average`:
   the Mo tails 1.8 Å away cannot pull the S2 peak as they would pull a centroid);
   every S2 site moves by the measured shift (one vector per image, applied when it is
   under a third of the bond). On simulated 2H MoS2 (``atomlens.simulate``, 0.13 Å/px,
   1.1 Å probe, shot noise) with every S2 column moved 0.2 Å, the S2 sites land 0.01-0.02
   Å (median) from the truth, against 0.20-0.21 Å without this step; with no shift it
   measures < 0.01 Å and the Mo sites do not move (tests/test_lattice_reference.py). On
   the three 60 kV MoS2 images it measures S2 shifts of 0.14, 0.24 and 0.28 Å
   (``fit.details["site_offsets"]``; ``measure_offsets=False`` gives the geometric
   sites, the reference before this step).

No network is involved, so the same set can both train a detector (on some tiles) and
score it (on others) without the detector marking its own homework; what it cannot
know is anything off the lattice (adatoms, grain boundaries), so use it on single
crystals only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from atomlens.atoms.refine import refine_com

#: 2H MoS2 seen along c: Mo at the lattice points, the S2 column at (1/3, 2/3).
MOS2_BASIS: tuple[tuple[str, float, float], ...] = (("Mo", 0.0, 0.0), ("S", 1 / 3, 2 / 3))


@dataclass
class LatticeFit:
    """The lattice found in an image.

    Attributes
    ----------
    basis : (2, 2) real-space basis vectors as rows ``a1, a2`` in (y, x) pixels.
    origin : (2,) position (pixels) of the first basis site of cell (0, 0).
    second_site : fractional offset of the second basis site (after the swap test).
    spots : (2, 2) reciprocal vectors (cycles/px) used, rows ``g1, g2``.
    pixel_size : Å/px implied by the first-order spots and the lattice constant.
    distortion_pct : 100 * (|a1| - |a2|) / mean: anisotropy the FFT shows.
    angle_deg : angle between a1 and a2 (120 for an undistorted hexagon).
    details : counts per step.
    """

    basis: np.ndarray
    origin: np.ndarray
    second_site: tuple[float, float] | None
    spots: np.ndarray
    pixel_size: float
    distortion_pct: float
    angle_deg: float
    displacement: np.ndarray | None = None  # Bragg phasors (:func:`bragg_phasors`)
    details: dict = field(default_factory=dict)


def whitened_spectrum(
    img: np.ndarray, pad: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Power spectrum of a Hann-windowed image zero-padded to ``pad`` x ``pad`` (centred,
    smoothed by 1.5 bins) and the same spectrum divided by its radial mean, so lattice
    spots stand out of the low-frequency background.

    Returns ``(spec, white, r, yy, xx)``: both spectra (pad, pad); ``r`` the radius and
    ``yy, xx`` the offsets from the centre bin ``pad // 2``, in FFT bins.
    """
    h, w = img.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    spec = np.abs(np.fft.fftshift(np.fft.fft2((img - img.mean()) * win, s=(pad, pad)))) ** 2
    spec = ndi.gaussian_filter(spec, 1.5)
    white, r, yy, xx = whiten_radial(spec)
    return spec, white, r, yy, xx


def whiten_radial(
    spec: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A centred (n, n) power spectrum divided by its mean over each 1-bin ring, so
    lattice spots stand out of the low-frequency background.

    Returns ``(white, r, yy, xx)``: the whitened spectrum (n, n), the radius and the
    offsets from the centre bin ``n // 2``, in FFT bins.
    """
    n = spec.shape[0]
    yy, xx = np.mgrid[:n, :n] - n // 2
    r = np.hypot(yy, xx)
    ri = r.astype(int)
    radial = np.bincount(ri.ravel(), spec.ravel()) / np.maximum(np.bincount(ri.ravel()), 1)
    return spec / np.maximum(radial[ri], 1e-30), r, yy, xx


def annulus_maxima(
    spec: np.ndarray, white: np.ndarray, r: np.ndarray, yy: np.ndarray, k0: float, search: float
) -> tuple[np.ndarray, np.ndarray]:
    """Up to 10 local maxima of the whitened spectrum in the upper half of the annulus
    ``k0 (1 -/+ search)`` (FFT bins): (vectors (n, 2) from the centre, sub-bin by a
    power-weighted centroid; whitened strengths (n,), strongest first): the candidates
    :func:`first_order_spots` pairs and :mod:`atomlens.atoms.lattice_check` scores."""
    pad = spec.shape[0]
    c = pad // 2
    ann = (r >= max(4.0, k0 * (1 - search))) & (r <= k0 * (1 + search)) & (yy >= 0)
    w = np.where(ann, white, 0.0)
    peak = (w == ndi.maximum_filter(w, 2 * max(2, int(0.1 * k0)) + 1)) & (w > 0)
    py, px = np.nonzero(peak)
    order = np.argsort(w[py, px])[::-1][:10]
    strength = w[py[order], px[order]]
    vec = np.column_stack([py[order] - c, px[order] - c]).astype(float)
    return subbin_centroids(spec, vec, c, max(2, int(round(0.08 * k0)))), strength


def subbin_centroids(spec: np.ndarray, vec: np.ndarray, c: int, hw: int) -> np.ndarray:
    """Spot vectors ``vec`` (n, 2) FFT bins from the centre bin ``c`` of ``spec``, each
    moved to the power-weighted centroid (above half the window's maximum) of its
    ``(2 hw + 1)²`` window; spots whose window leaves ``spec`` keep their bin. A copy."""
    vec = np.array(vec, float)
    gy, gx = np.mgrid[-hw : hw + 1, -hw : hw + 1]
    for k, (y, x) in enumerate(vec.astype(int) + c):
        sub = spec[y - hw : y + hw + 1, x - hw : x + hw + 1]
        if sub.shape != gy.shape:
            continue
        s_ = np.clip(sub - 0.5 * sub.max(), 0, None)
        if s_.sum() > 0:
            vec[k] += [(s_ * gy).sum() / s_.sum(), (s_ * gx).sum() / s_.sum()]
    return vec


def first_order_spots(
    image: np.ndarray,
    pixel_size: float,
    a_A: float = 3.16,
    *,
    pad: int = 1024,
    search: float = 0.6,
    min_rel: float = 0.2,
) -> tuple[np.ndarray, float]:
    """Two first-order reciprocal vectors (rows, cycles/px, (y, x)) and the pixel size
    (Å/px) they imply for lattice constant ``a_A``.

    Local maxima of the whitened power spectrum within ``1 -/+ search`` of where
    ``pixel_size`` (a nominal guess) puts the first order are paired (60° ± 12° apart,
    radii within 25 %); of the pairs whose spots both reach ``min_rel`` of the strongest
    spot's power, the innermost is taken. So a √3 order brighter than the first (common
    on MoS2 HAADF) is not mistaken for it, and a distorted hexagon (spots at different
    radii) is kept as it is.
    """
    img = np.asarray(image, np.float64)
    pad = max(pad, *img.shape)
    spec, white, r, yy, xx = whitened_spectrum(img, pad)
    k0 = pixel_size / (a_A * np.sqrt(3) / 2) * pad  # first-order radius in FFT bins
    vec, strength = annulus_maxima(spec, white, r, yy, k0, search)
    if len(vec) < 2:
        raise ValueError("no lattice spots in the FFT: check the pixel size and lattice constant")
    strong = strength >= min_rel * strength[0]
    best = None
    for i in range(len(vec)):
        for j in range(i + 1, len(vec)):
            if not (strong[i] and strong[j]):
                continue
            ri_, rj_ = np.linalg.norm(vec[i]), np.linalg.norm(vec[j])
            if max(ri_, rj_) / min(ri_, rj_) > 1.25:
                continue
            for sign in (1.0, -1.0):
                gj = sign * vec[j]
                ang = np.degrees(np.arccos(np.clip(vec[i] @ gj / (ri_ * rj_), -1, 1)))
                if abs(ang - 60) < 12:
                    key = (ri_ + rj_) / 2
                    if best is None or key < best[0] - 1e-9:
                        best = (key, vec[i], gj)
    if best is None:
        raise ValueError("no pair of FFT spots 60° apart: not a hexagonal lattice?")
    g = np.stack([best[1], best[2]]) / pad
    return g, spots_pixel_size(g, a_A)


def spots_pixel_size(g: np.ndarray, a_A: float) -> float:
    """Å/px implied by two first-order reciprocal vectors ``g`` (rows, cycles/px) of a
    hexagonal lattice with constant ``a_A``: the mean length of ``g1``, ``g2`` and
    ``g2 - g1`` is 1 / (a sqrt(3) / 2) in cycles per Å."""
    radii = np.linalg.norm(np.stack([g[0], g[1], g[1] - g[0]]), axis=1)
    return float(np.mean(radii) * a_A * np.sqrt(3) / 2)


def _mean_at(smooth: np.ndarray, yx: np.ndarray) -> float:
    h, w = smooth.shape
    inside = (yx[:, 0] >= 0) & (yx[:, 1] >= 0) & (yx[:, 0] <= h - 1) & (yx[:, 1] <= w - 1)
    if not inside.any():
        return -np.inf
    return float(ndi.map_coordinates(smooth, yx[inside].T, order=1).mean())


def _cells(basis: np.ndarray, origin: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Integer cell indices (n1, n2) whose lattice point may lie in the image (+1 cell)."""
    h, w = shape
    corners = np.array([[0, 0], [0, w], [h, 0], [h, w]], float) - origin
    frac = corners @ np.linalg.inv(basis)
    lo = np.floor(frac.min(0)) - 2
    hi = np.ceil(frac.max(0)) + 2
    n1, n2 = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    return np.column_stack([n1.ravel(), n2.ravel()])


def bragg_phasors(image: np.ndarray, spots: np.ndarray, width_cells: float = 3.0) -> np.ndarray:
    """Geometric phase analysis: for each reciprocal vector ``g`` of ``spots`` (rows,
    cycles/px), the Bragg-filtered image (Gaussian mask of ~1 / ``width_cells`` periods)
    demodulated by ``exp(-2 pi i g.r)``; complex (2, Y, X). Its phase ``P_g`` is
    ``-2 pi g.u`` for the local lattice displacement ``u`` (see :func:`displacement_at`).
    """
    img = np.asarray(image, np.float64)
    h, w = img.shape
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    spec = np.fft.fft2(img - img.mean())
    yy, xx = np.mgrid[:h, :w]
    out = []
    for g in spots:
        sig = np.linalg.norm(g) / width_cells
        mask = np.exp(-((fy - g[0]) ** 2 + (fx - g[1]) ** 2) / (2 * sig**2))
        f = np.fft.ifft2(spec * mask) * np.exp(-2j * np.pi * (g[0] * yy + g[1] * xx))
        # remove the mean phase (a global shift the origin absorbs): phases then stay far
        # from the +-pi wrap unless the lattice drifts by half a period from its mean
        m = f.sum()
        out.append(f * np.conj(m) / max(abs(m), 1e-30))
    return np.stack(out)


def refine_spots(
    image: np.ndarray,
    spots: np.ndarray,
    iters: int = 2,
    max_shift: float | None = None,
    margin_px: int = 0,
) -> np.ndarray:
    """Reciprocal vectors (rows, cycles/px) refined to the image's mean lattice: each
    Bragg phasor's mean phase gradient (amplitude-weighted, pixel to pixel) is the error
    of its ``g`` (an FFT bin is ~1/1024 cycle/px: a lattice that drifts by a period over
    the frame). A vector whose total correction would exceed ``max_shift`` (cycles/px)
    is left as given: its spot is too weak for a clean phase. ``margin_px``: the
    gradient is taken that far inside the edges (the FFT's wrap-around bends the phase
    there; it matters on small frames). Returns the corrected vectors, same shape."""
    g0 = np.asarray(spots, float)
    g = g0.copy()
    m = int(margin_px)
    for _ in range(iters):
        for k, f in enumerate(bragg_phasors(image, g)):
            if m > 0 and min(f.shape) > 4 * m:
                f = f[m:-m, m:-m]
            dy = np.angle(np.sum(f[1:, :] * np.conj(f[:-1, :])))
            dx = np.angle(np.sum(f[:, 1:] * np.conj(f[:, :-1])))
            g[k] += np.array([dy, dx]) / (2 * np.pi)
    if max_shift is not None:
        far = np.linalg.norm(g - g0, axis=1) > max_shift
        g[far] = g0[far]
    return g


def displacement_at(phasors: np.ndarray, spots: np.ndarray, yx: np.ndarray) -> np.ndarray:
    """Lattice displacement (pixels, (N, 2)) at points ``yx``: ``u = -inv(G) P / 2 pi``.

    The complex fields are interpolated (not their phases), so phase wraps cause no
    jumps; ``u`` comes back modulo a lattice vector, which maps the lattice on itself."""
    h, w = phasors.shape[1:]
    q = np.column_stack([np.clip(yx[:, 0], 0, h - 1), np.clip(yx[:, 1], 0, w - 1)]).T
    ph = np.stack(
        [
            np.angle(
                ndi.map_coordinates(f.real, q, order=1)
                + 1j * ndi.map_coordinates(f.imag, q, order=1)
            )
            for f in phasors
        ],
        1,
    )
    return -ph @ np.linalg.inv(spots).T / (2 * np.pi)


def snap_to_sites(
    phasors: np.ndarray,
    spots: np.ndarray,
    origin: np.ndarray,
    yx: np.ndarray,
    iters: int = 6,
    lattice: np.ndarray | None = None,
) -> np.ndarray:
    """Move points (N, 2), pixels, to the nearest site of the distortion-following lattice.

    ``lattice``: the reciprocal basis (rows, cycles/px) whose lattice points are sites
    when ``spots`` (the phasors' vectors, integer combinations of it) are others, e.g.
    strong spots measured where a basis spot is too weak for a clean phase.

    A site is a point ``r`` whose local Bragg phases put it on a lattice point:
    ``g . (r - origin) + P_g(r) / 2 pi`` an integer for both ``g`` of ``spots`` (``P_g``
    from :func:`bragg_phasors`, i.e. ``r = n . basis + origin + u(r)``). Newton steps on
    the wrapped phase residual solve it at the site itself, not at the undistorted
    lattice point: where the displacement ``u`` wraps by a lattice vector (a drift of half
    a period across the image) evaluating ``u`` at the undistorted point sends two cells
    to one site and leaves a row of columns without a site; snapping cannot.
    """
    hs = np.asarray(spots, float)
    g = hs if lattice is None else np.asarray(lattice, float)
    ginv = np.linalg.inv(g)
    r = np.asarray(yx, float).copy()
    if len(r) == 0:
        return r
    for _ in range(iters):
        u = displacement_at(phasors, hs, r)  # displacement (pixels) at r
        phi = (r - origin - u) @ g.T
        r = r - (phi - np.round(phi)) @ ginv.T
    return r


def fill_site_gaps(
    sites: np.ndarray,
    phasors: np.ndarray,
    spots: np.ndarray,
    origin: np.ndarray,
    vectors: np.ndarray,
    shape: tuple[int, int],
    border_px: float,
    rounds: int = 4,
    lattice: np.ndarray | None = None,
) -> np.ndarray:
    """Add the sites of one sublattice that no cell reached (``sites`` (N, 2), pixels).

    Enumerating cells through a displacement field gives one site per cell; where the
    image holds one row of columns more than the undistorted lattice over the same
    stretch (a scan jump or compression the Bragg filter smooths over), a row of
    columns has no cell. Each site's neighbours one lattice vector away (``vectors``,
    rows, pixels) are snapped (:func:`snap_to_sites`) and kept when no site lies within
    half the shortest vector and they are at least ``border_px`` inside ``shape``;
    repeated ``rounds`` times (a gap several rows wide fills from both sides).
    ``lattice``: as in :func:`snap_to_sites`.
    """
    from scipy.spatial import cKDTree

    sites = np.asarray(sites, float).reshape(-1, 2)
    if len(sites) == 0:
        return sites
    h, w = shape
    dmin = 0.5 * float(np.linalg.norm(vectors, axis=1).min())
    steps = np.concatenate([vectors, -vectors])
    for _ in range(rounds):
        cand = (sites[:, None, :] + steps[None]).reshape(-1, 2)
        lo, hi = border_px, np.array([h, w]) - 1 - border_px
        cand = cand[np.all((cand >= lo) & (cand <= hi), axis=1)]
        if len(cand):
            cand = cand[cKDTree(sites).query(cand)[0] > dmin]
        if len(cand) == 0:
            break
        cand = snap_to_sites(phasors, spots, origin, cand, lattice=lattice)
        cand = cand[np.all((cand >= lo) & (cand <= hi), axis=1)]
        cand = cand[cKDTree(sites).query(cand)[0] > dmin] if len(cand) else cand
        if len(cand) == 0:
            break
        keep = np.ones(len(cand), bool)
        for i, j in sorted(cKDTree(cand).query_pairs(dmin)):
            if keep[i] and keep[j]:
                keep[j] = False
        sites = np.concatenate([sites, cand[keep]])
    return sites


def _displace(fit_or_phasors, spots: np.ndarray | None, yx: np.ndarray) -> np.ndarray:
    if isinstance(fit_or_phasors, LatticeFit):
        return yx + displacement_at(fit_or_phasors.displacement, fit_or_phasors.spots, yx)
    return yx + displacement_at(fit_or_phasors, spots, yx)


def fit_lattice(
    image: np.ndarray,
    pixel_size: float,
    a_A: float = 3.16,
    basis_sites: Sequence[tuple[str, float, float]] = MOS2_BASIS,
) -> LatticeFit:
    """Lattice vectors, origin and (for a two-site basis) the second site's offset;
    ``pixel_size`` is a nominal guess (Å/px) that only says where to look in the FFT."""
    img = np.asarray(image, np.float64)
    g, _ = first_order_spots(img, pixel_size, a_A)
    # the spectrum's peaks are biased on small frames (a spot is 2 pad/size bins wide and
    # the radial whitening leans on it: 8 % short on a 320² frame); the Bragg phases
    # give the mean lattice itself (< 1 % change on the 512² MoS2 frames)
    gmin = float(np.linalg.norm(g, axis=1).min())
    g = refine_spots(img, g, iters=3, max_shift=0.25 * gmin, margin_px=int(2 / gmin))
    pixel_size = spots_pixel_size(g, a_A)
    basis = np.linalg.inv(g).T  # rows a1, a2: g_i . a_j = delta_ij
    # a1, a2 at 60° or 120° depending on the spots picked; make them 120° apart (hexagonal
    # convention in which the honeycomb site sits at (1/3, 2/3))
    if basis[0] @ basis[1] > 0:
        basis[1] = basis[1] - basis[0]
    u = bragg_phasors(img, g)
    sigma = max(0.8, 0.3 / pixel_size)
    smooth = ndi.gaussian_filter(img, sigma)
    # origin: scan one unit cell for the brightest sublattice
    n_scan = 24
    cells = _cells(basis, np.zeros(2), img.shape)
    best = (-np.inf, np.zeros(2))
    for i in range(n_scan):
        for j in range(n_scan):
            o = np.array([i, j], float) / n_scan @ basis
            m = _mean_at(smooth, _displace(u, g, cells @ basis + o))
            if m > best[0]:
                best = (m, o)
    origin = best[1]
    second = None
    if len(basis_sites) == 2:
        cand = [(1 / 3, 2 / 3), (2 / 3, 1 / 3)]
        vals = [
            _mean_at(smooth, _displace(u, g, (cells + np.array(c)) @ basis + origin)) for c in cand
        ]
        second = cand[int(np.argmax(vals))]
    a_px = np.linalg.norm(basis, axis=1)
    cosang = basis[0] @ basis[1] / (a_px[0] * a_px[1])
    return LatticeFit(
        basis=basis,
        origin=origin,
        second_site=second,
        spots=g,
        pixel_size=pixel_size,
        distortion_pct=float(100 * (a_px[0] - a_px[1]) / a_px.mean()),
        angle_deg=float(np.degrees(np.arccos(cosang))),
        displacement=u,
    )


def lattice_reference(
    image: np.ndarray,
    pixel_size: float,
    a_A: float = 3.16,
    basis_sites: Sequence[tuple[str, float, float]] = MOS2_BASIS,
    *,
    min_contrast: float = 0.35,
    window_A: float = 0.6,
    max_shift_A: float = 0.8,
    border_A: float = 0.5,
    refine: Sequence[str] | None = None,
    measure_offsets: bool = True,
    frame: int = 0,
) -> tuple[pd.DataFrame, LatticeFit]:
    """The lattice-fit atom set of one image (see the module docstring).

    Parameters
    ----------
    image : (Y, X) frame (atoms bright).
    pixel_size : nominal Å/px (the metadata may be 30 % off): only where to look for the
        first-order spots; the fit's own pixel size (``fit.pixel_size``) sets the
        windows below.
    a_A : lattice constant (MoS2 3.16 Å).
    basis_sites : ``(species, f1, f2)`` per site of the unit cell; the first must be the
        brightest column (Mo). For two sites the second's offset is tested against its
        mirror (2/3, 1/3).
    min_contrast : keep a site whose contrast (smoothed intensity above the
        lattice-period mean) is at least this fraction of the way from the hollow sites'
        median to its species' median (sites below: vacancies, holes, buried under
        contamination).
    window_A, max_shift_A : centroid window radius, and how far from its lattice site a
        column is looked for (the brightest pixel within ``max_shift_A``, then the
        centroid; below half the Mo-S2 distance so it cannot jump to a neighbour).
    refine : species whose sites are centred on the image (default: the first, brightest
        one). The others (and centred sites that found nothing) move with the centred
        sites within a bond of them (mean shift from their lattice positions), then by
        their site's shift in the unit-cell average (``measure_offsets``): on the 60 kV
        MoS2 images the S2 columns stand ~3x less above the hollow level than Mo, and
        their centroids scatter by 0.25-0.3 Å (noise, and the pull of the bright Mo 1.8
        Å away), while their Mo neighbours and the cell average place them better.
    measure_offsets : move the sites that are not centred (the S2 sublattice) by the
        shift of their site in the unit-cell average (:mod:`atomlens.atoms.cell_average`,
        one constant vector per species and image; module docstring, step 5). ``False``:
        the ideal fractional offset from the lattice (the reference before this step).
    border_A : sites closer than this to the edge are not returned.

    Returns
    -------
    (atoms, fit): the table ``frame, y, x, cls, contrast, refined`` (pixels; ``refined``:
    centred on the image rather than left on the lattice) of the kept sites, and the
    :class:`LatticeFit`; ``fit.details`` counts sites placed and dropped.
    """
    img = np.asarray(image, np.float64)
    fit = fit_lattice(img, pixel_size, a_A, basis_sites)
    pixel_size = fit.pixel_size
    offsets = [np.array([f1, f2]) for _, f1, f2 in basis_sites]
    if len(basis_sites) == 2 and fit.second_site is not None:
        offsets[1] = np.array(fit.second_site)
    species = [s for s, _, _ in basis_sites]
    cells = _cells(fit.basis, fit.origin, img.shape)
    frac = np.concatenate([cells + off for off in offsets])
    sub = np.repeat(np.arange(len(offsets)), len(cells))
    ideal = frac @ fit.basis + fit.origin
    h, w = img.shape
    pad = 2.0 / pixel_size
    keep = (
        (ideal[:, 0] > -pad)
        & (ideal[:, 1] > -pad)
        & (ideal[:, 0] < h - 1 + pad)
        & (ideal[:, 1] < w - 1 + pad)
    )
    ideal, sub = ideal[keep], sub[keep]
    radius = max(2.0, window_A / pixel_size)
    max_shift = max(1.0, max_shift_A / pixel_size)
    yx = _displace(fit, None, ideal)
    for k, off in enumerate(offsets):  # onto the sites themselves (see snap_to_sites)
        m = sub == k
        yx[m] = snap_to_sites(fit.displacement, fit.spots, fit.origin + off @ fit.basis, yx[m])
    b = border_A / pixel_size
    inside = (yx[:, 0] >= b) & (yx[:, 1] >= b) & (yx[:, 0] <= h - 1 - b) & (yx[:, 1] <= w - 1 - b)
    yx, sub = yx[inside], sub[inside]
    # u is known modulo a lattice vector: where it wraps two cells can land on one site
    from scipy.spatial import cKDTree

    bond_px = a_A / np.sqrt(3) / pixel_size
    pairs = cKDTree(yx).query_pairs(0.5 * bond_px, output_type="ndarray")
    if len(pairs):
        dup = np.ones(len(yx), bool)
        dup[np.unique(pairs.max(1))] = False
        yx, sub = yx[dup], sub[dup]
    smooth = ndi.gaussian_filter(img, max(0.8, 0.25 / pixel_size))
    todo = np.isin(
        sub,
        [k for k, sp in enumerate(species) if sp in (species[:1] if refine is None else refine)],
    )
    ref = yx.copy()
    # bright sites: jump to the brightest pixel within max_shift (scan glitches shift
    # whole lines by more than a centroid window can follow), then centroid
    start = _brightest_near(smooth, yx[todo], max_shift)
    ref[todo] = refine_com(smooth, start, radius)
    ok = todo & (np.hypot(*(ref - yx).T) <= max_shift)
    ref = np.where(ok[:, None], ref, yx)
    # every other site moves with its centred neighbours within a bond + 10 % (local
    # drift or glitch the smooth displacement field misses)
    if ok.any() and (~ok).any():
        resid = (ref - yx)[ok]
        nb = cKDTree(yx[ok]).query_ball_point(yx[~ok], 1.1 * bond_px)
        shift = np.array([resid[n].mean(0) if len(n) else (0.0, 0.0) for n in nb])
        ref[~ok] = yx[~ok] + shift
    # sites that moved with their neighbours: to where the unit-cell average shows them
    offsets_found = {}
    if measure_offsets and len(offsets) > 1:
        ref, offsets_found = _measured_site_shifts(img, fit, ref, sub, ok, todo, offsets, species)
    # contrast: smoothed intensity above the local mean level (a lattice-period blur)
    level = ndi.gaussian_filter(img, fit_period_px(fit))
    contrast = _at(smooth, ref) - _at(level, ref)
    # the empty (hollow) sites of the same cells give the "no atom" level
    hollow = [
        np.array(k)
        for k in ((1 / 3, 2 / 3), (2 / 3, 1 / 3))
        if not any(np.allclose(k, o) for o in offsets)
    ]
    hyx = (
        _displace(fit, None, np.concatenate([cells + k for k in hollow]) @ fit.basis + fit.origin)
        if hollow
        else np.zeros((0, 2))
    )
    hin = (hyx[:, 0] >= b) & (hyx[:, 1] >= b) & (hyx[:, 0] <= h - 1 - b) & (hyx[:, 1] <= w - 1 - b)
    hyx = hyx[hin]
    h_level = float(np.median(_at(smooth, hyx) - _at(level, hyx))) if len(hyx) else 0.0
    keep = np.zeros(len(ref), bool)
    thresholds = {}
    for k in range(len(offsets)):
        m = sub == k
        if not m.any():
            continue
        med = float(np.median(contrast[m]))
        thresholds[species[k]] = h_level + min_contrast * (med - h_level)
        keep[m] = contrast[m] >= thresholds[species[k]]
    atoms = pd.DataFrame(
        {
            "frame": frame,
            "y": ref[:, 0],
            "x": ref[:, 1],
            "cls": [species[k] for k in sub],
            "contrast": contrast,
            "refined": ok & todo,
        }
    )
    atoms = atoms[keep].reset_index(drop=True)
    fit.details = {
        "sites_placed": int(len(ref)),
        "centroid_kept_lattice_site": int((todo & ~ok).sum()),
        "dropped_no_signal": int((~keep).sum()),
        "kept": int(len(atoms)),
        "per_species": {str(k): int(v) for k, v in atoms["cls"].value_counts().items()},
        "hollow_contrast": h_level,
        "species_median_contrast": {
            species[k]: float(np.median(contrast[sub == k]))
            for k in range(len(offsets))
            if (sub == k).any()
        },
        "thresholds": thresholds,
        "site_offsets": offsets_found,
    }
    return atoms, fit


def _measured_site_shifts(
    img: np.ndarray,
    fit: LatticeFit,
    ref: np.ndarray,
    sub: np.ndarray,
    ok: np.ndarray,
    todo: np.ndarray,
    offsets: Sequence[np.ndarray],
    species: Sequence[str],
    min_cells: int = 20,
) -> tuple[np.ndarray, dict]:
    """Move the sites of every basis site that was not centred on its own column by the
    shift of that site in the unit-cell average (:mod:`atomlens.atoms.cell_average`,
    registered on the centred sites of the first basis site). Returns the moved
    positions (N, 2), pixels, and per species the measured shift (Å), the Gaussian width
    (Å) and peak relative to the first site's, the number of cells averaged and whether
    it was applied (not when fewer than ``min_cells`` cells
    or a shift beyond a third of the bond, which is no column of that site)."""
    from atomlens.atoms.cell_average import cell_average, fit_basis_offsets, mean_basis

    px = fit.pixel_size
    centres = ref[(sub == 0) & ok & todo]
    # the lattice the centred sites form (the global fit can be a few % off where the
    # displacement field makes up for it)
    basis = mean_basis(centres, fit.basis)
    a_px = float(np.linalg.norm(basis, axis=1).max())
    avg, grid, n = cell_average(img, centres, 0.8 * a_px, max(1.0, 0.1 / px))
    out: dict = {"cells": n}
    if n < min_cells:
        out["applied"] = False
        return ref, out
    res = fit_basis_offsets(avg, grid, basis, offsets, max(1.0, 0.4 / px))
    bond = a_px / np.sqrt(3)
    ref = ref.copy()
    for k in range(1, len(offsets)):
        d = np.asarray(res["shift_px"][k - 1], float)
        placed = (sub == k) & ~(ok & todo)  # not centred on its own column
        good = bool(np.hypot(*d) <= bond / 3)
        if good:
            ref[placed] += d
        out[species[k]] = {
            "shift_A": [round(float(v) * px, 4) for v in d],
            "applied": good,
            "sigma_A": round(res["sigmas_px"][k] * px, 3),
            "amplitude_rel": round(res["amplitudes"][k] / max(res["amplitudes"][0], 1e-12), 3),
        }
    out[species[0]] = {"sigma_A": round(res["sigmas_px"][0] * px, 3)}
    out["fit_rms_rel"] = round(res["rms_rel"], 4)
    return ref, out


def _brightest_near(img: np.ndarray, yx: np.ndarray, r: float) -> np.ndarray:
    """Position of the brightest pixel within ``r`` of each point (pixels)."""
    if len(yx) == 0:
        return yx.copy()
    half = int(np.ceil(r))
    oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
    disk = oy**2 + ox**2 <= r * r
    off = np.column_stack([oy[disk], ox[disk]])
    c = np.rint(yx).astype(int)
    py = np.clip(c[:, :1] + off[None, :, 0], 0, img.shape[0] - 1)
    px = np.clip(c[:, 1:] + off[None, :, 1], 0, img.shape[1] - 1)
    k = np.argmax(img[py, px], axis=1)
    return np.column_stack([py[np.arange(len(c)), k], px[np.arange(len(c)), k]]).astype(float)


def fit_period_px(fit: LatticeFit) -> float:
    """Mean lattice period (pixels) of a fit."""
    return float(np.linalg.norm(fit.basis, axis=1).mean())


def _at(img: np.ndarray, yx: np.ndarray) -> np.ndarray:
    if len(yx) == 0:
        return np.zeros(0)
    return ndi.map_coordinates(img, yx.T, order=1, mode="nearest")


def tiles(shape: tuple[int, int], size: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping ``(y0, x0, y1, x1)`` tiles of edge ``size`` covering ``shape``
    row by row (a remainder narrower than ``size`` is left out)."""
    h, w = shape
    return [
        (y, x, y + size, x + size)
        for y in range(0, h - size + 1, size)
        for x in range(0, w - size + 1, size)
    ]


def score_tiles(
    pred: pd.DataFrame,
    ref: pd.DataFrame,
    pixel_size: float,
    boxes: Sequence[tuple[int, int, int, int]],
    *,
    match_A: float = 0.5,
    border_A: float = 1.0,
    class_map: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Detections against a reference, tile by tile (one frame).

    In each box ``(y0, x0, y1, x1)`` the reference atoms farther than ``border_A`` from
    its edge are scored; detections are matched one-to-one within ``match_A``
    (:func:`atomlens.atoms.match.match_atoms`) against the reference of the box grown by
    ``border_A``, so an atom just across the line is neither missed nor false. Returns
    one row per box: ``y0, x0, ref, det, matched, precision, recall, f1`` and, per
    reference species, ``ref_<cls>``, ``matched_<cls>`` and ``class_ok_<cls>`` (matched
    and detected as ``class_map.get(cls, cls)``, e.g. ``{"Mo": "Si", "S": "C"}``).
    """
    from atomlens.atoms.match import match_atoms

    m = border_A / pixel_size
    rows = []
    species = sorted(ref["cls"].astype(str).unique()) if len(ref) else []
    ryx_all = ref[["y", "x"]].to_numpy(float)
    pyx_all = pred[["y", "x"]].to_numpy(float)
    rc_all = ref["cls"].astype(str).to_numpy()
    pc_all = pred["cls"].astype(str).to_numpy() if "cls" in pred else np.full(len(pred), "")
    cmap = dict(class_map or {})
    for y0, x0, y1, x1 in boxes:
        rsel = _inside(ryx_all, y0 - m, x0 - m, y1 + m, x1 + m)
        psel = _inside(pyx_all, y0 - m, x0 - m, y1 + m, x1 + m)
        ryx, pyx, rc, pc = ryx_all[rsel], pyx_all[psel], rc_all[rsel], pc_all[psel]
        r_in = _inside(ryx, y0 + m, x0 + m, y1 - m, x1 - m)
        p_in = _inside(pyx, y0 + m, x0 + m, y1 - m, x1 - m)
        ip, it = match_atoms(pyx, ryx, match_A / pixel_size)
        hit_in = r_in[it]
        # a detection counts if it is inside, unless it matched an atom outside; or if it
        # lies outside but matched an atom inside
        det = p_in.copy()
        det[ip[~hit_in]] = False
        det[ip[hit_in]] = True
        n_ref, n_det, n_m = int(r_in.sum()), int(det.sum()), int(hit_in.sum())
        row = {
            "y0": y0,
            "x0": x0,
            "ref": n_ref,
            "det": n_det,
            "matched": n_m,
            "precision": n_m / max(n_det, 1),
            "recall": n_m / max(n_ref, 1),
            "f1": 2 * n_m / max(n_det + n_ref, 1),
        }
        hit_rc, hit_pc = rc[it][hit_in], pc[ip][hit_in]
        for sp in species:
            row[f"ref_{sp}"] = int((r_in & (rc == sp)).sum())
            row[f"matched_{sp}"] = int((hit_rc == sp).sum())
            row[f"class_ok_{sp}"] = int(((hit_rc == sp) & (hit_pc == cmap.get(sp, sp))).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _inside(yx: np.ndarray, y0: float, x0: float, y1: float, x1: float) -> np.ndarray:
    if len(yx) == 0:
        return np.zeros(0, bool)
    return (yx[:, 0] >= y0) & (yx[:, 1] >= x0) & (yx[:, 0] < y1) & (yx[:, 1] < x1)


__all__ = [
    "MOS2_BASIS",
    "LatticeFit",
    "bragg_phasors",
    "displacement_at",
    "fill_site_gaps",
    "first_order_spots",
    "fit_lattice",
    "lattice_reference",
    "subbin_centroids",
    "refine_spots",
    "score_tiles",
    "snap_to_sites",
    "spots_pixel_size",
    "tiles",
]
