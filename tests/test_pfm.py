"""PFM domain walls: simulator truth, Canny walls, switching degree, curvature, workflow."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from atomlens.pfm.simulate import (
    PFMMovie,
    PFMSimulationError,
    signed_distance,
    simulate_pfm,
    wall_mask,
    wall_velocity,
)
from atomlens.pfm.switching import median_threshold, switching_degree, wall_descriptors
from atomlens.pfm.walls import detect_walls, sample_wall_pixels, wall_windows
from atomlens.pfm.workflow import truth_velocity


@pytest.fixture(scope="module")
def movie() -> PFMMovie:
    return simulate_pfm(n_frames=14, size=96, seed=1)


def test_signed_distance_of_a_straight_wall_is_subpixel() -> None:
    xx = np.tile(np.arange(40, dtype=float), (20, 1))
    field = np.tanh((10.3 - xx) / 1.4)  # switched for x < 10.3
    sd = signed_distance(field)
    assert sd[5, 5] == pytest.approx(5.3, abs=0.15)
    assert sd[5, 20] == pytest.approx(-9.7, abs=0.15)
    moved = np.stack([field, np.tanh((13.3 - xx) / 1.4)])
    v = wall_velocity(moved, 0)
    assert v[3, 10] == pytest.approx(3.0, abs=0.15)
    with pytest.raises(PFMSimulationError):
        wall_velocity(moved, 1)


def test_simulated_movie_truth_is_consistent(movie: PFMMovie, tmp_path) -> None:
    assert movie.phase.shape == movie.domains.shape == (14, 96, 96)
    assert set(np.unique(movie.domains)) <= {-1, 1}
    assert np.array_equal(movie.walls, wall_mask(movie.domains))
    on = movie.walls[:-1]
    v = movie.velocity[:-1][on]
    assert np.isfinite(v).all() and np.isnan(movie.velocity[-1]).all()
    # positive bias: the switched domain grows, walls mostly advance
    assert (movie.domains[-1] > 0).mean() > (movie.domains[0] > 0).mean() + 0.05
    assert np.median(v) > 0.2
    # pinning: walls near a pinning site move slower than walls far from any site
    yy, xx = np.mgrid[0:96, 0:96]
    d_pin = np.min([np.hypot(yy - py, xx - px) for py, px in movie.pinning], axis=0)
    near = np.concatenate([movie.velocity[t][movie.walls[t] & (d_pin < 3)] for t in range(13)])
    far = np.concatenate([movie.velocity[t][movie.walls[t] & (d_pin > 12)] for t in range(13)])
    assert len(near) > 10 and np.mean(near) < 0.5 * np.mean(far)
    back = PFMMovie.load(movie.save(tmp_path / "pfm.npz"))
    assert np.array_equal(back.phase, movie.phase) and np.array_equal(back.walls, movie.walls)
    from atomlens.io import read_stack

    assert np.allclose(read_stack(tmp_path / "pfm.npz").data, movie.phase)


def test_simulator_rejects_bad_parameters() -> None:
    with pytest.raises(PFMSimulationError, match="0.38"):
        simulate_pfm(n_frames=3, size=32, bias=0.5)
    with pytest.raises(PFMSimulationError, match="unstable"):
        simulate_pfm(n_frames=3, size=32, dt=0.5)


def test_canny_walls_lie_on_true_walls(movie: PFMMovie) -> None:
    from scipy import ndimage as ndi

    found = detect_walls(movie.phase[:4])
    for t in range(4):
        dist = ndi.distance_transform_edt(~movie.walls[t])
        assert np.percentile(dist[found[t]], 95) <= 1.5
        assert found[t].sum() > 0.5 * movie.walls[t].sum() / 2  # truth is 2 px thick


def test_wall_pixel_sampling_and_windows(movie: PFMMovie) -> None:
    walls = detect_walls(movie.phase)
    c = sample_wall_pixels(walls, n_per_frame=12, window=24, seed=0)
    assert (c.groupby("frame").size() <= 12).all() and len(c) > 12 * 10
    assert walls[c.frame, c.y.astype(int), c.x.astype(int)].all()
    assert c.y.min() >= 12 and c.y.max() < 96 - 12
    sub = wall_windows(movie.phase, c, 24, delta=2, both=True)
    assert sub.images.shape[1:] == (2, 24, 24)
    assert c.iloc[sub.index]["frame"].max() <= 11  # t + 2 must exist
    i = 0
    f, y, x = (int(v) for v in c.iloc[sub.index[i]][["frame", "y", "x"]])
    assert np.allclose(sub.images[i, 1], movie.phase[f + 2, y - 12 : y + 12, x - 12 : x + 12])


def test_switching_degree_counts_areas() -> None:
    img = np.zeros((3, 10, 10), np.float32)
    img[0, :, :5] = 1  # half switched
    img[1, :, :] = 1  # all switched
    img[2, :, :8] = 1
    img[2, :, 8:] = -1
    d = switching_degree(img, threshold=0.5)
    assert d == pytest.approx([0.0, 1.0, 0.6])
    assert median_threshold(img[:1]) == pytest.approx(0.5)


def _disc(size: int, r: float, inside: float = 1.0) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    return np.where(np.hypot(yy, xx + r) < r, inside, -inside).astype(np.float32)


def test_wall_count_and_signed_curvature() -> None:
    size = 32
    straight = np.where(np.arange(size)[None, :] < 16, 1.0, -1.0) * np.ones((size, 1))
    flat = np.ones((size, size))
    bulge = _disc(size, 30.0)  # switched disc whose edge passes the centre
    dent = -bulge  # the same wall with the unswitched domain inside
    three = np.ones((size, size))
    three[:, :8] = -1
    three[:, 16:24] = -1  # walls at x = 8, 16 and 24
    imgs = np.stack([straight, flat, bulge, dent, three]).astype(np.float32)
    n, curv = wall_descriptors(imgs, threshold=0.0)
    assert list(n) == [1, 0, 1, 1, 3]
    assert abs(curv[0]) < 0.01
    assert np.isnan(curv[1])
    assert curv[2] == pytest.approx(1 / 30, rel=0.25)
    assert curv[3] == pytest.approx(-1 / 30, rel=0.25)
    assert curv[4] == 0.0


def test_switching_degree_tracks_true_wall_velocity(movie: PFMMovie) -> None:
    """Done-when (direct median split on time-delayed windows): Spearman >= 0.8."""
    walls = detect_walls(movie.phase)
    c = sample_wall_pixels(walls, 25, 24, seed=0, frames=np.arange(13))
    sub = wall_windows(movie.phase, c, 24, delta=1, both=True)
    thr = median_threshold(sub.images[:, 0])
    d = switching_degree(sub.images[:, 1], thr) - switching_degree(sub.images[:, 0], thr)
    tv = truth_velocity(movie, c.iloc[sub.index].reset_index(drop=True), 24, 1)
    rho = spearmanr(d, tv["v_window"], nan_policy="omit")[0]
    assert rho >= 0.8, rho
    # a static movie (no bias, frozen walls) gives D ~ 0
    static = np.repeat(movie.phase[:1], 2, axis=0)
    sub0 = wall_windows(static, c[c.frame == 0], 24, delta=1, both=True)
    d0 = switching_degree(sub0.images[:, 1], thr) - switching_degree(sub0.images[:, 0], thr)
    assert np.abs(d0).max() == 0.0


def test_run_pfm_and_cli_end_to_end(tmp_path) -> None:
    from atomlens.cli import main

    npz = tmp_path / "pfm.npz"
    assert main(["simulate-pfm", "--frames", "5", "--size", "64", "--out", str(npz)]) == 0
    out = tmp_path / "res"
    rc = main([
        "pfm", str(npz), "--out", str(out), "--window", "16", "--per-frame", "8",
        "--epochs", "2", "--hidden", "32,32", "--grid", "4", "--truth", str(npz),
    ])  # fmt: skip
    assert rc == 0
    import pandas as pd

    tab = pd.read_csv(out / "pfm_windows.csv")
    for col in ("frame", "y", "x", "angle", "z1", "z2", "D", "D_manifold", "D_direct", "n_walls",
                "curvature", "v_window"):  # fmt: skip
        assert col in tab.columns
    assert len(tab) > 8 and tab["D"].between(-2, 2).all()
    assert (tab.loc[tab.n_walls == 0, "curvature"].isna()).all()
    for name in ("pfm_latent.png", "pfm_manifold.png", "pfm_walls.png", "pfm_manifold.npz"):
        assert (out / name).stat().st_size > 0
    man = np.load(out / "pfm_manifold.npz")
    assert man["images"].shape == (4, 4, 2, 16, 16) and man["D"].shape == (4, 4)
    assert main(["pfm", str(npz), "--out", str(out), "--hidden", "a,b"]) == 2


def test_napari_result_layers_carry_the_table() -> None:
    pytest.importorskip("qtpy")
    import pandas as pd

    from atomlens._napari.pfm_widget import result_layers
    from atomlens.pfm.workflow import PFMConfig, PFMResult

    tab = pd.DataFrame({"frame": [0, 1], "y": [5.0, 6.0], "x": [7.0, 8.0], "D": [0.1, -0.2]})
    res = PFMResult(tab, np.zeros((2, 16, 16), bool), 0.5, {}, None, PFMConfig())
    (walls, wkw, wkind), (pts, pkw, pkind) = result_layers(res)
    assert wkind == "image" and walls.shape == (2, 16, 16)  # an Image: no first-Labels stall
    assert pkind == "points" and pts.tolist() == [[0, 5, 7], [1, 6, 8]]
    assert list(pkw["features"]["D"]) == [0.1, -0.2] and pkw["face_color"] == "D"
