"""Done-when check on a small simulated graphene movie: with the settings of
docs/rvae.md ("Sublattices in the angle") the rVAE's angle latent separates the two
sublattices (threshold accuracy against the simulator's ``sublattice`` column), while the
default prior (full KL, s = 0.1 rad) keeps the angle at 0."""

from __future__ import annotations

import pytest

from atomlens.descriptors import extract_windows, normalize_stack
from atomlens.latent import encode_atoms, threshold_accuracy
from atomlens.models import RVAE

simulate = pytest.importorskip("atomlens.simulate")

#: the angle settings of docs/rvae.md and bench/rvae.py (ANGLE_SETTINGS)
ANGLE = dict(latent_dim=0, translation=False, loss="bce", rot_prior=3.14, lr=3e-3)
EPOCHS = 100


@pytest.mark.slow  # ~30 s on 2 cores
def test_angle_latent_splits_the_sublattices():
    movie = simulate.simulate_movie(2, size=96, pixel_size=0.3, seed=1, n_holes=1,
                                    hole_radius_A=5.0)  # fmt: skip
    data = normalize_stack(movie.frames, "percentile")
    subs = extract_windows(data, movie.atoms, 16)
    model = RVAE(window=16, hidden=(64, 64), seed=0, **ANGLE)
    model.fit(subs, epochs=EPOCHS, batch_size=25, threads=1, device="cpu")
    table = encode_atoms(model, data, movie.atoms).dropna(subset=["angle"])
    lat = table[table["sublattice"] >= 0]
    assert lat["sublattice"].nunique() == 2 and len(lat) >= 200
    acc = threshold_accuracy(lat["angle"].to_numpy(), lat["sublattice"].to_numpy())
    means = lat.groupby("sublattice")["angle"].mean()
    print(f"sublattice accuracy from angle {acc:.3f}; angle means {means.round(4).tolist()}")
    assert acc >= 0.9, acc
