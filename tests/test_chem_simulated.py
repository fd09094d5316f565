"""Chemistry against the simulator's exact ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

simulate = pytest.importorskip("atomlens.simulate")

from atomlens.chem import analyze  # noqa: E402

COLS = ["frame", "y", "x", "cls", "prob"]


def _complete(movie) -> np.ndarray:
    """(N,) bool: atoms whose every true bond partner is in the atom table."""
    atoms = movie.atoms.reset_index(drop=True)
    b = movie.bonds
    key = pd.concat(
        [
            b[["frame", "a"]].set_axis(["frame", "id"], axis=1),
            b[["frame", "b"]].set_axis(["frame", "id"], axis=1),
        ]
    )
    seen = key.groupby(["frame", "id"]).size()
    idx = pd.MultiIndex.from_arrays([atoms["frame"], atoms["atom_id"]])
    return seen.reindex(idx, fill_value=0).to_numpy() == atoms["coordination"].to_numpy()


def _ring_sets(rings: pd.DataFrame, ids_of_row=None) -> set:
    out = set()
    for f, atoms in zip(rings["frame"], rings["atoms"]):
        members = atoms.split() if isinstance(atoms, str) else atoms
        members = [int(m) for m in members]
        if ids_of_row is not None:
            members = [int(ids_of_row[m]) for m in members]
        out.add((int(f), frozenset(members)))
    return out


@pytest.fixture(scope="module")
def clean():
    return simulate.simulate_movie(
        2,
        size=192,
        pixel_size=0.1,
        seed=5,
        n_si3=0,
        n_si4=0,
        n_vacancies=0,
        n_stone_wales=0,
        n_holes=0,
        contamination_fraction=0.0,
        vacancy_rate=0.0,
        reconstruct_prob=0.0,
    )


@pytest.fixture(scope="module")
def defective():
    return simulate.simulate_movie(
        6,
        size=320,
        pixel_size=0.1,
        seed=11,
        n_si3=5,
        n_si4=3,
        n_vacancies=2,
        n_stone_wales=3,
        n_holes=1,
        contamination_fraction=0.0,
        si_hop_prob=0.3,
        min_defect_separation_A=5.0,
    )


def test_clean_lattice_rings_exact(clean):
    res = analyze(clean.atoms[COLS], clean.pixel_size)
    ids = clean.atoms["atom_id"].to_numpy()
    shown = {(int(f), int(i)) for f, i in zip(clean.atoms["frame"], ids)}
    truth = {(f, m) for f, m in _ring_sets(clean.rings) if all((f, i) in shown for i in m)}
    mine = _ring_sets(res.rings, ids)
    assert mine == truth
    assert set(res.rings["size"]) == {6}
    ok = _complete(clean) & _away_from_border(clean.atoms, 3.0 / clean.pixel_size, 192)
    for col in ("coordination", "ring5", "ring6", "ring7", "ring8"):
        assert (res.atoms[col].to_numpy()[ok] == clean.atoms[col].to_numpy()[ok]).all(), col


def test_defective_movie_against_truth(defective):
    mv = defective
    res = analyze(mv.atoms[COLS], mv.pixel_size)
    truth = mv.atoms.reset_index(drop=True)
    ids = truth["atom_id"].to_numpy()
    ok = _complete(mv)
    # coordination of every atom whose neighbours are all in view
    assert (res.atoms["coordination"].to_numpy()[ok] == truth["coordination"].to_numpy()[ok]).all()
    # Si coordination: >= 99 % of Si (all Si whose neighbours are in view)
    si = (truth["cls"] == "Si").to_numpy() & ok
    assert si.sum() >= 20
    acc = (res.atoms["coordination"].to_numpy()[si] == truth["coordination"].to_numpy()[si]).mean()
    assert acc >= 0.99
    # ring counts of atoms away from the frame border
    for col in ("ring5", "ring6", "ring7", "ring8"):
        inner = ok & _away_from_border(truth, 6.0 / mv.pixel_size, mv.frames.shape[-1])
        assert (res.atoms[col].to_numpy()[inner] == truth[col].to_numpy()[inner]).all(), col
    # Stone-Wales recall: each true SW overlaps one of our defects typed SW
    sw = mv.defects[mv.defects["type"] == "SW"]
    assert len(sw) >= 6
    found = 0
    for row in sw.itertuples(index=False):
        members = {int(m) for m in row.atoms.split()}
        rows_f = res.atoms.index[res.atoms["frame"] == row.frame]
        hit = res.defects[
            (res.defects["frame"] == row.frame) & res.defects["type"].str.contains("SW")
        ]
        found += any(members & {int(ids[r]) for r in a if r in rows_f} for a in hit["atoms"])
    assert found / len(sw) >= 0.95
    # Si identity along tracks: consecutive detections of one track are one true atom
    a = res.atoms.assign(atom_id=ids)
    s = a[a["cls"] == "Si"].sort_values(["track_id", "frame"])
    same_track = s["track_id"].to_numpy()[1:] == s["track_id"].to_numpy()[:-1]
    switch = same_track & (s["atom_id"].to_numpy()[1:] != s["atom_id"].to_numpy()[:-1])
    assert same_track.sum() >= 20
    assert switch.sum() / same_track.sum() <= 0.01
    # and each true Si mostly keeps one track id
    per_si = s.groupby("atom_id")["track_id"].nunique()
    assert (per_si == 1).mean() >= 0.8


def _away_from_border(atoms: pd.DataFrame, margin_px: float, size: int) -> np.ndarray:
    y, x = atoms["y"].to_numpy(), atoms["x"].to_numpy()
    return (y > margin_px) & (y < size - margin_px) & (x > margin_px) & (x < size - margin_px)
