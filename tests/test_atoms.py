"""Maps -> atoms: finding, refinement, matching, the detect entry point and CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.atoms import (
    detect,
    detection_scores,
    find_atoms,
    iter_detect,
    match_atoms,
    refine_com,
    refine_gaussian,
)
from atomlens.atoms.evaluate import score_frames, synth_validation_set

CLASSES = ("background", "C", "Si")


def _maps(centres, species, shape=(40, 40), r=1.5):
    yy, xx = np.indices(shape)
    maps = np.zeros((3, *shape))
    for (y, x), s in zip(centres, species):
        g = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * r * r))
        maps[CLASSES.index(s)] = np.maximum(maps[CLASSES.index(s)], g)
    maps[0] = np.clip(1 - maps[1] - maps[2], 0, 1)
    return maps / maps.sum(0, keepdims=True)


@pytest.mark.parametrize("method", ["components", "log"])
def test_find_atoms_positions_and_species(method):
    centres = [(10.3, 10.6), (25.5, 12.0), (20.0, 30.2)]
    maps = _maps(centres, ["C", "Si", "C"])
    f = find_atoms(maps, CLASSES, 0.5, method=method)
    assert len(f["y"]) == 3
    ip, it = match_atoms(np.c_[f["y"], f["x"]], np.array(centres), 1.0)
    assert len(ip) == 3
    assert list(f["cls"][ip[np.argsort(it)]]) == ["C", "Si", "C"]
    assert np.all(f["prob"] > 0.5)


def test_find_atoms_errors():
    with pytest.raises(ValueError, match="do not match"):
        find_atoms(np.zeros((2, 8, 8)), CLASSES)
    with pytest.raises(ValueError, match="threshold"):
        find_atoms(_maps([], []), CLASSES, threshold=1.5)


def _blobs(centres, shape=(64, 64), sigma=2.0, noise=0.0, seed=0):
    yy, xx = np.indices(shape)
    img = np.full(shape, 0.2)
    for y, x in centres:
        img += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    return img + np.random.default_rng(seed).normal(0, noise, shape)


def test_gaussian_refinement_is_subpixel_and_vectorised():
    rng = np.random.default_rng(1)
    true = rng.uniform(8, 56, (1, 2))
    true = np.array([[12.3, 14.8], [30.6, 40.1], [50.2, 20.7], [45.5, 50.5]])
    img = _blobs(true, noise=0.05)
    start = true + rng.uniform(-0.8, 0.8, true.shape)
    yx, ok, sigma = refine_gaussian(img, start, radius_px=4.0)
    assert ok.all() and abs(sigma - 2.0) < 0.3
    assert np.abs(yx - true).max() < 0.15
    com = refine_com(_blobs(true), start, 4.0)
    assert np.abs(com - true).max() < 0.3


def test_refinement_keeps_start_when_fit_fails():
    start = np.array([[16.2, 16.7], [8.0, 8.0]])
    for img in (np.zeros((32, 32)), np.random.default_rng(2).normal(0, 1, (32, 32))):
        yx, ok, _ = refine_gaussian(img, start, 3.0, sigma_px=1.5)  # nothing to fit
        assert not ok.any() and np.allclose(yx, start)


def test_matching_is_one_to_one():
    pred = np.array([[0.0, 0.0], [0.0, 0.4], [10.0, 10.0]])
    true = np.array([[0.0, 0.2], [10.0, 10.5], [50.0, 50.0]])
    ip, it = match_atoms(pred, true, 1.0)
    assert len(ip) == 2 and len(set(it)) == 2
    s = detection_scores(pred, true, 1.0, np.array(["C", "C", "Si"]), np.array(["C", "Si", "C"]))
    assert s["f1"] == pytest.approx(2 * 2 / 6)
    assert s["Si_precision"] == 1.0 and s["Si_recall"] == 1.0


def test_detect_shipped_model_on_held_out_simulation():
    """Done-when figure (small version; bench/detect.py --what accuracy runs more frames)."""
    frames, truth = synth_validation_set(n_frames=2, size=192, seed=20_000)
    res = detect(frames, pixel_size=0.1)
    assert list(res.atoms.columns) == [
        "frame",
        "y",
        "x",
        "cls",
        "prob",
        "border",
        "sigma_px",
        "sigma_A",
    ]
    assert (res.atoms["sigma_A"].dropna() > 0).all() and res.atoms["sigma_A"].notna().mean() > 0.9
    s = score_frames(res.atoms, truth, frames.shape[1:], 0.1)
    assert s["f1"] >= 0.99, s
    assert s["rmse_A"] <= 0.15, s
    if s["Si_true"]:
        assert s["Si_recall"] >= 0.98 and s["Si_precision"] >= 0.98, s


def test_detect_generator_progress_maps_and_frames():
    frames, _ = synth_validation_set(n_frames=3, size=96, seed=20_001)
    events = list(iter_detect(frames, frames=[0, 2], return_maps=True, pixel_size=0.1))
    assert [e.frame for e in events] == [0, 2] and events[-1].n_frames == 2
    assert events[0].maps.shape == (3, 96, 96)
    calls = []
    res = detect(
        frames,
        frames=slice(1, 3),
        pixel_size=0.1,
        return_maps=True,
        progress=lambda i, n: calls.append((i, n)),
        refine="com",
    )
    assert calls == [(1, 2), (2, 2)]
    assert res.maps.shape == (2, 3, 96, 96)
    assert set(res.atoms["frame"]) == {1, 2}
    assert res.atoms["border"].any() and not res.atoms["border"].all()
    assert isinstance(res.atoms["cls"].dtype, pd.CategoricalDtype)


def test_cli_detect_writes_csv_and_streamed_maps(tmp_path):
    from atomlens.cli import main

    frames, _ = synth_validation_set(n_frames=2, size=160, seed=20_002)
    np.save(tmp_path / "movie.npy", frames)
    rc = main(
        [
            "detect",
            str(tmp_path / "movie.npy"),
            "--out",
            str(tmp_path / "a.csv"),
            "--pixel-size",
            "0.1",
            "--frames",
            "1:2",
            "--maps",
            str(tmp_path / "m.npy"),
        ]
    )
    assert rc == 0
    df = pd.read_csv(tmp_path / "a.csv")
    assert list(df.columns[:5]) == ["frame", "y", "x", "cls", "prob"]
    assert set(df["frame"]) == {1} and set(df["cls"]) <= {"C", "Si"} and len(df) > 50
    maps = np.load(tmp_path / "m.npy", mmap_mode="r")
    assert maps.shape == (1, 3, 160, 160)
    assert main(["detect", str(tmp_path / "movie.npy"), "--frames", "x"]) == 2
