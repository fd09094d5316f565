"""The Correct atoms dock is wiring over :class:`CorrectionSession`: after every action
driven through napari (add, delete, undo, retrain, re-detect) the layer shows exactly the
session's table; a bad input is a notification and the user's points stay. And one pixel
size for all docks: a value typed into the Detect dock is the one Defects, Subimages and
Correct atoms use."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from atomlens._napari._layers import add_tuple
from atomlens._napari.correction import CorrectionWidget
from atomlens.segment.model_file import Detector, save_detector
from atomlens.segment.nets import NetConfig, build_net
from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple, points_to_atoms

pytestmark = pytest.mark.gui

COLS = ["frame", "y", "x", "cls", "edited", "source", "atom_id"]


@pytest.fixture(scope="module")
def movie():
    from atomlens.simulate import simulate_movie

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simulate_movie(3, 64, 0.2, seed=3)


def _layer_table(layer) -> pd.DataFrame:
    return points_to_atoms(layer.data, layer.features)[COLS].reset_index(drop=True)


def _assert_layer_is_session(w: CorrectionWidget) -> None:
    """Row i of the layer is row i of the session's table (positions from the layer's
    data, the rest from its features)."""
    got, want = _layer_table(w.layer), w.session.atoms[COLS].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_categorical=False)
    assert want["atom_id"].is_unique
    assert w.layer.metadata["atomlens"]["corrected_frames"] == w.session.corrected_frames


def _messages(before: int) -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(r.message) for r in notification_manager.records[before:]]


def _n_notes() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


def test_dock_actions_go_through_the_session(make_napari_viewer, qtbot, tmp_path, movie):
    truth = movie.atoms[["frame", "y", "x", "cls"]].assign(prob=1.0)
    np.save(tmp_path / "movie.npy", movie.frames)
    net = build_net(NetConfig(base_filters=4, levels=2, dilations=(1, 2)))
    tiny = save_detector(
        Detector(net, net.config, 0.2, 0.35, 256, {"name": "tiny"}), tmp_path / "t.pt"
    )
    viewer = make_napari_viewer()
    meta = {"atomlens": {"path": str(tmp_path / "movie.npy")}}
    img = add_tuple(viewer, image_layer_tuple(movie.frames, 0.2, "movie", metadata=meta))
    pts = add_tuple(viewer, atoms_layer_tuple(truth, 0.2, name="atoms"))
    w = CorrectionWidget(viewer)
    w.image.value = img
    w.bind_layer(pts)
    w.model_path = str(tiny)
    s = w.session
    assert s.pixel_size == 0.2 and s.stack_path == str(tmp_path / "movie.npy")
    _assert_layer_is_session(w)
    n0 = len(truth)

    # add with napari's own tool: a manual Si atom on frame 1, a new atom_id
    w.cls.value = "Si"
    pts.add(np.array([[1, 20.0, 21.0]]))
    assert len(s.atoms) == n0 + 1 and s.corrected_frames == [1]
    added = s.atoms.iloc[-1]
    assert (added["cls"], added["source"], bool(added["edited"])) == ("Si", "manual", True)
    new_id = int(added["atom_id"])
    assert new_id not in set(s.atoms["atom_id"].iloc[:-1])
    _assert_layer_is_session(w)

    # delete an atom of frame 2 with napari's own remove; undo brings back the same atom
    i2 = int(np.flatnonzero(pts.data[:, 0] == 2)[0])
    gone = int(s.atoms["atom_id"].iloc[i2])
    pts.selected_data = {i2}
    pts.remove_selected()
    assert gone not in set(s.atoms["atom_id"]) and s.corrected_frames == [1, 2]
    _assert_layer_is_session(w)
    w.undo()
    assert gone in set(s.atoms["atom_id"]) and s.corrected_frames == [1]
    _assert_layer_is_session(w)
    w.redo()
    _assert_layer_is_session(w)

    # a point outside the movie (frame 7 of 3): a notification, the session and the
    # user's other points unchanged
    before, n = _n_notes(), len(s.atoms)
    pts.add(np.array([[7, 5.0, 5.0]]))
    assert any("outside the movie" in m for m in _messages(before))
    assert len(s.atoms) == n and len(pts.data) == n
    _assert_layer_is_session(w)

    # no image layer: retrain is refused with a notification, the points stay
    kept = _layer_table(pts)
    viewer.layers.remove(img)
    assert w.image.value is None
    before = _n_notes()
    assert w.start_retrain() is None
    assert any("no movie" in m for m in _messages(before))
    pd.testing.assert_frame_equal(_layer_table(pts), kept)
    img = add_tuple(viewer, image_layer_tuple(movie.frames, 0.2, "movie", metadata=meta))
    w.image.value = img

    # retrain the tiny model for 3 steps on the corrected frames, then re-detect
    def on_corrected_frames():
        rows = s.atoms[s.atoms["frame"].isin([1, 2])][COLS]
        return rows.sort_values("atom_id").reset_index(drop=True)

    corrected = on_corrected_frames()
    w.steps.value, w.threads = 3, 1
    worker = w.start_retrain()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert s.new_model is not None and len(s.lineage) == 1
    assert s.lineage[0]["frames"] == [1, 2] and s.lineage[0]["parent"] == str(tiny)
    assert w.redetect_button.enabled
    worker = w.start_redetect()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert w.last_redetect.detected_frames == [0] and w.last_redetect.skipped_frames == [1, 2]
    _assert_layer_is_session(w)
    # untouched, same ids (re-detection sorts the table by frame)
    pd.testing.assert_frame_equal(on_corrected_frames(), corrected, check_dtype=False)
    frame0 = s.atoms[s.atoms["frame"] == 0]
    assert (frame0["source"] == "detector").all() and not frame0["edited"].any()
    assert "kept 2 corrected frame(s) untouched" in w.status.value
    # re-detection is one undo step: frame 0 comes back as it was
    w.undo()
    pd.testing.assert_frame_equal(
        s.atoms[s.atoms["frame"] == 0][["y", "x"]].reset_index(drop=True),
        truth[truth["frame"] == 0][["y", "x"]].reset_index(drop=True),
    )
    _assert_layer_is_session(w)


def test_drag_is_one_undo_step_and_other_docks_columns_survive(
    make_napari_viewer, qtbot, tmp_path, movie
):
    from napari.layers.base._base_constants import ActionType

    from atomlens._napari._layers import merge_features

    truth = movie.atoms[["frame", "y", "x", "cls"]]
    viewer = make_napari_viewer()
    img = add_tuple(viewer, image_layer_tuple(movie.frames, 0.2, "movie"))
    pts = add_tuple(viewer, atoms_layer_tuple(truth, 0.2, name="atoms"))
    w = CorrectionWidget(viewer)
    w.image.value = img
    w.bind_layer(pts)
    # another dock (e.g. Latent colouring) writes a column into the layer
    merge_features(pts, pd.DataFrame({"z1": np.arange(len(truth), dtype=float)}))
    i = 3
    y0, x0 = pts.data[i, 1:]
    pts.selected_data = {i}
    pts.events.data(value=pts.data, action=ActionType.CHANGING, data_indices=(i,))
    pts._set_drag_start({i}, pts.data[i])
    for step in range(1, 4):  # a drag reports every mouse move
        pts._move({i}, np.array([pts.data[i, 0], y0 + step, x0]))
    pts._drag_start = None
    assert pts.data[i, 1] == pytest.approx(y0 + 3)
    assert w.session.atoms["y"].iloc[i] == pytest.approx(y0 + 3)
    assert "z1" in pts.features and pts.features["z1"].iloc[i] == i  # kept through the edit
    w.undo()  # the whole drag at once
    assert pts.data[i, 1] == pytest.approx(y0) and w.session.corrected_frames == []
    _assert_layer_is_session(w)

    # autosave of a movie opened without a file cannot work: one notification, then off
    before = _n_notes()
    w.project_file.value = str(tmp_path / "p.atomlens")
    w.autosave_s.value = 2
    w.autosave.value = True
    qtbot.waitUntil(lambda: not w.autosave.value, timeout=10_000)
    assert any("does not know its movie" in m for m in _messages(before))
    assert not w.timer.isActive() and not (tmp_path / "p.atomlens").exists()


def test_typed_pixel_size_reaches_every_dock(make_napari_viewer, qtbot, tmp_path):
    """0.077 Å/px typed into Detect is used by Defects, Subimages and Correct atoms, even
    where the file says otherwise (its calibration: 0.1 Å/px, the layers' drawing scale)."""
    from atomlens._napari._layers import pixel_size_of
    from atomlens._napari.defects_dock import DefectsDock
    from atomlens._napari.detect_widget import DetectWidget
    from atomlens._napari.subimage_widget import SubimageWidget
    from atomlens.simulate import simulate_movie
    from atomlens.workflows.latent import DescriptorRecipe, resolve_bin

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        movie = simulate_movie(1, 192, 0.077, seed=4)
    viewer = make_napari_viewer()
    img = add_tuple(viewer, image_layer_tuple(movie.frames, 0.1, "movie"))  # the file's
    assert pixel_size_of(img) == 0.1
    detect = DetectWidget(viewer)
    detect.pixel_size.value = 0.077
    worker = detect.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "atoms movie" in viewer.layers, timeout=10_000)
    atoms = viewer.layers["atoms movie"]
    assert len(atoms.data) > 20
    assert pixel_size_of(img) == pixel_size_of(atoms) == 0.077
    assert tuple(atoms.scale)[-1] == pytest.approx(0.1)  # drawn in the image's units

    defects = DefectsDock(viewer)
    defects.atoms.value = atoms
    worker = defects.run_chemistry()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert defects.result is not None and defects.result.pixel_size == 0.077

    subs = SubimageWidget(viewer)
    subs.atoms.value, subs.image.value = atoms, img
    worker = subs.cut()
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    bin_077 = resolve_bin(DescriptorRecipe(), 0.077).bin
    assert bin_077 == 4 and subs.current.windows.recipe.bin == bin_077  # 0.1 Å/px: bin 3

    corr = CorrectionWidget(viewer)
    assert corr.image.value is img  # the movie, not the P(...) maps above it
    corr.bind_layer(atoms)
    assert corr.session.pixel_size == 0.077 and corr.session.pixel_size_source == "user"

    # detecting again with the field back at 0: the value typed before is still the user's
    viewer.layers.remove(atoms)
    detect.pixel_size.value = 0.0
    worker = detect.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "atoms movie" in viewer.layers, timeout=10_000)
    assert pixel_size_of(viewer.layers["atoms movie"]) == 0.077  # what Defects reads


def test_crash_recovery_keeps_a_typed_pixel_size(tmp_path):
    from atomlens._napari.autosave import load_snapshot, write_snapshot

    table = pd.DataFrame({"frame": [0, 0], "y": [1.0, 2.0], "x": [3.0, 4.0], "cls": ["C", "C"]})
    entry = {"name": "atoms", "table": table, "scale": [1.0, 0.1, 0.1]}
    entry |= {"translate": [0.0, 0.0, 0.0], "pixel_size": 0.077, "pixel_size_source": "user"}
    (tup,) = load_snapshot(write_snapshot(tmp_path / "rec", [entry]))
    meta = tup[1]["metadata"]["atomlens"]
    assert meta["pixel_size"] == 0.077 and meta["pixel_size_source"] == "user"
