"""Frame registration against the simulator's truth and on the real Si movie."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.chem import link_atoms
from atomlens.chem.registration import (
    DriftEstimator,
    RegistrationError,
    apply_drift,
    estimate_drift,
    plot_drift,
)
from atomlens.simulate import simulate_movie


def truth_drift(movie) -> np.ndarray:
    """(T, 2) px: median displacement since frame 0 of the atoms present in both
    frames (by ``atom_id``), i.e. the drift the image shows (scan and thermal jitter
    average out)."""
    a = movie.atoms
    first = a[a["frame"] == 0].set_index("atom_id")[["y", "x"]]
    out = []
    for t in range(movie.n_frames):
        cur = a[a["frame"] == t].set_index("atom_id")[["y", "x"]]
        common = first.index.intersection(cur.index)
        out.append(np.median(cur.loc[common].to_numpy() - first.loc[common].to_numpy(), axis=0))
    return np.array(out)


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum(axis=1).mean()))


@pytest.fixture(scope="module")
def drifting_movie():
    return simulate_movie(8, size=512, seed=2, drift_px_per_frame=0.7)


def test_drift_matches_simulator_truth_within_a_tenth_of_a_pixel(drifting_movie):
    drift = estimate_drift(drifting_movie.frames)
    truth = truth_drift(drifting_movie)
    assert drift.shape == (8, 2) and np.allclose(drift[0], 0)
    assert np.abs(truth).max() > 3  # the movie really drifts
    assert rms(drift, truth) < 0.1


def test_drift_larger_than_a_lattice_period_does_not_alias():
    # 2 px/frame for 30 frames at 0.1 Å/px: ~60 px, more than two lattice periods (24.6 px)
    movie = simulate_movie(30, size=256, seed=3, drift_px_per_frame=2.0, si_hop_prob=0.0)
    est = DriftEstimator()
    for frame in movie.frames:
        est.add(frame)
    truth = truth_drift(movie)
    assert np.abs(truth).max() > 40
    assert rms(est.drift, truth) < 0.3  # small 256² frames: ~0.2 px; no 24 px jumps
    assert np.abs(est.drift - truth).max() < 1.0


def test_apply_drift_registers_atoms_and_tracking_uses_it(drifting_movie):
    m = drifting_movie
    drift = truth_drift(m)
    atoms = m.atoms[["frame", "atom_id", "y", "x", "cls"]]
    reg = apply_drift(atoms, drift)
    assert reg.attrs["drift_px"] == drift.tolist()
    assert {"y_reg", "x_reg"} <= set(reg) and np.allclose(reg["y"], atoms["y"])
    spread = reg.groupby("atom_id")[["y_reg", "x_reg"]].std().max(axis=1)
    raw = atoms.groupby("atom_id")[["y", "x"]].std().max(axis=1)
    # thermal + scan jitter only once the drift (0.7 px/frame) is removed; a few atoms
    # really move (Si exchanges, relaxation near new vacancies)
    assert spread.median() < 0.4 < raw.median()
    # a tight linking radius (0.25 Å = 2.5 px): drift 0.7 px/frame accumulates past it
    # with gaps only after registration is it one track per atom
    tight = {"*": 0.25}
    per_atom_raw = (
        pd.Series(link_atoms(atoms, m.pixel_size, tight, max_gap=0))
        .groupby(atoms["atom_id"].to_numpy())
        .nunique()
    )
    per_atom_reg = (
        pd.Series(link_atoms(reg, m.pixel_size, tight, max_gap=0))
        .groupby(atoms["atom_id"].to_numpy())
        .nunique()
    )
    assert (per_atom_reg == 1).mean() > 0.97
    assert (per_atom_reg == 1).mean() > (per_atom_raw == 1).mean()


def test_bad_input_names_the_problem():
    with pytest.raises(RegistrationError, match="2-D"):
        DriftEstimator().add(np.zeros((2, 32, 32)))
    est = DriftEstimator()
    est.add(np.random.default_rng(0).random((32, 32)))
    with pytest.raises(RegistrationError, match="one size"):
        est.add(np.zeros((40, 40)))
    with pytest.raises(RegistrationError, match=r"\(T, 2\)"):
        apply_drift(pd.DataFrame({"frame": [0], "y": [1.0], "x": [1.0]}), np.zeros(3))
    with pytest.raises(RegistrationError, match="same movie"):
        apply_drift(pd.DataFrame({"frame": [5], "y": [1.0], "x": [1.0]}), np.zeros((2, 2)))


def test_drift_plot_is_a_figure_without_pyplot():
    fig = plot_drift(np.cumsum(np.ones((5, 2)), axis=0), pixel_size=0.1, truth=np.zeros((5, 2)))
    assert len(fig.axes) == 2 and "Å" in fig.axes[0].get_ylabel()
    assert fig.canvas is not None  # a bare Figure: savefig works with no backend chosen


def test_real_si_movie_registered_si_hops_by_lattice_sites_on_one_track(shared_data):
    from tests.conftest import real_file

    z = np.load(real_file(shared_data, "real/graphene_si1c3_movie.npz"))
    px = 0.0763  # Å/px from the lattice (FFT) of these frames; the nominal 0.078 is 2 % off
    atoms = pd.DataFrame(
        {"frame": z["atom_frame"], "y": z["atom_row"], "x": z["atom_col"], "cls": z["atom_element"]}
    )
    drift = estimate_drift(z["frames"])
    reg = apply_drift(atoms, drift)
    si = reg[reg["cls"] == "Si"].sort_values("frame")
    lattice_A = np.array([0.0, 1.42, 2.46, 2.84])  # graphene site-to-site distances

    def on_lattice(cols):
        step = np.hypot(*np.diff(si[cols].to_numpy(), axis=0).T) * px
        return (np.abs(step[:, None] - lattice_A[None]).min(axis=1) < 0.2).mean()

    # the authors' Si positions: registered, every frame-to-frame step of the Si is a
    # whole number of lattice sites (it hops); unregistered, the drift blurs that
    assert on_lattice(["y_reg", "x_reg"]) >= 0.95 > 0.7 > on_lattice(["y", "x"])
    # one unbroken Si track over all 48 frames (Si may hop up to 3 Å per frame)
    disp = {"*": 1.0, "Si": 3.0}
    reg_tracks = link_atoms(reg, px, disp, max_gap=0)
    raw_tracks = link_atoms(atoms, px, disp, max_gap=0)
    si_rows = (reg["cls"] == "Si").to_numpy()
    assert len(set(reg_tracks[si_rows])) == 1 < len(set(raw_tracks[si_rows]))
