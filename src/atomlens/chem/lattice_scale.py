"""Real-space evidence for the pixel size: atoms found under trial pixel sizes.

The FFT measures a lattice period precisely but cannot tell which spot order it sees
(the first order of graphene at a·√3/2 = 2.13 Å, the √3 order at a/2 = 1.23 Å, the
second order at 1.07 Å...): a calibration without a nominal value is wrong by √3 or 2
whenever it guesses the order. Atoms in real space settle it. For each trial pixel size
``p`` on a geometric grid, atoms are detected as if the image had ``p`` Å per pixel; their
nearest-neighbour distance ``d`` (pixels) then implies ``p_nn = bond / d``. A trial is
*self-consistent* when ``p_nn`` is within 25 % of ``p``, and its *lattice fraction* is the
share of atoms whose neighbourhood has the lattice's geometry at that distance
(honeycomb: three neighbours at ``d`` within ±15 %, 120° ± 20° apart, and the fourth
beyond 1.3 ``d``; triangular, for a lattice whose second sublattice is too faint to
detect: six neighbours at ``d``, 60° ± 20° apart). The real lattice gives self-consistent trials with a high
fraction; detections at a wrong scale (noise, halves of atoms, merged pairs) give
neither.

Detectors: the shipped graphene U-Net (``"unet"``, robust to noise; graphene only) or a
model-free peak finder (``"peaks"``: Gaussian smoothing at 0.2 bond, local maxima at
least 0.6 bond apart). All lengths are pixels unless named ``_A`` (Å).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

#: Relative tolerance of a neighbour distance around the nearest-neighbour mode.
NN_TOL = 0.15
#: A trial pixel size is self-consistent when the implied one is within this factor.
CONSISTENT = 1.25

#: Largest deviation (degrees) of the angles between an atom's neighbours from the
#: lattice's (120° honeycomb, 60° triangular).
ANGLE_TOL_DEG = 20.0
#: Fewest atoms away from the edge that a trial needs to be scored.
MIN_SCORED = 10

Detector = Callable[[np.ndarray, float], np.ndarray]


def _even_angles(ang: np.ndarray) -> np.ndarray:
    """(N,) bool: the M neighbour directions ``ang`` (N, M) radians are evenly spread
    (consecutive gaps within :data:`ANGLE_TOL_DEG` of 360°/M)."""
    a = np.sort(ang, axis=1)
    gaps = np.diff(np.concatenate([a, a[:, :1] + 2 * np.pi], axis=1), axis=1)
    return (np.abs(np.degrees(gaps) - 360.0 / ang.shape[1]) < ANGLE_TOL_DEG).all(1)


@dataclass
class ScaleTrial:
    """Atoms found under one trial pixel size.

    Attributes
    ----------
    trial_A_per_px : the pixel size the detector was told (Å/px).
    implied_A_per_px : ``bond_A / nn_px`` for the geometry found (NaN without atoms).
    nn_px : mode of the distances to the nearest neighbours (pixels).
    geometry : ``"honeycomb"`` (NN = bond) or ``"triangular"`` (NN = lattice constant).
    lattice_fraction : share of the atoms (away from the edge) in that geometry.
    nn_spread_pct : interquartile range / median of the in-geometry NN distances, %.
    n_atoms : atoms detected.
    """

    trial_A_per_px: float
    implied_A_per_px: float
    nn_px: float
    geometry: str
    lattice_fraction: float
    nn_spread_pct: float
    n_atoms: int

    @property
    def consistent(self) -> bool:
        r = self.implied_A_per_px / self.trial_A_per_px
        return bool(np.isfinite(r) and 1 / CONSISTENT <= r <= CONSISTENT)

    def to_dict(self) -> dict:
        return {**asdict(self), "consistent": self.consistent}


def peak_atoms(image: np.ndarray, bond_px: float) -> np.ndarray:
    """Model-free atom positions (N, 2) pixels: local maxima of the image smoothed at
    0.2 bond and background-subtracted at 2 bonds, at least 0.6 bond apart."""
    from skimage.feature import peak_local_max

    im = np.asarray(image, dtype=np.float64)
    s = ndi.gaussian_filter(im, max(0.5, 0.2 * bond_px)) - ndi.gaussian_filter(im, 2.0 * bond_px)
    yx = peak_local_max(
        s, min_distance=max(1, int(0.6 * bond_px)), threshold_abs=0.0, exclude_border=False
    )
    return yx.astype(np.float64)


def unet_detector(model=None) -> Detector:
    """A detector ``f(image, pixel_size_A) -> (N, 2)`` pixels from the shipped U-Net (or
    ``model``: a :class:`~atomlens.segment.model_file.Detector` or a path)."""
    from atomlens.atoms.detect import detect
    from atomlens.segment.model_file import Detector as _Det
    from atomlens.segment.model_file import load_detector

    det = model if isinstance(model, _Det) else load_detector(model)

    def run(image: np.ndarray, pixel_size: float) -> np.ndarray:
        atoms = detect(  # trial scales: the ring search, not the costly local Si pass
            np.asarray(image, np.float32),
            det,
            pixel_size=pixel_size,
            refine="com",
            si_neighbours="ring",
        ).atoms
        return atoms[["y", "x"]].to_numpy(dtype=np.float64)

    return run


def neighbour_geometry(
    yx: np.ndarray, shape: tuple[int, int], geometries: tuple[str, ...]
) -> tuple[float, str, float, float]:
    """``(nn_px, geometry, lattice_fraction, spread_pct)`` of atoms ``yx`` (N, 2) pixels.

    The NN distance is the mode (log-histogram, then median within ±15 %) of each atom's
    distances to its three nearest neighbours; atoms within 1.5 NN of the image edge are
    not scored (their neighbourhood is cut). ``geometries`` lists the ones allowed.
    """
    yx = np.asarray(yx, float).reshape(-1, 2)
    if len(yx) < 8:
        return float("nan"), geometries[0], 0.0, float("nan")
    k = min(7, len(yx))
    dist, idx = cKDTree(yx).query(yx, k=k)
    three = dist[:, 1:4].ravel()
    hist, edges = np.histogram(np.log(three), bins=60)
    i = int(np.argmax(hist))
    mode = float(np.exp(0.5 * (edges[i] + edges[i + 1])))
    mode = float(np.median(three[np.abs(three / mode - 1) < NN_TOL]))
    m = 1.5 * mode
    inner = (yx.min(1) >= m) & (yx[:, 0] <= shape[0] - 1 - m) & (yx[:, 1] <= shape[1] - 1 - m)
    d = dist[inner] / mode
    if len(d) < MIN_SCORED:
        return mode, geometries[0], 0.0, float("nan")
    near = np.abs(d - 1) < NN_TOL
    # bond directions of the scored atoms' neighbours, sorted by angle
    vec = yx[idx[inner]] - yx[inner][:, None, :]
    ang = np.arctan2(vec[..., 0], vec[..., 1])
    scores = {}
    if "honeycomb" in geometries:
        far4 = d[:, 4] > 1.3 if k > 4 else np.ones(len(d), bool)
        scores["honeycomb"] = near[:, 1:4].all(1) & far4 & _even_angles(ang[:, 1:4])
    if "triangular" in geometries and k >= 7:
        scores["triangular"] = near[:, 1:7].all(1) & _even_angles(ang[:, 1:7])
    if not scores:
        return mode, geometries[0], 0.0, float("nan")
    geometry = max(scores, key=lambda g: scores[g].mean())
    ok = scores[geometry]
    cols = slice(1, 4) if geometry == "honeycomb" else slice(1, 7)
    vals = dist[inner][ok][:, cols].ravel()
    spread = (
        float(100 * np.subtract(*np.percentile(vals, [75, 25])) / np.median(vals))
        if len(vals)
        else float("nan")
    )
    return mode, geometry, float(ok.mean()), spread


def scale_trials(
    frames: np.ndarray,
    detector: Detector,
    bond_A: float,
    lattice_A: float,
    geometries: tuple[str, ...] = ("honeycomb",),
    trials_A_per_px: np.ndarray | None = None,
) -> list[ScaleTrial]:
    """Detect atoms in each (Y, X) frame of ``frames`` (T, Y, X) under every trial pixel
    size (default: 0.04-0.42 Å/px in steps of ×1.3) and measure their geometry.

    ``bond_A`` is the NN distance of the honeycomb (graphene 1.42 Å), ``lattice_A`` the
    NN distance of the triangular reading (graphene 2.46 Å).
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    trials = (
        (0.04 * 1.3 ** np.arange(10))
        if trials_A_per_px is None
        else np.asarray(trials_A_per_px, float)
    )
    out = []
    for p in trials:
        per_frame = [detector(frame, float(p)) for frame in frames]
        nn, geometry, frac, spread = _pooled_geometry(per_frame, frames.shape[1:], geometries)
        length = bond_A if geometry == "honeycomb" else lattice_A
        implied = length / nn if np.isfinite(nn) and nn > 0 else float("nan")
        out.append(
            ScaleTrial(
                float(p),
                float(implied),
                float(nn),
                geometry,
                frac,
                spread,
                int(sum(len(y) for y in per_frame)),
            )
        )
    return out


def _pooled_geometry(
    per_frame: list[np.ndarray], shape: tuple[int, int], geometries: tuple[str, ...]
) -> tuple[float, str, float, float]:
    """:func:`neighbour_geometry` per frame, pooled: median NN and spread, the geometry
    with the largest summed fraction, and its fraction averaged over frames."""
    res = [neighbour_geometry(yx, shape, geometries) for yx in per_frame]
    finite = [r for r in res if np.isfinite(r[0])]
    if not finite:
        return float("nan"), geometries[0], 0.0, float("nan")
    geometry = max(geometries, key=lambda g: sum(r[2] for r in res if r[1] == g))
    frac = float(np.mean([r[2] if r[1] == geometry else 0.0 for r in res]))
    nn = float(np.median([r[0] for r in finite]))
    spreads = [r[3] for r in finite if np.isfinite(r[3])]
    spread = float(np.median(spreads)) if spreads else float("nan")
    return nn, geometry, frac, spread


def choose_scale(
    trials: list[ScaleTrial], min_fraction: float = 0.1
) -> tuple[ScaleTrial | None, float]:
    """The best self-consistent trial (highest lattice fraction) and the evidence ratio:
    its fraction over the best fraction among trials whose implied pixel size differs by
    more than 20 % (the other spot orders), floored at 0.01; ``(None, 0)`` when no trial
    is self-consistent with at least ``min_fraction`` of its atoms in the lattice
    geometry (pure noise reaches ~0.05, rarely 0.2; real lattices 0.3-1)."""
    good = [t for t in trials if t.consistent and t.lattice_fraction >= min_fraction]
    if not good:
        return None, 0.0
    best = max(good, key=lambda t: t.lattice_fraction)
    rivals = [
        t.lattice_fraction
        for t in trials
        if not (
            np.isfinite(t.implied_A_per_px)
            and abs(np.log(t.implied_A_per_px / best.implied_A_per_px)) < np.log(1.2)
        )
    ]
    ratio = best.lattice_fraction / max(max(rivals, default=0.0), 0.01)
    return best, float(ratio)
