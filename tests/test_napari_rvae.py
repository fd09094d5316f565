"""The rVAE docks in a real, shown napari viewer (Xvfb): subimages (gallery dock, not a
canvas layer), training on a worker, Stop, latent colouring with its colour key, time
stepping, linked plots, movie export on a worker and a screenshot."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from atomlens._napari._layers import add_tuple, current_frame, set_frame
from atomlens._napari.latent_widget import LatentWidget
from atomlens._napari.state import session_for
from atomlens._napari.subimage_widget import (
    SubimageWidget,
    image_pixel_size,
    show_window,
    window_job,
)
from atomlens._napari.train_widget import TrainWidget, subimages_of
from atomlens.viz.colours import robust_limits
from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple
from atomlens.workflows.latent import DescriptorRecipe, LatentRecipe, resolve_bin

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def movie():
    from atomlens.simulate import simulate_movie

    with _quiet():
        return simulate_movie(3, 64, 0.2, seed=2)


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


def _setup(viewer, movie):
    img = add_tuple(viewer, image_layer_tuple(movie.frames, movie.pixel_size, "movie"))
    pts = add_tuple(viewer, atoms_layer_tuple(movie.atoms, movie.pixel_size, "atoms"))
    sub = SubimageWidget(viewer)
    viewer.window.add_dock_widget(sub)
    sub.atoms.value, sub.image.value = pts, img
    return img, pts, sub


def _train(qtbot, viewer, epochs: int):
    train = TrainWidget(viewer)
    viewer.window.add_dock_widget(train)
    train.epochs.value, train.batch.value, train.device.value = epochs, 32, "cpu"
    train.lr.value = 1e-3
    return train


def _cut(qtbot, sub):
    worker = sub.cut()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    return sub.current


def test_subimages_train_encode_colour_animate(make_napari_viewer, qtbot, movie, tmp_path) -> None:
    viewer = make_napari_viewer(show=True)
    img, pts, sub = _setup(viewer, movie)
    assert sub.window.value == 16  # DescriptorRecipe().window, as in atomlens run
    layers_before = [lay.name for lay in viewer.layers]
    subs = _cut(qtbot, sub)
    n = len(subs.images)
    # binned from the layer's pixel size (to about 0.3 Å/px) exactly as atomlens run does
    assert image_pixel_size(img, pts) == pytest.approx(movie.pixel_size)
    assert subs.windows.recipe == resolve_bin(DescriptorRecipe(), movie.pixel_size)
    assert f"(bin {subs.windows.recipe.bin})" in sub.status.value
    assert subs.images.shape[1:] == (16, 16) and 20 < n < len(movie.atoms)
    # the windows live in their own gallery dock: the canvas keeps one image and one slider
    assert [lay.name for lay in viewer.layers] == layers_before
    assert viewer.dims.ndim == 3
    gallery = sub.gallery
    assert gallery is not None and len(gallery.rows) == 9

    # selecting atoms (or clicking one) shows their windows in the gallery
    set_frame(viewer, img, 1)
    index = subs.index
    row = int(index[n // 2])
    i = show_window(viewer, subs, row)
    assert i == n // 2 and gallery.rows == [row]
    assert current_frame(viewer, img) == 1  # the time slider did not move
    pts.selected_data = {int(index[0]), int(index[1])}
    assert gallery.rows == [int(index[0]), int(index[1])]
    other = int(index[np.flatnonzero(pts.data[index, 0] == 1)[0]])
    click = next(cb for cb in pts.mouse_drag_callbacks if cb.__name__ == "_on_click")
    world = pts.data_to_world(pts.data[other])
    click(pts, SimpleNamespace(position=world, view_direction=None, dims_displayed=[1, 2]))
    assert gallery.rows == [other]
    gallery.redraw.flush()
    h, w = subs.window
    shown = gallery.image.get_array()[:h, :w]  # the first cell of the mosaic
    np.testing.assert_allclose(shown, subimages_of(subs)[int(np.flatnonzero(index == other)[0])])
    assert np.ma.getmaskarray(
        gallery.image.get_array()[:h, w]
    ).all()  # a gap (NaN, masked) between cells

    train = _train(qtbot, viewer, epochs=3)
    assert train.subimages.value is subs
    worker = train.train()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    state = train.state
    assert state.status == "finished" and state.epoch == 3
    assert len(state.train_loss) == 3 and np.all(np.isfinite(state.train_loss))
    assert train.progress.value == 3 and "epoch 3/3" in train.time_label.value
    assert session_for(viewer).model is not None
    train.loss_plot.redraw.flush()
    assert train.loss_plot.n_draws >= 1
    assert len(train.loss_plot.train_line.get_xdata()) == 3

    saved = train.save_model(tmp_path / "rvae.pt")
    assert saved is not None and saved.exists()
    trained = session_for(viewer).model.model
    loaded = train.load_model(saved)
    assert session_for(viewer).model.model is loaded is not trained
    assert session_for(viewer).model.window == 16
    np.testing.assert_allclose(
        loaded.transform(subimages_of(subs)).to_numpy(float),
        trained.transform(subimages_of(subs)).to_numpy(float),
        rtol=1e-5,
        atol=1e-5,
    )

    latent = LatentWidget(viewer)
    viewer.window.add_dock_widget(latent)
    latent.atoms.value, latent.image.value = pts, img
    species_colours = pts.face_color.copy()
    worker = latent.encode()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    feats = pts.features
    assert {"angle", "z1", "z2"} <= set(feats.columns)
    assert np.isfinite(feats["z1"]).sum() == n  # atoms whose window fits got latents
    assert "z1" in latent.colour_by.choices
    # coloured by the first content latent on its own (not by the angle, a nuisance
    # variable that is ~constant on one crystal)
    qtbot.waitUntil(lambda: latent.colour_by.value == "z1", timeout=5_000)

    latent.colour_by.value = "z1"
    assert pts.face_color_mode == "colormap"
    assert pts.face_contrast_limits == pytest.approx(robust_limits(feats["z1"].to_numpy()))
    assert not np.allclose(pts.face_color, species_colours)
    # atoms without a latent (window crosses the frame edge) are drawn grey, not hidden
    no_latent = ~np.isfinite(feats["z1"].to_numpy())
    assert no_latent.any()
    np.testing.assert_allclose(
        pts.face_color[no_latent], [[0.498, 0.498, 0.498, 1.0]] * int(no_latent.sum()), atol=0.01
    )
    key = pts.metadata["atomlens"]["colour_key"]
    assert (
        key["title"] == "z1"
        and key["units"] == "latent units"
        and key["n_missing"] == int(no_latent.sum())
    )
    assert tuple(key["limits"]) == pytest.approx(pts.face_contrast_limits)
    limits_all_frames = pts.face_contrast_limits
    latent.colour_by.value = "angle"
    assert pts.face_colormap.name.startswith("twilight")
    latent.colour_by.value = "z1"

    # the time slider shows only that frame's atoms, and colour limits do not change
    for t in (0, 2):
        set_frame(viewer, img, t)
        shown = pts._view_indices
        assert len(shown) == (movie.atoms["frame"] == t).sum()
        assert np.all(pts.data[shown, 0] == t)
        assert pts.face_contrast_limits == limits_all_frames

    # linked plots: lasso -> `selected` feature; layer selection -> scatter highlight;
    # the per-frame distribution marks the current frame
    plots = latent.show_plots()
    # the scatter now, the distribution on the next turn, the manifold from a worker
    qtbot.waitUntil(lambda: "distribution" in plots, timeout=5_000)
    scatter, dist = plots["scatter"], plots["distribution"]
    # the plots dock is a tab of the AtomLens dock group (showing it never resizes the
    # canvas, unlike a dock area of its own under it), docked and in front
    from qtpy.QtWidgets import QDockWidget

    def _dock_of(widget):
        while widget is not None and not isinstance(widget, QDockWidget):
            widget = widget.parentWidget()
        return widget

    plots_dock, latent_dock = _dock_of(plots["tabs"]), _dock_of(latent.native)
    main = latent_dock.parentWidget()
    assert plots_dock in main.tabifiedDockWidgets(latent_dock)
    assert plots_dock.isVisible() and not plots_dock.isFloating()
    assert plots_dock.widget() is plots["tabs"]  # napari finds the dock by its widget
    xy = scatter.xy()
    ok = np.isfinite(xy).all(1)
    lo, hi = np.nanmin(xy, 0), np.nanmax(xy, 0)
    mid = (lo[0] + hi[0]) / 2
    inside = scatter.on_lasso(
        [(lo[0] - 1, lo[1] - 1), (mid, lo[1] - 1), (mid, hi[1] + 1), (lo[0] - 1, hi[1] + 1)]
    )
    expected = ok & (xy[:, 0] < mid)
    assert inside.sum() == expected.sum() > 0
    assert pts.features["selected"].to_numpy().tolist() == inside.tolist()
    pts.selected_data = {0, 1}
    scatter.redraw.flush()
    assert len(scatter.highlight.get_offsets()) == 2
    set_frame(viewer, img, 1)
    assert dist.current == 1 and list(dist.marker.get_xdata()) == [1, 1]
    assert dist.image.get_array().shape[1] == 3  # three frames
    if "manifold_worker" in plots:  # an rVAE: its decoded manifold arrives from a worker
        qtbot.waitUntil(lambda: "manifold" in plots, timeout=30_000)
        assert plots["manifold"].image_artist.get_array().size > 0
        assert plots["manifold"].canvas.wait_drawn()  # rendered off the main thread
    again = latent.show_plots()  # Show plots twice: one plots dock, replaced
    assert again["tabs"] is not plots["tabs"] or again is plots
    titles = [
        d.windowTitle()
        for d in viewer.window._qt_window.findChildren(QDockWidget)
        if d.widget() is not None
    ]
    assert sum("AtomLens plots" in t for t in titles) == 1

    # the colour key dock shows the z1 colour bar beside the canvas
    key_dock = session_for(viewer).key_dock
    key_dock.redraw.flush()
    assert key_dock.keys[0][0] == "atoms" and key_dock.keys[0][1].label == "z1 (latent units)"

    # movie export on a worker (scale bar, counter, colour bar), into the path given
    import imageio.v3 as iio

    worker = latent.export_movie(tmp_path / "atoms.gif")
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert iio.imread(tmp_path / "atoms.gif").shape[0] == 3
    assert latent.progress.value == 3 and "wrote" in latent.status.value
    assert latent.export_movie(tmp_path / "atoms.avi") is None  # bad input: a notification
    shot = viewer.screenshot(canvas_only=True, flash=False)
    rgb = shot[..., :3].astype(int)
    assert rgb.std() > 10
    coloured = (rgb.max(-1) - rgb.min(-1)) > 60
    assert coloured.sum() > 50


def test_stop_ends_cleanly_with_usable_weights(make_napari_viewer, qtbot, movie) -> None:
    viewer = make_napari_viewer()
    _img, _pts, sub = _setup(viewer, movie)
    subs = _cut(qtbot, sub)
    train = _train(qtbot, viewer, epochs=500)
    epochs_seen = []
    train.state.events.epoch.connect(lambda e: (epochs_seen.append(e), train.stop()))
    worker = train.train()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    assert train.state.status == "stopped"
    assert 1 <= train.state.epoch < 500
    assert train.train_button.enabled and not train.stop_button.enabled
    model = session_for(viewer).model.model
    z = model.transform(subimages_of(subs))
    assert len(z) == len(subs.images) and np.isfinite(z.to_numpy(float)).all()

    # ring centres become their own Points layer, and windows are cut around them
    sub.centres.value = "ring centres"
    rings = _cut(qtbot, sub)
    centres = viewer.layers["ring centres atoms"]
    assert set(centres.features["size"]) <= {4, 5, 6, 7, 8, 9} and 6 in set(
        centres.features["size"]
    )
    assert rings.centres == "ring centres atoms"
    assert 0 < len(rings.images) <= len(centres.data)
    key = centres.metadata["atomlens"]["colour_key"]
    assert key["title"] == "ring size" and "6" in [e[0] for e in key["entries"]]


def test_docks_default_to_the_cli_recipes(make_napari_viewer) -> None:
    """The Subimages and Train docks start from DescriptorRecipe() and LatentRecipe(), the
    defaults of ``atomlens run`` (bench/gui_train_real.py times exactly these)."""
    import os

    import pandas as pd

    from atomlens.workflows import drain

    viewer = make_napari_viewer()
    sub, train = SubimageWidget(viewer), TrainWidget(viewer)
    assert sub.window.value == DescriptorRecipe().window
    threads = max(1, (os.cpu_count() or 2) - 1)  # one core left to the viewer
    assert train.recipe() == LatentRecipe(threads=threads).validate()
    for name in ("vae", "rvae"):  # a model choice keeps the recipe's learning rate
        train.model_name.value = name
        assert train.lr.value == pytest.approx(LatentRecipe().lr)
    train.model_name.value = "gmm"  # GMM: the recipe's clusters in the same field
    assert train.latent.value == LatentRecipe().n_clusters
    assert train.recipe().n_clusters == LatentRecipe().n_clusters
    # the Subimages worker bins by the pixel size: 0.078 Å/px -> bin 4, as in atomlens run
    centres = pd.DataFrame({"frame": [0], "y": [32.0], "x": [32.0]})
    windows = drain(window_job(np.random.rand(1, 64, 64), centres, DescriptorRecipe(), 0.078))
    assert windows.recipe.bin == 4 and windows.images.shape == (1, 16, 16)


def test_errors_become_notifications(make_napari_viewer, qtbot, tmp_path) -> None:
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    train = TrainWidget(viewer)
    before = len(notification_manager.records)
    assert train.train() is None  # no subimages layer
    assert train.load_model(tmp_path / "missing.pt") is None
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    assert train.load_model(bad) is None
    messages = [str(r.message) for r in notification_manager.records[before:]]
    assert any("cut subimages first" in m for m in messages)
    sub = SubimageWidget(viewer)
    assert sub.cut() is None  # no layers: a notification naming the dock's fields
    assert any(
        "'atoms' and 'image / map' fields" in str(r.message)
        for r in notification_manager.records[before:]
    )
    assert any("missing.pt" in m for m in messages)
    assert any("bad.pt" in m for m in messages)
    assert session_for(viewer).model is None
