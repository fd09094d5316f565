"""Done-when check on a small simulated graphene movie: a content latent of the rVAE
separates edge atoms from bulk atoms (ROC AUC vs the simulator's ``edge`` truth)."""

from __future__ import annotations

import pytest

from atomlens.descriptors import extract_windows, normalize_stack
from atomlens.latent import encode_atoms, threshold_accuracy
from atomlens.models import RVAE

simulate = pytest.importorskip("atomlens.simulate")
metrics = pytest.importorskip("sklearn.metrics")


def test_content_latent_separates_edge_atoms():
    movie = simulate.simulate_movie(2, size=96, pixel_size=0.3, seed=1, n_holes=1,
                                    hole_radius_A=5.0)  # fmt: skip
    data = normalize_stack(movie.frames, "percentile")
    atoms = movie.atoms
    subs = extract_windows(data, atoms, 16)
    assert atoms["edge"].iloc[subs.index].sum() >= 10  # the check needs edge atoms
    model = RVAE(window=16, latent_dim=2, hidden=(64, 64), lr=3e-3, rot_prior=0.1, seed=0)
    model.fit(subs, epochs=15, batch_size=25, threads=1)
    table = encode_atoms(model, data, atoms).dropna(subset=["angle"])
    aucs = []
    for z in ("z1", "z2"):
        auc = metrics.roc_auc_score(table["edge"].to_numpy(), table[z].to_numpy())
        aucs.append(max(auc, 1 - auc))
    lat = table[table["sublattice"] >= 0]
    acc = threshold_accuracy(lat["angle"].to_numpy(), lat["sublattice"].to_numpy())
    print(f"edge AUC z1/z2 {aucs[0]:.3f}/{aucs[1]:.3f}; sublattice accuracy from angle {acc:.3f}")
    assert max(aucs) >= 0.9, aucs
