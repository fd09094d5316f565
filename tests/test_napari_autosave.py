"""Crash safety: atoms layers (detections, corrections, latents) are snapshotted, and a
viewer opened after a killed one restores them with every feature."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from atomlens._napari import autosave
from atomlens._napari._layers import add_tuple
from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple

pytestmark = pytest.mark.gui


def _atoms(n: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "frame": np.repeat([0, 1, 2], n // 3),
            "y": rng.uniform(0, 60, n),
            "x": rng.uniform(0, 60, n),
            "cls": ["C"] * (n - 3) + ["Si"] * 3,
            "z1": np.r_[rng.normal(size=n - 2), np.nan, np.nan],
        }
    )


def test_snapshot_of_a_killed_session_restores_every_feature(
    make_napari_viewer, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("ATOMLENS_RECOVERY", str(tmp_path))
    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(np.zeros((3, 64, 64), np.float32), 0.1, "movie"))
    pts = add_tuple(viewer, atoms_layer_tuple(_atoms(), 0.1, "atoms movie"))
    saver = autosave.Autosaver(viewer, root=tmp_path, delay_s=0.05)
    pts.features = pts.features.assign(z2=np.arange(len(pts.data), dtype=float))  # a latent arrives
    assert saver.timer.isActive()  # the change scheduled a snapshot
    folder = saver.save_now(wait=True)
    assert (folder / "manifest.json").exists()
    assert autosave.find_recoveries(tmp_path) == []  # this process is alive: not a crash

    # pretend the process died: its pid is gone
    info = json.loads((folder / "manifest.json").read_text())
    info["pid"] = 2**22 + 12345
    (folder / "manifest.json").write_text(json.dumps(info))
    assert autosave.find_recoveries(tmp_path) == [folder]
    assert "atoms movie: 30 atoms" in autosave.describe(folder)

    other = make_napari_viewer()
    [back] = autosave.restore(other, folder)
    assert back.name == "atoms movie (recovered)"
    np.testing.assert_allclose(back.data, pts.data)
    np.testing.assert_allclose(back.features["z2"], np.arange(30))
    np.testing.assert_array_equal(np.isnan(back.features["z1"]), np.isnan(pts.features["z1"]))
    assert list(back.features["cls"].astype(str)) == list(pts.features["cls"].astype(str))
    assert tuple(back.scale) == tuple(pts.scale)
    assert not folder.exists()  # restored: nothing left to offer


def test_offer_restore_is_non_blocking_and_nothing_to_offer(
    make_napari_viewer, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("ATOMLENS_RECOVERY", str(tmp_path))
    viewer = make_napari_viewer()
    assert autosave.offer_restore(viewer) is None
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "manifest.json").write_text("not json")  # a broken folder is ignored
    assert autosave.find_recoveries(tmp_path) == []
    folder = autosave.write_snapshot(tmp_path / "dead", [{
        "name": "atoms", "table": _atoms(6), "scale": [1, 0.1, 0.1], "translate": [0, 0, 0],
        "pixel_size": 0.1}])  # fmt: skip
    info = json.loads((folder / "manifest.json").read_text())
    info["pid"] = 2**22 + 54321
    (folder / "manifest.json").write_text(json.dumps(info))
    box = autosave.offer_restore(viewer)
    assert box is not None and "1 layer(s)" in box.text()
    box.close()
    assert os.path.isdir(folder)  # ignored: kept for later
