"""Chemical-space maps on synthetic decoded-like images: honeycomb patches with a
Stone-Wales (5-7-7-5) defect, rendered here, whose ring counts are known by geometry."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.geometry import planar_faces
from atomlens.latent.chemspace import (
    NO_CENTRE,
    SMEARED,
    TOO_FEW,
    ChemSpaceError,
    agreement,
    analyze_decoded,
    chemical_space_map,
    find_blobs,
    plot_chemspace,
)

L = 6.0  # bond length, pixels
WIN = 32
AGREEMENT_MIN = (
    0.55  # held-out agreement of the CPU-fast model (measured 0.686; pristine share 0.628)
)


def honeycomb(bond: float = L, n: int = 7, stone_wales: bool = False) -> np.ndarray:
    """(N, 2) (y, x) graphene atoms around the origin; the bond from (0, 0) to (bond, 0)
    is rotated by 90° about its midpoint with ``stone_wales``."""
    a1 = np.array([0.0, np.sqrt(3) * bond])
    a2 = np.array([1.5 * bond, np.sqrt(3) / 2 * bond])
    ij = np.array([(i, j) for i in range(-n, n + 1) for j in range(-n, n + 1)], float)
    base = ij[:, :1] * a1 + ij[:, 1:] * a2
    pts = np.concatenate([base, base + [bond, 0.0]])
    pts = pts[np.hypot(*pts.T) < n * bond]
    if stone_wales:
        mid = np.array([bond / 2, 0.0])
        for k in np.flatnonzero(np.hypot(*(pts - mid).T) < 0.6 * bond):
            d = pts[k] - mid
            pts[k] = mid + np.array([-d[1], d[0]])
    return pts


def true_counts(pts: np.ndarray, atom: int) -> tuple[int, int, int]:
    d = np.hypot(*(pts[:, None] - pts[None]).transpose(2, 0, 1))
    iu, ju = np.triu_indices(len(pts), 1)
    ok = (d[iu, ju] > 0.5 * L) & (d[iu, ju] < 1.2 * L)
    faces = planar_faces(pts, np.column_stack([iu[ok], ju[ok]]))
    sizes = [f.size for f in faces if atom in f.nodes]
    return tuple(sizes.count(k) for k in (5, 6, 7))  # type: ignore[return-value]


def render(pts: np.ndarray, centre: np.ndarray, win: int = WIN, sigma: float = 0.22 * L,
           angle: float = 0.0) -> np.ndarray:  # fmt: skip
    """A decoded-like window: Gaussian atoms, ``centre`` at the window's middle."""
    c, s = np.cos(angle), np.sin(angle)
    rel = (pts - centre) @ np.array([[c, -s], [s, c]]).T
    yy, xx = np.mgrid[0:win, 0:win] - (win - 1) / 2
    img = np.zeros((win, win))
    for y, x in rel[np.hypot(*rel.T) < win]:
        img += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    return img.astype(np.float32)


def test_blobs_are_found_at_atom_centroids() -> None:
    pts = honeycomb()
    img = render(pts, np.zeros(2))
    blobs = find_blobs(np.stack([img, np.zeros_like(img)]))
    assert set(blobs["image"]) == {0}
    # the atom at the origin sits at the window centre
    d = np.hypot(blobs["y"] - (WIN - 1) / 2, blobs["x"] - (WIN - 1) / 2)
    assert d.min() < 0.1


def test_ring_counts_of_pristine_and_stone_wales_atoms() -> None:
    pristine = honeycomb()
    sw = honeycomb(stone_wales=True)
    cases = []
    for pts in (pristine, sw):
        for k in np.flatnonzero(np.hypot(*pts.T) < 2.2 * L):
            cases.append((pts, k))
    imgs = np.stack([render(p, p[k], angle=0.3 * i) for i, (p, k) in enumerate(cases)])
    res = analyze_decoded(imgs, L)
    assert res["physical"].all()
    got = [tuple(r) for r in res[["ring5", "ring6", "ring7"]].to_numpy()]
    want = [true_counts(p, k) for p, k in cases]
    assert got == want
    assert (0, 3, 0) in want and (1, 0, 2) in want and (1, 1, 1) in want  # SW core and rim
    assert (res["ring8"] == 0).all()


def test_unphysical_decodings_are_minus_one() -> None:
    pts = honeycomb()
    blank = np.zeros((WIN, WIN), np.float32)
    noise = np.random.default_rng(0).random((WIN, WIN)).astype(np.float32) * 0.01
    off_centre = render(pts, np.array([L / 2, np.sqrt(3) / 2 * L]))  # a hollow site
    smeared = render(pts, np.zeros(2), sigma=0.6 * L)  # atoms merge into one blob
    lonely = render(pts[:1], np.zeros(2))
    res = analyze_decoded(np.stack([blank + noise, off_centre, smeared, lonely]), L)
    assert not res["physical"].any()
    assert (res[["ring5", "ring6", "ring7", "ring8"]].to_numpy() == -1).all()
    assert res["reason"].iloc[1] == NO_CENTRE
    assert res["reason"].iloc[2] in (SMEARED, TOO_FEW)
    assert res["reason"].iloc[3] == TOO_FEW
    with pytest.raises(ChemSpaceError):
        analyze_decoded(np.stack([blank]), bond_length=0)


def test_ring_mode_finds_the_central_ring_size() -> None:
    sw = honeycomb(stone_wales=True)
    pristine = honeycomb()
    d = np.hypot(*(sw[:, None] - sw[None]).transpose(2, 0, 1))
    iu, ju = np.triu_indices(len(sw), 1)
    ok = (d[iu, ju] > 0.5 * L) & (d[iu, ju] < 1.2 * L)
    faces = [f for f in planar_faces(sw, np.column_stack([iu[ok], ju[ok]]))
             if np.hypot(f.y, f.x) < 2 * L]  # fmt: skip
    imgs = [render(sw, np.array([f.y, f.x])) for f in faces]
    hexc = np.array([L / 2, np.sqrt(3) / 2 * L])  # a hexagon centre of the pristine lattice
    imgs.append(render(pristine, hexc))
    res = analyze_decoded(np.stack(imgs), L, mode="ring")
    want = [f.size for f in faces] + [6]
    assert list(res["centre_ring"]) == want
    assert {5, 6, 7} <= set(want)


class TwoPhaseDecoder:
    """A stand-in decoder: z1 < 0 gives pristine graphene, z1 >= 0 the Stone-Wales core
    atom, z2 > 2 an empty image (unphysical)."""

    def __init__(self) -> None:
        self.pristine = render(honeycomb(), np.zeros(2))
        sw = honeycomb(stone_wales=True)
        self.core = render(sw, sw[np.argmin(np.hypot(*(sw - [L / 2, 0]).T))])
        self.calls = 0

    def decode(self, z: np.ndarray) -> np.ndarray:
        self.calls += 1
        z = np.atleast_2d(z)
        out = np.where((z[:, 0] < 0)[:, None, None], self.pristine, self.core)
        return np.where((z[:, 1] > 2)[:, None, None], 0.0, out).astype(np.float32)


def test_chemical_space_map_lookup_and_agreement(tmp_path) -> None:
    dec = TwoPhaseDecoder()
    cmap = chemical_space_map(dec, L, grid=24, z_range=((-3, 3), (-3, 3)), batch_size=100)
    assert dec.calls >= 6  # batched
    assert cmap.counts.shape == (24, 24, 4)
    left = cmap.z1 < -0.2
    right = cmap.z1 > 0.2
    low = cmap.z2 < 1.8
    assert (cmap.ring_map(6)[np.ix_(low, left)] == 3).all()
    assert (cmap.ring_map(7)[np.ix_(low, right)] == 2).all()
    assert (cmap.ring_map(5)[cmap.z2 > 2.2] == -1).all()
    z = np.array([[-1.0, 0.0], [1.0, -1.0], [0.5, 2.8], [9.0, 0.0]])
    look = cmap.lookup(z)
    assert list(look["ring6"]) == [3, 0, -1, 0] and list(look["inside"]) == [True] * 3 + [False]
    truth = {"ring5": [0, 1, 0, 1], "ring6": [3, 0, 3, 0], "ring7": [0, 2, 0, 2]}
    import pandas as pd

    a = agreement(cmap, z, pd.DataFrame(truth))
    assert a["agreement"] == pytest.approx(0.75) and a["unphysical"] == pytest.approx(0.25)
    codes, keys = cmap.labels()
    assert {(0, 3, 0), (1, 0, 2)} <= set(keys) and (codes == -1).any()
    plot_chemspace(cmap, tmp_path / "map.png", z=z)
    small = chemical_space_map(dec, L, grid=4, z_range=((-3, 3), (-3, 3)), keep_images=True)
    assert small.images.shape == (4, 4, WIN, WIN)
    assert np.allclose(small.images[0, 0], dec.pristine) and np.allclose(
        small.images[0, 3], dec.core
    )
    assert (tmp_path / "map.png").stat().st_size > 0
    saved = np.load(cmap.save(tmp_path / "map.npz"))
    assert np.array_equal(saved["counts"], cmap.counts)


def test_two_thousand_decodings_are_all_read_as_graphene() -> None:
    """A batch of decodings of two latents is read image by image, all physical
    (bench/chemspace.py times the 200 x 200 map)."""
    dec = TwoPhaseDecoder()
    imgs = np.concatenate([dec.decode(np.array([[-1.0, 0.0]] * 1000)),
                           dec.decode(np.array([[1.0, 0.0]] * 1000))])  # fmt: skip
    res = analyze_decoded(imgs, L)
    assert len(res["physical"]) == 2000
    assert res["physical"].all()


def test_cluster_purity_and_balanced_recall() -> None:
    from atomlens.latent.chemspace import cluster_latents, cluster_purity

    rng = np.random.default_rng(0)
    sizes = np.repeat([6, 5, 7], [80, 10, 10])
    centres = {6: (0.0, 0.0), 5: (4.0, 0.0), 7: (0.0, 4.0)}
    z = np.array([centres[s] for s in sizes]) + rng.normal(scale=0.3, size=(100, 2))
    for method in ("gmm", "kmeans"):
        cp = cluster_purity(cluster_latents(z, 3, method), sizes)
        assert cp["purity"] == 1.0 and cp["balanced_recall"] == 1.0
    # one cluster for everything: purity is the majority share, recall 1/3
    cp = cluster_purity(np.zeros(100, int), sizes)
    assert cp["purity"] == pytest.approx(0.8) and cp["balanced_recall"] == pytest.approx(1 / 3)
    assert cp["majority_share"] == pytest.approx(0.8)
    with pytest.raises(ChemSpaceError):
        cluster_latents(z, 0)


# --- the skip-rVAE recipe on a simulated movie, scored against the simulator's truth ----


def _graphene_windows(seed: int, frames: int = 3, size: int = 112):
    from atomlens.descriptors import extract_windows
    from atomlens.latent.chemspace_train import aligned_windows, ideal_atom_maps
    from atomlens.simulate import CC_BOND_A, simulate_movie

    px = 0.3
    bond = CC_BOND_A / px
    movie = simulate_movie(frames, size, px, seed, dose=None, read_noise=0.0,
                           contamination_fraction=0.0, n_stone_wales=4, reconstruct_prob=0.3,
                           lattice_angle_deg=17.0)  # fmt: skip
    maps = ideal_atom_maps(movie.atoms, movie.frames.shape, 0.22 * bond)
    sub = extract_windows(maps, movie.atoms, 34)
    wins, theta = aligned_windows(sub.images, bond, 24)
    return wins, movie.atoms.iloc[sub.index].reset_index(drop=True), bond


def test_aligned_windows_are_centred_and_bond_aligned() -> None:
    from atomlens.latent.chemspace_train import aligned_windows, bond_orientation

    pts = honeycomb()
    # both sublattices, turned by arbitrary angles and 1.1 px off-centre
    cases = [
        (pts[k], a)
        for k, a in zip(np.flatnonzero(np.hypot(*pts.T) < 1.2 * L), (0.3, 1.1, 2.0, 0.7))
    ]
    big = np.stack([render(pts, c + [0.9, -0.7], win=46, angle=a) for c, a in cases])
    wins, theta = aligned_windows(big, L, WIN)
    assert np.all(np.abs(np.degrees(bond_orientation(wins, L))) < 3.0)
    blobs = find_blobs(wins)
    d = np.hypot(blobs["y"] - (WIN - 1) / 2, blobs["x"] - (WIN - 1) / 2)
    assert blobs.assign(d=d).groupby("image")["d"].min().max() < 0.45  # 1.1 px before
    # every aligned pristine window reads as graphene, and all look alike
    res = analyze_decoded(wins, L)
    assert (res[["ring5", "ring6", "ring7"]].to_numpy() == [0, 3, 0]).all()
    assert np.abs(wins - wins[0]).max() < 0.35


def test_balanced_rows_even_out_labels() -> None:
    from atomlens.latent.chemspace_train import balanced_rows

    labels = np.repeat([0, 1], [900, 100])
    rows = balanced_rows(labels, 1.0, n=4000, seed=0)
    share = (labels[rows] == 1).mean()
    assert 0.45 < share < 0.55
    assert np.array_equal(np.sort(balanced_rows(labels, 0.0)), np.arange(1000))


def test_skip_rvae_map_agrees_with_simulator_truth_on_held_out_atoms() -> None:
    """Issue 8 on a small scale: a skip-rVAE trained with the chemical-space recipe on one
    simulated movie; its map, read at the latents of the atoms of a *second* movie (other
    defects, same sample orientation), is compared with the simulator's ring counts.

    The full-size figure (bench/chemspace.py) is in docs/chemspace_pfm.md; this CPU-fast
    version (590 training windows, batches of 16) checks a smaller threshold than the
    issue's 0.8: the map is mostly physical (the latents do not collapse, as they did with
    the constructor defaults: agreement 0.00) and agrees with the truth for more than 55 %
    of the held-out atoms (measured 0.686; 0.628 of them are pristine (0, 3, 0), and the
    small model reads mostly those and edge atoms right)."""
    import torch

    from atomlens.latent.chemspace import typical_pose
    from atomlens.latent.chemspace_train import fit_chemspace_model

    torch.manual_seed(0)
    wins, _, bond = _graphene_windows(0)
    hwins, htruth, _ = _graphene_windows(1)
    model = fit_chemspace_model(
        wins, bond, hidden=(64, 64, 64), epochs=60, batch_size=16, threads=1
    )
    lat = model.transform(wins)
    z = lat[["z1", "z2"]].to_numpy()
    cmap = chemical_space_map(
        model, bond, grid=40, z=z, bond_range=(0.5, 1.3), pose=typical_pose(lat)
    )
    hz = model.transform(hwins)[["z1", "z2"]].to_numpy()
    a = agreement(cmap, hz, htruth)
    assert cmap.physical.mean() > 0.5
    assert a["unphysical"] < 0.2
    assert a["agreement"] > AGREEMENT_MIN


def test_map_decodes_at_the_typical_pose() -> None:
    import pandas as pd

    from atomlens.latent.chemspace import typical_pose

    class Posed(TwoPhaseDecoder):
        def decode(self, z, angle=0.0, shift_px=(0.0, 0.0)):
            self.pose = (angle, *shift_px)
            return super().decode(z)

    lat = pd.DataFrame({"angle": [0.1, 0.2, 0.3], "dx": [1.0, 2.0, 9.0], "dy": [0.0, -1.0, -1.0],
                        "z1": 0.0, "z2": 0.0})  # fmt: skip
    pose = typical_pose(lat)
    assert pose == pytest.approx((0.2, 2.0, -1.0))
    dec = Posed()
    cmap = chemical_space_map(dec, L, grid=4, z_range=((-3, 3), (-3, 3)), pose=pose)
    assert dec.pose == pytest.approx(pose) and cmap.meta["pose"] == pytest.approx(list(pose))
    with pytest.raises(ChemSpaceError):
        typical_pose(lat[["z1", "z2"]])
