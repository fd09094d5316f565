"""The "Detect atoms" dock in a real viewer: worker thread, progress, layers, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from atomlens._napari._layers import add_tuple, set_frame
from atomlens._napari.detect_widget import DetectWidget
from atomlens.viz.colours import SPECIES_COLOURS
from atomlens.viz.layers import image_layer_tuple

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def movie():
    from atomlens.simulate import simulate_movie

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate_movie(3, 64, 0.2, seed=3)


@pytest.fixture(scope="module")
def detector_file(tmp_path_factory):
    """The shipped detector when present, else a small seeded network (same file format)."""
    import torch

    from atomlens.segment.model_file import SHIPPED, Detector, save_detector
    from atomlens.segment.nets import NetConfig, build_net

    if SHIPPED.exists():
        return str(SHIPPED), True
    torch.manual_seed(0)
    cfg = NetConfig(arch="unet", base_filters=4, levels=2)
    det = Detector(build_net(cfg).eval(), cfg, pixel_size=0.2)
    return str(save_detector(det, tmp_path_factory.mktemp("det") / "tiny.pt")), False


def test_detect_current_frame_adds_maps_and_atoms(
    make_napari_viewer, qtbot, movie, detector_file
) -> None:
    path, shipped = detector_file
    viewer = make_napari_viewer()
    img = add_tuple(viewer, image_layer_tuple(movie.frames, movie.pixel_size, "movie"))
    before = img.data.copy()
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image.value is img
    widget.model_file.value = path
    widget.threshold.value = 0.5 if shipped else 0.3
    set_frame(viewer, img, 2)
    # by default only the atoms: no probability-map layers
    assert widget.show_maps.value is False
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    # the layers arrive one per turn of the event loop (no long main-thread stall)
    qtbot.waitUntil(lambda: "atoms in" in widget.status.value, timeout=10_000)
    assert [lay.name for lay in viewer.layers] == ["movie", "atoms movie"]
    first = viewer.layers["atoms movie"]
    n_first = len(first.data)

    # "show probability maps": the maps too, and the same atoms (the maps change none)
    widget.show_maps.value = True
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: "atoms in" in widget.status.value, timeout=10_000)
    assert widget.progress.value == widget.progress.max == 1
    names = [lay.name for lay in viewer.layers]
    assert names[0] == "movie" and "P(C) movie" in names and "P(Si) movie" in names
    assert names.count("atoms movie") == 1
    # the re-run wrote into the atoms layer of the first (no new layer to add and draw),
    # and it stays above the maps the re-run added
    assert viewer.layers["atoms movie"] is first and names[-1] == "atoms movie"
    assert len(viewer.layers["atoms movie"].data) == n_first
    pc, psi, pbg = (
        viewer.layers["P(C) movie"],
        viewer.layers["P(Si) movie"],
        viewer.layers["P(background) movie"],
    )
    assert pc.data.shape == (1, 64, 64) and tuple(pc.scale) == pytest.approx(tuple(img.scale))
    assert pc.translate[0] == 2  # the map of frame 2 sits at frame 2
    np.testing.assert_allclose(pc.data + psi.data + pbg.data, 1.0, atol=1e-4)  # softmax
    atoms = viewer.layers["atoms movie"]
    assert {"frame", "y", "x", "cls", "prob"} <= set(atoms.features.columns)
    assert len(atoms.data) == len(atoms.features)
    assert np.all(atoms.data[:, 0] == 2)
    np.testing.assert_array_equal(img.data, before)  # the user's layer is untouched
    if len(atoms.data):
        si = atoms.features["cls"].astype(str).to_numpy() == "Si"
        expected = np.array(
            [
                int(SPECIES_COLOURS["Si" if s else "C"][i : i + 2], 16) / 255
                for s in si
                for i in (1, 3, 5)
            ]
        ).reshape(-1, 3)
        np.testing.assert_allclose(atoms.face_color[:, :3], expected, atol=1e-6)
    if shipped:  # a trained detector finds most true atoms of that frame
        n_true = int((movie.atoms["frame"] == 2).sum())
        assert 0.7 * n_true < len(atoms.data) < 1.3 * n_true

    # a single 2-D image (offset in space) works the same; results keep its offset
    single = viewer.add_image(movie.frames[1], translate=(3.0, 5.0), name="single")  # uncalibrated
    widget.image.value = single
    widget.pixel_size.value = movie.pixel_size  # the user types the pixel size
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: "atoms in" in widget.status.value, timeout=10_000)
    assert tuple(viewer.layers["P(C) single"].translate) == (0.0, 3.0, 5.0)
    assert tuple(viewer.layers["atoms single"].translate) == (0.0, 3.0, 5.0)
    assert tuple(viewer.layers["atoms single"].scale) == (1.0, 1.0, 1.0)  # pixels, like the image
    assert viewer.layers["atoms single"].metadata["atomlens"]["pixel_size"] == pytest.approx(0.2)
    assert np.all(viewer.layers["atoms single"].data[:, 0] == 0)

    # maps off again on the movie: its earlier maps no longer match the new atoms and go;
    # the other image's maps stay
    widget.image.value = img
    widget.show_maps.value = False
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: widget.results_shown, timeout=10_000)
    names = [lay.name for lay in viewer.layers]
    assert not [n for n in names if n.startswith("P(") and n.endswith(" movie")], names
    assert "P(C) single" in names and "atoms movie" in names


def test_detect_error_becomes_notification(make_napari_viewer, qtbot, movie, tmp_path) -> None:
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(movie.frames, movie.pixel_size, "movie"))
    widget = DetectWidget(viewer)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    widget.model_file.value = str(bad)
    before = len(notification_manager.records)
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        pass
    messages = [str(r.message) for r in notification_manager.records[before:]]
    assert any("bad.pt" in m for m in messages), messages
    assert [lay.name for lay in viewer.layers] == ["movie"]
    assert widget.run_button.enabled and widget.status.value == "failed"


def test_detect_says_when_broad_spots_are_resampled(make_napari_viewer, qtbot) -> None:
    """Broad (3 Å FWHM) isolated atoms with the general model: 'spot scale' auto measures
    them, resamples and says so (status and tooltip); 'off' detects at the stated scale."""
    rng = np.random.default_rng(5)
    px, size, fwhm_px = 0.3, 256, 3.0 / 0.3
    yy, xx = np.indices((size, size), dtype=float)
    img = 3.0 + rng.normal(0, 0.1, (size, size))
    for y, x in rng.uniform(16, size - 16, (20, 2)):
        img += np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * (fwhm_px / 2.3548) ** 2))
    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(img[None].astype(np.float32), px, "broad"))
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = "general"
    assert widget.spot_scale.value == "auto"
    for mode, said in (("auto", True), ("off", False)):
        widget.spot_scale.value = mode
        worker = widget.run()
        with qtbot.waitSignal(worker.finished, timeout=60_000):
            pass
        qtbot.waitUntil(lambda: "atoms in" in widget.status.value, timeout=10_000)
        assert ("spots resampled" in widget.status.value) is said, widget.status.value
        assert ("broader than the model was trained on" in widget.status.tooltip) is said


def test_redetect_from_the_plugins_menu_reuses_the_atoms_layer(
    make_napari_viewer, qtbot, movie, detector_file
) -> None:
    """Opened from the Plugins menu, a dock sees napari's public-only proxy of the viewer
    (``viewer.layers[name]`` is a proxy): a re-run still finds the previous atoms layer,
    writes the new detections into it (no second 'atoms movie [1]' layer) and keeps the
    species colouring."""
    path, shipped = detector_file
    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(movie.frames, movie.pixel_size, "movie"))
    _, widget = viewer.window.add_plugin_dock_widget("atomlens", "Detect atoms")
    assert type(widget.viewer).__name__ == "PublicOnlyProxy"
    widget.model_file.value = path
    widget.threshold.value = 0.5 if shipped else 0.3
    widget.frames.value = "all"
    counts = []
    for threshold in (widget.threshold.value, 0.8):
        widget.threshold.value = threshold
        worker = widget.run()
        worker.returned.connect(lambda out: counts.append(len(out[0].atoms)))
        with qtbot.waitSignal(worker.finished, timeout=60_000):
            pass
        qtbot.waitUntil(lambda: widget.results_shown, timeout=10_000)
        if len(counts) == 1:
            first = next(lay for lay in viewer.layers if lay.name == "atoms movie")
            # the Correct atoms dock (also from the menu) edits it, bound through the
            # proxy's viewer.layers[name]
            _, corr = viewer.window.add_plugin_dock_widget("atomlens", "Correct atoms")
            corr.bind_layer(corr.viewer.layers["atoms movie"])
            corr.session.delete([int(corr.session.atoms["atom_id"].iloc[0])])
            assert corr.session.can_undo
    assert [lay.name for lay in viewer.layers] == ["movie", "atoms movie"]
    atoms = next(lay for lay in viewer.layers if lay.name == "atoms movie")
    assert atoms is first  # the same layer, written into
    assert len(atoms.data) == len(atoms.features) == counts[1]
    # the correction restarted from the new detections: nothing to undo, nothing moved
    assert not corr.session.can_undo and len(corr.session.atoms) == counts[1]
    if shipped:  # a higher threshold keeps fewer atoms
        assert counts[1] < counts[0]
    assert atoms.face_color_mode == "cycle"
    for name in set(atoms.features["cls"].astype(str)):
        rows = atoms.features["cls"].astype(str).to_numpy() == name
        want = [int(SPECIES_COLOURS[name][i : i + 2], 16) / 255 for i in (1, 3, 5)]
        np.testing.assert_allclose(atoms.face_color[rows, :3], [want] * int(rows.sum()), atol=1e-6)


def test_rerun_into_the_same_layer_with_no_atoms_and_back(make_napari_viewer, qtbot) -> None:
    """A re-run that finds no atom empties the reused layer (no error, no stale rows),
    and the next one fills it again with species colours; a latent colouring of the old
    table (its column gone from the new one) does not survive into the new table."""
    import pandas as pd

    from atomlens._napari._layers import apply_colour
    from atomlens._napari._workers import add_layers_in_turns, make_layers
    from atomlens.viz.colours import colour_spec
    from atomlens.viz.layers import atoms_layer_tuple

    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(np.zeros((3, 32, 32), np.float32), 0.1, "movie"))
    rng = np.random.default_rng(1)

    def table(n: int) -> pd.DataFrame:
        return pd.DataFrame({
            "frame": rng.integers(0, 3, n), "y": rng.uniform(0, 32, n),
            "x": rng.uniform(0, 32, n), "cls": rng.choice(["C", "Si"], n),
        })  # fmt: skip

    def run(atoms: pd.DataFrame) -> list:
        done: list = []
        layers = make_layers([atoms_layer_tuple(atoms, 0.1, "atoms movie")])
        add_layers_in_turns(viewer, layers, done.append)
        qtbot.waitUntil(lambda: bool(done), timeout=5_000)
        return done[0]

    [layer] = run(table(20))
    layer.features = layer.features.assign(z1=np.linspace(0, 1, 20))
    apply_colour(layer, colour_spec("z1", layer.features["z1"]))  # coloured by a latent
    assert layer.face_color_mode == "colormap"
    assert run(table(0)) == [layer]
    assert len(layer.data) == len(layer.features) == 0
    again = table(15)
    assert run(again) == [layer]
    assert [lay.name for lay in viewer.layers] == ["movie", "atoms movie"]
    assert len(layer.data) == len(layer.features) == 15 and "z1" not in layer.features
    assert layer.face_color_mode == "cycle" and layer.visible
    for name in ("C", "Si"):
        rows = layer.features["cls"].astype(str).to_numpy() == name
        want = [int(SPECIES_COLOURS[name][i : i + 2], 16) / 255 for i in (1, 3, 5)]
        np.testing.assert_allclose(layer.face_color[rows, :3], [want] * int(rows.sum()), atol=1e-6)


def test_layer_pickers_refresh_a_turn_after_layers_added_in_turns(
    make_napari_viewer, qtbot
) -> None:
    """Inside AtomLens's in-turn adds the docks' layer pickers refresh on the next turn
    (not inside napari's add_layer turn); a layer added by the user or a script is in
    the pickers at once."""
    from atomlens._napari._base import pickers_deferred
    from atomlens._napari._workers import add_layers_in_turns, make_layers

    viewer = make_napari_viewer()
    widget = DetectWidget(viewer)
    frames = np.zeros((2, 16, 16), np.float32)
    first = viewer.add_image(frames, name="typed")  # at once
    assert first in widget.image.choices
    with pickers_deferred():
        late = viewer.add_image(frames, name="late")
        assert late not in widget.image.choices  # waits for the next turn
    qtbot.waitUntil(lambda: late in widget.image.choices, timeout=2_000)
    done: list = []
    add_layers_in_turns(
        viewer, make_layers([image_layer_tuple(frames, 0.1, "in turns")]), done.append
    )
    qtbot.waitUntil(lambda: bool(done), timeout=5_000)
    assert done[0][0] in widget.image.choices


def test_scale_bar_shown_after_a_dock_opens_without_deprecated_api(
    make_napari_viewer, qtbot
) -> None:
    """The first AtomLens dock turns napari's scale bar on (an idle turn later), through
    the overlay napari 0.9 documents, not the deprecated ``viewer.scale_bar``."""
    from atomlens._napari._base import SCALE_BAR_MS, scale_bar_of

    viewer = make_napari_viewer()
    bar = scale_bar_of(viewer)
    assert not bar.visible
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", DeprecationWarning)
        DetectWidget(viewer)
        qtbot.wait(SCALE_BAR_MS + 200)
    assert bar.visible
    assert not [w for w in seen if "scale_bar is a deprecated" in str(w.message)]


def test_eight_orientations_take_the_cards_setting_and_match_the_headless_run(
    make_napari_viewer, qtbot, movie
) -> None:
    """Ticking 'average 8 orientations' with the general model sets the card's
    cross-validated threshold and position; the dock's atoms equal the headless recipe's."""
    from atomlens.io import Stack
    from atomlens.segment.registry import model_card
    from atomlens.workflows import detect as wf
    from atomlens.workflows.events import drain

    setting = model_card("general")["tta"]["cross_validated"]
    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(movie.frames[:1], movie.pixel_size, "m"))
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = "general"
    widget.tta.value = True
    assert widget.threshold.value == pytest.approx(setting["threshold"])
    assert widget.refine.value == setting["refine"]
    assert "card" in widget.status.value and "cross-validated" in widget.status.tooltip
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: "atoms in" in widget.status.value, timeout=10_000)
    shown = viewer.layers["atoms m"].data[:, 1:]  # (t, y, x) pixels
    recipe = wf.DetectRecipe(
        model="general", threshold=setting["threshold"], refine=setting["refine"], tta=8
    )
    stack = Stack(movie.frames[:1], movie.pixel_size, "metadata")
    headless = drain(wf.run(stack, recipe, [0]))
    want = headless.atoms[["y", "x"]].to_numpy(float)
    assert len(want) > 0 and shown.shape == want.shape
    np.testing.assert_allclose(np.sort(shown, 0), np.sort(want, 0), atol=1e-4)
    # unticked: the user's values stay
    widget.threshold.value = 0.5
    widget.tta.value = False
    assert widget.threshold.value == 0.5
