"""Reopening after a killed viewer: the first use of the plugin in the new viewer (here
the reader, File > Open) offers the autosaved work, and Restore brings back detections
(probabilities, ids), corrections (moved atoms) and latents, with every feature."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from atomlens._napari import autosave

pytestmark = pytest.mark.gui


def _detections(n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    return pd.DataFrame(
        {
            "frame": np.repeat([0, 1, 2], n // 3),
            "y": rng.uniform(8, 56, n),
            "x": rng.uniform(8, 56, n),
            "cls": pd.Categorical(["C"] * (n - 2) + ["Si"] * 2, categories=["C", "Si"]),
            "prob": rng.uniform(0.5, 1.0, n),
            "border": np.zeros(n, bool),
            "atom_id": np.arange(n),
        }
    )


def test_first_use_after_a_crash_offers_detections_corrections_and_latents(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
) -> None:
    from qtpy.QtWidgets import QMessageBox

    from atomlens._napari._layers import add_tuple
    from atomlens._napari.detect_widget import LayerPlace, result_layer_tuples
    from atomlens._napari.latent_widget import LatentWidget
    from atomlens._napari.state import session_for
    from atomlens.viz.layers import image_layer_tuple

    monkeypatch.setenv("ATOMLENS_RECOVERY", str(tmp_path / "recovery"))
    movie = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)
    viewer = make_napari_viewer()
    img = add_tuple(viewer, image_layer_tuple(movie, 0.1, "movie"))
    # detections, as the Detect dock makes them
    result = SimpleNamespace(maps=None, classes=["bg", "C", "Si"], atoms=_detections(),
                             pixel_size=0.1)  # fmt: skip
    [tup] = result_layer_tuples(result, [0, 1, 2], LayerPlace.of(img))
    pts = add_tuple(viewer, tup)
    saver = autosave.start_autosave(viewer)  # a dock's first use
    # a correction (an atom moved) and latents written by the Latent colouring dock
    moved = pts.data.copy()
    moved[3, 1:] += 2.5
    pts.data = moved
    latent = LatentWidget(viewer)
    z = pd.DataFrame({"angle": np.linspace(-1, 1, 24), "z1": np.r_[np.arange(23.0), np.nan]})
    latent._write_latents(pts, z)
    folder = saver.save_now(wait=True)
    info = json.loads((folder / "manifest.json").read_text())
    info["pid"] = 2**22 + 4242  # the viewer was killed: its process is gone
    (folder / "manifest.json").write_text(json.dumps(info))

    # a new viewer: the plugin's first use is File > Open through its reader
    path = tmp_path / "movie.npy"
    np.save(path, movie)
    other = make_napari_viewer()
    other.open(str(path), plugin="atomlens")
    box = session_for(other).autosaver.offer
    assert box is not None and "atoms movie: 24 atoms" in box.text()
    box.button(QMessageBox.StandardButton.Yes).click()
    back = other.layers["atoms movie (recovered)"]
    np.testing.assert_allclose(back.data, moved)  # the correction
    feats = back.features
    np.testing.assert_allclose(feats["prob"], pts.features["prob"])  # the detections
    assert list(feats["atom_id"]) == list(range(24))
    assert list(feats["cls"].astype(str)) == list(pts.features["cls"].astype(str))
    np.testing.assert_allclose(feats["z1"], z["z1"])  # the latents (NaN kept)
    np.testing.assert_allclose(feats["angle"], z["angle"])
    assert not folder.exists()  # restored: nothing left to offer
    # a second use in the same viewer asks nothing again
    assert autosave.on_first_use() is session_for(other).autosaver


def test_first_use_without_a_viewer_offers_nothing(monkeypatch) -> None:
    import napari

    monkeypatch.setattr(napari, "current_viewer", lambda: None)
    assert autosave.on_first_use() is None
