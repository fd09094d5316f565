"""Which motif is this Si? A hypothesis test with the known bonding geometries.

A single Si in graphene sits in one of two known motifs:

* ``Si1C3``: the Si replaces one C; its 3 C neighbours sit 120° apart at a projected
  distance of ~1.4-1.8 Å (the Si buckles out of plane, so the projected bond is short);
* ``Si1C4``: the Si fills a divacancy (a removed C-C pair); its 4 C neighbours are the
  pair's outer neighbours, at ~1.7-1.95 Å and at ±41° and 180 ± 41° from the removed
  pair's axis (bond angles 82° and 98°).

Around each detected Si that has no other Si within ``isolated_A``, each motif is
rendered from the ideal graphene lattice (the first shell at free per-atom radii along
the motif's directions, the atoms beyond it at the lattice positions times a free scale)
as Gaussians of a free width, plus a free rotationally symmetric profile around the Si
(piecewise linear in the radius: the Si itself and its probe halo, whatever the probe's
shape) and a plane (the film / scan background). The amplitudes and the profile enter
linearly and are solved by least squares for each rotation / scale / radii / width
(variable projection); those nonlinear parameters are fitted by
:func:`scipy.optimize.least_squares` from the best angles of a coarse rotation scan and
from the angles of the C already found beside the Si. The motif with the lower Bayesian
information criterion (Gaussian pixel noise of the standard deviation that
:func:`pixel_noise` measures on the frame) wins, and its fitted
first shell is the Si's C neighbours (:func:`apply_motifs`).

Measured (2026-12-05). Simulator (:func:`atomlens.simulate.si_site.render_si_site` with
SITE_IMAGING, seeds 401-404 x 0.05/0.1/0.15/0.2 Å/px x Si1C3/Si1C4): the true motif wins
at 32/32 sites for the rigid, the 15°-prior ("flex") and the lattice-tied fits, every fitted C
within 0.12 Å of the truth; at 0.15 Å/px with the C-peak SNR lowered (6 seeds x 2
motifs, rigid): 12/12 at SNR 3 and 1.5, 11/12 at 1.0, 10/12 at 0.7. Real LibraryNet
patches (the 48 labelled Si of the 44 Si1C3/Si1C4 patches, at the detected Si): rigid
29 right, 6 wrong (all Si1C3 called Si1C4), 13 not tested (Si not isolated or not
found, or a negative C amplitude); flex 28 / 10 / 10; lattice-tied 26 / 8 / 14. The
labelled Si1C3 bonds of those patches leave 120° by a median ~17° (up to 69°; an
affine correction from the patch's own C-C bonds changes it by 0.3° on average, at
most 5°), and the C
peak is ~1.5x the pixel noise: the rigid motif is not the projected geometry there.
Hence detection does not run the test; bench/librarynet_cv.py ``--motif`` measures it
held out (see its docstring).

Units: positions in pixels (row, column) of the raw frame; distances in Å via
``pixel_size`` (Å/px); angles in degrees, counted from the +column axis towards +row.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

#: Graphene's C-C bond (Å).
CC_A = 1.42
#: The motifs tried at a single Si.
MOTIFS: tuple[str, ...] = ("Si1C3", "Si1C4")


@dataclass(frozen=True)
class MotifSettings:
    """The fit's geometry and what :func:`apply_motifs` does with it (Å, degrees)."""

    window_A: float = 2.5  # pixels within this distance of the Si are fitted
    outer_A: float = 3.6  # lattice atoms beyond the first shell rendered up to here
    radius_A: tuple[float, float] = (1.3, 2.1)  # bounds of a first-shell C's distance
    scale: tuple[float, float] = (0.9, 1.12)  # bounds of the outer lattice's scale
    width_A: tuple[float, float] = (0.2, 0.6)  # bounds of the Gaussian sigma of a C
    knot_A: float = 0.2  # spacing of the radial profile's knots
    scan_deg: float = 4.0  # coarse rotation scan step
    starts: int = 4  # best coarse angles refined
    # also start from the directions of the C already found beside the Si (then the
    # decision depends on the table, not only on the image and the Si positions)
    found_starts: bool = False
    isolated_A: float = 3.6  # a Si with another Si this close is not tested
    # Gaussian prior (sd, degrees) on a first-shell C's deviation from its ideal
    # direction (0: the rigid motif), bounded by max_dev_deg
    angle_sd_deg: float = 0.0
    max_dev_deg: float = 45.0
    # the rotation tied to the lattice's bond directions (measured on the table's C away
    # from every Si, :func:`lattice_angle`) within this tolerance; None: free rotation
    lattice_tol_deg: float | None = None
    # "count": only where the number of C within bond_A differs from the motif's:
    # too few -> the motif atoms no found C matches (within match_A) are added, too
    # many -> the found C matching no motif atom are dropped (farthest from one first);
    # "coord": at every tested Si, keep the found C that match the motif's first shell,
    # add the missing ones at the fitted positions, drop unmatched C within bond_A;
    # "place": as "coord", and matched C also move to the fitted positions
    mode: str = "count"
    match_A: float = 0.6
    bond_A: float = 2.15  # C this close to the Si and matching no motif atom are dropped
    min_delta_bic: float = 0.0  # the winner must beat the other motif by this much
    min_gap_A: float = 1.2  # a motif atom this close to a table atom is not added
    # (graphene has no two atoms closer than ~1.3 Å, even at a defect)


@dataclass
class MotifFit:
    """The best fit of one motif at one Si."""

    kind: str
    angle_deg: float  # rotation of the motif
    scale: float
    width_A: float
    radii_A: np.ndarray  # (k,) first-shell distances
    shell_yx: np.ndarray  # (k, 2) first-shell positions (px, frame)
    amplitude: float  # first-shell C amplitude (image units)
    rss: float
    n_pixels: int
    n_params: int
    bic: float = np.nan


@dataclass
class SiteDecision:
    """The motif test at one Si: both fits and the winner (``None``: not tested)."""

    si: int
    fits: dict[str, MotifFit] = field(default_factory=dict)
    kind: str | None = None
    delta_bic: float = np.nan  # BIC of the loser minus the winner's (>= 0)


def _lattice(kind: str, outer_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Ideal geometry of ``kind`` with the Si at the origin (Å, (x, y) with the motif's
    reference direction along +x): ``(first-shell directions (k,) deg, outer atoms
    (m, 2) Å)``."""
    a1 = CC_A * np.array([1.5, np.sqrt(3) / 2])
    a2 = CC_A * np.array([1.5, -np.sqrt(3) / 2])
    n = np.arange(-5, 6)
    A = (n[:, None, None] * a1 + n[None, :, None] * a2).reshape(-1, 2)
    sites = np.vstack([A, A + [CC_A, 0.0]])
    if kind == "Si1C3":
        centre, gone = np.zeros(2), [np.zeros(2)]
    elif kind == "Si1C4":
        centre, gone = np.array([CC_A / 2, 0.0]), [np.zeros(2), np.array([CC_A, 0.0])]
    else:
        raise ValueError(f"unknown motif {kind!r}; use one of {MOTIFS}")
    for g in gone:
        sites = sites[np.hypot(*(sites - g).T) > 0.1]
    sites = sites - centre
    r = np.hypot(*sites.T)
    k = 3 if kind == "Si1C3" else 4
    first = np.argsort(r)[:k]
    dirs = np.rad2deg(np.arctan2(sites[first, 1], sites[first, 0])) % 360.0
    rest = np.setdiff1d(np.flatnonzero(r <= outer_A), first)
    return np.sort(dirs), sites[rest]


def _period(kind: str) -> float:
    """Rotational period of the motif's geometry (degrees)."""
    return 120.0 if kind == "Si1C3" else 180.0


class _Site:
    """The pixels around one Si and the linear part of the model (variable projection)."""

    def __init__(self, image: np.ndarray, si: np.ndarray, pixel_size: float, s: MotifSettings):
        self.ps, self.s, self.si = pixel_size, s, np.asarray(si, float)
        half = int(np.ceil(s.window_A / pixel_size)) + 1
        c0 = np.round(self.si).astype(int)
        lo = np.maximum(c0 - half, 0)
        hi = np.minimum(c0 + half + 1, image.shape)
        yy, xx = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]].astype(float)
        dy, dx = (yy - self.si[0]) * pixel_size, (xx - self.si[1]) * pixel_size  # Å
        r = np.hypot(dy, dx)
        m = r <= s.window_A
        self.dy, self.dx, self.r = dy[m], dx[m], r[m]
        self.y = np.asarray(image, float)[lo[0] : hi[0], lo[1] : hi[1]][m]
        knots = np.arange(0.0, s.window_A + s.knot_A, s.knot_A)
        hats = np.clip(1.0 - np.abs(self.r[:, None] - knots[None]) / s.knot_A, 0.0, None)
        # radial profile (Si + halo + mean background) and a plane
        self.base = np.column_stack([hats, self.dy / s.window_A, self.dx / s.window_A])
        # the fixed columns' orthonormal basis: each fit projects them out and solves
        # only for the two atom amplitudes (a 2x2 system instead of a full lstsq)
        self.q, _ = np.linalg.qr(self.base)
        self.y_perp = self.y - self.q @ (self.q.T @ self.y)

    def atoms(self, shell: np.ndarray, outer: np.ndarray, width: float) -> np.ndarray:
        """(n, 2) columns: the first shell (one amplitude) and the outer atoms, each a
        sum of Gaussians of sigma ``width`` Å at positions (x, y) Å from the Si."""

        def blobs(p: np.ndarray) -> np.ndarray:
            if not len(p):
                return np.zeros_like(self.r)
            d2 = (self.dx[:, None] - p[None, :, 0]) ** 2 + (self.dy[:, None] - p[None, :, 1]) ** 2
            return np.exp(-d2 / (2 * width**2)).sum(1)

        return np.column_stack([blobs(shell), blobs(outer)])

    def residual(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Least-squares residual of the model (fixed columns + atom columns ``g``
        (n, 2)) and the two atom amplitudes."""
        g_perp = g - self.q @ (self.q.T @ g)
        amp, *_ = np.linalg.lstsq(g_perp, self.y_perp, rcond=None)
        return self.y_perp - g_perp @ amp, amp


def _geometry(p: np.ndarray, dirs: np.ndarray, outer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First shell and outer atoms (Å, (x, y) from the Si) for parameters ``p`` =
    (angle deg, scale, width Å, radii Å (k), [angle deviations deg (k)])."""
    k = len(dirs)
    ang, scale = p[0], p[1]
    radii = p[3 : 3 + k]
    dev = p[3 + k : 3 + 2 * k] if len(p) >= 3 + 2 * k else 0.0
    th = np.deg2rad(ang + dirs + dev)
    shell = np.column_stack([radii * np.cos(th), radii * np.sin(th)])
    c, s_ = np.cos(np.deg2rad(ang)), np.sin(np.deg2rad(ang))
    rot = np.array([[c, -s_], [s_, c]])
    return shell, scale * outer @ rot.T


def fit_motif(
    image: np.ndarray,
    si_yx: np.ndarray,
    kind: str,
    pixel_size: float,
    settings: MotifSettings | None = None,
    *,
    start_angles: np.ndarray | None = None,
    noise: float | None = None,
    site: _Site | None = None,
    lattice_deg: float | None = None,
) -> MotifFit:
    """Least-squares fit of motif ``kind`` at the Si ``si_yx`` (2,) px of ``image``
    (Y, X), atoms bright, ``pixel_size`` Å/px.

    With ``angle_sd_deg`` > 0 each first-shell C may leave its ideal direction by an
    angle with a Gaussian prior of that standard deviation (projected real sites: the
    labelled LibraryNet Si1C3 bonds leave 120° by a median ~17°, up to 69°); the fit is
    then the maximum a posteriori one and the prior's term enters the BIC.
    ``start_angles``: directions (degrees) of C already found beside the Si; each gives
    a start (the motif's nearest direction on it) besides the coarse scan's best.
    ``noise``: the pixel noise's standard deviation (image units; default measured on
    ``image``) for the BIC. ``lattice_deg``: the direction of the surrounding lattice's
    C-C bonds (mod 60°, :func:`lattice_angle`): the motif's reference bond lies along
    one of them, so the rotation is searched only within ``lattice_tol_deg`` of each.
    """
    s = settings or MotifSettings()
    site = site or _Site(image, si_yx, pixel_size, s)
    if noise is None:
        noise = pixel_noise(image)
    noise = max(noise, 1e-12)
    dirs, outer = _lattice(kind, s.outer_A)
    k = len(dirs)
    free = s.angle_sd_deg > 0
    r0 = 1.65 if kind == "Si1C3" else 1.85
    w0 = 0.35

    def resid(p: np.ndarray) -> np.ndarray:
        shell, out = _geometry(p, dirs, outer)
        r = site.residual(site.atoms(shell, out, p[2]))[0] / noise
        return np.r_[r, p[3 + k :] / s.angle_sd_deg] if free else r

    def start(a: float) -> np.ndarray:
        return np.r_[a, 1.0, w0, np.full(k, r0), np.zeros(k if free else 0)]

    # coarse scan of the rotation at nominal radii, scale and width
    grid = np.arange(0.0, _period(kind), s.scan_deg)
    cost = [float(np.sum(resid(start(a)) ** 2)) for a in grid]
    starts = list(grid[np.argsort(cost)[: s.starts]])
    if lattice_deg is not None:
        starts = list(np.arange(lattice_deg % 60.0, _period(kind), 60.0))
    for a in np.asarray(start_angles if start_angles is not None else [], float):
        # the motif direction nearest to this C (mod the period) puts the C on it
        off = (a - dirs) % _period(kind)
        starts.append(float(off[np.argmin(np.minimum(off, _period(kind) - off))]))
    dev_lo = np.full(k if free else 0, -s.max_dev_deg)
    lo = np.r_[-np.inf, s.scale[0], s.width_A[0], np.full(k, s.radius_A[0]), dev_lo]
    hi = np.r_[np.inf, s.scale[1], s.width_A[1], np.full(k, s.radius_A[1]), -dev_lo]
    x_scale = np.r_[5.0, 0.05, 0.05, np.full(k, 0.1), np.full(k if free else 0, 5.0)]
    best = None
    for a in starts:
        if lattice_deg is not None:
            lo[0], hi[0] = a - s.lattice_tol_deg, a + s.lattice_tol_deg
        x0 = np.clip(start(a), lo + 1e-6, hi - 1e-6)
        x0[0] = a
        res = least_squares(resid, x0, bounds=(lo, hi), x_scale=x_scale, tr_solver="lsmr")
        if best is None or res.cost < best.cost:
            best = res
    p = best.x
    shell, out = _geometry(p, dirs, outer)
    r, amp = site.residual(site.atoms(shell, out, p[2]))
    n = len(site.y)
    n_params = len(p) + site.base.shape[1] + 2
    rss = float(np.sum(r**2))
    shell_yx = site.si + shell[:, ::-1] / pixel_size
    return MotifFit(
        kind=kind,
        angle_deg=float(p[0] % _period(kind)),
        scale=float(p[1]),
        width_A=float(p[2]),
        radii_A=np.asarray(p[3 : 3 + k], float),
        shell_yx=shell_yx,
        amplitude=float(amp[0]),
        rss=rss,
        n_pixels=n,
        n_params=n_params,
        bic=2.0 * float(best.cost) + n_params * np.log(n),
    )


def lattice_angle(
    yx: np.ndarray, cls: np.ndarray, pixel_size: float, away_A: float = 3.0
) -> float | None:
    """Direction (degrees mod 60, from +column towards +row) of the C-C bonds of the
    C in ``yx`` (N, 2) px / ``cls`` farther than ``away_A`` from every Si: the circular
    mean of 6x the angles of C pairs 1.1-1.75 Å apart (None: fewer than 6 such pairs)."""
    from scipy.spatial import cKDTree

    from atomlens.geometry.nearby import farther_than

    yx = np.asarray(yx, float).reshape(-1, 2)
    cls = np.asarray(cls).astype(str)
    c = yx[cls == "C"]
    c = c[farther_than(c, yx[cls == "Si"], pixel_size, away_A)]
    if len(c) < 4:
        return None
    pairs = cKDTree(c).query_pairs(1.75 / pixel_size, output_type="ndarray")
    v = c[pairs[:, 1]] - c[pairs[:, 0]] if len(pairs) else np.zeros((0, 2))
    v = v[np.hypot(*v.T) * pixel_size >= 1.1]
    if len(v) < 6:
        return None
    z = np.exp(6j * np.arctan2(v[:, 0], v[:, 1])).mean()
    return float(np.rad2deg(np.angle(z)) / 6.0 % 60.0)


def pixel_noise(image: np.ndarray) -> float:
    """Standard deviation of the pixel noise of ``image`` (Y, X) (image units):
    Immerkær's estimate (Comput. Vis. Image Underst. 64, 300 (1996)), the mean absolute
    response to the difference of two Laplacians, which cancels smooth structure."""
    from scipy.ndimage import convolve

    k = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    resp = convolve(np.asarray(image, float), k)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(resp).mean() / 6.0)


def classify_site(
    image: np.ndarray,
    yx: np.ndarray,
    cls: np.ndarray,
    si: int,
    pixel_size: float,
    settings: MotifSettings | None = None,
    noise: float | None = None,
    lattice_deg: float | None = None,
) -> SiteDecision:
    """Both motifs at row ``si`` of ``yx`` (N, 2) px / ``cls`` (N,): the fits and the
    motif with the lower BIC (``kind`` None when the Si is not isolated, its window
    leaves the frame, or the winner's lead is below ``min_delta_bic``). ``lattice_deg``:
    the lattice's bond direction (used when ``lattice_tol_deg`` is set; default measured
    on ``yx``/``cls`` by :func:`lattice_angle`)."""
    s = settings or MotifSettings()
    yx = np.asarray(yx, float).reshape(-1, 2)
    cls = np.asarray(cls).astype(str)
    out = SiteDecision(int(si))
    c = yx[si]
    d = np.hypot(*(yx - c).T) * pixel_size
    if np.any((cls == "Si") & (d > 0.1) & (d < s.isolated_A)):
        return out
    m = s.window_A / pixel_size
    if not (m <= c[0] <= image.shape[0] - 1 - m and m <= c[1] <= image.shape[1] - 1 - m):
        return out
    noise = pixel_noise(image) if noise is None else noise
    if s.lattice_tol_deg is not None and lattice_deg is None:
        lattice_deg = lattice_angle(yx, cls, pixel_size)
    angles = None
    if s.found_starts:
        near = (cls == "C") & (d >= 1.1) & (d <= 2.3)
        angles = np.rad2deg(np.arctan2(yx[near, 0] - c[0], yx[near, 1] - c[1])) % 360.0
    site = _Site(image, c, pixel_size, s)
    for kind in MOTIFS:
        out.fits[kind] = fit_motif(
            image,
            c,
            kind,
            pixel_size,
            s,
            start_angles=angles,
            noise=noise,
            site=site,
            lattice_deg=lattice_deg if s.lattice_tol_deg is not None else None,
        )
    b = sorted(out.fits.values(), key=lambda f: f.bic)
    out.delta_bic = float(b[1].bic - b[0].bic)
    if b[0].amplitude > 0 and out.delta_bic >= s.min_delta_bic:
        out.kind = b[0].kind
    return out


def apply_motifs(
    table: pd.DataFrame,
    raw: np.ndarray,
    pixel_size: float,
    settings: MotifSettings | None = None,
    *,
    bright: str = "Si",
    species: str = "C",
    cache: dict | None = None,
) -> tuple[pd.DataFrame, list[SiteDecision]]:
    """One frame's atom table with the C beside each isolated ``bright`` atom set by the
    winning motif (see :class:`MotifSettings` ``mode``); returns ``(table, decisions)``.

    Found C within ``match_A`` of a motif atom are matched (closest first, one each).
    ``cache``: a dict reused across calls on the same frame (decisions by Si position;
    valid while ``found_starts`` is off and the Si positions do not change).
    """
    s = settings or MotifSettings()
    if s.mode not in ("count", "coord", "place"):
        raise ValueError(f"mode must be 'count', 'coord' or 'place', got {s.mode!r}")
    if len(table) == 0:
        return table, []
    table = table.reset_index(drop=True)
    yx = table[["y", "x"]].to_numpy(float)
    cls = table["cls"].astype(str).to_numpy()
    cache = {} if cache is None else cache
    if "noise" not in cache:
        cache["noise"] = pixel_noise(raw)
    rows = np.flatnonzero(cls == bright)
    others = tuple(sorted(map(tuple, np.round(yx[rows], 2))))
    decisions = []
    for i in rows:
        key = (tuple(np.round(yx[i], 2)), others, s)
        if key not in cache:
            cache[key] = classify_site(raw, yx, cls, int(i), pixel_size, s, cache["noise"])
        dec = cache[key]
        decisions.append(SiteDecision(int(i), dec.fits, dec.kind, dec.delta_bic))
    drop = np.zeros(len(table), bool)
    moves: dict[int, np.ndarray] = {}
    added: list[np.ndarray] = []
    for dec in decisions:
        if dec.kind is None:
            continue
        motif = dec.fits[dec.kind].shell_yx
        d = np.hypot(*(yx - yx[dec.si]).T) * pixel_size
        cand = np.flatnonzero((cls == species) & (d <= s.bond_A) & ~drop)
        if s.mode == "count" and len(cand) == len(motif):
            continue
        dd = np.hypot(*(yx[cand][:, None] - motif[None]).transpose(2, 0, 1)) * pixel_size
        used_c: dict[int, int] = {}
        used_m: set[int] = set()
        for i, j in zip(*np.unravel_index(np.argsort(dd, axis=None), dd.shape)):
            if dd[i, j] > s.match_A:
                break
            if i in used_c or j in used_m:
                continue
            used_c[int(i)] = int(j)
            used_m.add(int(j))
            if s.mode == "place":
                moves[int(cand[i])] = motif[j]
        free_m = [j for j in range(len(motif)) if j not in used_m]
        extra = [i for i in range(len(cand)) if i not in used_c]
        if s.mode == "count" and len(cand) > len(motif):
            # drop only as many as make the count right, the worst-matching first
            worst = sorted(extra, key=lambda i: -dd[i].min())
            extra = worst[: len(cand) - len(motif)]
            free_m = []
        elif s.mode == "count":
            # add only as many as make the count right, where the frame is emptiest
            extra = []
            gap = [np.hypot(*(yx[~drop] - motif[j]).T).min() for j in free_m]
            free_m = [free_m[i] for i in np.argsort(gap)[::-1]][: len(motif) - len(cand)]
        for i in extra:
            drop[cand[i]] = True
        for j in free_m:  # not on top of an atom that stays or was added
            pts = np.vstack([yx[~drop], *added]) if added else yx[~drop]
            if np.hypot(*(pts - motif[j]).T).min() * pixel_size >= s.min_gap_A:
                added.append(motif[j])
    out = table.copy()
    for i, p in moves.items():
        out.loc[i, ["y", "x"]] = p
    out = out[~drop]
    if added:
        new = np.array(added)
        rows_new = pd.DataFrame({c: [table[c].iloc[0]] * len(new) for c in table.columns})
        rows_new["y"], rows_new["x"] = new[:, 0], new[:, 1]
        rows_new["cls"] = species
        if "prob" in rows_new:
            rows_new["prob"] = np.nan
        if "sigma_px" in rows_new:
            rows_new["sigma_px"] = np.nan
            rows_new["sigma_A"] = np.nan
        if "border" in rows_new:
            rows_new["border"] = False
        out = pd.concat([out, rows_new], ignore_index=True)
        if isinstance(table["cls"].dtype, pd.CategoricalDtype):
            out["cls"] = pd.Categorical(
                out["cls"].astype(str), categories=table["cls"].cat.categories
            )
    return out.reset_index(drop=True), decisions


__all__ = [
    "MOTIFS",
    "MotifFit",
    "MotifSettings",
    "SiteDecision",
    "apply_motifs",
    "fit_motif",
    "lattice_angle",
    "pixel_noise",
    "classify_site",
]
