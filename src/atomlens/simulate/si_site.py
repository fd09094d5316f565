"""One Si dopant site in graphene with exact truth: the small scene the Si detection
tests (``tests/test_detect_dopants.py`` and the tests built on it) and the Si bond-rule
benchmark (``bench/si_bond_rules.py``) render.

A 24 Å graphene patch at a random rotation and offset gets one Si motif
(:func:`atomlens.simulate.patches.add_si_motif`) at the lattice atom nearest its
centre; :func:`render_si_site` probe-renders the middle ``size_A`` Å of it
(:func:`atomlens.simulate.training.render_sample`). One ``seed`` fixes both the
structure and the image. Positions are Å in the patch, pixels in the rendered frame.
"""

from __future__ import annotations

import numpy as np

from atomlens.simulate.patches import Patch, _grain, add_si_motif
from atomlens.simulate.probe import Probe
from atomlens.simulate.training import Imaging, render_sample

#: Edge of the graphene patch a site is built in, Å.
PATCH_A = 24.0

#: A Si site as an aberration-corrected HAADF shows it (probe tails, film, noise).
SITE_IMAGING = Imaging(
    probe=Probe(alpha_mrad=31, defocus_A=5, Cs_A=1e4, source_fwhm_A=0.5),
    si_ratio=4.5,
    snr=6.0,
    film_bg=0.5,
    offset=0.3,
)


def si_site_patch(kind: str, seed: int, patch_A: float = PATCH_A) -> Patch:
    """The :class:`Patch` (positions ``yx_A`` (N, 2) Å in a ``patch_A`` square (default
    :data:`PATCH_A`; wider for fields over ~22 Å),
    ``species`` (N,) ``"C"``/``"Si"``) of one ``kind`` Si motif (one of
    :data:`atomlens.simulate.patches.SI_MOTIFS`) built at the atom nearest the centre
    of a graphene patch whose rotation and offset are drawn from ``seed``.

    Raises ValueError when the motif does not fit there (try another seed) or ``kind``
    is not a motif."""
    rng = np.random.default_rng(seed)
    yx = _grain(patch_A, rng.uniform(0, np.pi / 3), rng.uniform(-1, 1, 2), np.eye(2)).copy()
    sp = np.full(len(yx), "C", dtype=object)
    keep = np.ones(len(yx), bool)
    site = int(np.argmin(np.hypot(*(yx - patch_A / 2).T)))
    if not add_si_motif(yx, sp, keep, site, kind, rng):
        raise ValueError(f"the {kind} motif does not fit at the centre of seed {seed}'s patch")
    return Patch(yx[keep], sp[keep].astype(str), patch_A, np.zeros((0, 2)), np.zeros(0), (kind,))


def render_si_site(
    kind: str,
    seed: int,
    pixel_size: float,
    size_A: float = 20.0,
    imaging: Imaging = SITE_IMAGING,
    patch_A: float = PATCH_A,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``size_A`` Å square frame of the site :func:`si_site_patch` builds for ``kind``
    and ``seed`` (in a ``patch_A`` Å patch), probe-rendered with ``imaging`` at
    ``pixel_size`` Å/px (noise drawn from ``seed`` too): ``(img (N, N) float32, yx (M, 2)
    px, species (M,) str)``, ``N = round(size_A / pixel_size)``, the M atoms inside the
    frame. Raises ValueError when
    the motif does not fit (:func:`si_site_patch`)."""
    n = int(round(size_A / pixel_size))
    img, _, yx, species = render_sample(
        si_site_patch(kind, seed, patch_A),
        (n, n),
        pixel_size,
        classes=("background", "C", "Si"),
        radius_A=0.35,
        rng=np.random.default_rng(seed),
        imaging=imaging,
    )
    return img, yx, np.asarray(species).astype(str)


__all__ = ["PATCH_A", "SITE_IMAGING", "render_si_site", "si_site_patch"]
