"""How wide are the atoms in this image? A label-free spot-width estimate (Å FWHM).

A network trained on atoms of one width misses atoms two or three times wider (single
heavy atoms imaged out of focus in a thick support: the Pt of ``pt_single_atoms`` are
~3 Å FWHM where the general model learned ~1-1.5 Å). :func:`estimate_spot_fwhm` measures
the width from the image alone, and :func:`scale_for_model` turns it into the pixel size
to state to the network so that the spots look as wide as in training (the image is
then resampled to the model grid as usual; positions come back in input pixels).

The estimate: the scale-normalised Laplacian of Gaussian ``-σ² ∇²G_σ * I`` peaks at
``σ = s`` on a Gaussian spot of standard deviation ``s``, whatever its brightness or
background. White noise gives ``-σ² ∇²G_σ`` a standard deviation falling as ``1/σ``,
so the spots are chosen by their *significance* (response over the noise response at
the same scale, the local pixel noise measured from neighbour differences, since shot
noise grows with the level): the ``n_spots`` most significant, mutually separated
maxima over position and scale. Each spot's own
normalised-LoG curve over σ then gives its σ (not biased toward the small scales where
the noise is); curves still rising at the largest σ (support lumps, gradients) are left
out, curves falling from the smallest σ count at that σ (sharp columns); the estimate is
the median over the spots. Dense crystals: the LoG at
scales above about a third of the column spacing sees the neighbours and falls, so a
crystal returns about the probe's width (or less), never the spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from atomlens.io.stack import stack_frames

FWHM_PER_SIGMA = 2.3548
MAX_SIDE = 768  # the estimate runs on a central crop of at most this many pixels per side


@dataclass
class SpotScale:
    """A spot-width estimate.

    fwhm_A : median spot FWHM (Å), or None when fewer than ``min_spots`` spots stood out.
    n_spots : spots used; significance : their median response over the noise (a z-score).
    fwhm_q_A : 10th and 90th percentile of the per-spot FWHM (Å).
    """

    fwhm_A: float | None
    n_spots: int
    significance: float = 0.0
    fwhm_q_A: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "fwhm_A": None if self.fwhm_A is None else round(self.fwhm_A, 3),
            "n_spots": self.n_spots,
            "significance": round(self.significance, 2),
            "fwhm_q_A": None if self.fwhm_q_A is None else [round(v, 3) for v in self.fwhm_q_A],
        }


def pixel_noise(image: np.ndarray) -> float:
    """Robust white-noise standard deviation of a (Y, X) image from neighbour differences
    (median absolute deviation, the smaller of the row and column estimates: scan
    afterglow correlates neighbours along a row)."""
    img = np.asarray(image, np.float64)
    ests = []
    for d in (np.diff(img, axis=0), np.diff(img, axis=1)):
        if d.size:
            ests.append(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))
    return float(min(ests)) if ests else 0.0


def local_noise(image: np.ndarray, size_px: float) -> np.ndarray:
    """(Y, X) local white-noise standard deviation: the mean absolute neighbour
    difference along y over a ``size_px`` Gaussian window (x sqrt(pi) / 2, exact for
    white Gaussian noise); shot noise varies with the level, so one global figure would
    call every spot on a bright support significant."""
    img = np.asarray(image, np.float64)
    d = np.abs(np.diff(img, axis=0))
    d = np.vstack([d, d[-1:]])
    return ndi.gaussian_filter(d, max(size_px, 2.0)) * np.sqrt(np.pi) / 2.0


def _noise_gain(sigmas: np.ndarray) -> np.ndarray:
    """Standard deviation of ``-σ² ∇²G_σ`` applied to unit white noise, per σ (pixels)."""
    rng = np.random.default_rng(0)
    n = int(np.clip(12 * sigmas.max(), 96, 384))
    w = rng.normal(size=(n, n))
    m = int(3 * sigmas.max())
    out = []
    for s in sigmas:
        r = -(s**2) * ndi.gaussian_laplace(w, s)
        out.append(r[m : n - m, m : n - m].std() if n - 2 * m > 16 else r.std())
    return np.asarray(out)


def estimate_spot_fwhm(
    image: np.ndarray,
    pixel_size_A: float,
    *,
    n_spots: int = 40,
    min_fwhm_A: float = 0.4,
    max_fwhm_A: float = 6.0,
    min_spots: int = 5,
    min_significance: float = 5.0,
) -> SpotScale:
    """Median FWHM (Å) of the most significant bright spots of a (Y, X) frame.

    ``pixel_size_A``: Å/px of the frame. Atoms must be bright (negate ABF/BF frames
    first). Scales searched: FWHM ``min_fwhm_A``-``max_fwhm_A`` Å (at least 0.7 px σ).
    Spots: local maxima of the significance over position and scale, at least
    ``min_significance`` noise standard deviations, mutually separated by the sum of their
    FWHMs; the ``n_spots`` strongest are used (fewer than ``min_spots``: ``fwhm_A`` None).
    """
    if not (np.isfinite(pixel_size_A) and pixel_size_A > 0):
        raise ValueError(f"pixel size must be a positive number of Å, got {pixel_size_A!r}")
    img = np.asarray(image, np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected one (Y, X) frame, got shape {img.shape}")
    h, w = img.shape
    y0, x0 = max(0, (h - MAX_SIDE) // 2), max(0, (w - MAX_SIDE) // 2)
    img = img[y0 : y0 + MAX_SIDE, x0 : x0 + MAX_SIDE]
    finite = np.isfinite(img)
    if not finite.any():
        return SpotScale(None, 0, notes=["no finite pixels"])
    img = np.where(finite, img, np.median(img[finite]))
    s_lo = max(0.7, min_fwhm_A / FWHM_PER_SIGMA / pixel_size_A)
    s_hi = max_fwhm_A / FWHM_PER_SIGMA / pixel_size_A
    s_hi = min(s_hi, min(img.shape) / 8.0)
    if s_hi <= s_lo * 1.2:
        return SpotScale(None, 0, notes=["frame too small for the scale search"])
    sigmas = np.exp(np.linspace(np.log(s_lo), np.log(s_hi), 18))
    noise = pixel_noise(img)
    if noise <= 0:
        return SpotScale(None, 0, notes=["no pixel noise measured (flat or synthetic frame)"])
    gain = _noise_gain(sigmas)
    # shot noise grows with the level: significance against the local noise
    local = np.maximum(local_noise(img, 4 * s_hi), 0.25 * noise)
    resp = np.stack([-(s**2) * ndi.gaussian_laplace(img, s) for s in sigmas])  # (S, Y, X)
    z = resp / gain[:, None, None] / local[None]
    zmax = z.max(axis=0)
    # candidates: spatial maxima of the best significance, away from the edges
    peaks = (zmax == ndi.maximum_filter(zmax, size=3)) & (zmax >= min_significance)
    edge = int(np.ceil(2 * s_hi))
    peaks[:edge], peaks[-edge:], peaks[:, :edge], peaks[:, -edge:] = False, False, False, False
    py, px = np.nonzero(peaks)
    if len(py) < min_spots:
        return SpotScale(None, len(py), notes=[f"{len(py)} spots above {min_significance} σ"])
    order = np.argsort(-zmax[py, px])[: 50 * n_spots]
    py, px = py[order], px[order]
    # each candidate's own scale: the maximum of its normalised-LoG curve
    curves = resp[:, py, px]  # (S, N)
    kk = curves.argmax(axis=0)
    ls = np.log(sigmas)
    sig = np.exp(ls[kk])
    inner = (kk > 0) & (kk < len(sigmas) - 1)
    if inner.any():  # parabolic refinement in log σ
        i = np.nonzero(inner)[0]
        a, b, c = curves[kk[i] - 1, i], curves[kk[i], i], curves[kk[i] + 1, i]
        den = a - 2 * b + c
        off = np.where(den < 0, 0.5 * (a - c) / np.where(den < 0, den, -1), 0.0)
        sig[i] = np.exp(ls[kk[i]] + np.clip(off, -0.5, 0.5) * (ls[1] - ls[0]))
    # a curve still rising at the top of the search is no spot of a searched width (a
    # support lump, a gradient); one falling from the bottom is a spot at most that wide
    interior = np.nonzero(kk < len(sigmas) - 1)[0]
    # greedy: strongest first, separated by the sum of the two FWHMs
    keep: list[int] = []
    for j in interior:
        if keep:
            kj = np.asarray(keep)
            d = np.hypot(py[kj] - py[j], px[kj] - px[j])
            if np.any(d < FWHM_PER_SIGMA * (sig[kj] + sig[j]) / 2 * 2):
                continue
        keep.append(j)
        if len(keep) >= n_spots:
            break
    if len(keep) < min_spots:
        return SpotScale(None, len(keep), notes=[f"{len(keep)} separated spots"])
    kj = np.asarray(keep)
    fw = FWHM_PER_SIGMA * sig[kj] * pixel_size_A
    # spots at the smallest σ are single-pixel noise when they are the minority (on
    # pt_single_atoms 10-35 % of the 40: they pulled one image's median from 2.8 to 1.6
    # Å); when they are the majority (sharp columns) the median is that σ either way
    at_lo = kk[kj] == 0
    if at_lo.any() and (~at_lo).sum() > at_lo.sum():
        fw = fw[~at_lo]
    return SpotScale(
        float(np.median(fw)),
        len(kj),
        float(np.median(zmax[py[kj], px[kj]])),
        (float(np.percentile(fw, 10)), float(np.percentile(fw, 90))),
    )


def card_rule(card: dict | None) -> dict | None:
    """The model card's ``spot_scale`` rule (``target_fwhm_A``, ``trigger_fwhm_A``,
    ``max_factor``; optional ``threshold_factor``, default 1: the detection threshold is
    multiplied by it on resampled images; optional ``fixed_fwhm_A``: a fine-tuned model's
    training width, used instead of a measure), or None for a model that does not ask
    for spot-width resampling."""
    rule = (card or {}).get("spot_scale")
    if not isinstance(rule, dict):
        return None
    try:
        out = {
            "target_fwhm_A": float(rule["target_fwhm_A"]),
            "trigger_fwhm_A": float(rule["trigger_fwhm_A"]),
            "max_factor": float(rule.get("max_factor", 4.0)),
            "threshold_factor": float(rule.get("threshold_factor", 1.0)),
        }
        if rule.get("fixed_fwhm_A") is not None:
            out["fixed_fwhm_A"] = float(rule["fixed_fwhm_A"])
    except (KeyError, TypeError, ValueError):
        return None
    ok = all(np.isfinite(v) and v > 0 for v in out.values()) and out["threshold_factor"] <= 1
    return out if ok and out["trigger_fwhm_A"] >= out["target_fwhm_A"] else None


def parse_spot_scale(mode: str | float) -> str | float:
    """A ``spot_scale`` setting as ``"auto"``, ``"off"`` or the spots' FWHM in Å (a finite
    positive float); anything else raises ValueError naming the three choices."""
    if isinstance(mode, str) and mode.strip().lower() in ("auto", "off"):
        return mode.strip().lower()
    try:
        fwhm = float(mode)
    except (TypeError, ValueError):
        fwhm = float("nan")
    if not (np.isfinite(fwhm) and fwhm > 0):
        raise ValueError(
            f"spot_scale must be 'auto', 'off' or the spots' FWHM in Å (a positive "
            f"number), got {mode!r}"
        )
    return fwhm


def detection_threshold(threshold: float, pixel_size_A: float, choice: tuple[float, dict]) -> float:
    """The probability threshold detection uses with the ``(network pixel size, record)``
    of :func:`network_pixel_size`: ``threshold`` x the rule's ``threshold_factor`` when the
    image is resampled (broad faint spots score lower), else ``threshold``."""
    ps_net, rec = choice
    return threshold * rec.get("threshold_factor", 1.0) if ps_net != pixel_size_A else threshold


def network_pixel_size(
    stack: Any,
    pixel_size_A: float,
    card: dict | None,
    mode: str | float = "auto",
    frames: Sequence[int] | None = None,
    invert: bool = False,
) -> tuple[float, dict]:
    """The pixel size (Å/px) to state to the network so the spots look as wide as in its
    training, and a record of the choice (shown to the user, kept in results).

    ``mode``: ``"auto"`` (measure the spot FWHM on up to 3 of ``frames`` with
    :func:`estimate_spot_fwhm`, median), ``"off"``, or the spot FWHM in Å as a number
    (the user's own measure). Only a model whose card has a ``spot_scale`` rule
    (:func:`card_rule`) is resampled, and only when the FWHM exceeds the rule's
    ``trigger_fwhm_A``: then the stated pixel is ``pixel_size_A x target / FWHM`` (the
    spots shrink to ``target_fwhm_A`` on the model grid; at most ``max_factor`` x).
    ``invert``: the atoms are dark (measure on the negated frames).
    Returns ``(pixel_size_A, record)`` unchanged when nothing applies; when resampled,
    ``record["threshold_factor"]`` is the rule's factor for the detection threshold.
    """
    rec: dict = {"mode": str(mode), "factor": 1.0}
    rule = card_rule(card)
    if isinstance(mode, str) and mode.strip().lower() == "off":
        rec["why"] = "off"
        return pixel_size_A, rec
    if rule is None:
        rec["why"] = "the model asks for no spot-width resampling"
        return pixel_size_A, rec
    rec.update(rule)
    mode = parse_spot_scale(mode)
    if mode == "auto" and "fixed_fwhm_A" in rule:
        # a fine-tuned model: every image at the scale it was fine-tuned at
        fwhm = rule["fixed_fwhm_A"]
    elif mode == "auto":
        data = stack_frames(stack)
        idx = list(range(data.shape[0])) if frames is None else [int(t) for t in frames]
        pick = [idx[int(round(k))] for k in np.linspace(0, len(idx) - 1, min(3, len(idx)))]
        ests = []
        for t in pick:
            fr = np.asarray(data[t], np.float64)
            e = estimate_spot_fwhm(-fr if invert else fr, pixel_size_A)
            if e.fwhm_A is not None:
                ests.append(e)
        if not ests:
            rec["why"] = "no spots stood out enough to measure their width"
            return pixel_size_A, rec
        fwhm = float(np.median([e.fwhm_A for e in ests]))
        rec["measured"] = [e.to_dict() for e in ests]
    else:
        fwhm = float(mode)
    rec["fwhm_A"] = round(fwhm, 3)
    if fwhm <= rule["trigger_fwhm_A"]:
        rec["why"] = (
            f"spots {fwhm:.2f} Å FWHM, within the model's range (resampled above "
            f"{rule['trigger_fwhm_A']:.2f} Å)"
        )
        return pixel_size_A, rec
    factor = float(min(fwhm / rule["target_fwhm_A"], rule["max_factor"]))
    rec["factor"] = round(factor, 3)
    tf = rule["threshold_factor"]
    rec["why"] = (
        f"spots {fwhm:.2f} Å FWHM, broader than the model was trained on: the image is "
        f"shown to it at {pixel_size_A / factor:.4g} Å/px instead of {pixel_size_A:.4g} "
        f"(spots ~{fwhm / factor:.2f} Å)" + (f"; detection threshold x {tf:g}" if tf != 1 else "")
    )
    return pixel_size_A / factor, rec


__all__ = [
    "SpotScale",
    "card_rule",
    "detection_threshold",
    "estimate_spot_fwhm",
    "network_pixel_size",
    "parse_spot_scale",
    "pixel_noise",
]
