"""The STEM movie simulator: geometry, topology, rendering, evolution, persistence, CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from atomlens.geometry import planar_faces
from atomlens.simulate import (
    CC_BOND_A,
    SimConfig,
    SimulatedMovie,
    render,
    simulate_frame,
    simulate_movie,
)
from atomlens.simulate.lattice import _segments_cross

NONE = dict(n_si3=0, n_si4=0, n_vacancies=0, n_stone_wales=0, n_holes=0, contamination_fraction=0.0)
QUIET = dict(dose=None, read_noise=0.0)
STILL = dict(drift_px_per_frame=0.0, drift_noise_px=0.0, thermal_jitter_A=0.0, scan_jitter_px=0.0)


def frame_table(movie: SimulatedMovie, name: str, t: int = 0) -> pd.DataFrame:
    df = getattr(movie, name)
    return df[df["frame"] == t]


def interior(atoms: pd.DataFrame, size: int, border_px: float) -> pd.DataFrame:
    keep = atoms["y"].between(border_px, size - border_px) & atoms["x"].between(
        border_px, size - border_px
    )
    return atoms[keep]


# ------------------------------------------------------------------ lattice and defects
@pytest.fixture(scope="module")
def clean() -> SimulatedMovie:
    return simulate_frame(size=160, pixel_size=0.1, seed=3, **NONE)


def test_defaults_place_every_requested_defect() -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no room for ..." warning at the default size
        movie = simulate_frame(seed=12)
    cfg = SimConfig()
    assert movie.frames.shape == (1, cfg.size, cfg.size) and movie.pixel_size == cfg.pixel_size
    types = frame_table(movie, "defects")["type"].value_counts()
    assert types["Si3"] == cfg.n_si3 and types["Si4"] == cfg.n_si4
    assert types["SW"] == cfg.n_stone_wales and types["vacancy"] == cfg.n_vacancies
    assert types["hole"] == cfg.n_holes
    with pytest.warns(UserWarning, match="hole_min_area_A2"):
        simulate_frame(seed=12, hole_radius_A=3.0, hole_min_area_A2=500.0)


def test_clean_lattice_has_only_hexagons(clean: SimulatedMovie) -> None:
    rings = frame_table(clean, "rings")
    assert len(rings) > 30
    assert set(rings["size"]) == {6}
    inner = interior(clean.atoms, 160, 20)  # 2 Å from the frame edge
    assert len(inner) > 50
    assert (inner["ring6"] == 3).all()
    assert (inner[["ring5", "ring7", "ring8"]] == 0).all().all()
    assert (clean.atoms["coordination"] == 3).all()
    assert not clean.atoms["edge"].any()
    assert set(clean.atoms["sublattice"]) == {0, 1}
    assert len(clean.defects) == 0
    assert (clean.atoms["defect"] == "").all() and (clean.atoms["defect_id"] == -1).all()
    assert not clean.hole_mask.any() and not clean.contamination.any()


def test_bond_lengths_match_graphene(clean: SimulatedMovie) -> None:
    bonds = frame_table(clean, "bonds")
    assert abs(bonds["length_A"].mean() - 1.42) < 0.02
    assert bonds["length_A"].std() < 1e-6  # perfect lattice before jitter
    assert abs(bonds["length_obs_A"].mean() - 1.42) < 0.03  # as seen after jitter
    # the reported pixel positions give the same bonds
    pos = clean.atoms.set_index("atom_id")[["y", "x"]]
    d = np.linalg.norm(pos.loc[bonds["a"]].to_numpy() - pos.loc[bonds["b"]].to_numpy(), axis=1)
    np.testing.assert_allclose(d * clean.pixel_size, bonds["length_obs_A"], atol=1e-9)
    assert abs(CC_BOND_A - 1.42) < 0.001


@pytest.fixture(scope="module")
def defective() -> SimulatedMovie:
    return simulate_frame(
        size=320,
        pixel_size=0.1,
        seed=5,
        n_si3=3,
        n_si4=2,
        n_vacancies=1,
        n_stone_wales=0,
        n_holes=0,
        contamination_fraction=0.0,
    )


def test_bulk_bonds_stay_graphene_next_to_defects(defective: SimulatedMovie) -> None:
    atoms = defective.atoms.set_index("atom_id")
    bulk = atoms[(atoms["ring6"] == 3) & (atoms["defect"] == "") & (atoms["cls"] == "C")]
    bonds = frame_table(defective, "bonds")
    both = bonds["a"].isin(bulk.index) & bonds["b"].isin(bulk.index)
    assert abs(bonds.loc[both, "length_A"].mean() - 1.42) < 0.02
    si = atoms.index[atoms["cls"] == "Si"]
    si_bonds = bonds[bonds["a"].isin(si) | bonds["b"].isin(si)]
    assert (si_bonds["length_A"] > 1.6).all()  # Si-C bonds are longer than C-C


def test_si_coordination_matches_defect_type(defective: SimulatedMovie) -> None:
    atoms = defective.atoms
    si = atoms[atoms["cls"] == "Si"]
    assert sorted(si["defect"]) == ["Si3", "Si3", "Si3", "Si4", "Si4"]
    for _, row in si.iterrows():
        assert row["coordination"] == int(row["defect"][2:])
        bonds = frame_table(defective, "bonds")
        n = ((bonds["a"] == row["atom_id"]) | (bonds["b"] == row["atom_id"])).sum()
        assert n == row["coordination"]
    types = frame_table(defective, "defects")["type"].value_counts()
    assert types["Si3"] == 3 and types["Si4"] == 2 and types["vacancy"] == 1
    # a 4-fold Si sits in a divacancy: two 5-rings and two 6-rings around it
    si4 = si[si["defect"] == "Si4"]
    assert (si4["ring5"] == 2).all() and (si4["ring6"] == 2).all()
    assert (si4["sublattice"] == -1).all()


def test_vacancy_neighbours_are_two_fold_not_edge(defective: SimulatedMovie) -> None:
    atoms = defective.atoms
    vac = atoms[atoms["defect"] == "vacancy"]
    assert len(vac) == 3
    assert (vac["coordination"] == 2).all() and not vac["edge"].any()


def test_stone_wales_is_5_7_7_5() -> None:
    movie = simulate_frame(size=200, seed=11, **{**NONE, "n_stone_wales": 1})
    sw = frame_table(movie, "defects")
    assert list(sw["type"]) == ["SW"]
    core = [int(a) for a in sw["atoms"].iloc[0].split()]
    assert len(core) == 2
    rings = frame_table(movie, "rings")
    members = rings["atoms"].str.split().apply(lambda ids: {int(i) for i in ids})
    around = rings[members.apply(lambda s: bool(s & set(core)))]
    assert sorted(around["size"]) == [5, 5, 7, 7]
    sharing = rings[members.apply(lambda s: set(core) <= s)]  # rings holding the bond
    assert sorted(sharing["size"]) == [7, 7]
    assert sorted(rings.loc[rings["size"] != 6, "size"]) == [5, 5, 7, 7]


def test_grain_boundary_has_5_7_rings_and_is_planar() -> None:
    movie = simulate_frame(size=260, seed=2, grain_boundary=True, **NONE)
    rings = frame_table(movie, "rings")
    sizes = rings["size"].value_counts()
    assert sizes.get(5, 0) >= 2 and sizes.get(7, 0) >= 2
    atoms = movie.atoms
    assert (atoms["sublattice"] == -1).sum() > 50  # the rotated grain
    assert (atoms["defect"] == "grain_boundary").sum() >= 4
    assert "grain_boundary" in set(movie.defects["type"])
    # no two truth bonds cross (the bond graph is planar)
    pos = atoms.set_index("atom_id")[["y", "x"]]
    bonds = frame_table(movie, "bonds")
    p, q = pos.loc[bonds["a"]].to_numpy(), pos.loc[bonds["b"]].to_numpy()
    ids = bonds[["a", "b"]].to_numpy()
    for k in range(len(bonds)):
        other = ~np.isin(ids, ids[k]).any(axis=1)
        assert not _segments_cross(p[k], q[k], p[other], q[other]).any()
    assert (bonds["length_A"].between(1.2, 2.0)).all()
    # every reported ring is a face of the reported bond graph
    index = {a: k for k, a in enumerate(pos.index)}
    edges = np.array([[index[a], index[b]] for a, b in ids])
    faces = {frozenset(pos.index[list(f.nodes)]) for f in planar_faces(pos.to_numpy(), edges)}
    reported = {frozenset(int(i) for i in r.split()) for r in rings["atoms"]}
    assert reported <= faces


def test_holes_have_two_fold_edges_and_an_empty_mask() -> None:
    movie = simulate_frame(size=200, seed=4, **{**NONE, "n_holes": 1, "hole_radius_A": 4.0})
    atoms = movie.atoms
    edge = atoms[atoms["edge"]]
    assert len(edge) >= 10
    assert (edge["coordination"] == 2).all()
    assert (atoms.loc[~atoms["edge"], "coordination"] == 3).all()
    mask = movie.hole_mask[0]
    area_A2 = mask.sum() * movie.pixel_size**2
    assert 10 < area_A2 < np.pi * (4.0 + CC_BOND_A) ** 2  # pruning widens it by < 1 bond
    yx = np.rint(atoms[["y", "x"]].to_numpy()).astype(int)
    assert not mask[yx[:, 0], yx[:, 1]].any()
    assert movie.frames[0][mask].mean() < 0.2 < movie.frames[0][~mask].mean()


def test_contamination_hides_atoms() -> None:
    movie = simulate_frame(size=200, seed=8, **{**NONE, "contamination_fraction": 0.2})
    cont = movie.contamination[0]
    covered = cont > 0.9 * cont.max() * 0.5
    assert 0.05 < (cont > 0).mean() < 0.4
    yx = np.rint(movie.atoms[["y", "x"]].to_numpy()).astype(int)
    assert covered[yx[:, 0], yx[:, 1]].mean() < 0.05


# ------------------------------------------------------------------ image formation
def test_render_maxima_sit_on_atoms_and_si_is_brighter() -> None:
    rng = np.random.default_rng(0)
    yx = np.array([[20, 20], [20, 45], [45, 20], [45, 45]]) + rng.uniform(-0.5, 0.5, (4, 2))
    img = render(yx, np.array(["C", "Si", "C", "Si"]), (64, 64), 0.1, probe_fwhm_A=1.0)
    img2 = render(yx, [6, 14, 6, 14], (64, 64), 0.1, probe_fwhm_A=1.0)
    np.testing.assert_array_equal(img, img2)
    maxima = np.argwhere((img == ndimage.maximum_filter(img, size=7)) & (img > 0.5))
    assert len(maxima) == 4
    for r, c in maxima:
        assert np.linalg.norm(yx - refine(img, r, c), axis=1).min() < 0.05
    ratio = img[maxima[:, 0], maxima[:, 1]]
    si = ratio[ratio > 2].mean() / ratio[ratio < 2].mean()
    assert si == pytest.approx((14 / 6) ** 1.7, rel=0.03)


def refine(img: np.ndarray, r: int, c: int) -> np.ndarray:
    """Sub-pixel peak by a parabola through log intensities (exact for a Gaussian)."""
    ly, lx = np.log(img[r - 1 : r + 2, c]), np.log(img[r, c - 1 : c + 2])
    dy = 0.5 * (ly[0] - ly[2]) / (ly[0] - 2 * ly[1] + ly[2])
    dx = 0.5 * (lx[0] - lx[2]) / (lx[0] - 2 * lx[1] + lx[2])
    return np.array([r + dy, c + dx])


@pytest.mark.parametrize("scan_jitter", [0.0, 0.3])
def test_movie_truth_positions_are_image_maxima(scan_jitter: float) -> None:
    movie = simulate_frame(
        size=160, seed=9, **{**NONE, "n_si3": 1}, **QUIET, scan_jitter_px=scan_jitter
    )
    img = movie.frames[0]
    atoms = interior(movie.atoms, 160, 6)
    maxima = np.argwhere((img == ndimage.maximum_filter(img, size=5)) & (img > 0.3))
    assert len(maxima) >= len(atoms) > 50
    err = []
    for yx in atoms[["y", "x"]].to_numpy():
        r, c = maxima[np.argmin(np.abs(maxima - yx).max(axis=1))]
        err.append(np.linalg.norm(refine(img, r, c) - yx))
    si = atoms[atoms["cls"] == "Si"]
    c = atoms[atoms["cls"] == "C"]
    peak = lambda df: img[np.rint(df["y"]).astype(int), np.rint(df["x"]).astype(int)]  # noqa: E731
    assert peak(si).mean() / peak(c).mean() == pytest.approx((14 / 6) ** 1.7, rel=0.1)
    if scan_jitter == 0:
        assert max(err) < 0.15  # only the tails of neighbours move a peak
    else:  # a sheared spot's peak wanders from its centroid (the reported position)
        assert max(err) < 1.0 and np.median(err) < 0.25


def test_scan_jitter_moves_the_spot_centroid_to_the_reported_x() -> None:
    from atomlens.simulate.render import FWHM_TO_SIGMA, apparent_shift

    rng = np.random.default_rng(3)
    shift = rng.normal(0, 0.5, 64)
    yx = np.array([[30.3, 31.7]])
    img = render(yx, [6], (64, 64), 0.1, probe_fwhm_A=1.0, row_shift_px=shift).astype(float)
    yy, xx = np.mgrid[:64, :64]
    centroid = np.array([(img * yy).sum(), (img * xx).sum()]) / img.sum()
    expected_x = yx[0, 1] + apparent_shift(yx[:, 0], shift, 1.0 * FWHM_TO_SIGMA / 0.1)[0]
    assert centroid[1] == pytest.approx(expected_x, abs=0.01)
    assert centroid[0] == pytest.approx(yx[0, 0], abs=0.01)
    assert abs(expected_x - yx[0, 1]) > 0.02  # the jitter did move it


def test_shot_noise_follows_dose() -> None:
    flat = np.ones((128, 128))
    dose, px, eff = 2e4, 0.1, 0.05
    img = render(
        np.zeros((0, 2)),
        [],
        (128, 128),
        px,
        dose=dose,
        rng=1,
        background=flat,
        detector_efficiency=eff,
    )
    assert img.mean() == pytest.approx(1.0, abs=0.02)
    assert img.var() == pytest.approx(1.0 / (dose * px**2 * eff), rel=0.1)
    quiet = render(np.zeros((0, 2)), [], (128, 128), px, background=flat, read_noise=0.1, rng=1)
    assert quiet.std() == pytest.approx(0.1, rel=0.05)


# ------------------------------------------------------------------ evolution
@pytest.fixture(scope="module")
def evolving() -> SimulatedMovie:
    return simulate_movie(
        8,
        200,
        0.1,
        seed=1,
        n_si3=2,
        n_si4=0,
        n_vacancies=1,
        n_stone_wales=0,
        n_holes=1,
        contamination_fraction=0.0,
        si_hop_prob=1.0,
        hole_growth_rate=2.0,
        **STILL,
    )


def test_holes_grow_monotonically(evolving: SimulatedMovie) -> None:
    area = evolving.hole_mask.sum(axis=(1, 2))
    assert (np.diff(area) >= 0).all()
    assert area[-1] > area[0] > 0
    n_atoms = evolving.atoms.groupby("frame").size().to_numpy()
    assert n_atoms[-1] < n_atoms[0]


def test_atom_ids_persist_and_si_moves(evolving: SimulatedMovie) -> None:
    atoms = evolving.atoms
    assert not atoms.duplicated(["frame", "atom_id"]).any()
    first = atoms[atoms["frame"] == 0].set_index("atom_id")
    last = atoms[atoms["frame"] == 7].set_index("atom_id")
    common = first.index.intersection(last.index)
    assert len(common) > 0.8 * len(last)
    assert set(last.index) <= set(first.index)  # no drift here, and atoms never come back
    moved = (
        np.linalg.norm(
            first.loc[common, ["y", "x"]].to_numpy() - last.loc[common, ["y", "x"]].to_numpy(),
            axis=1,
        )
        * evolving.pixel_size
    )
    si_ids = first.index[first["cls"] == "Si"].intersection(common)
    assert len(si_ids) == 2
    assert moved[np.isin(common, si_ids)].max() > 1.2  # Si hopped at least one site
    assert np.median(moved) < 0.01  # the lattice stays put (no drift, no jitter here)
    # Si keeps its identity: the same ids are Si in every frame
    si_each = atoms[atoms["cls"] == "Si"].groupby("frame")["atom_id"].apply(frozenset)
    assert len(set(si_each)) == 1


def test_vacancies_cluster_and_reconstruct_into_5_7() -> None:
    movie = simulate_movie(
        8,
        160,
        0.1,
        seed=3,
        **{**NONE, "n_vacancies": 2},
        vacancy_rate=2.0,
        vacancy_cluster_prob=1.0,
        reconstruct_prob=0.5,
    )
    types = movie.defects.groupby("frame")["type"].apply(set)
    assert types[0] == {"vacancy"}
    assert any({"divacancy", "multivacancy"} & s for s in types)
    pairs = movie.defects[movie.defects["type"] == "5-7"]
    assert len(pairs) > 0
    # where a 5-7 pair first shows, its rotated atoms border a 5- or 7-ring
    first = pairs[pairs["frame"] == pairs["frame"].min()].iloc[0]
    core = {int(a) for a in first["atoms"].split()}
    rings = frame_table(movie, "rings", int(first["frame"]))
    touching = rings[rings["atoms"].str.split().apply(lambda ids: bool(core & set(map(int, ids))))]
    assert {5, 7} & set(touching["size"])
    # vacancy neighbours are 2-fold and never edge atoms
    vac = movie.atoms[movie.atoms["defect"].isin(["vacancy", "divacancy", "multivacancy"])]
    assert (vac["coordination"] <= 2).all() and not vac["edge"].any()


def test_si_migrates_to_hole_edges() -> None:
    movie = simulate_movie(
        10,
        200,
        0.1,
        seed=0,
        **{**NONE, "n_si3": 3, "n_holes": 1},
        si_hop_prob=1.0,
        si_edge_bias_A=1.5,
        hole_growth_rate=0.5,
        vacancy_rate=0.0,
    )

    def mean_distance(t: int) -> float:
        atoms = frame_table(movie, "atoms", t)
        edge = atoms.loc[atoms["edge"], ["y", "x"]].to_numpy()
        si = atoms.loc[atoms["cls"] == "Si", ["y", "x"]].to_numpy()
        assert len(si) == 3
        return float(np.linalg.norm(si[:, None] - edge[None], axis=2).min(1).mean())

    assert mean_distance(9) < 0.5 * mean_distance(0)
    last = frame_table(movie, "atoms", 9)
    assert (last.loc[last["cls"] == "Si", "edge"]).any()  # at least one reached an edge


def test_drift_and_jitter_move_the_truth() -> None:
    movie = simulate_movie(3, 128, 0.1, seed=2, drift_px_per_frame=2.0, **NONE)
    a = movie.atoms.set_index(["atom_id", "frame"])[["y", "x"]].unstack("frame").dropna()
    shift = np.hypot(a["y"][2] - a["y"][0], a["x"][2] - a["x"][0])
    assert shift.median() == pytest.approx(4.0, abs=1.0)


# ------------------------------------------------------------------ API, persistence
def test_same_seed_same_movie_other_seed_other_movie() -> None:
    kw = dict(size=96, pixel_size=0.12, n_si3=1, n_si4=0, n_vacancies=1, n_stone_wales=0, n_holes=0)
    a, b = simulate_movie(3, seed=4, **kw), simulate_movie(3, seed=4, **kw)
    np.testing.assert_array_equal(a.frames, b.frames)
    for name in ("atoms", "bonds", "rings", "defects"):
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name))
    c = simulate_movie(3, seed=5, **kw)
    assert not np.array_equal(a.frames, c.frames)


def test_save_load_round_trip(evolving: SimulatedMovie, tmp_path) -> None:
    path = evolving.save(tmp_path / "movie.npz")
    back = SimulatedMovie.load(path)
    np.testing.assert_array_equal(back.frames, evolving.frames)
    np.testing.assert_array_equal(back.hole_mask, evolving.hole_mask)
    np.testing.assert_array_equal(back.contamination, evolving.contamination)
    for name in ("atoms", "bonds", "rings", "defects"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(evolving, name))
    assert back.config == evolving.config and back.pixel_size == evolving.pixel_size
    stack = back.stack
    assert stack.pixel_size_source == "simulation" and stack.shape == evolving.frames.shape
    assert SimConfig.from_dict(back.config).si_hop_prob == 1.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"pixel_size": -0.1}, "pixel_size"),
        ({"n_si3": 1.5}, "n_si3"),
        ({"si_hop_prob": 2.0}, "si_hop_prob"),
        ({"dose": 0}, "dose"),
        ({"size": 8}, "size"),
        ({"grain_boundary": "yes"}, "grain_boundary"),
        ({"n_hole": 2}, "n_holes"),  # typo: named, with a suggestion
    ],
)
def test_invalid_config_names_the_parameter(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        simulate_movie(1, **kwargs)


def test_invalid_frames_and_config_type() -> None:
    with pytest.raises(ValueError, match="n_frames"):
        simulate_movie(0)
    with pytest.raises(ValueError, match="SimConfig"):
        simulate_movie(1, config={"size": 64})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="probe_fwhm_A"):
        SimConfig(probe_fwhm_A=0.1, pixel_size=0.1)


def test_cli_writes_calibrated_tiff_and_csv(tmp_path, capsys) -> None:
    from atomlens.cli import main
    from atomlens.io import read_stack

    out = tmp_path / "m.tif"
    code = main(
        [
            "simulate",
            "--frames",
            "2",
            "--size",
            "96",
            "--pixel-size",
            "0.12",
            "--seed",
            "1",
            "--set",
            "n_holes=0",
            "--set",
            "n_si4=0",
            "--set",
            "n_stone_wales=0",
            "--set",
            "n_vacancies=0",
            "--set",
            "n_si3=1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "2 frames" in capsys.readouterr().out
    stack = read_stack(out)
    assert stack.shape == (2, 96, 96)
    assert stack.pixel_size == pytest.approx(0.12, rel=1e-4)
    atoms = pd.read_csv(tmp_path / "m_atoms.csv")
    assert {"frame", "atom_id", "y", "x", "cls", "defect"} <= set(atoms.columns)
    assert set(atoms["frame"]) == {0, 1}
    assert (
        main(
            [
                "simulate",
                "--frames",
                "1",
                "--size",
                "96",
                "--set",
                "bogus=1",
                "--out",
                str(tmp_path / "x.npz"),
            ]
        )
        == 2
    )
    assert "bogus" in capsys.readouterr().err


def test_sample_movie_matches_sample_data() -> None:
    from pathlib import Path

    import tifffile

    from atomlens.simulate import sample_movie

    movie = sample_movie()
    assert movie.frames.shape == (10, 256, 256) and movie.pixel_size == 0.1
    assert {"Si3", "Si4", "SW", "hole"} <= set(movie.defects["type"])
    folder = Path(__file__).resolve().parents[1] / "sample_data"
    tif = folder / "graphene_si_movie.tif"
    if not tif.exists():
        pytest.skip("sample_data/ not generated (run scripts/make_sample_data.py)")
    np.testing.assert_allclose(tifffile.imread(tif), movie.frames, atol=1e-5)
    atoms = pd.read_csv(folder / "graphene_si_movie_atoms.csv", keep_default_na=False)
    assert len(atoms) == len(movie.atoms)
    np.testing.assert_allclose(atoms["x"], movie.atoms["x"], atol=1e-3)
    assert sum(p.stat().st_size for p in folder.glob("graphene_si_movie*")) < 3e6
