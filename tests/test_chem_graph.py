"""Bonds, rings, edge atoms and defects on hand-built honeycomb fixtures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.chem import ChemParams, analyze, bond_graph, dopant_environment, find_bonds
from atomlens.chem.analyze import AtomTableError
from atomlens.chem.defects import topology_type
from tests.test_chem_fixtures import (
    BOND,
    central_atom,
    central_bond,
    honeycomb,
    si_divacancy,
    si_substitution,
    stone_wales,
    table,
)

PS = 0.1  # Å per pixel


def brute_force_hexagons(yx: np.ndarray) -> int:
    """Hexagon count by an independent route: candidate centres one bond away from
    every atom, kept when exactly six atoms sit one bond length from them."""
    from scipy.spatial import cKDTree

    tree = cKDTree(yx)
    cands = []
    for ang in np.radians([30, 90, 150, 210, 270, 330]):
        cands.append(yx + BOND * np.array([np.sin(ang), np.cos(ang)]))
    cands = np.unique(np.round(np.vstack(cands), 3), axis=0)
    cands = cands[tree.query(cands)[0] > 0.5]  # not on an atom
    cands = np.unique(np.round(cands, 2), axis=0)
    counts = np.array([len(tree.query_ball_point(c, BOND + 0.05)) for c in cands])
    return int((counts == 6).sum())


def test_clean_lattice_rings_and_coordination():
    yx = honeycomb(9, 8)
    res = analyze(table(yx, PS), PS)
    assert set(res.rings["size"]) == {6}
    assert len(res.rings) == brute_force_hexagons(yx)
    interior = ~res.atoms["edge"]
    assert (res.atoms.loc[interior, "coordination"] == 3).all()
    assert (res.atoms.loc[interior, "ring6"] == 3).all()
    assert res.atoms[["ring5", "ring7", "ring8"]].to_numpy().sum() == 0
    assert res.atoms["edge"].sum() > 0  # the patch border
    assert len(res.defects) == 0 and (res.atoms["defect_id"] == -1).all()
    # bond lengths in Å and pixels agree with the construction
    assert np.allclose(res.bonds["length_A"], BOND, atol=1e-6)
    assert np.allclose(res.bonds["length_px"], BOND / PS, atol=1e-4)


def test_ring_centres_are_hollow_sites():
    yx = honeycomb(6, 6)
    res = analyze(table(yx, PS), PS)
    centres = res.rings[["y", "x"]].to_numpy() * PS
    d = np.hypot(*(centres[:, None, :] - yx[None]).transpose(2, 0, 1))
    assert np.allclose(np.sort(d, axis=1)[:, :6], BOND, atol=1e-6)  # 6 atoms at 1.42 Å


def test_stone_wales_is_5775():
    yx = stone_wales(honeycomb(9, 9))
    res = analyze(table(yx, PS), PS)
    hist = res.ring_histogram()
    assert hist[5] == 2 and hist[7] == 2
    assert list(res.defects["type"]) == ["SW"]
    i, j = central_bond(honeycomb(9, 9))
    d = res.defects.iloc[0]
    assert {i, j} <= set(d["atoms"])
    assert res.atoms.loc[i, "ring7"] == 2 and res.atoms.loc[i, "ring5"] == 1


def test_si_substitution_is_three_fold_with_geometry():
    yx, cls, i = si_substitution(honeycomb(8, 8), push_A=0.15)
    res = analyze(table(yx, PS, cls), PS)
    assert res.atoms.loc[i, "coordination"] == 3
    dop = res.dopants.set_index("atom").loc[i]
    assert dop["fold"] == "3-fold"
    assert np.allclose(dop["bond_lengths_pm"], (BOND + 0.15) * 100, atol=0.01)
    assert np.allclose(dop["angles_deg"], 120.0, atol=1e-6)
    assert list(res.defects["type"]) == ["Si3"]
    assert res.defects.iloc[0]["n_atoms"] == 4  # Si and its three C
    assert res.atoms.loc[i, "defect_type"] == "Si3"


def test_si_in_divacancy_is_four_fold():
    yx, cls = si_divacancy(honeycomb(8, 8))
    res = analyze(table(yx, PS, cls), PS)
    si = int(np.flatnonzero(np.array(cls) == "Si")[0])
    assert res.atoms.loc[si, "coordination"] == 4
    dop = res.dopants.iloc[0]
    assert dop["fold"] == "4-fold"
    assert sum(dop["angles_deg"]) == pytest.approx(360.0)
    assert len(dop["angles_deg"]) == 4
    assert res.defects.iloc[0]["type"] == "Si4"
    assert res.atoms.loc[si, "ring5"] == 2 and res.atoms.loc[si, "ring6"] == 2


def test_single_vacancy_is_a_12_member_face_not_an_edge():
    yx = honeycomb(8, 8)
    i = central_atom(yx)
    res = analyze(table(np.delete(yx, i, axis=0), PS), PS)
    assert list(res.faces["size"]) == [12] and list(res.faces["kind"]) == ["vacancy"]
    vac = res.defects[res.defects["type"] == "vacancy"]
    assert len(vac) == 1 and vac.iloc[0]["n_atoms"] == 12
    members = list(vac.iloc[0]["atoms"])
    assert not res.atoms.loc[members, "edge"].any()
    assert (res.atoms.loc[members, "coordination"] == 2).sum() == 3


def test_large_missing_patch_is_a_hole_with_edge_atoms():
    yx = honeycomb(12, 12)
    c = yx.mean(axis=0)
    keep = np.hypot(*(yx - c).T) > 3.5
    res = analyze(table(yx[keep], PS), PS)
    holes = res.defects[res.defects["type"] == "hole"]
    assert len(holes) == 1
    members = list(holes.iloc[0]["atoms"])
    assert res.atoms.loc[members, "edge"].all()


def test_si_next_to_vacancy_and_si_dimer():
    yx = honeycomb(9, 9)
    i = central_atom(yx)
    d = np.hypot(*(yx - yx[i]).T)
    nb = int(np.flatnonzero((d > 0.1) & (d < 1.5))[0])
    cls = ["C"] * len(yx)
    cls[i] = "Si"
    res = analyze(table(np.delete(yx, nb, axis=0), PS, np.delete(np.array(cls), nb)), PS)
    assert res.defects["type"].str.startswith("Si2+vacancy").any()
    # dimer: two neighbouring Si
    cls = ["C"] * len(yx)
    cls[i] = cls[nb] = "Si"
    res = analyze(table(yx, PS, cls), PS)
    assert list(res.defects["type"]) == ["Si_dimer"]
    assert res.defects.iloc[0]["dopant_coordination"] == "3,3"


def test_bond_limits_per_species_pair_and_coordination_trim():
    # C with four neighbours: the longest bond (relative) is dropped
    pts = np.array([[0, 0], [1.40, 0], [-1.40, 0], [0, 1.40], [0, -1.60]], float) + 5
    res = find_bonds(table(pts, PS), PS)
    assert len(res) == 3 and 4 not in set(res["b"])
    # 2.0 Å: bonded for Si-C, not for C-C
    two = np.array([[5.0, 5.0], [5.0, 7.0]])
    assert len(find_bonds(table(two, PS, ["Si", "C"]), PS)) == 1
    assert len(find_bonds(table(two, PS, ["C", "C"]), PS)) == 0
    assert len(find_bonds(table(two, PS, ["C", "C"]), PS, max_bond_A={"C-C": 2.1})) == 1


def test_relative_trimming_keeps_short_si_bond():
    # a C bonded to Si (1.6 Å, short for Si-C) and three C (1.42, 1.42, 1.5 Å)
    c0 = np.array([5.0, 5.0])
    pts = [c0]
    for ang, r in ((0, 1.6), (90, 1.42), (180, 1.42), (270, 1.5)):
        a = np.radians(ang)
        pts.append(c0 + r * np.array([np.sin(a), np.cos(a)]))
    res = find_bonds(table(np.array(pts), PS, ["C", "Si", "C", "C", "C"]), PS)
    partners = set(res.loc[res["a"] == 0, "b"])
    assert 1 in partners and 4 not in partners


def test_frames_do_not_bond_to_each_other_and_graph():
    yx = honeycomb(5, 5)
    t = pd.concat([table(yx, PS, frame=0), table(yx, PS, frame=3)], ignore_index=True)
    res = analyze(t, PS, ChemParams(track=False))
    per = res.bonds.groupby("frame").size()
    assert per[0] == per[3]
    fa = res.atoms["frame"].to_numpy()
    assert (fa[res.bonds["a"]] == fa[res.bonds["b"]]).all()
    g = bond_graph(res.atoms, res.bonds, 3)
    assert g.number_of_nodes() == len(yx) and g.number_of_edges() == per[3]
    assert min(g.nodes) == len(yx)  # node ids are rows of the full table
    env = dopant_environment(g, len(yx) + central_atom(yx), 3.0, PS)
    assert 10 < env.number_of_nodes() < len(yx)


def test_bad_input_names_the_fix():
    with pytest.raises(AtomTableError, match="cls"):
        analyze(pd.DataFrame({"frame": [0], "y": [1.0], "x": [1.0]}), PS)
    with pytest.raises(AtomTableError, match="pixel_size"):
        analyze(table(honeycomb(2, 2), PS), 0.0)


def test_topology_names():
    assert topology_type([7, 5, 7, 5]) == "SW"
    assert topology_type([5, 7]) == "5-7"
    assert topology_type([5, 9]) == "vacancy"
    assert topology_type([5, 5, 8]) == "divacancy"
    assert topology_type([5, 7] * 4) == "grain_boundary"
    assert topology_type([4]) == "other"
    assert topology_type([5, 5, 7, 7, 12]) == "SW+vacancy"
    assert topology_type([5, 7, 5, 5, 8]) == "divacancy+5-7"
    assert topology_type([13, 15]) == "multivacancy"


def test_50_frames_of_2000_atoms_keep_every_track():
    """A long, dense movie: every atom keeps one track (bench/chem_real.py times chemistry)."""
    yx = honeycomb(32, 32)  # 2048 atoms
    rng = np.random.default_rng(0)
    frames = [table(yx + rng.normal(0, 0.03, yx.shape), PS, frame=t) for t in range(50)]
    atoms = pd.concat(frames, ignore_index=True)
    res = analyze(atoms, PS)
    assert len(res.atoms) == 50 * len(yx)
    assert res.atoms["track_id"].nunique() == len(yx)
    assert (res.atoms.groupby("track_id")["frame"].nunique() == 50).all()


def test_min_angle_drops_a_crowded_duplicate_neighbour():
    c0 = np.array([6.0, 6.0])
    pts = [c0]
    for ang, r in ((90, 1.55), (210, 1.55), (330, 1.55), (250, 1.75)):  # 40° from 210°
        a = np.radians(ang)
        pts.append(c0 + r * np.array([np.sin(a), np.cos(a)]))
    atoms = table(np.array(pts), PS, ["Si", "C", "C", "C", "C"])
    res = find_bonds(atoms, PS)
    assert set(res.loc[res["a"] == 0, "b"]) == {1, 2, 3}
    # switched off, the Si keeps all four (its cap is 4)
    assert len(find_bonds(atoms, PS, min_angle_deg=0).query("a == 0")) == 4
