"""Does a detector fit an image? Image statistics and warnings that name the next step.

:func:`image_traits` measures, on one frame, what a model choice depends on:

* **polarity**: the skewness of the frame band-passed around the atom scale (Gaussian
  0.2 Å minus Gaussian 0.8 Å): clearly positive for bright atoms (HAADF), clearly
  negative for dark atoms (ABF/BF); in between it is ``"unclear"`` (treated as bright);
* **structure**: ``var(G_2px * x) / var(x) * 16 pi`` (about 1 for white noise, since a
  2-px Gaussian averages ``16 pi`` independent pixels; well above 1 for any image of atoms);
* **hexagonal lattice with graphene's period**: two FFT spots 60° apart within 30 % of
  the 2.13 Å first order that are a crystal's, not the speckle of an amorphous ring: the
  spots they predict (the third first-order spot and the √3 order) must stand out of
  their rings (coherence, :func:`atomlens.atoms.lattice_check.crystal_hexagon`), and the
  brightness contrast of its two sublattices ``(A - B) / (A - hollow)``, medians over
  the unit cells (:func:`sublattice_contrast`; 0 for graphene, ~0.5-0.8 for MoS2).

:func:`model_fit_warnings` turns them, and the model's own probability maps on a central
crop, into one-line warnings (inverted contrast, pixel size outside the trained range,
atoms closer than any trained structure, most probability below the threshold, noise).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy import stats

from atomlens.atoms.lattice_check import COHERENCE_MIN, crystal_hexagon
from atomlens.atoms.lattice_reference import (
    _cells,
    bragg_phasors,
    displacement_at,
    refine_spots,
)
from atomlens.segment.model_file import Detector
from atomlens.segment.predict import predict_maps
from atomlens.segment.registry import (
    AUTO,
    choose_model_from_traits,
    load_model,
    model_handles_dark,
    model_info,
)

GRAPHENE_A_A = 2.46  # graphene lattice constant, Å
POLARITY_SKEW = 0.3  # |band-passed skewness| beyond which the polarity is called
NOISE_STRUCTURE = 2.0  # structure ratio below which a frame is called noise
CROP = 512  # statistics on a central crop of at most this many pixels per side
LATTICE_CROP = 384  # the lattice test on a smaller one (its origin scan is the slow part)
MIN_FIELD_A = 20.0  # fields narrower than this (Å) hold too few cells to judge a lattice


@dataclass
class ImageTraits:
    """Statistics of one frame (see the module docstring).

    polarity : ``"bright"``, ``"dark"`` or ``"unclear"``; polarity_skew : the statistic.
    structure : ~1 for white noise, larger for images of atoms; noise_only : structure
    below :data:`NOISE_STRUCTURE`.
    hex_period_A : first-order spacing (Å) of a graphene-like hexagonal lattice, or None.
    sublattice_contrast : ``(A - B) / (A - hollow)`` of that lattice, or None.
    hex_coherence : the best coherence of any pair of FFT maxima 60° apart near graphene's
        period (:mod:`atomlens.atoms.lattice_check`: ~1-3 for an amorphous ring, far above
        for a crystal); None when there was no such pair or the lattice was not checked.
    hex_coherence_min : the coherence a crystal needs
        (:data:`atomlens.atoms.lattice_check.COHERENCE_MIN`).
    """

    polarity: str
    polarity_skew: float
    structure: float
    noise_only: bool
    hex_period_A: float | None = None
    sublattice_contrast: float | None = None
    lattice_checked: bool = False  # False: not asked, noise, or a field under MIN_FIELD_A
    hex_coherence: float | None = None
    hex_coherence_min: float = COHERENCE_MIN


def central_crop(image: np.ndarray, size: int = CROP) -> np.ndarray:
    """The central ``size`` x ``size`` part of a (Y, X) image (float64, finite)."""
    img = np.asarray(image, np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected one (Y, X) frame, got shape {img.shape}")
    h, w = img.shape
    y0, x0 = max(0, (h - size) // 2), max(0, (w - size) // 2)
    img = img[y0 : y0 + size, x0 : x0 + size]
    return np.nan_to_num(img, nan=float(np.nanmedian(img)) if np.isfinite(img).any() else 0.0)


def polarity(image: np.ndarray, pixel_size_A: float) -> tuple[str, float]:
    """``("bright" | "dark" | "unclear", skew)`` of a (Y, X) frame at ``pixel_size_A`` Å/px."""
    img = central_crop(image)
    s1 = max(0.7, 0.2 / pixel_size_A)
    band = ndi.gaussian_filter(img, s1) - ndi.gaussian_filter(img, 4 * s1)
    sk = float(stats.skew(band.ravel())) if band.std() > 0 else 0.0
    if not np.isfinite(sk):
        sk = 0.0
    return ("bright" if sk > POLARITY_SKEW else "dark" if sk < -POLARITY_SKEW else "unclear"), sk


def structure_ratio(image: np.ndarray) -> float:
    """Variance kept by a 2-px Gaussian relative to white noise (1 = pure white noise)."""
    img = central_crop(image)
    v = img.var()
    if v <= 0:
        return 0.0
    sigma = 2.0
    return float(ndi.gaussian_filter(img, sigma).var() / v * 4 * np.pi * sigma**2)


def sublattice_contrast(img: np.ndarray, spots: np.ndarray, n_scan: int = 24) -> float | None:
    """``(A - B) / (A - hollow)`` of the honeycomb whose first-order spots are ``spots``
    (rows ``g1, g2``, cycles/px, 60° apart: a crystal's, as
    :func:`atomlens.atoms.lattice_check.crystal_hexagon` verified them) in a (Y, X)
    ``img``; None when too few cells lie inside. ``A`` is the brighter lattice site (an
    origin scan over one cell of the lattice, displaced by the Bragg phases), ``B`` the
    brighter of the two sites at (1/3, 2/3) and (2/3, 1/3), the other the hollow.

    Per cell, not per frame: the median over cells of ``A - B`` over the median of
    ``A - hollow``. A smooth contamination blob raises a cell's three sites alike, and a Si
    cluster or a lump of amorphous carbon touches a few cells only, so neither moves the
    medians; means over the frame took them for an unequal sublattice (six of 40
    held-out simulated contaminated frames, Si-cluster fields). The lattice is the
    verified hexagon's, refined by its Bragg phases, not a fresh FFT search that may
    lock on other maxima of a small field. Only cells where the crystal is count (its
    Bragg fringes at least half as strong as in the best tenth of the cells): a flake
    over vacuum, holes or a thick cover would otherwise fill the medians with cells
    holding no lattice."""
    g = np.asarray(spots, float)
    gmin = float(np.linalg.norm(g, axis=1).min())
    g = refine_spots(img, g, iters=3, max_shift=0.25 * gmin, margin_px=int(2 / gmin))
    basis = np.linalg.inv(g).T  # rows a1, a2: g_i . a_j = delta_ij
    if basis[0] @ basis[1] > 0:  # 120° apart: the honeycomb's second site at (1/3, 2/3)
        basis[1] = basis[1] - basis[0]
    u = bragg_phasors(img, g)
    a_px = float(np.mean(np.linalg.norm(basis, axis=1)))
    smooth = ndi.gaussian_filter(img, max(0.8, 0.3 * a_px / GRAPHENE_A_A))  # 0.3 Å
    cells = _cells(basis, np.zeros(2), img.shape)
    lattice = cells @ basis
    h, w = img.shape
    # only cells where the crystal is: the Bragg fringes' local amplitude (the weaker of
    # the two) at least half its 90th percentile (not vacuum, holes or thick cover)
    amp = np.min([ndi.map_coordinates(np.abs(f), lattice.T, order=1, cval=0.0) for f in u], 0)
    lattice = lattice[amp >= 0.5 * np.percentile(amp, 90)]
    lattice = lattice + displacement_at(u, g, lattice)  # varies little within a cell

    def at(frac: np.ndarray) -> np.ndarray:
        """(offsets, cells) smoothed values at ``frac`` (k, 2) cell fractions past each
        lattice point; NaN outside the frame."""
        p = lattice[None] + (np.asarray(frac, float) @ basis)[:, None]
        ok = (p[..., 0] >= 0) & (p[..., 1] >= 0) & (p[..., 0] <= h - 1) & (p[..., 1] <= w - 1)
        v = ndi.map_coordinates(smooth, p.reshape(-1, 2).T, order=1).reshape(ok.shape)
        return np.where(ok, v, np.nan)

    def median(v: np.ndarray) -> np.ndarray:
        """Median over cells per row, ignoring NaN (-inf for a row with no cell)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row
            return np.nan_to_num(np.nanmedian(v, axis=1), nan=-np.inf)

    # the origin: the brightest site over the median cell
    grid = np.stack(np.meshgrid(np.arange(n_scan), np.arange(n_scan), indexing="ij"), -1)
    grid = grid.reshape(-1, 2) / n_scan
    origin = grid[int(np.argmax(median(at(grid))))]
    # the two other sites of the honeycomb, each at its brightest place within 0.1 cell
    # (an asymmetric probe tail or scan smear moves a peak off the ideal place)
    step = np.stack(np.meshgrid(np.arange(-2, 3), np.arange(-2, 3), indexing="ij"), -1)
    step = step.reshape(-1, 2) / n_scan
    va = at(origin[None])[0]
    sites = []
    for f in ((1 / 3, 2 / 3), (2 / 3, 1 / 3)):
        v = at(origin + np.array(f) + step)
        sites.append((v[int(np.argmax(median(v)))], at(origin[None] + f)[0]))
    (b1, c1), (b2, c2) = sites
    vb, vh = (b1, c2) if median(b1[None])[0] >= median(b2[None])[0] else (b2, c1)
    ok = np.isfinite(va) & np.isfinite(vb) & np.isfinite(vh)
    if ok.sum() < 3:
        return None
    va, vb, vh = va[ok], vb[ok], vh[ok]
    if np.median(va - vb) < 0:  # the second site outshines the first: call it A
        va, vb = vb, va
    depth = float(np.median(va - vh))
    if not np.isfinite(depth) or depth <= 0:
        return None
    return float(np.median(va - vb) / depth)


def _hex_lattice(
    img: np.ndarray, pixel_size_A: float
) -> tuple[float | None, float | None, float | None]:
    """(first-order spacing Å, sublattice contrast, best coherence) of a graphene-period
    hexagonal crystal lattice (:func:`atomlens.atoms.lattice_check.crystal_hexagon`,
    :func:`sublattice_contrast`); spacing and contrast are None when no hexagon of FFT
    maxima is a crystal's."""
    hexagon, coherence = crystal_hexagon(img, pixel_size_A, GRAPHENE_A_A, search=0.3)
    if hexagon is None:
        return None, None, coherence
    return hexagon.period_A, sublattice_contrast(img, hexagon.spots), coherence


def image_traits(image: np.ndarray, pixel_size_A: float, *, lattice: bool = True) -> ImageTraits:
    """Measure one (Y, X) frame at ``pixel_size_A`` Å/px (a central 512² crop)."""
    if not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise ValueError(f"pixel size must be a positive number of Å, got {pixel_size_A!r}")
    img = central_crop(image)
    pol, sk = polarity(img, pixel_size_A)
    st = structure_ratio(img)
    tr = ImageTraits(pol, sk, st, st < NOISE_STRUCTURE)
    tr.lattice_checked = bool(
        lattice and not tr.noise_only and min(img.shape) * pixel_size_A >= MIN_FIELD_A
    )
    if tr.lattice_checked:
        tr.hex_period_A, tr.sublattice_contrast, tr.hex_coherence = _hex_lattice(
            central_crop(img, LATTICE_CROP), pixel_size_A
        )
    return tr


def choose_model(image: np.ndarray, pixel_size_A: float) -> tuple[str, str]:
    """Pick a shipped model for one (Y, X) frame at ``pixel_size_A`` Å/px:
    ``(name, reason)``, the reason one sentence.

    The frame's :func:`image_traits` decide
    (:func:`atomlens.segment.registry.choose_model_from_traits`: ``graphene`` for bright
    atoms on a graphene-period hexagonal crystal lattice with equal sublattices,
    ``general`` otherwise, e.g. for the diffuse FFT ring of an amorphous support); a pixel
    size outside the graphene model's range decides without measuring. About 0.1-1 s on
    a 512² frame on one core.
    """
    lo, hi = model_info("graphene").pixel_size_range
    if not lo <= pixel_size_A <= hi:  # no need to measure the image
        return choose_model_from_traits(None, pixel_size_A)
    return choose_model_from_traits(image_traits(image, pixel_size_A), pixel_size_A)


def _probabilities(
    image: np.ndarray, pixel_size_A: float, det, invert: bool, size_model_px: int = 256
) -> np.ndarray:
    """Foreground probability (y, x) of ``det`` on a central crop of about
    ``size_model_px`` model pixels per side."""
    side = int(round(size_model_px * det.pixel_size / pixel_size_A))
    crop = central_crop(image, max(side, 16)).astype(np.float32)
    if invert:
        crop = -crop
    _, maps = next(predict_maps(crop, det, pixel_size=pixel_size_A, device="cpu"))
    return 1.0 - maps[0]


def model_fit_warnings(
    image: np.ndarray,
    pixel_size_A: float,
    det,
    *,
    threshold: float = 0.5,
    invert: bool | None = None,
    traits: ImageTraits | None = None,
    network_pixel_size_A: float | None = None,
) -> list[str]:
    """One-line warnings when ``det`` (a :class:`~atomlens.segment.Detector`) looks unfit
    for the (Y, X) frame ``image`` at ``pixel_size_A`` Å/px; empty when all is well.

    ``invert``: whether detection inverts the frame (dark atoms; None: decide as
    :func:`detect` does). ``network_pixel_size_A``: the pixel size detection states to
    the network (spot-width resampling, :mod:`atomlens.atoms.spot_scale`; default
    ``pixel_size_A``): the probabilities are judged as detection will see them, with
    ``threshold`` the one detection uses. Each warning names the next step (try the
    general model, check the pixel size, correct a frame and retrain).
    """
    name = det.card.get("registry_name") or det.card.get("name") or "this"
    general = name == "general"
    other = "" if general else "try --model general, or "
    retrain = "correct a frame and retrain (atomlens finetune)"
    out: list[str] = []
    tr = traits or image_traits(image, pixel_size_A, lattice=not general)
    if tr.noise_only:
        return [
            f"the frame looks like pure noise (structure {tr.structure:.2f}, ~1 for white "
            "noise): no atoms can be trusted; check the frame, the dose and the pixel size"
        ]
    handles_dark = model_handles_dark(det)
    if invert is None:
        invert = handles_dark and tr.polarity == "dark"
    if tr.polarity == "dark" and not handles_dark:
        out.append(
            f"atoms look dark (ABF/BF contrast, skew {tr.polarity_skew:+.2f}) but the "
            f"{name} model was trained on bright (HAADF) atoms: {other or 'invert the image, or '}"
            f"{retrain}"
        )
    if name == "graphene" and tr.polarity != "dark" and tr.lattice_checked:
        choice, why = choose_model_from_traits(tr, pixel_size_A)
        if choice != "graphene":
            out.append(f"this image does not look like graphene ({why}): try --model {choice}")
    rng = det.card.get("expected_pixel_size_A")
    if rng and not (0.8 * rng[0] <= pixel_size_A <= 1.25 * rng[1]):
        out.append(
            f"pixel size {pixel_size_A:.3g} Å/px is far outside the {name} model's "
            f"{rng[0]}-{rng[1]} Å/px, so atoms are far from the trained size: check "
            f"--pixel-size, or {other}{retrain}"
        )
    fg = _probabilities(image, network_pixel_size_A or pixel_size_A, det, bool(invert))
    sure = int((fg >= threshold).sum())
    unsure = int(((fg > 0.2) & (fg < threshold)).sum())
    # a fine-tuned model's spot classifier, not this threshold, decides on resampled
    # frames (atoms.detect): the probability mass below it says nothing there
    classifier_decides = bool(det.card.get("spot_classifier")) and (
        network_pixel_size_A not in (None, pixel_size_A)
    )
    if unsure > sure and not classifier_decides:
        share = unsure / max(sure + unsure, 1)
        out.append(
            f"most of the atom probability lies below the threshold {threshold:g} "
            f"({share:.0%} of candidate pixels): the {name} model is unsure on this "
            f"image; {other}{retrain}"
        )
    lab, n = ndi.label(fg >= threshold)
    if n >= 3:
        com = np.array(ndi.center_of_mass(fg, lab, np.arange(1, n + 1)))
        from scipy.spatial import cKDTree

        d, _ = cKDTree(com).query(com, k=2)
        nn_A = float(np.median(d[:, 1])) * det.pixel_size
        if nn_A < 0.9:
            out.append(
                f"atoms found {nn_A:.2f} Å apart (median), closer than in any structure "
                f"the {name} model was trained on: check --pixel-size, or {other}{retrain}"
            )
    return out


@dataclass
class DetectionSetup:
    """What a detection run uses and why (see :func:`detection_setup`).

    detector : the loaded :class:`~atomlens.segment.Detector`.
    name : registry name or the model path as given.
    reason : one sentence on the choice ("auto": from the image; else "as asked").
    invert : frames are negated before the network (dark atoms, a model that handles them).
    warnings : one-line warnings from :func:`model_fit_warnings` on the first frame.
    spot : ``(network pixel size Å/px, record)`` from
        :func:`atomlens.atoms.spot_scale.network_pixel_size` when measured (pass it on to
        :func:`atomlens.atoms.detect.iter_detect` as ``spot_choice``), else None.
    """

    detector: object
    name: str
    reason: str
    invert: bool
    warnings: list[str]
    spot: tuple[float, dict] | None = None


def first_frame(stack, frames: list[int] | None = None) -> np.ndarray:
    """The first requested frame of a Stack or array as a (Y, X) float32 array."""
    data = stack.data if hasattr(stack, "pixel_size") and hasattr(stack, "data") else stack
    if not hasattr(data, "ndim"):
        data = np.asarray(data)
    if data.ndim == 2:
        return np.asarray(data, np.float32)
    t = int(frames[0]) if frames else 0
    return np.asarray(data[t], np.float32)


def detection_setup(
    stack,
    model,
    frames: list[int] | None,
    pixel_size_A: float,
    *,
    threshold: float = 0.5,
    contrast: str = "auto",
    warn: bool = True,
    load=None,
    spot_scale: str | float | None = None,
) -> DetectionSetup:
    """Resolve ``model`` (``"auto"``, a shipped name, a path, None = graphene, or a
    Detector) for ``stack`` at ``pixel_size_A`` Å/px, decide whether frames are inverted
    and collect the fit warnings, all from the first requested frame.

    ``contrast``: ``"auto"`` (invert when the atoms look dark and the model handles dark
    atoms), ``"bright"`` (never invert) or ``"dark"`` (always invert: the user says the
    atoms are dark). ``load``: a loader for names/paths (default
    :func:`atomlens.segment.registry.load_model`), e.g. a cached one. ``spot_scale``:
    when given (``"auto"``, ``"off"`` or a FWHM in Å), the spot-width resampling is
    decided here, once (``DetectionSetup.spot``), and the fit warnings judge the model at
    the pixel size and threshold detection will use.
    """
    if contrast not in ("auto", "bright", "dark"):
        raise ValueError(f"contrast must be 'auto', 'bright' or 'dark', got {contrast!r}")
    load = load or load_model
    frame = first_frame(stack, frames)
    if isinstance(model, Detector):
        det, name, reason = (
            model,
            str(model.card.get("registry_name") or model.card.get("name") or "model"),
            "as given",
        )
    elif model is not None and str(model) == AUTO:
        name, why = choose_model(frame, pixel_size_A)
        det, reason = load(name), f"auto: {why}"
    else:
        name = "graphene" if model is None else str(model)
        det, reason = load(model), "as asked"
    tr = image_traits(frame, pixel_size_A, lattice=False)
    if contrast == "dark":
        invert = True
    elif contrast == "bright":
        invert = False
    else:
        invert = tr.polarity == "dark" and model_handles_dark(det)
    spot = None
    ps_net, thr = pixel_size_A, threshold
    if spot_scale is not None:
        from atomlens.atoms.spot_scale import detection_threshold, network_pixel_size

        spot = network_pixel_size(
            stack, pixel_size_A, det.card, spot_scale, frames, invert=bool(invert)
        )
        ps_net, thr = spot[0], detection_threshold(threshold, pixel_size_A, spot)
    warnings = (
        model_fit_warnings(
            frame, pixel_size_A, det, threshold=thr, invert=invert, network_pixel_size_A=ps_net
        )
        if warn
        else []
    )
    if invert and contrast == "auto":
        reason += (
            ": frames inverted before the network"
            if reason.endswith("atoms look dark (ABF/BF contrast)")  # auto said why
            else "; atoms look dark (ABF/BF): frames inverted before the network"
        )
    return DetectionSetup(det, name, reason, invert, warnings, spot)


__all__ = [
    "DetectionSetup",
    "ImageTraits",
    "central_crop",
    "choose_model",
    "detection_setup",
    "first_frame",
    "image_traits",
    "model_fit_warnings",
    "polarity",
    "structure_ratio",
    "sublattice_contrast",
]
