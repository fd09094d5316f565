"""Linking atoms across frames, switching events, cluster orientation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from atomlens.chem import (
    ChemParams,
    analyze,
    cluster_orientation,
    coordination_switches,
    link_atoms,
    track_series,
)
from tests.test_chem_fixtures import central_atom, honeycomb, table

PS = 0.1


def test_linking_with_drift_jitter_gaps_and_a_hopping_si():
    rng = np.random.default_rng(1)
    yx = honeycomb(10, 10)
    si = central_atom(yx)
    d = np.hypot(*(yx - yx[si]).T)
    hop_to = int(np.flatnonzero((d > 0.1) & (d < 1.5))[0])
    frames = []
    truth = []
    for t in range(8):
        pos = yx + 0.05 * t + rng.normal(0, 0.05, yx.shape)  # drift and jitter (Å)
        ids = np.arange(len(yx))
        cls = np.array(["C"] * len(yx), dtype=object)
        if t >= 4:  # the Si exchanges with a neighbouring C (ids move with the atoms)
            pos[[si, hop_to]] = pos[[hop_to, si]]
        cls[si] = "Si"
        keep = np.ones(len(yx), bool)
        if t == 2:
            keep[rng.choice(len(yx), 15, replace=False)] = False  # missed detections
            keep[si] = False  # the Si too: gap closing must bridge it
        frames.append(table(pos[keep], PS, cls[keep], frame=t))
        truth.append(ids[keep])
    atoms = pd.concat(frames, ignore_index=True)
    atom_id = np.concatenate(truth)
    track = link_atoms(atoms, PS, {"*": 1.0, "Si": 3.0}, max_gap=2)
    # every track holds one true atom, except the C that swapped places with the Si
    pure = pd.Series(atom_id).groupby(track).nunique()
    assert (pure == 1).sum() >= len(pure) - 1
    si_tracks = set(track[atoms["cls"].to_numpy() == "Si"])
    assert len(si_tracks) == 1
    # tracks per true atom: one, except the swapped C (new track at the hop)
    per_atom = pd.Series(track).groupby(atom_id).nunique()
    assert (per_atom > 1).sum() <= 1


def test_global_assignment_beats_greedy_nearest():
    # both atoms move +0.9 Å; greedy nearest would give B the new A (0.1 Å away) and
    # leave A unmatched; the global assignment links both correctly
    yx = np.array([[5.0, 5.0], [5.0, 6.0]])
    a = pd.concat([table(yx, PS, frame=0), table(yx + [0.0, 0.9], PS, frame=1)], ignore_index=True)
    track = link_atoms(a, PS, 1.3)
    assert track[2] == track[0] and track[3] == track[1]
    track = link_atoms(a, PS, 0.5)  # only B -> new A is within 0.5 Å
    assert track[2] == track[1] and len(set(track)) == 3


def test_switching_events_and_series():
    atoms = pd.DataFrame(
        {
            "frame": [0, 1, 2, 3, 4, 0, 1],
            "y": [1.0] * 7,
            "x": [1.0] * 5 + [50.0] * 2,
            "cls": ["Si"] * 5 + ["C", "C"],
            "coordination": [3, 3, 4, 4, 3, 3, 2],
            "track_id": [0, 0, 0, 0, 0, 1, 1],
            "defect_id": [0, 0, 1, 1, 2, -1, -1],
        }
    )
    sw = coordination_switches(atoms, "Si")
    assert list(sw["frame"]) == [2, 4]
    assert list(sw["from_coordination"]) == [3, 4]
    defects = pd.DataFrame({"defect_id": [0, 1, 2], "type": ["Si3", "Si4", "Si3"]})
    ser = track_series(atoms, 0, defects)
    assert list(ser["defect_type"]) == ["Si3", "Si3", "Si4", "Si4", "Si3"]


def _cluster_frame(centre, angle_deg, n, frame, r=1.2):
    th = np.radians(angle_deg + 360.0 / n * np.arange(n))
    pts = np.column_stack([centre[0] - r * np.sin(th), centre[1] + r * np.cos(th)])
    return pts, frame


def test_dimer_and_trimer_orientation_and_turns():
    rows = []
    defects = []
    angles = {2: [10, 12, 70, 71, 251], 3: [5, 5, 65, 125, 126]}
    k = 0
    for n, series in angles.items():
        centre = np.array([30.0, 30.0]) if n == 2 else np.array([80.0, 80.0])
        for t, ang in enumerate(series):
            pts, _ = _cluster_frame(centre, ang, n, t)
            ids = []
            for j, p in enumerate(pts):
                ids.append(len(rows))
                rows.append(
                    {
                        "frame": t,
                        "y": p[0] / PS,
                        "x": p[1] / PS,
                        "cls": "Si",
                        "track_id": 100 * n + j,
                    }
                )
            defects.append({"frame": t, "defect_id": k, "atoms": tuple(ids)})
            k += 1
    atoms = pd.DataFrame(rows)
    out = cluster_orientation(atoms, pd.DataFrame(defects), "Si", turn_threshold_deg=20)
    dimer = out[out["n"] == 2].sort_values("frame")
    trimer = out[out["n"] == 3].sort_values("frame")
    assert np.allclose(dimer["angle_deg"], [10, 12, 70, 71, 71], atol=1e-6)  # modulo 180
    assert list(dimer["frame"][dimer["turned"]]) == [2]
    assert np.allclose(trimer["angle_deg"], [5, 5, 65, 5, 6], atol=1e-6)  # modulo 120
    assert list(trimer["frame"][trimer["turned"]]) == [2, 3]
    assert dimer["cluster"].nunique() == 1 and trimer["cluster"].nunique() == 1


def test_analyze_adds_track_ids():
    yx = honeycomb(5, 5)
    atoms = pd.concat([table(yx + 0.02 * t, PS, frame=t) for t in range(3)], ignore_index=True)
    res = analyze(atoms, PS)
    assert res.atoms["track_id"].nunique() == len(yx)
    res = analyze(atoms, PS, ChemParams(track=False))
    assert (res.atoms["track_id"] == -1).all()


def test_track_atoms_and_analyze_track_override():
    from atomlens.chem import track_atoms

    yx = honeycomb(4, 4)
    atoms = pd.concat([table(yx + 0.03 * t, PS, frame=t) for t in range(3)], ignore_index=True)
    out = track_atoms(atoms, PS, max_displacement_A=0.5)
    assert out["track_id"].nunique() == len(yx) and "track_id" not in atoms
    assert (analyze(atoms, PS, track=False).atoms["track_id"] == -1).all()
