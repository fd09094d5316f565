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
from atomlens.simulate.si_site import SITE_IMAGING, render_si_site, si_site_patch

# the Si site scene, under the names the other Si tests import from here
_site = si_site_patch  # (kind, seed) -> Patch
render_site = render_si_site  # (kind, seed, pixel_size, size_A, imaging) -> img, yx, species


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
