"""Contrast verification of sparse heavy atoms on a light support.

A detector shown broad, faint single atoms (heavy atoms on amorphous carbon, see
:mod:`atomlens.atoms.spot_scale`) at a low probability threshold finds the atoms and
many lumps of the support. A heavy atom adds a fixed amount of scattered intensity above
the support under it; a lump of the support is a fluctuation of the support itself. So
each candidate is checked on the raw image:

- its integrated intensity above the local support (a disk of ``radius_factor`` x the
  spot FWHM, background from the lower half of a ring around it) and the 1-sigma error
  of that sum from the local pixel noise (:func:`atomlens.atoms.contrast.integrated_intensity`),
  giving the significance ``z = I / sigma_I``;
- the same measure at random positions of the frame: where atoms are sparse (they cover
  a few % of the frame) that is the distribution of the *support's* speckle and texture,
  measured on the frame itself, no labels (the "support" class of an atom-counting
  mixture, measured directly instead of fitted). ``support_t`` of a candidate is its
  ``z`` in robust units of that distribution (``(z - median) / (1.4826 MAD)``: a vacuum
  edge or a contamination blob among the random positions moves a high quantile but not
  these); ``support_quantile`` is the share of random positions with a lower ``z``.

:func:`verify_spots` keeps the candidates whose ``z`` is at least ``z_min`` *and* whose
``support_t`` is at least ``t_min`` (an atom must stand out of the pixel noise and out of
this frame's support texture). Settings chosen on simulated Pt single atoms on carbon
matched to the measured statistics of ``pt_single_atoms`` (``bench/pt_verify.py``). It is meant only for sparse spots on a support:
:func:`atomlens.atoms.detect.iter_detect` runs it only on frames that spot-width
resampling shrank (spots much broader than the model's crystals; dense crystals never
are), and only for a model whose card has a ``spot_verify`` rule.

Positions and radii are in pixels of the raw frame; intensities in image units x pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from atomlens.atoms.contrast import integrated_intensity

#: Random support positions per frame for the support's z distribution.
N_SUPPORT = 800


@dataclass(frozen=True)
class VerifyRule:
    """Settings of :func:`verify_spots` (a model card's ``spot_verify``).

    z_min : least significance ``I / sigma_I`` (pixel-noise units) of a kept atom.
    t_min : least ``support_t`` (robust units of the support's ``z`` distribution).
    radius_factor : integration disk radius in units of the spot FWHM (pixels).
    candidate_factor : the detection threshold is multiplied by this on verified frames
        (candidates are found liberally, then verified), on top of the spot-scale rule's
        ``threshold_factor``.
    min_kept : a frame where fewer candidates pass is one whose atoms do not stand out of
        its support (the test cannot judge them): detection keeps the network's own atoms
        at the unverified threshold there instead.
    """

    z_min: float = 3.0
    t_min: float = 2.5
    radius_factor: float = 0.35
    candidate_factor: float = 0.6
    min_kept: int = 5

    @classmethod
    def from_card(cls, card: dict | None) -> VerifyRule | None:
        """The rule of a model card (its ``spot_verify`` dict), or None. Fine-tuning keeps
        the base card's rule (``FinetuneConfig.verify_spots``)."""
        v = (card or {}).get("spot_verify")
        if not isinstance(v, dict):
            return None
        try:
            out = cls(
                z_min=float(v.get("z_min", cls.z_min)),
                t_min=float(v.get("t_min", cls.t_min)),
                radius_factor=float(v.get("radius_factor", cls.radius_factor)),
                candidate_factor=float(v.get("candidate_factor", cls.candidate_factor)),
                min_kept=int(v.get("min_kept", cls.min_kept)),
            )
        except (TypeError, ValueError):
            return None
        ok = (
            out.radius_factor > 0
            and 0 < out.candidate_factor <= 1
            and np.isfinite(out.z_min)
            and np.isfinite(out.t_min)
        )
        return out if ok else None

    def to_dict(self) -> dict:
        return asdict(self)


def support_z(
    image: np.ndarray, radius_px: float, *, n: int = N_SUPPORT, seed: int = 0
) -> np.ndarray:
    """(n,) sorted significance ``I / sigma_I`` at random positions of a (Y, X) frame
    (at least ``2 x radius_px`` from the edges): the support's speckle and texture where
    atoms are sparse. Deterministic for a given ``seed``."""
    img = np.asarray(image, np.float64)
    h, w = img.shape
    m = min(2.0 * radius_px, (min(h, w) - 1) / 2.0)
    rng = np.random.default_rng(seed)
    yx = np.column_stack([rng.uniform(m, h - 1 - m, n), rng.uniform(m, w - 1 - m, n)])
    i, s = integrated_intensity(img, yx, radius_px)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = i / s
    return np.sort(z[np.isfinite(z)])


def spot_evidence(
    image: np.ndarray, yx: np.ndarray, fwhm_px: float, *, radius_factor: float = 0.35
) -> pd.DataFrame:
    """Per candidate (rows of the (N, 2) ``yx``, pixels) on a (Y, X) frame whose spots
    are ``fwhm_px`` wide: ``intensity`` (above the local support, image units x px),
    ``intensity_sigma`` (1 sigma, from the local pixel noise), ``z`` (their ratio),
    ``support_quantile`` (share of random frame positions with a lower ``z``) and
    ``support_t`` (``z`` in robust units of the random positions' ``z``: median, 1.4826
    x MAD)."""
    img = np.asarray(image, np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected one (Y, X) frame, got shape {img.shape}")
    if not (np.isfinite(fwhm_px) and fwhm_px > 0):
        raise ValueError(f"spot FWHM must be a positive number of pixels, got {fwhm_px!r}")
    yx = np.asarray(yx, float).reshape(-1, 2)
    r = max(1.5, radius_factor * float(fwhm_px))
    if len(yx):
        i, s = integrated_intensity(img, yx, r)
    else:
        i = s = np.zeros(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = i / s
    null = support_z(img, r)
    q = np.searchsorted(null, z, side="right") / max(len(null), 1)
    if len(null) >= 10:
        med = float(np.median(null))
        mad = 1.4826 * float(np.median(np.abs(null - med)))
    else:
        med, mad = 0.0, 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (z - med) / max(mad, 1e-12)
    return pd.DataFrame(
        {
            "intensity": i,
            "intensity_sigma": s,
            "z": z,
            "support_quantile": np.where(np.isfinite(z), q, np.nan),
            "support_t": t,
        }
    )


def verify_spots(
    image: np.ndarray, atoms: pd.DataFrame, fwhm_px: float, rule: VerifyRule
) -> tuple[pd.DataFrame, np.ndarray]:
    """``atoms`` (with ``y, x`` in pixels of the (Y, X) ``image``) with the columns of
    :func:`spot_evidence` added, and the (N,) bool mask of those consistent with at least
    one atom above the support (``z >= rule.z_min`` and ``support_t >= rule.t_min``).
    Candidates whose intensity cannot be measured are kept."""
    ev = spot_evidence(
        image, atoms[["y", "x"]].to_numpy(float), fwhm_px, radius_factor=rule.radius_factor
    )
    out = atoms.reset_index(drop=True).copy()
    for c in ev.columns:
        out[c] = ev[c].to_numpy()
    z, t = ev["z"].to_numpy(), ev["support_t"].to_numpy()
    keep = ~np.isfinite(z) | ((z >= rule.z_min) & (t >= rule.t_min))
    return out, keep


__all__ = ["N_SUPPORT", "VerifyRule", "spot_evidence", "support_z", "verify_spots"]
