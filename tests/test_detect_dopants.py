"""The shipped graphene model on probe-rendered Si1C3 / Si1C4 sites: the C beside a
bright Si (on its probe halo) must be found, so the Si's coordination comes out right,
at pixel sizes 0.05-0.2 Å/px. Held-out seeds (never used in training: training draws
from seed 0's stream)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.atoms import detect
from atomlens.chem.bonds import coordination, find_bonds
from atomlens.simulate import Probe
from atomlens.simulate.patches import Patch, _grain, add_si_motif
from atomlens.simulate.training import Imaging, render_sample


def _site(kind: str, seed: int) -> Patch:
    rng = np.random.default_rng(seed)
    yx = _grain(24.0, rng.uniform(0, np.pi / 3), rng.uniform(-1, 1, 2), np.eye(2)).copy()
    sp = np.full(len(yx), "C", dtype=object)
    keep = np.ones(len(yx), bool)
    site = int(np.argmin(np.hypot(*(yx - 12.0).T)))
    assert add_si_motif(yx, sp, keep, site, kind, rng)
    return Patch(yx[keep], sp[keep].astype(str), 24.0, np.zeros((0, 2)), np.zeros(0), (kind,))


#: A Si site as an aberration-corrected HAADF shows it (probe tails, film, noise).
SITE_IMAGING = Imaging(
    probe=Probe(alpha_mrad=31, defocus_A=5, Cs_A=1e4, source_fwhm_A=0.5),
    si_ratio=4.5,
    snr=6.0,
    film_bg=0.5,
    offset=0.3,
)


def render_site(kind: str, seed: int, pixel_size: float, size_A: float, imaging: Imaging):
    """A ``size_A`` Å frame of one probe-rendered ``kind`` site (seed ``seed``) at
    ``pixel_size`` Å/px: ``(img, yx px, species)``."""
    n = int(round(size_A / pixel_size))
    img, _, yx, sp = render_sample(
        _site(kind, seed),
        (n, n),
        pixel_size,
        classes=("background", "C", "Si"),
        radius_A=0.35,
        rng=np.random.default_rng(seed),
        imaging=imaging,
    )
    return img, yx, np.asarray(sp).astype(str)


@pytest.mark.parametrize("pixel_size", [0.05, 0.1, 0.16, 0.2])
@pytest.mark.parametrize("kind,want", [("Si1C3", 3), ("Si1C4", 4)])
def test_si_coordination_on_probe_rendered_sites(kind, want, pixel_size):
    hits = 0
    for seed in (101, 102, 103):
        img, yx, sp = render_site(kind, seed, pixel_size, 20.0, SITE_IMAGING)
        atoms = detect(img, pixel_size=pixel_size).atoms.reset_index(drop=True)
        si_true = yx[sp == "Si"][0]
        d = np.hypot(*(atoms[["y", "x"]].to_numpy() - si_true).T)
        j = int(np.argmin(d))
        if d[j] * pixel_size > 0.5 or atoms["cls"].iloc[j] != "Si":
            continue
        tab = pd.DataFrame(
            {"frame": 0, "y": atoms["y"], "x": atoms["x"], "cls": atoms["cls"].astype(str)}
        )
        hits += int(coordination(len(tab), find_bonds(tab, pixel_size))[j] == want)
    assert hits == 3, f"{kind} at {pixel_size} Å/px: coordination right in {hits}/3 frames"
