"""Species from contrast, for any material: integrated intensities and their classes.

In HAADF (Z-contrast) images the intensity an atom column scatters grows with its atomic
number and with the number of atoms in it, so columns of different species (Mo vs S2 in
MoS2, Pt vs C, Sr vs Ti-O) form separate groups of *integrated* intensity. This module
measures that intensity per atom and clusters it, as atom-counting tools do (StatSTEM,
De Backer et al. 2016: a Gaussian mixture on scattering cross-sections, its number of
components chosen by an information criterion):

- :func:`integrated_intensity`: sum of the pixels in a disk around each atom minus the
  local background (a low percentile of a ring around the disk), and its 1-sigma
  uncertainty from the local pixel noise (measured, so Poisson and read noise are both
  in it);
- :func:`contrast_classes`: a 1-D :class:`sklearn.mixture.GaussianMixture` with a given
  number of classes or ``k="auto"`` (the smallest ICL over 1..``k_max``), its classes
  numbered by brightness (0 = dimmest) so names stay attached to the same species;
- :func:`name_classes`: the user's names for those classes (``{"0": "S2", "1": "Mo"}``);
- :func:`species_from_contrast`: all three on an atom table, adding the columns
  ``intensity``, ``intensity_sigma`` and ``contrast_class`` (and ``cls`` when named).

Positions and radii are in pixels of the image; intensities in the image's units x
pixels (counts for a counting detector).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from atomlens.errors import AtomLensError

#: ``contrast_class`` of atoms whose intensity could not be measured (no pixels).
UNCLASSIFIED = -1


class ContrastError(AtomLensError):
    """Species from contrast cannot be computed; the message names the problem and fix."""


@dataclass
class ContrastModel:
    """A fitted intensity mixture with classes ordered by brightness.

    Attributes
    ----------
    k : number of classes.
    means, sigmas, weights : (k,) class mean and standard deviation of the integrated
        intensity (image units x pixels) and mixing weights, dimmest class first.
    criterion : ``"icl"``, ``"bic"`` or ``"fixed"`` (k given).
    scores : criterion value per tried k (``{k: value}``; lower is better).
    gmm : the underlying :class:`sklearn.mixture.GaussianMixture` (its own order).
    order : ``order[j]`` = the gmm component of brightness class ``j``.
    """

    k: int
    means: np.ndarray
    sigmas: np.ndarray
    weights: np.ndarray
    criterion: str
    scores: dict[int, float] = field(default_factory=dict)
    gmm: Any = None
    order: np.ndarray | None = None

    def predict_proba(self, intensity: np.ndarray) -> np.ndarray:
        """(N, k) class probabilities (brightness order) of the intensities."""
        x = np.asarray(intensity, float).reshape(-1, 1)
        return self.gmm.predict_proba(x)[:, self.order]

    def predict(self, intensity: np.ndarray) -> np.ndarray:
        """(N,) brightness class of each intensity (NaN -> :data:`UNCLASSIFIED`)."""
        x = np.asarray(intensity, float)
        out = np.full(len(x), UNCLASSIFIED, np.int64)
        ok = np.isfinite(x)
        if ok.any():
            out[ok] = self.predict_proba(x[ok]).argmax(1)
        return out

    def summary(self) -> dict:
        """JSON-able description (for cards, CLI output and the dock's status line)."""
        return {
            "k": int(self.k),
            "criterion": self.criterion,
            "means": [float(v) for v in self.means],
            "sigmas": [float(v) for v in self.sigmas],
            "weights": [float(v) for v in self.weights],
            "scores": {int(k): float(v) for k, v in self.scores.items()},
        }


def default_radius(yx: np.ndarray, *, fraction: float = 0.5, min_px: float = 1.5) -> float:
    """Integration radius (pixels): ``fraction`` x the median nearest-neighbour distance
    of the atoms (so disks of neighbours do not overlap), at least ``min_px``."""
    yx = np.asarray(yx, float).reshape(-1, 2)
    if len(yx) < 2:
        raise ContrastError(
            "need at least two atoms to choose an integration radius; pass radius_px"
        )
    d = cKDTree(yx).query(yx, k=2)[0][:, 1]
    return max(min_px, fraction * float(np.median(d)))


def noise_model(image: np.ndarray, *, bins: int = 16) -> tuple[float, float]:
    """Pixel noise variance as a linear function of the local mean, ``var = a + b * mean``
    (read noise ``a``, shot noise with gain ``b``; image units), measured from the frame.

    The squared 2x2 checkerboard difference of the pixels (blind to smooth signal) is
    binned by the 2x2 mean into ``bins`` quantile bins; the median per bin (/ 0.455, the
    median of a chi-square with one degree of freedom, so a few pixels on sharp peaks do
    not count) is fitted by a line.
    """
    img = np.asarray(image, np.float64)
    # the 2x2 "checkerboard" difference: zero for any signal that is constant, linear or
    # quadratic along y or x, so smooth atom peaks barely enter it; its variance equals
    # the pixels' noise variance (four pixels with weights +-1/2)
    r = 0.5 * (img[:-1, :-1] - img[:-1, 1:] - img[1:, :-1] + img[1:, 1:])
    local = 0.25 * (img[:-1, :-1] + img[:-1, 1:] + img[1:, :-1] + img[1:, 1:])
    r2, local = (r * r).ravel(), local.ravel()
    edges = np.unique(np.percentile(local, np.linspace(0, 100, bins + 1)))
    which = np.clip(np.searchsorted(edges, local, side="right") - 1, 0, len(edges) - 2)
    mx, vy = [], []
    for k in range(len(edges) - 1):
        sel = which == k
        if sel.sum() >= 20:
            mx.append(np.median(local[sel]))
            vy.append(np.median(r2[sel]) / 0.4549)
    mx, vy = np.asarray(mx), np.asarray(vy)
    if len(mx) < 2 or np.ptp(mx) <= 0:
        return float(np.median(r2) / 0.4549), 0.0
    slope, icpt = np.polyfit(mx, vy, 1)
    if slope < 0:  # noise not growing with the signal: a constant
        return float(np.median(vy)), 0.0
    return float(max(icpt, 0.0)), float(slope)


def integrated_intensity(
    image: np.ndarray,
    atoms: pd.DataFrame | np.ndarray,
    radius_px: float | None = None,
    *,
    background_percentile: float = 50.0,
    ring: tuple[float, float] = (1.0, 2.0),
) -> tuple[np.ndarray, np.ndarray]:
    """Background-subtracted integrated intensity of each atom and its 1-sigma error.

    Parameters
    ----------
    image : ``(Y, X)`` frame, or ``(T, Y, X)`` movie (then ``atoms`` needs ``frame``).
    atoms : table with ``y, x`` (pixels) [and ``frame``], or a ``(N, 2)`` array of y, x.
    radius_px : integration disk radius in pixels; None = half the median
        nearest-neighbour distance (per frame), see :func:`default_radius`.
    background_percentile : the local background is the mean of the pixels of a ring
        ``ring[0] * r .. ring[1] * r`` around the atom that lie in its lowest
        ``background_percentile`` % (judged on the image smoothed without each pixel's own
        value, so the choice does not bias the mean low): the support or the hollows
        between columns, not the neighbours' peaks.
    ring : inner and outer ring radius in units of ``radius_px``.

    Returns
    -------
    ``I`` (N,) = sum over the disk of (pixel - background), image units x pixels; the
    part of a disk outside the frame is extrapolated from the part inside (its
    ``sigma_I`` grows accordingly); NaN when no pixel of the disk is in the frame.
    ``sigma_I`` (N,) = sqrt(sum over the disk of the local noise variance + (n_disk x
    sigma of the background estimate)^2), with each pixel's variance from the frame's
    :func:`noise_model` (read noise + gain x signal, measured from the image, so shot
    and read noise are both included without knowing the detector gain).
    """
    img = np.asarray(image, np.float64)
    if img.ndim == 2:
        img = img[None]
    if img.ndim != 3:
        raise ContrastError(f"expected a (Y, X) image or (T, Y, X) movie, got shape {img.shape}")
    if isinstance(atoms, pd.DataFrame):
        missing = {"y", "x"} - set(atoms.columns)
        if missing:
            raise ContrastError(
                f"the atom table lacks columns {sorted(missing)}; it needs "
                "y, x in pixels (and frame for a movie)"
            )
        yx = atoms[["y", "x"]].to_numpy(float)
        frame = atoms["frame"].to_numpy(int) if "frame" in atoms else np.zeros(len(atoms), int)
    else:
        yx = np.asarray(atoms, float).reshape(-1, 2)
        frame = np.zeros(len(yx), int)
    if len(frame) and (frame.min() < 0 or frame.max() >= img.shape[0]):
        raise ContrastError(
            f"atoms on frames {sorted(set(frame[(frame < 0) | (frame >= img.shape[0])]))}"
            f" but the image has {img.shape[0]} frame(s)"
        )
    if radius_px is not None and not (np.isfinite(radius_px) and radius_px > 0):
        raise ContrastError(f"radius_px must be a positive number of pixels, got {radius_px!r}")
    intensity = np.full(len(yx), np.nan)
    sigma = np.full(len(yx), np.nan)
    for f in np.unique(frame):
        rows = np.flatnonzero(frame == f)
        r = float(radius_px) if radius_px is not None else default_radius(yx[rows])
        i, s = _integrate_frame(img[f], yx[rows], r, background_percentile, ring)
        intensity[rows], sigma[rows] = i, s
    return intensity, sigma


def _smooth_without_self(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing whose kernel has no weight on the centre pixel: a pixel's
    smoothed value does not contain its own noise, so choosing pixels by it and then
    averaging their raw values is unbiased (for uncorrelated noise)."""
    m = int(np.ceil(3 * sigma))
    oy, ox = np.mgrid[-m : m + 1, -m : m + 1]
    k = np.exp(-(oy**2 + ox**2) / (2 * sigma**2))
    k[m, m] = 0.0
    return ndi.convolve(img, k / k.sum(), mode="reflect")


def _integrate_frame(
    img: np.ndarray, yx: np.ndarray, r: float, pct: float, ring: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    a, b = noise_model(img)
    noise = a + b * np.clip(ndi.uniform_filter(img, 2, mode="reflect"), 0, None)
    smooth = _smooth_without_self(img, max(1.0, r / 4))
    r_out = ring[1] * r
    m = int(np.ceil(r_out)) + 1
    oy, ox = np.mgrid[-m : m + 1, -m : m + 1]
    iy0 = np.rint(yx[:, 0]).astype(int)
    ix0 = np.rint(yx[:, 1]).astype(int)
    py = iy0[:, None] + oy.ravel()[None]  # (N, P) pixel rows
    px = ix0[:, None] + ox.ravel()[None]
    d = np.hypot(py - yx[:, :1], px - yx[:, 1:])
    inside = (py >= 0) & (py < h) & (px >= 0) & (px < w)
    cy, cx = np.clip(py, 0, h - 1), np.clip(px, 0, w - 1)
    vals, var, sm = img[cy, cx], noise[cy, cx], smooth[cy, cx]
    disk_all = d <= r
    disk = disk_all & inside
    ringm = (d > ring[0] * r) & (d <= r_out) & inside
    n_full = disk_all.sum(1)
    n_in = disk.sum(1)
    # background: the raw mean of the ring pixels whose (self-excluding) smoothed value
    # is at or below the ring's pct-th percentile: the support or the hollows between
    # columns, not the neighbours' peaks, and no bias from selecting low noise
    bg = np.full(len(yx), np.nan)
    bg_err = np.full(len(yx), np.nan)
    for i in range(len(yx)):
        k = ringm[i]
        if not k.any():
            continue
        low = sm[i, k] <= np.percentile(sm[i, k], pct)
        sel = vals[i, k][low]
        bg[i] = sel.mean()
        # error of that mean: the pixel noise over sqrt(number of pixels averaged)
        bg_err[i] = np.sqrt(var[i, k][low].mean() / max(len(sel), 1))
    s_disk = np.where(disk, vals - bg[:, None], 0.0).sum(1)
    v_disk = np.where(disk, var, 0.0).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = n_full / n_in  # extrapolate a disk cut by the frame edge
        intensity = np.where(n_in > 0, s_disk * scale, np.nan)
        sigma = np.where(n_in > 0, np.sqrt(v_disk * scale**2 + (n_full * bg_err) ** 2), np.nan)
    return intensity, sigma


def _icl(gmm: Any, x: np.ndarray) -> float:
    """Integrated completed likelihood: BIC plus twice the classification entropy."""
    p = gmm.predict_proba(x)
    ent = -np.sum(p * np.log(np.clip(p, 1e-300, None)))
    return float(gmm.bic(x) + 2.0 * ent)


def contrast_classes(
    intensity: np.ndarray,
    k: int | str = "auto",
    *,
    k_max: int = 6,
    criterion: str = "icl",
    seed: int = 0,
) -> tuple[np.ndarray, ContrastModel]:
    """Cluster integrated intensities into species classes, numbered by brightness.

    Parameters
    ----------
    intensity : (N,) integrated intensities (NaN entries get :data:`UNCLASSIFIED`).
    k : number of classes, or ``"auto"``: fit 1..``k_max`` components and keep the one
        with the smallest ``criterion``.
    criterion : ``"icl"`` (BIC + classification entropy, as atom-counting tools use: it
        does not split one broad peak into overlapping components) or ``"bic"``.
    seed : seeds the mixture's initialisation.

    Returns
    -------
    ``labels`` (N,) int: 0 = dimmest class ... k-1 = brightest, and the
    :class:`ContrastModel`.
    """
    from sklearn.mixture import GaussianMixture

    x_all = np.asarray(intensity, float).ravel()
    ok = np.isfinite(x_all)
    x = x_all[ok].reshape(-1, 1)
    if criterion not in ("icl", "bic"):
        raise ContrastError(f"criterion must be 'icl' or 'bic', got {criterion!r}")
    if k == "auto":
        ks = list(range(1, max(1, int(k_max)) + 1))
    elif isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1:
        ks = [int(k)]
    else:
        raise ContrastError(f"k must be a positive number of classes or 'auto', got {k!r}")
    need = max(ks) if k != "auto" else 2
    if len(x) < max(2, need):
        raise ContrastError(
            f"{len(x)} atoms with a measured intensity are too few to find "
            f"{max(ks) if k != 'auto' else 'the'} classes; detect more atoms "
            "or name the species by hand"
        )
    ks = [kk for kk in ks if kk <= len(x)]
    fits, scores = {}, {}
    for kk in ks:
        gmm = GaussianMixture(
            kk,
            covariance_type="full",
            n_init=3,
            random_state=seed,
            reg_covar=1e-6 * float(np.var(x) + 1e-12),
        ).fit(x)
        fits[kk] = gmm
        scores[kk] = _icl(gmm, x) if criterion == "icl" else float(gmm.bic(x))
    best = min(scores, key=scores.get) if k == "auto" else ks[0]
    gmm = fits[best]
    means = gmm.means_[:, 0]
    order = np.argsort(means)
    model = ContrastModel(
        k=best,
        means=means[order],
        sigmas=np.sqrt(gmm.covariances_.reshape(-1))[order],
        weights=gmm.weights_[order],
        criterion=criterion if k == "auto" else "fixed",
        scores=scores,
        gmm=gmm,
        order=order,
    )
    return model.predict(x_all), model


def _names_by_class(names: Mapping[Any, str] | Sequence[str], k: int) -> dict[int, str]:
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",")]
    if isinstance(names, Mapping):
        out = {}
        for key, name in names.items():
            try:
                out[int(key)] = str(name)
            except (TypeError, ValueError):
                raise ContrastError(
                    f"class names are keyed by the class number (0 = dimmest), got key {key!r}"
                ) from None
    else:
        out = {i: str(n) for i, n in enumerate(names)}
    bad = sorted(c for c in out if not 0 <= c < k)
    if bad:
        raise ContrastError(
            f"classes {bad} do not exist: the contrast found {k} class(es) "
            f"numbered 0..{k - 1} from dimmest to brightest; give {k} names or "
            "choose the number of classes"
        )
    return out


def name_classes(
    atoms: pd.DataFrame, names: Mapping[Any, str] | Sequence[str] | str, *, k: int | None = None
) -> pd.DataFrame:
    """A copy of ``atoms`` whose ``cls`` is the user's name of each ``contrast_class``.

    ``names``: ``{"0": "S2", "1": "Mo"}`` (class number -> name, 0 = dimmest), a list in
    brightness order (``["S2", "Mo"]``) or ``"S2,Mo"``. Classes without a name become
    ``"class<k>"``; atoms without a class (:data:`UNCLASSIFIED`) ``"unclassified"``.
    """
    if "contrast_class" not in atoms:
        raise ContrastError(
            "the atom table has no contrast_class column: run "
            "species_from_contrast (or contrast_classes) first"
        )
    cc = atoms["contrast_class"].to_numpy(int)
    k = int(cc.max()) + 1 if k is None else int(k)
    by_class = _names_by_class(names, max(k, 1))
    cats = [by_class.get(c, f"class{c}") for c in range(k)]
    if len(set(cats)) != len(cats):
        raise ContrastError(f"two classes got the same name ({cats}); give each class its own")
    labels = [by_class.get(c, f"class{c}") if c != UNCLASSIFIED else "unclassified" for c in cc]
    if (cc == UNCLASSIFIED).any():
        cats.append("unclassified")
    out = atoms.copy()
    out["cls"] = pd.Categorical(labels, categories=cats)
    return out


def species_from_contrast(
    image: np.ndarray,
    atoms: pd.DataFrame,
    *,
    k: int | str = "auto",
    names: Mapping[Any, str] | Sequence[str] | str | None = None,
    radius_px: float | None = None,
    background_percentile: float = 50.0,
    k_max: int = 6,
    seed: int = 0,
) -> tuple[pd.DataFrame, ContrastModel]:
    """Add ``intensity``, ``intensity_sigma`` and ``contrast_class`` to an atom table
    (and the user's species names in ``cls`` when ``names`` is given).

    ``image``: the ``(Y, X)`` frame or ``(T, Y, X)`` movie the atoms were found in; one
    mixture is fitted on the atoms of all frames (same imaging conditions). Atoms with
    ``border`` True (disk cut by the frame edge) are classified but do not shape the
    mixture. See :func:`integrated_intensity` and :func:`contrast_classes`.
    """
    if len(atoms) == 0:
        raise ContrastError("no atoms to classify: detect atoms first")
    intensity, sigma = integrated_intensity(
        image, atoms, radius_px, background_percentile=background_percentile
    )
    fit_on = intensity.copy()
    if "border" in atoms and (~atoms["border"].astype(bool)).sum() >= 2:
        fit_on[atoms["border"].astype(bool).to_numpy()] = np.nan
    _, model = contrast_classes(fit_on, k, k_max=k_max, seed=seed)
    out = atoms.copy()
    out["intensity"] = intensity
    out["intensity_sigma"] = sigma
    out["contrast_class"] = model.predict(intensity)
    if names is not None:
        out = name_classes(out, names, k=model.k)
    return out, model


def check_classes_setting(k: int | str, names: str | Sequence[str] | None = None) -> int | str:
    """Parse a number of classes (``2``, ``"2"`` or ``"auto"``) and check the names fit
    it, before any work is done; returns ``k`` as an int or ``"auto"``."""
    if isinstance(k, str) and k.strip().lower() == "auto":
        k = "auto"
    else:
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise ContrastError(
                f"the number of contrast classes must be a whole number or 'auto', got {k!r}"
            ) from None
        if k < 1:
            raise ContrastError(f"the number of contrast classes must be at least 1, got {k}")
    if names:
        listed = [n.strip() for n in names.split(",")] if isinstance(names, str) else list(names)
        if k != "auto" and len(listed) > k:
            raise ContrastError(
                f"{len(listed)} class names ({', '.join(listed)}) for {k} "
                "contrast classes: give one name per class, dimmest first"
            )
        if len(set(listed)) != len(listed):
            raise ContrastError(
                f"class names repeat ({', '.join(listed)}): give each class its own name"
            )
    return k


def species_from_stack(
    stack: Any,
    atoms: pd.DataFrame,
    *,
    k: int | str = "auto",
    names: Mapping[Any, str] | Sequence[str] | str | None = None,
    radius_px: float | None = None,
    invert: bool = False,
    seed: int = 0,
) -> tuple[pd.DataFrame, ContrastModel]:
    """:func:`species_from_contrast` over a movie, one frame in memory at a time.

    ``stack``: a :class:`atomlens.io.Stack` (lazy or not) or ``(T, Y, X)`` array; the
    atoms' ``frame`` indexes it. ``invert``: measure on the negated image (dark atoms,
    ABF/BF). ``k`` may be a number given as text (``"2"``, from a recipe or the CLI).
    """
    if len(atoms) == 0:
        raise ContrastError("no atoms to classify: detect atoms first")
    k = check_classes_setting(k, names if isinstance(names, (str, list, tuple)) else None)
    data = stack.data if hasattr(stack, "pixel_size") and hasattr(stack, "data") else stack
    if getattr(data, "ndim", 3) == 2:
        data = np.asarray(data)[None]
    frame = atoms["frame"].to_numpy(int) if "frame" in atoms else np.zeros(len(atoms), int)
    intensity = np.full(len(atoms), np.nan)
    sigma = np.full(len(atoms), np.nan)
    for f in np.unique(frame):
        rows = np.flatnonzero(frame == f)
        img = np.asarray(data[int(f)], np.float64)
        i, s = integrated_intensity(
            -img if invert else img, atoms.iloc[rows][["y", "x"]], radius_px
        )
        intensity[rows], sigma[rows] = i, s
    fit_on = intensity.copy()
    if "border" in atoms and (~atoms["border"].astype(bool)).sum() >= 2:
        fit_on[atoms["border"].astype(bool).to_numpy()] = np.nan
    _, model = contrast_classes(fit_on, k, seed=seed)
    out = atoms.copy()
    out["intensity"] = intensity
    out["intensity_sigma"] = sigma
    out["contrast_class"] = model.predict(intensity)
    out = name_classes(out, names if names else [], k=model.k)
    return out, model


__all__ = [
    "UNCLASSIFIED",
    "check_classes_setting",
    "ContrastError",
    "ContrastModel",
    "contrast_classes",
    "default_radius",
    "integrated_intensity",
    "name_classes",
    "species_from_contrast",
    "species_from_stack",
]
