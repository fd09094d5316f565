"""Recover the dim C beside a bright Si: a ring search at bond distance on the halo-free image.

A Si in graphene is ~3-6x brighter than C in HAADF, and the tails of the probe on the Si
(a corrected probe's halo reaches 1.5-2 Å) lift the background under its C neighbours at
1.5-1.9 Å. A segmentation network that has learnt "bright blob on dark background"
can miss such a C (it sits on a slope, not on a dark floor), so a 3-fold Si comes out
2-fold.

Physics used here: the probe is (to first order) rotationally symmetric, so the halo of a
Si is constant along any circle around the Si. Sampling the smoothed image on a polar
grid around each detected Si and subtracting, radius by radius, the median over angle
removes the halo (and the mean background) exactly, whatever the probe's shape; what is
left on the ring are the neighbours as bumps. Local maxima of that halo-free window
inside the Si-C band (1.2-2.1 Å; ``search="2d"``, or maxima of the azimuthal profile
averaged over the band, ``search="profile"``) far (in angle) from every neighbour the
network already found are candidates; one is accepted as C when its height is at least
``min_ratio`` x the median height of the already-found neighbours (the image's own C
contrast next to this Si, so no absolute intensity scale is needed) and the Si is not
yet 4-fold. A bump whose position ends outside the band is no bonded neighbour and is
dropped. The recovered C's distance from the Si is then pulled half-way
(``radius_prior``) to the Si's own bond length, the median distance of its found
neighbours in pixels (no calibration involved): on the 128-px LibraryNet patches the
bump's own distance scatters by ~0.3 Å, the bond lengths of one Si by ~6 %.

Measured (bench/librarynet_cv.py, 79 real LibraryNet patches, 5 folds by site): see the
constants below and docs; the failures left are on the noisy 128-px patches at
~0.155 Å/px (0.5 Å = 3.2 px): network C placed 0.5-0.6 Å from the label, a network C at
the wrong angle occupying the gap, and sites whose calibration differs by 4-9 % between
two crops of the same Si.

Units: positions in pixels (row, column) of the raw frame; distances in Å via
``pixel_size`` (Å/px); angles in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

#: Smallest bump height, relative to the Si's found neighbours, accepted as a C.
#: bench/librarynet_cv.py (79 LibraryNet patches, 5 folds by site, grid of ratio x
#: search x position x radius_prior x min_sep): every ratio from 0.15 to 0.5 scores the
#: same on all 79 with the defaults below (70/79 all found, 38/44 coordination right);
#: the folds chose 0.35-0.7.
DEFAULT_MIN_RATIO = 0.35

#: Final position of an accepted C (see :class:`RingSettings`): "fit" and "centroid"
#: score within one patch of each other on LibraryNet (fit: 70/79, centroid: 70/79 with
#: the 2-D search and the prior; 69 vs 68 with the profile search; ties go to fit).
DEFAULT_POSITION = "fit"

#: How candidates are found (see :class:`RingSettings`): "2d" finds a C for which the
#: band-averaged profile has no maximum (LibraryNet Si1C3_344: 70 vs 69/79 all found) but
#: adds a false 4th C at Si1C3_237 (coordination 38/44 either way); chosen in 4 of 5
#: folds; on the simulator (84 dropped C, seeds 301-306) it recovers 82 vs 81 within 0.5 Å.
DEFAULT_SEARCH = "2d"

#: Weight of the Si's found bond length in a recovered C's distance (see RingSettings):
#: simulator (84 drops) mean |radial error| 0.070 Å with 0.5, 0.105 Å without, 0.095 Å
#: with 1.0; LibraryNet all found 70 (0.5 or 1.0) vs 69/79 (0); chosen in 4 of 5 folds.
DEFAULT_RADIUS_PRIOR = 0.5


@dataclass(frozen=True)
class RingSettings:
    """Geometry of the ring search (Å and degrees)."""

    ring_A: tuple[float, float] = (1.2, 2.1)  # radial band where a Si-C neighbour sits
    search_A: tuple[float, float] = (1.1, 2.2)  # atoms in this band count as found neighbours
    refit_A: float = 0.45  # centroid radius of a candidate's first position (halo-free image)
    # a candidate this far in angle from every found neighbour; 75° (the labels' smallest
    # Si-C bond angle is 82°) gains one LibraryNet patch (39 vs 38/44 coordination; with
    # the local pass 42 vs 41/44, Si1C3_237, and 4 of 5 folds choose it) but recovers
    # 79 vs 82 of 84 dropped C on the simulator (tests/test_halo.py fails for Si1C4 at
    # 0.15 Å/px: a 4-fold Si's bonds are ~90° apart), so 60° is kept
    min_sep_deg: float = 60.0
    smooth_A: float = 0.25  # Gaussian smoothing of the image (shot noise)
    step_deg: float = 3.0  # azimuthal sampling
    max_coordination: int = 4  # Si in graphene: 3-fold or 4-fold
    min_ratio: float = DEFAULT_MIN_RATIO
    # final position of an accepted C: "centroid" (the candidate's centroid on the smoothed
    # halo-free window) or "fit" (a Gaussian refit on the halo-free raw frame)
    position: str = DEFAULT_POSITION
    # candidates: "profile" (maxima of the ring's azimuthal profile, averaged over the
    # band's radii) or "2d" (local maxima of the halo-free window inside the band)
    search: str = DEFAULT_SEARCH
    # weight of the Si's own bond length (median distance of its found neighbours) in the
    # accepted C's final distance from the Si (0: the bump's distance alone)
    radius_prior: float = DEFAULT_RADIUS_PRIOR


@dataclass
class Candidate:
    """One azimuthal bump at bond distance around a Si (not yet a found neighbour)."""

    si: int  # row of the Si in the input arrays
    y: float  # pixels
    x: float
    angle_deg: float
    radius_A: float
    height: float  # halo-free bump height (image units)
    ratio: float  # height / median height of the Si's found neighbours (nan: none found)
    sigma_px: float = float("nan")  # position standard error per axis of the final fit


def _polar(image: np.ndarray, yx: np.ndarray, r_px: np.ndarray, th: np.ndarray) -> np.ndarray:
    """Image sampled (linear interpolation) on the polar grid (R, T) around ``yx``."""
    yy = yx[0] + r_px[:, None] * np.sin(th)[None]
    xx = yx[1] + r_px[:, None] * np.cos(th)[None]
    return ndi.map_coordinates(image, [yy, xx], order=1, mode="nearest")


def halo_free(
    img: np.ndarray, centre: np.ndarray, r_max_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """The (smoothed) image minus the rotationally symmetric profile around ``centre``
    (median over angle per 0.5 px radius), in a square window of half-width ``r_max_px``:
    returns ``(residual (h, w), origin (2,))`` with ``origin`` the window's top-left pixel."""
    half = int(np.ceil(r_max_px)) + 1
    c0 = np.round(centre).astype(int)
    lo = np.maximum(c0 - half, 0)
    hi = np.minimum(c0 + half + 1, img.shape)
    win = img[lo[0] : hi[0], lo[1] : hi[1]]
    yy, xx = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
    r = np.hypot(yy - centre[0], xx - centre[1])
    r_grid = np.arange(0.0, r_max_px + 1.0, 0.5)
    th = np.deg2rad(np.arange(0.0, 360.0, 3.0))
    prof = np.median(_polar(img, centre, r_grid, th), axis=1)
    return win - np.interp(r, r_grid, prof), lo


def halo_free_frame(
    image: np.ndarray, centres: np.ndarray, pixel_size: float, r_max_A: float = 3.0
) -> np.ndarray:
    """``image`` (Y, X) minus each centre's rotationally symmetric halo: within
    ``r_max_A`` of a centre (N, 2 px) the median-over-angle profile (minus its value at
    ``r_max_A``, so the frame stays continuous) is subtracted; float64 (Y, X)."""
    img = np.asarray(image, np.float64)
    out = img.copy()
    r_max = r_max_A / pixel_size
    r_grid = np.arange(0.0, r_max + 0.5, 0.5)
    th = np.deg2rad(np.arange(0.0, 360.0, 3.0))
    half = int(np.ceil(r_max)) + 1
    for c in np.asarray(centres, float).reshape(-1, 2):
        prof = np.median(_polar(img, c, r_grid, th), axis=1)
        prof = prof - prof[-1]
        c0 = np.round(c).astype(int)
        lo = np.maximum(c0 - half, 0)
        hi = np.minimum(c0 + half + 1, img.shape)
        yy, xx = np.mgrid[lo[0] : hi[0], lo[1] : hi[1]]
        r = np.hypot(yy - c[0], xx - c[1])
        out[lo[0] : hi[0], lo[1] : hi[1]] -= np.where(r <= r_max, np.interp(r, r_grid, prof), 0.0)
    return out


def _centroid(resid: np.ndarray, origin: np.ndarray, yx: np.ndarray, rad: float) -> np.ndarray:
    """Positive-part centroid of ``resid`` within ``rad`` px of ``yx`` (3 passes); (2,)."""
    yy, xx = np.mgrid[: resid.shape[0], : resid.shape[1]]
    yy, xx = yy + origin[0], xx + origin[1]
    p = np.asarray(yx, float)
    for _ in range(3):
        w = np.where(np.hypot(yy - p[0], xx - p[1]) <= rad, np.clip(resid, 0, None), 0.0)
        if w.sum() <= 0:
            break
        p = np.array([(w * yy).sum(), (w * xx).sum()]) / w.sum()
    return p


def _circ_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest angle between directions ``a`` and ``b`` (degrees, broadcast)."""
    d = np.abs(np.asarray(a) - np.asarray(b)) % 360.0
    return np.minimum(d, 360.0 - d)


def ring_candidates(
    image: np.ndarray,
    yx: np.ndarray,
    cls: np.ndarray,
    pixel_size: float,
    settings: RingSettings | None = None,
    *,
    bright: str = "Si",
) -> list[Candidate]:
    """Azimuthal bumps at bond distance around each ``bright`` atom, away from found ones.

    Parameters
    ----------
    image : (Y, X) raw frame, atoms bright.
    yx : (N, 2) detected atom positions (pixels), ``cls`` (N,) their species.
    pixel_size : Å/px.

    Returns every local maximum of the halo-free ring profile that is at least
    ``min_sep_deg`` from each found neighbour (no threshold applied: see
    :func:`recover_neighbours`), with its ``ratio`` to the found neighbours' height.
    """
    s = settings or RingSettings()
    if s.search not in ("2d", "profile"):
        raise ValueError(f"search must be '2d' or 'profile', got {s.search!r}")
    yx = np.asarray(yx, float).reshape(-1, 2)
    cls = np.asarray(cls).astype(str)
    centres = np.flatnonzero(cls == bright)
    if len(centres) == 0 or len(yx) == 0:
        return []
    sigma = s.smooth_A / pixel_size
    lo, hi = s.ring_A[0] / pixel_size, s.ring_A[1] / pixel_size
    # each Si's window, smoothed alone (a 1024² frame with 70 Si: ms, not a whole-frame filter)
    half = int(np.ceil(hi + 1.0 / pixel_size + 4 * sigma)) + 2
    r_px = np.arange(lo, hi + 1e-9, 0.5)
    th_deg = np.arange(0.0, 360.0, s.step_deg)
    th = np.deg2rad(th_deg)
    # angular smoothing ~ the angle a 0.5 Å wide blob subtends at the ring's middle
    sig_deg = np.rad2deg(0.5 / (0.5 * (s.ring_A[0] + s.ring_A[1]))) / 2.0
    h, w = image.shape
    out: list[Candidate] = []
    for i in centres:
        c = yx[i]
        if not (hi <= c[0] <= h - 1 - hi and hi <= c[1] <= w - 1 - hi):
            continue  # ring leaves the frame: no honest baseline
        c0 = np.maximum(np.round(c).astype(int) - half, 0)
        c1 = np.minimum(np.round(c).astype(int) + half + 1, image.shape)
        img = ndi.gaussian_filter(np.asarray(image[c0[0] : c1[0], c0[1] : c1[1]], float), sigma)
        c = c - c0  # window coordinates from here on
        polar = _polar(img, c, r_px, th)  # (R, T)
        resid = polar - np.median(polar, axis=1, keepdims=True)  # halo removed per radius
        prof = ndi.gaussian_filter1d(resid.mean(0), sig_deg / s.step_deg, mode="wrap")
        d = np.hypot(*(yx - c0 - c).T) * pixel_size
        nb = np.flatnonzero((d >= s.search_A[0]) & (d <= s.search_A[1]))
        nb = nb[nb != i]
        nb_ang = np.rad2deg(np.arctan2(yx[nb, 0] - c0[0] - c[0], yx[nb, 1] - c0[1] - c[1])) % 360.0
        nb_h = np.interp(nb_ang, th_deg, prof, period=360.0)
        ref = float(np.median(nb_h)) if len(nb) else np.nan
        if s.search == "2d":
            out += _candidates_2d(img, c, c0, int(i), yx, nb, nb_ang, pixel_size, s)
            continue
        peaks = np.flatnonzero((prof > np.roll(prof, 1)) & (prof >= np.roll(prof, -1)))
        res2d = origin = None
        for p in peaks:
            a = th_deg[p]
            if len(nb) and _circ_dist(nb_ang, a).min() < s.min_sep_deg:
                continue
            if res2d is None:
                res2d, origin = halo_free(img, c, hi + 1.0 / pixel_size)
            r = r_px[int(np.argmax(resid[:, p]))]
            start = c + r * np.array([np.sin(th[p]), np.cos(th[p])])
            y, x = _centroid(res2d, origin, start, s.refit_A / pixel_size)
            out.append(
                Candidate(
                    int(i),
                    float(y + c0[0]),
                    float(x + c0[1]),
                    float(a),
                    float(np.hypot(y - c[0], x - c[1]) * pixel_size),
                    float(prof[p]),
                    float(prof[p] / ref) if ref and ref > 0 else np.nan,
                )
            )
    return out


def _candidates_2d(
    img: np.ndarray,
    c: np.ndarray,
    c0: np.ndarray,
    i: int,
    yx: np.ndarray,
    nb: np.ndarray,
    nb_ang: np.ndarray,
    pixel_size: float,
    s: RingSettings,
) -> list[Candidate]:
    """Candidates of one Si from the 2-D halo-free window: local maxima (within
    ``refit_A``) inside the band ``ring_A``, ``min_sep_deg`` from each found neighbour;
    ``img`` is the smoothed window, ``c`` the Si in it, ``c0`` the window's origin in the
    frame; heights relative to the median of the found neighbours' heights."""
    lo, hi = s.ring_A[0] / pixel_size, s.ring_A[1] / pixel_size
    res2d, origin = halo_free(img, c, hi + 1.0 / pixel_size)
    yy, xx = np.mgrid[: res2d.shape[0], : res2d.shape[1]]
    yy, xx = yy + origin[0] - c[0], xx + origin[1] - c[1]
    r = np.hypot(yy, xx)
    size = max(3, 2 * int(round(s.refit_A / pixel_size)) + 1)
    peak = (res2d == ndi.maximum_filter(res2d, size=size)) & (r >= lo) & (r <= hi)
    nb_yx = yx[nb] - c0 - origin
    nb_h = ndi.map_coordinates(res2d, nb_yx.T, order=1, mode="nearest") if len(nb) else []
    ref = float(np.median(nb_h)) if len(nb) else np.nan
    out = []
    for py, px in zip(*np.nonzero(peak)):
        a = float(np.rad2deg(np.arctan2(yy[py, px], xx[py, px])) % 360.0)
        if len(nb) and _circ_dist(nb_ang, a).min() < s.min_sep_deg:
            continue
        hgt = float(res2d[py, px])
        y, x = _centroid(res2d, origin, np.array([py, px], float) + origin, s.refit_A / pixel_size)
        out.append(
            Candidate(
                i,
                float(y + c0[0]),
                float(x + c0[1]),
                a,
                float(np.hypot(y - c[0], x - c[1]) * pixel_size),
                hgt,
                hgt / ref if ref and ref > 0 else np.nan,
            )
        )
    return out


def recover_neighbours(
    image: np.ndarray,
    yx: np.ndarray,
    cls: np.ndarray,
    pixel_size: float,
    settings: RingSettings | None = None,
    *,
    bright: str = "Si",
    species: str = "C",
) -> tuple[np.ndarray, list[Candidate]]:
    """The neighbours to add around each ``bright`` atom: ``(M, 2)`` pixel positions and
    the accepted :class:`Candidate` s (species ``species``).

    Per Si, candidates with ``ratio >= min_ratio`` are accepted strongest first while
    the Si has fewer than ``max_coordination`` neighbours (found + accepted) and each is
    ``min_sep_deg`` away (in angle) from the ones accepted before.
    """
    s = settings or RingSettings()
    yx = np.asarray(yx, float).reshape(-1, 2)
    cand = ring_candidates(image, yx, cls, pixel_size, s, bright=bright)
    accepted: list[Candidate] = []
    found_r: dict[int, np.ndarray] = {}  # per Si: distances (Å) of its found neighbours
    for i in sorted({c.si for c in cand}):
        mine = sorted(
            (c for c in cand if c.si == i and np.isfinite(c.ratio) and c.ratio >= s.min_ratio),
            key=lambda c: -c.ratio,
        )
        d = np.hypot(*(yx - yx[i]).T) * pixel_size
        found_r[i] = d[(d >= s.search_A[0]) & (d <= s.search_A[1])]
        n_found = len(found_r[i])
        taken: list[Candidate] = []
        for c in mine:
            if n_found + len(taken) >= s.max_coordination:
                break
            if any(_circ_dist(c.angle_deg, t.angle_deg) < s.min_sep_deg for t in taken):
                continue
            # not on top of an atom already in the table or added for another Si
            others = np.array([[t.y, t.x] for t in accepted + taken]).reshape(-1, 2)
            pts = np.vstack([yx, others])
            if np.hypot(*(pts - [c.y, c.x]).T).min() * pixel_size < 1.0:
                continue
            taken.append(c)
        accepted += taken
    new = np.array([[c.y, c.x] for c in accepted], float).reshape(-1, 2)
    if len(new):  # Gaussian fit on the frame with every Si halo removed: σ, and the
        # position when ``position == "fit"``
        from atomlens.atoms.refine import refine_gaussian, refine_window
        from atomlens.atoms.uncertainty import sigma_from_cov

        if s.position not in ("fit", "centroid"):
            raise ValueError(f"position must be 'fit' or 'centroid', got {s.position!r}")
        free = halo_free_frame(image, yx[np.asarray(cls).astype(str) == bright], pixel_size)
        radius, max_shift = refine_window(pixel_size)
        fit, _, _, cov = refine_gaussian(free, new, radius, max_shift_px=max_shift, return_cov=True)
        if s.position == "fit":
            new = fit
        for c, p, sg in zip(accepted, new, sigma_from_cov(cov)):
            c.y, c.x, c.sigma_px = float(p[0]), float(p[1]), float(sg)
            c.radius_A = float(np.hypot(*(p - yx[c.si])) * pixel_size)
        # a bump outside the Si-C band is no bonded neighbour
        keep = [s.ring_A[0] <= c.radius_A <= s.ring_A[1] for c in accepted]
        accepted = [c for c, k in zip(accepted, keep) if k]
        new = new[np.asarray(keep, bool)].reshape(-1, 2)
        if s.radius_prior > 0:  # pull the distance toward this Si's found bond length
            new = new.copy()
            for k, c in enumerate(accepted):
                nb_r = found_r[c.si]
                if len(nb_r) >= 2:
                    v = new[k] - yx[c.si]
                    r = float(np.hypot(*v))
                    r_new = s.radius_prior * np.median(nb_r) / pixel_size + (1 - s.radius_prior) * r
                    new[k] = yx[c.si] + v * (r_new / max(r, 1e-9))
            for c, p in zip(accepted, new):
                c.y, c.x = float(p[0]), float(p[1])
                c.radius_A = float(np.hypot(*(p - yx[c.si])) * pixel_size)
    return new, accepted


def wants_neighbours(setting: str | bool, classes: tuple[str, ...] | list[str]) -> bool:
    """Whether the ring search runs: ``"auto"`` = for a model with both C and Si classes
    (the graphene model), ``"on"``/True always (needs those classes), ``"off"``/False never;
    ``"ring"`` = as ``"auto"`` but without detection's local test-time-augmented pass
    (:func:`atomlens.atoms.site_tta.local_pass`; e.g. the calibration's trial detections)."""
    if setting in (False, "off"):
        return False
    has = "C" in classes and "Si" in classes
    if setting in (True, "on"):
        if not has:
            raise ValueError(
                f"si_neighbours='on' needs a model with C and Si classes, this one has "
                f"{list(classes)}: use si_neighbours='auto' or 'off'"
            )
        return True
    if setting in ("auto", "ring"):
        return has
    raise ValueError(f"si_neighbours must be 'auto', 'on', 'off' or 'ring', got {setting!r}")


def add_si_neighbours(
    table: pd.DataFrame,
    raw: np.ndarray,
    pixel_size: float,
    fg: np.ndarray | None = None,
    settings: RingSettings | None = None,
) -> pd.DataFrame:
    """One frame's atom table with the recovered C neighbours of its Si appended.

    ``table``: rows of one frame (``y``, ``x`` px, ``cls``, ``prob``, ...); ``raw`` the
    (Y, X) frame; ``fg`` (Y', X') the model's foreground probability on any grid (gives
    the new rows' ``prob``; NaN without it). New rows get ``sigma_px``/``sigma_A`` from
    the fit's covariance when those columns exist.
    """
    if len(table) == 0:
        return table
    yx = table[["y", "x"]].to_numpy(float)
    cls = table["cls"].astype(str).to_numpy()
    new, accepted = recover_neighbours(raw, yx, cls, pixel_size, settings)
    if len(new) == 0:
        return table
    rows = pd.DataFrame({c: [table[c].iloc[0]] * len(new) for c in table.columns})
    rows["y"], rows["x"] = new[:, 0], new[:, 1]
    rows["cls"] = "C"
    if fg is not None:  # input pixels -> fg grid pixels (centre convention)
        sy, sx = fg.shape[0] / raw.shape[0], fg.shape[1] / raw.shape[1]
        at = [(new[:, 0] + 0.5) * sy - 0.5, (new[:, 1] + 0.5) * sx - 0.5]
        rows["prob"] = ndi.map_coordinates(fg, at, order=1, mode="nearest")
    else:
        rows["prob"] = np.nan
    if "sigma_px" in rows:  # the halo-free Gaussian fit's standard error
        rows["sigma_px"] = [c.sigma_px for c in accepted]
        rows["sigma_A"] = rows["sigma_px"] * pixel_size
    if "border" in rows:
        rows["border"] = False  # ring needs the whole ring inside the frame
    out = pd.concat([table, rows], ignore_index=True)
    if isinstance(table["cls"].dtype, pd.CategoricalDtype):
        out["cls"] = pd.Categorical(out["cls"].astype(str), categories=table["cls"].cat.categories)
    return out


__all__ = [
    "Candidate",
    "RingSettings",
    "add_si_neighbours",
    "halo_free",
    "halo_free_frame",
    "recover_neighbours",
    "ring_candidates",
    "wants_neighbours",
]
