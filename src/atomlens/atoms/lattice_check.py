"""Is a hexagon of FFT maxima a crystal's, or the speckle of an amorphous ring?

A crystal's power spectrum holds its power in Bragg spots on a lattice: once two
first-order spots ``g1``, ``g2`` (60° apart) are known, every other spot is predicted
exactly, even on a distorted lattice (the third first-order spot ``g2 - g1`` and the
√3-order spots ``g1 + g2``, ``2 g2 - g1``, ``g2 - 2 g1``). An amorphous film (the carbon
support of single-atom catalysts) gives a diffuse ring instead: its spectrum is speckle,
every bin an independent draw around the ring's level, so two speckle maxima 60° apart
are easy to find on it and pass for a hexagon, but the places they predict hold nothing
but more speckle.

:func:`crystal_hexagon` therefore pairs FFT maxima near a lattice's first order (as
:func:`atomlens.atoms.lattice_reference.first_order_spots` does) and scores each pair by
its **coherence**: the geometric mean, over the four predicted spots, of the spectrum's
maximum within 0.75 FFT bins (of the unpadded crop) of the predicted place divided by the
median of the spectrum's ring through it. Speckle scores about 1-3 (a few draws of an
exponential over their median); a crystal's spots score far above (tens to thousands on
simulated graphene). Of the pairs scoring at least :data:`COHERENCE_MIN`, the most coherent
of the innermost order is the lattice (so the brighter √3 order of MoS2 is still not
taken for the first, nor a noise maximum that happens to pair with one real spot).

:data:`COHERENCE_MIN` was chosen on the simulator only (``atomlens.simulate``: graphene
with Si, holes, contamination and grain boundaries at 0.05-0.4 Å/px and 5e3-1e6 e/Å²;
heavy single atoms on amorphous carbon, bare amorphous films; see
``bench/model_choice.py``): amorphous fields scored at most 3.1, bright graphene whose
field is wide enough to judge (20 Å) at least 7.1 (one sample buried under a thick
amorphous film, its lattice invisible, 1.7). On a held-out simulator set: amorphous at
most 3.8, graphene 8.2 and up except one 20-Å field (2.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atomlens.atoms.lattice_reference import annulus_maxima, whitened_spectrum

#: coherence (see the module docstring) a hexagon of FFT maxima needs to count as a crystal
COHERENCE_MIN = 4.5
#: half-width (FFT bins of the unpadded image) around a predicted spot searched for its peak
SPOT_RADIUS_BINS = 0.75


@dataclass
class Hexagon:
    """A pair of first-order FFT spots 60° apart and how well it predicts the others.

    spots : (2, 2) reciprocal vectors ``g1, g2`` (rows, cycles/px, (y, x)).
    period_A : first-order lattice spacing (Å) at the pixel size given: 1 / mean |g|.
    coherence : geometric mean of the predicted spots' peak / ring median (see module).
    predicted : those four ratios (``g2 - g1``, ``g1 + g2``, ``2 g2 - g1``, ``g2 - 2 g1``;
        fewer when a spot lies beyond the spectrum's edge).
    """

    spots: np.ndarray
    period_A: float
    coherence: float
    predicted: tuple[float, ...]


class _PredictedSpots:
    """Peak / ring median of a (pad, pad) centred power spectrum at given places."""

    def __init__(self, spec: np.ndarray, r: np.ndarray, size: int):
        self.spec, self.r = spec, r
        self.c = spec.shape[0] // 2
        rad = SPOT_RADIUS_BINS * spec.shape[0] / size  # padded bins
        self.k = int(np.ceil(rad))
        dy, dx = np.mgrid[-self.k : self.k + 1, -self.k : self.k + 1]
        self.disk = np.hypot(dy, dx) <= rad
        self._median: dict[int, float] = {}

    def ratio(self, v: np.ndarray) -> float | None:
        """Peak near ``v`` (padded bins from the centre) over its ring's median; None
        when the disk around ``v`` leaves the spectrum."""
        rr = float(np.hypot(*v))
        if rr + self.k >= self.c - 1:
            return None
        ring = int(round(rr))
        if ring not in self._median:
            self._median[ring] = float(np.median(self.spec[np.abs(self.r - ring) < 0.5]))
        y, x = int(round(v[0])) + self.c, int(round(v[1])) + self.c
        sub = self.spec[y - self.k : y + self.k + 1, x - self.k : x + self.k + 1]
        return float(sub[self.disk].max() / max(self._median[ring], 1e-300))


def hexagon_candidates(
    image: np.ndarray,
    pixel_size_A: float,
    a_A: float,
    *,
    search: float = 0.3,
    min_rel: float = 0.3,
    pad: int = 1024,
) -> list[Hexagon]:
    """Every pair of FFT maxima that could be the first order of a hexagonal lattice with
    constant ``a_A`` (Å) in a (Y, X) ``image`` at ``pixel_size_A`` Å/px (a nominal guess:
    maxima within ``1 -/+ search`` of where it puts the first order, both reaching
    ``min_rel`` of the strongest, 60° ± 12° apart, radii within 25 %), innermost first,
    each with its coherence. Empty when there is no such pair."""
    img = np.asarray(image, np.float64)
    if img.ndim != 2 or min(img.shape) < 8:
        raise ValueError(f"expected one (Y, X) frame of at least 8 px a side, got {img.shape}")
    pad = max(pad, *img.shape)
    spec, white, r, yy, _ = whitened_spectrum(img, pad)
    k0 = pixel_size_A / (a_A * np.sqrt(3) / 2) * pad  # first-order radius, padded bins
    vec, strength = annulus_maxima(spec, white, r, yy, k0, search)
    if len(vec) < 2:
        return []
    strong = strength >= min_rel * strength[0]
    pred = _PredictedSpots(spec, r, min(img.shape))
    out: list[tuple[float, Hexagon]] = []
    for i in range(len(vec)):
        for j in range(i + 1, len(vec)):
            if not (strong[i] and strong[j]):
                continue
            ri, rj = np.linalg.norm(vec[i]), np.linalg.norm(vec[j])
            if max(ri, rj) / min(ri, rj) > 1.25:
                continue
            for sign in (1.0, -1.0):
                g1, g2 = vec[i], sign * vec[j]
                ang = np.degrees(np.arccos(np.clip(g1 @ g2 / (ri * rj), -1, 1)))
                if abs(ang - 60) >= 12:
                    continue
                vals = [pred.ratio(p) for p in (g2 - g1, g1 + g2, 2 * g2 - g1, g2 - 2 * g1)]
                vals = [v for v in vals if v is not None]
                coh = float(np.exp(np.mean(np.log(np.maximum(vals, 1e-12))))) if vals else 0.0
                g = np.stack([g1, g2]) / pad
                period = pixel_size_A / float(np.mean(np.linalg.norm(g, axis=1)))
                out.append(((ri + rj) / 2, Hexagon(g, period, coh, tuple(vals))))
    out.sort(key=lambda t: t[0])
    return [h for _, h in out]


def crystal_hexagon(
    image: np.ndarray,
    pixel_size_A: float,
    a_A: float,
    *,
    search: float = 0.3,
    min_coherence: float = COHERENCE_MIN,
) -> tuple[Hexagon | None, float | None]:
    """The first-order hexagon of a crystal with lattice constant ``a_A`` (Å) in a (Y, X)
    ``image`` at ``pixel_size_A`` Å/px (nominal; the search spans ``1 -/+ search`` of it):
    ``(hexagon, best coherence)``. The hexagon is, of the candidate pairs
    (:func:`hexagon_candidates`) whose coherence reaches ``min_coherence``, the most
    coherent within 25 % of the innermost one's radius; None when no pair reaches it (an
    amorphous ring, noise, or no lattice of that period); the best coherence of any pair
    is None when there was no pair at all."""
    cands = hexagon_candidates(image, pixel_size_A, a_A, search=search)
    if not cands:
        return None, None
    best = max(h.coherence for h in cands)
    passing = [h for h in cands if h.coherence >= min_coherence]
    if not passing:
        return None, best
    # the innermost order: a noise maximum paired with a real spot can just pass and lie
    # a little inside the real pair, so the most coherent pair of that order is taken
    # (within 25 % of the innermost radius: the next order, √3 further out, is excluded)
    order = [h for h in passing if h.period_A >= passing[0].period_A / 1.25]
    return max(order, key=lambda h: h.coherence), best


__all__ = ["COHERENCE_MIN", "Hexagon", "crystal_hexagon", "hexagon_candidates"]
