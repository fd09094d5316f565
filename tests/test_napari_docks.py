"""The smaller docks in a real viewer: Colour key, PFM domain walls (worker, Stop, colour
key), Latent trajectories (picker follows features), Detect's Stop and its pixel-size
message, the PFM sample and the manifest's dock list."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from atomlens._napari._layers import add_tuple, apply_colour
from atomlens._napari.chemspace_dock import ChemSpaceDock
from atomlens._napari.key_dock import ColourKeyDock
from atomlens._napari.pfm_widget import PFMWidget
from atomlens.viz.colours import colour_spec
from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple

pytestmark = pytest.mark.gui


def _atoms(n_frames: int = 3, per: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = n_frames * per
    return pd.DataFrame({
        "frame": np.repeat(np.arange(n_frames), per), "y": rng.uniform(4, 60, n),
        "x": rng.uniform(4, 60, n), "cls": np.where(np.arange(n) % 6 == 0, "Si", "C"),
        "track_id": np.tile(np.arange(per), n_frames), "z1": rng.normal(size=n),
        "z2": rng.normal(size=n),
    })  # fmt: skip


def test_colour_key_follows_colouring_visibility_and_layers(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer()
    dock = ColourKeyDock(viewer)
    viewer.window.add_dock_widget(dock)
    dock.redraw.flush()
    assert dock.keys == [] and not dock.empty.isHidden()
    pts = add_tuple(viewer, atoms_layer_tuple(_atoms(), 0.2, "atoms"))
    dock.redraw.flush()
    [(name, key)] = dock.keys
    assert name == "atoms" and key.title == "species" and dict(key.entries)["Si"] == "#ff5a1f"
    apply_colour(pts, colour_spec("z1", pts.features["z1"]))
    dock.redraw.flush()
    key = dock.keys[0][1]
    assert key.kind == "continuous" and key.label == "z1 (latent units)"
    assert key.limits == pytest.approx(pts.face_contrast_limits)
    assert dock.canvas.wait_drawn()  # the figure is built and rendered off the main thread
    assert len(dock.figure.axes) == 1 and dock.figure.axes[0].get_ylabel() == "z1 (latent units)"
    pts.visible = False  # hidden layers have no key on screen
    qtbot.waitUntil(lambda: dock.keys == [], timeout=2000)
    pts.visible = True
    viewer.layers.remove(pts)
    qtbot.waitUntil(lambda: dock.keys == [], timeout=2000)


def test_pfm_dock_runs_on_a_worker_with_a_colour_key(make_napari_viewer, qtbot) -> None:
    from atomlens._napari._sample import pfm_movie

    viewer = make_napari_viewer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phase, walls = pfm_movie()
    small = (phase[0][:4, :64, :64], phase[1], phase[2])
    img = add_tuple(viewer, small)
    add_tuple(viewer, (walls[0][:4, :64, :64], walls[1], walls[2]))
    widget = PFMWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image.value is img  # the labels layer is not offered
    widget.window.value, widget.per_frame.value, widget.epochs.value = 16, 15, 2
    from napari.utils.notifications import notification_manager as nm

    first = len(nm.records)
    worker = widget.run()
    assert widget.stop_button.enabled and not widget.run_button.enabled
    with qtbot.waitSignal(worker.finished, timeout=300_000):
        pass
    assert widget.result is not None and widget.run_button.enabled
    qtbot.waitUntil(lambda: "PFM windows" in viewer.layers, timeout=10_000)
    pts = viewer.layers["PFM windows"]
    assert len(pts.data) == len(widget.result.table) > 0
    key = pts.metadata["atomlens"]["colour_key"]
    assert key["title"] == "D" and key["units"] == "switching degree"
    lo, hi = key["limits"]
    assert lo == pytest.approx(-hi) and hi > 0
    assert "s elapsed" in widget.clock.value
    from napari.utils.notifications import notification_manager as nm

    assert not any("Inconsistent units" in str(r.message) for r in nm.records[first:])

    # a re-run writes into the same layers (no layer added, none drawn for the first time)
    walls_layer = viewer.layers["PFM walls (Canny)"]
    n_layers = len(viewer.layers)
    widget.per_frame.value = 10
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=300_000):
        pass
    qtbot.waitUntil(lambda: len(pts.data) == len(widget.result.table), timeout=10_000)
    assert viewer.layers["PFM windows"] is pts and viewer.layers["PFM walls (Canny)"] is walls_layer
    assert len(viewer.layers) == n_layers and len(pts.features) == len(pts.data)
    np.testing.assert_allclose(pts.features["D"], widget.result.table["D"])
    qtbot.waitUntil(lambda: pts.face_color_mode == "colormap", timeout=5_000)
    lo2, hi2 = pts.metadata["atomlens"]["colour_key"]["limits"]
    assert tuple(pts.face_contrast_limits) == pytest.approx((lo2, hi2))

    # bad input: a single image with a time delay -> the message names the dock field
    from napari.utils.notifications import notification_manager

    before = len(notification_manager.records)
    single = viewer.add_image(np.zeros((32, 32), np.float32), name="one")
    widget.image.value = single
    assert widget.run() is None
    msgs = [str(r.message) for r in notification_manager.records[before:]]
    assert any("'time delay (frames)'" in m for m in msgs), msgs


def test_trajectories_picker_follows_features(make_napari_viewer) -> None:
    viewer = make_napari_viewer()
    atoms = _atoms()
    plain = atoms.drop(columns=["z1", "z2"])
    pts = add_tuple(viewer, atoms_layer_tuple(plain, 0.2, "atoms"))
    dock = ChemSpaceDock(viewer)  # opened before encoding
    assert dock.points.value is None and dock.points.choices == ()
    pts.features = pts.features.assign(z1=atoms["z1"].to_numpy(), z2=atoms["z2"].to_numpy())
    assert dock.points.value is pts  # the list refreshed when the latents arrived
    dock.show_selected()
    assert "select one atom" in dock.status.value  # bad input: nothing selected
    pts.selected_data = {4}
    dock.show_selected()
    assert dock.trajectory is not None and len(dock.trajectory) == 3
    np.testing.assert_allclose(dock.trajectory["z1"], atoms.loc[atoms["track_id"] == 4, "z1"])


def test_detect_stop_keeps_frames_done_and_pixel_size_message(make_napari_viewer, qtbot) -> None:
    from napari.utils.notifications import notification_manager

    from atomlens._napari.detect_widget import DetectWidget

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    frames = rng.random((6, 48, 48)).astype(np.float32)
    uncal = viewer.add_image(frames, name="uncalibrated")
    widget = DetectWidget(viewer)
    before = len(notification_manager.records)
    assert widget.run() is None
    msgs = [str(r.message) for r in notification_manager.records[before:]]
    assert any("'pixel size (Å)' field" in m for m in msgs), msgs

    add_tuple(viewer, image_layer_tuple(frames, 0.1, "movie"))
    widget.image.value = viewer.layers["movie"]
    widget.frames.value = "all"
    widget.show_maps.value = True  # the maps say which frames were done
    widget.stop_button.changed.connect(lambda: None)
    worker = widget.run()
    worker.yielded.connect(lambda _ev: widget.stop())  # Stop after the first frame
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "frames done kept" in widget.status.value, timeout=10_000)
    atoms = viewer.layers["atoms movie"]
    maps = [lay for lay in viewer.layers if lay.name.startswith("P(")]  # the model's classes
    n_done = maps[0].data.shape[0]  # maps of the frames done
    assert 1 <= n_done < 6 and "stopped" in widget.status.value  # (frames run in batches)
    assert set(np.unique(atoms.data[:, 0]).astype(int)) <= set(range(n_done))
    assert widget.run_button.enabled and not widget.stop_button.enabled
    del uncal


def test_manifest_lists_every_dock_and_the_pfm_sample() -> None:
    from pathlib import Path

    import yaml

    import atomlens

    manifest = yaml.safe_load((Path(atomlens.__file__).parent / "napari.yaml").read_text())
    docks = {w["display_name"] for w in manifest["contributions"]["widgets"]}
    assert {
        "Detect atoms",
        "Subimages",
        "Train latent model",
        "Latent colouring",
        "Colour key",
        "Subimage gallery",
        "PFM domain walls",
        "Defects",
        "Correct atoms",
    } <= docks
    samples = {s["display_name"] for s in manifest["contributions"]["sample_data"]}
    assert {"Simulated graphene-Si movie", "Simulated PFM domain-wall movie"} <= samples


def test_latent_dock_encode_progress_and_stop(make_napari_viewer, qtbot) -> None:
    from atomlens._napari.latent_widget import LatentWidget
    from atomlens._napari.state import SessionModel, session_for
    from atomlens.models import make_model
    from atomlens.workflows.latent import DescriptorRecipe, cut_windows, prepare_movie

    viewer = make_napari_viewer()
    rng = np.random.default_rng(2)
    frames = rng.random((3, 64, 64)).astype(np.float32)
    img = add_tuple(viewer, image_layer_tuple(frames, 0.2, "movie"))
    atoms = _atoms()
    pts = add_tuple(viewer, atoms_layer_tuple(atoms, 0.2, "atoms"))
    recipe = DescriptorRecipe(window=16)
    windows = cut_windows(prepare_movie(frames, recipe), atoms, recipe)
    model = make_model("pca", window=(16, 16), n_components=2)
    model.fit(windows.images)
    model.card["preprocessing"] = recipe.to_dict()
    session_for(viewer).model = SessionModel(model, "pca", window=16)
    latent = LatentWidget(viewer)
    latent.atoms.value, latent.image.value = pts, img

    worker = latent.encode()
    latent.stop_movie()  # Stop before the first step: nothing is written
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert latent.status.value == "encoding stopped: no latents written"
    assert set(pts.features.columns) == set(atoms.columns)

    worker = latent.encode()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    names = list(model.latent_names())
    assert set(names) <= set(pts.features.columns)
    ok = np.isfinite(pts.features[names[0]].to_numpy())
    assert ok.sum() == len(windows) and latent.progress.value == latent.progress.max
    assert not latent.movie_stop.enabled and latent.encode_button.enabled


def test_image_pickers_default_to_the_movie_after_detect(make_napari_viewer) -> None:
    """Issue 15: after Detect adds probability maps on top, Subimages and Latent
    colouring still default to the movie; the maps stay choosable."""
    from atomlens._napari.latent_widget import LatentWidget
    from atomlens._napari.subimage_widget import SubimageWidget

    viewer = make_napari_viewer()
    movie = viewer.add_image(np.zeros((2, 32, 32), np.float32), name="movie")
    maps = viewer.add_image(np.zeros((2, 32, 32), np.float32), name="P(Si) movie")
    assert viewer.layers[-1] is maps  # the map is the topmost image
    for dock in (SubimageWidget(viewer), LatentWidget(viewer)):
        dock.reset_choices()
        assert dock.image.value is movie
        assert maps in [c for c in dock.image.choices]
