"""The Si motif hypothesis test (atoms/si_motif.py) against simulator truth: probe-rendered
Si1C3 / Si1C4 sites (held-out seeds), the known geometry, and the table edits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.atoms.si_motif import (
    MotifSettings,
    _lattice,
    apply_motifs,
    classify_site,
    lattice_angle,
    pixel_noise,
)
from tests.test_detect_dopants import SITE_IMAGING, render_site


def _site(kind: str, seed: int, pixel_size: float):
    """A 16 Å probe-rendered site (tails, film, noise): ``(img, yx px, species, si row,
    first-shell rows)``."""
    img, yx, sp = render_site(kind, seed, pixel_size, 16.0, SITE_IMAGING)
    si = int(np.flatnonzero(sp == "Si")[0])
    d = np.hypot(*(yx - yx[si]).T) * pixel_size
    return img, yx, sp, si, np.flatnonzero((sp == "C") & (d < 2.2))


def test_motif_geometry_is_graphene_s():
    """Si1C3: 3 C at 120°; Si1C4 (divacancy): 4 C at 82°/98° (±41° from the removed
    pair's axis); the atoms beyond sit on the lattice (>= 2.4 Å from the Si)."""
    d3, o3 = _lattice("Si1C3", 3.6)
    assert np.allclose(np.diff(np.r_[d3, d3[0] + 360]), 120.0)
    d4, o4 = _lattice("Si1C4", 3.6)
    gaps = np.sort(np.diff(np.r_[d4, d4[0] + 360]))
    assert np.allclose(gaps, [81.79, 81.79, 98.21, 98.21], atol=0.05)
    assert np.hypot(*o3.T).min() > 2.4 and np.hypot(*o4.T).min() > 2.4


@pytest.mark.parametrize("pixel_size", [0.05, 0.1, 0.15, 0.2])
@pytest.mark.parametrize("kind", ["Si1C3", "Si1C4"])
def test_motif_is_recognised_and_its_c_placed_on_simulated_sites(kind, pixel_size):
    """The winning motif is the true one, and its fitted first shell lies within 0.25 Å
    of every true C bonded to the Si (held-out seed 401; measured: all 32 of seeds
    401-404 x these pixel sizes right, largest error 0.12 Å)."""
    img, yx, sp, si, nb = _site(kind, 401, pixel_size)
    dec = classify_site(img, yx, sp, si, pixel_size)
    assert dec.kind == kind, f"{kind} at {pixel_size} Å/px called {dec.kind} ({dec.delta_bic:.1f})"
    shell = dec.fits[kind].shell_yx
    err = np.hypot(*(shell[:, None] - yx[nb][None]).transpose(2, 0, 1)).min(0) * pixel_size
    assert err.max() <= 0.25, err


def _table(yx: np.ndarray, sp: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"frame": 0, "y": yx[:, 0], "x": yx[:, 1], "cls": sp, "prob": 1.0})


@pytest.mark.parametrize("kind", ["Si1C3", "Si1C4"])
def test_count_mode_adds_a_missing_c_and_drops_a_false_one(kind):
    """Truth minus one bonded C: it is added back within 0.5 Å; truth plus a false C in
    the Si's halo between two bonds: it is dropped; the complete truth is unchanged."""
    ps = 0.1
    img, yx, sp, si, nb = _site(kind, 402, ps)
    full, _ = apply_motifs(_table(yx, sp), img, ps)
    assert len(full) == len(yx)
    keep = np.ones(len(yx), bool)
    keep[nb[0]] = False
    out, _ = apply_motifs(_table(yx[keep], sp[keep]), img, ps)
    new = out[["y", "x"]].to_numpy()[keep.sum() :]
    assert len(new) == 1 and np.hypot(*(new[0] - yx[nb[0]])) * ps <= 0.5
    # a false C at 1.7 Å half-way (in angle) between the two closest bonds
    ang = np.sort(np.arctan2(*(yx[nb] - yx[si]).T))
    mid = 0.5 * (ang[0] + ang[1])
    fake = yx[si] + 1.7 / ps * np.array([np.sin(mid), np.cos(mid)])
    out, _ = apply_motifs(_table(np.vstack([yx, fake]), np.append(sp, "C")), img, ps)
    assert len(out) == len(yx)
    assert np.hypot(*(out[["y", "x"]].to_numpy() - fake).T).min() * ps > 0.5


def test_bad_mode_is_refused_and_noise_is_measured():
    with pytest.raises(ValueError, match="mode must be"):
        apply_motifs(
            _table(np.zeros((1, 2)), np.array(["Si"])),
            np.zeros((8, 8)),
            0.1,
            MotifSettings(mode="nope"),
        )
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    img = np.sin(yy / 9.0) + np.cos(xx / 7.0) + rng.normal(0, 0.2, (128, 128))
    assert abs(pixel_noise(img) - 0.2) < 0.02


def test_lattice_angle_of_a_rotated_honeycomb():
    """The bond direction (mod 60°) of a honeycomb rotated by 17° (0.1 Å/px), with a Si
    whose neighbourhood is left out, comes back within 0.5°."""
    b, ps, rot = 1.42, 0.1, np.deg2rad(17.0)
    a1, a2 = b * np.array([1.5, np.sqrt(3) / 2]), b * np.array([1.5, -np.sqrt(3) / 2])
    n = np.arange(-6, 7)
    A = (n[:, None, None] * a1 + n[None, :, None] * a2).reshape(-1, 2)
    xy = np.vstack([A, A + [b, 0.0]])
    xy = xy @ np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]]).T
    yx = xy[:, ::-1] / ps + 100.0
    cls = np.full(len(yx), "C")
    cls[np.argmin(np.hypot(*(yx - 100.0).T))] = "Si"
    assert abs(lattice_angle(yx, cls, ps) - 17.0) < 0.5
