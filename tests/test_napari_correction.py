"""The correction dock in a real viewer: edit atoms (add, delete, move, re-classify with
the class keys), undo/redo, autosave a project that survives closing the viewer, retrain
for a few steps on a worker, re-detect, and corrected frames stay untouched."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from app_model.types import KeyBinding
from napari.layers.base._base_constants import ActionType

from atomlens._napari._layers import add_tuple
from atomlens._napari.correction import CorrectionWidget
from atomlens.io.project import load_project
from atomlens.segment.model_file import Detector, save_detector
from atomlens.segment.nets import NetConfig, build_net
from atomlens.viz.colours import SPECIES_COLOURS
from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple

pytestmark = pytest.mark.gui

PX = 0.15  # Å per pixel


@pytest.fixture
def movie():
    rng = np.random.default_rng(0)
    frames = rng.normal(0, 1, (4, 64, 64)).astype(np.float32)
    rows = []
    for t in range(4):
        for _ in range(12):
            y, x = rng.uniform(4, 60, 2)
            frames[t] += 3 * np.exp(
                -((np.arange(64)[:, None] - y) ** 2 + (np.arange(64)[None] - x) ** 2) / 8
            ).astype(np.float32)
            rows.append({"frame": t, "y": y, "x": x, "cls": "C", "prob": 0.9})
    atoms = pd.DataFrame(rows)
    atoms["cls"] = pd.Categorical(atoms["cls"], categories=["C", "Si"])
    return frames, atoms


@pytest.fixture
def tiny_model(tmp_path):
    net = build_net(NetConfig(base_filters=4, levels=2, dilations=(1, 2)))
    path = tmp_path / "tiny.pt"
    save_detector(Detector(net, net.config, 0.2, 0.35, 256, {"name": "tiny"}), path)
    return str(path)


def _press(layer, key: str) -> None:
    """Run the function bound to ``key`` on the layer (what napari does on a key press)."""
    kb = KeyBinding.from_str(key)
    layer.keymap[kb](layer)


def test_correct_save_retrain_redetect(make_napari_viewer, qtbot, tmp_path, movie, tiny_model):
    frames, atoms = movie
    np.save(tmp_path / "movie.npy", frames)  # a project records its movie file
    viewer = make_napari_viewer()
    meta = {"atomlens": {"path": str(tmp_path / "movie.npy")}}
    img = add_tuple(viewer, image_layer_tuple(frames, PX, "movie", metadata=meta))
    pts = add_tuple(viewer, atoms_layer_tuple(atoms, PX, name="atoms"))
    w = CorrectionWidget(viewer)
    viewer.window.add_dock_widget(w, name="Correct atoms")
    w.image.value = img
    w.bind_layer(pts)
    w.model_path = tiny_model
    assert pts.features["edited"].dtype == bool and not pts.features["edited"].any()
    n0 = len(pts.data)

    # add a Si atom on frame 0 with napari's own add (the class sets feature_defaults)
    w.cls.value = "Si"
    pts.add(np.array([[0, 30.0, 31.0]]))
    assert len(pts.data) == n0 + 1
    new = pts.features.iloc[-1]
    assert new["cls"] == "Si" and bool(new["edited"]) and new["source"] == "manual"
    assert w.session.corrected_frames == [0]

    # delete an atom of frame 1
    i1 = int(np.flatnonzero(pts.data[:, 0] == 1)[0])
    pts.selected_data = {i1}
    w.delete_selected()
    assert len(pts.data) == n0 and w.session.corrected_frames == [0, 1]

    # move an atom of frame 2 the way napari's drag does (CHANGING, then _move)
    i2 = int(np.flatnonzero(pts.data[:, 0] == 2)[0])
    old_yx = pts.data[i2, 1:].copy()
    pts.selected_data = {i2}
    pts.events.data(
        value=pts.data, action=ActionType.CHANGING, data_indices=(i2,), vertex_indices=((),)
    )
    pts._set_drag_start({i2}, pts.data[i2])
    pts._move({i2}, np.array([2, old_yx[0] + 2.0, old_yx[1] - 1.0]))
    pts._drag_start = None
    assert np.allclose(pts.data[i2, 1:], old_yx + [2.0, -1.0])
    assert bool(pts.features["edited"].iloc[i2]) and w.session.corrected_frames == [0, 1, 2]

    # key '2' picks the second class and re-classifies the selection; undo / redo
    j = int(np.flatnonzero(pts.data[:, 0] == 0)[0])
    pts.selected_data = {j}
    w.cls.value = "C"
    _press(pts, "2")
    assert w.cls.value == "Si" and pts.features["cls"].iloc[j] == "Si"
    _press(pts, "Control-Z")
    assert pts.features["cls"].iloc[j] == "C"
    _press(pts, "Control-Shift-Z")
    assert pts.features["cls"].iloc[j] == "Si"
    w.undo()
    w.undo()  # undo the move as well
    assert np.allclose(pts.data[i2, 1:], old_yx) and w.session.corrected_frames == [0, 1]
    w.redo()
    assert np.allclose(pts.data[i2, 1:], old_yx + [2.0, -1.0])
    assert w.session.corrected_frames == [0, 1, 2]

    # autosave: the timer saves edits; the project survives closing the viewer
    proj_path = tmp_path / "work.atomlens"
    w.project_file.value = str(proj_path)
    w.autosave_s.value = 2
    w.autosave.value = True
    assert w.timer.isActive() and w.timer.interval() == 2000
    qtbot.waitUntil(lambda: (proj_path / "atoms.csv").exists(), timeout=6000)
    saved = load_project(proj_path)
    assert saved.corrected_frames == [0, 1, 2] and saved.pixel_size == pytest.approx(PX)
    assert int(saved.atoms["edited"].sum()) == 2  # the added and the moved atom
    corrected_before = w.atoms_table()
    corrected_before = corrected_before[corrected_before.frame.isin([0, 1, 2])].sort_values(
        "frame", kind="stable"
    )

    # retrain a few steps on the worker, then re-detect: corrected frames untouched
    w.steps.value = 3
    w.threads = 1
    worker = w.start_retrain()
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert w.new_model is not None and w.redetect_button.enabled
    card = w.new_model.card["finetune"]
    assert card["frames"] == [0, 1, 2] and card["n_corrections"] == 2 and card["steps"] == 3
    assert w.new_model_path and w.new_model_path.startswith(str(proj_path))
    worker = w.start_redetect()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    res = w.last_redetect
    assert res is not None and res.skipped_frames == [0, 1, 2] and res.detected_frames == [3]
    after = w.atoms_table()
    pd.testing.assert_frame_equal(
        after[after.frame.isin([0, 1, 2])].reset_index(drop=True)[["frame", "y", "x", "cls"]],
        corrected_before.reset_index(drop=True)[["frame", "y", "x", "cls"]],
    )
    assert "kept 3 corrected frame(s) untouched" in w.status.value
    assert w.counts.value["data"][3][0] == 3  # the counts table lists frame 3

    # close napari; reopen the project in a fresh viewer: corrections are still there
    w.save(proj_path)
    w.timer.stop()
    viewer.close()
    viewer2 = make_napari_viewer()
    w2 = CorrectionWidget(viewer2)
    layer = w2.open_project(proj_path)
    assert w2.session.corrected_frames == [0, 1, 2]
    assert int(layer.features["edited"].sum()) == 2
    assert (layer.features["source"] == "manual").sum() == 1


def test_result_written_into_bound_layer_is_a_new_baseline(make_napari_viewer, qtbot, movie):
    """A re-run that writes new atoms into the layer the dock edits (same number of atoms,
    every one at a new place: napari reports that as a change of every point) restarts
    the correction session from the new table: no move recorded, undo history cleared."""
    from atomlens._napari._workers import add_layers_in_turns, make_layers

    frames, atoms = movie
    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(frames, PX, "movie"))
    layer = add_tuple(viewer, atoms_layer_tuple(atoms, PX, "atoms movie"))
    widget = CorrectionWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.bind_layer(layer)
    first = int(widget.session.atoms["atom_id"].iloc[0])
    widget.session.delete([first])  # a user edit: undoable, the dock's layer follows
    widget.mark_frames([0])
    assert widget.session.can_undo and len(layer.data) == len(atoms) - 1
    old_session, old_y = widget.session, widget.session.atoms["y"].to_numpy().copy()

    new = atoms.copy()
    new["y"] = new["y"] + 1.5  # the re-run found every atom elsewhere (and all of them)
    new.loc[new.index[:3], "cls"] = "Si"
    from napari.utils.notifications import notification_manager

    seen = len(notification_manager.records)
    done = []
    add_layers_in_turns(
        viewer, make_layers([atoms_layer_tuple(new, PX, "atoms movie")]), done.append
    )
    qtbot.waitUntil(lambda: bool(done), timeout=5_000)
    assert done[0] == [layer] and viewer.layers["atoms movie"] is layer  # reused
    assert [lay.name for lay in viewer.layers] == ["movie", "atoms movie"]
    session = widget.session
    assert session is not old_session
    # the writes were not taken for edits of the old session (no move of every atom)
    np.testing.assert_array_equal(old_session.atoms["y"].to_numpy(), old_y)
    assert not session.can_undo and not session.can_redo  # a new baseline, not a move
    msgs = [str(r.message) for r in notification_manager.records[seen:]]
    assert any("new detections" in m and "not applied" in m for m in msgs), msgs
    assert session.corrected_frames == []
    assert len(session.atoms) == len(layer.data) == len(new)
    np.testing.assert_allclose(session.atoms["y"].to_numpy(), new["y"].to_numpy())
    assert not session.atoms["edited"].astype(bool).any()
    np.testing.assert_allclose(layer.data[:, 1], new["y"].to_numpy())
    # species colours from the new table (the three new Si in the Si colour)
    si = layer.features["cls"].astype(str).to_numpy() == "Si"
    assert si.sum() == 3
    for name, rows in (("Si", si), ("C", ~si)):
        want = [int(SPECIES_COLOURS[name][i : i + 2], 16) / 255 for i in (1, 3, 5)]
        np.testing.assert_allclose(layer.face_color[rows, :3], [want] * int(rows.sum()), atol=1e-6)
    # a drag after the re-run is an edit again
    data = layer.data.copy()
    data[5, 1] += 2.0
    layer.data = data
    assert session is widget.session and widget.session.can_undo


def test_edit_button_on_the_bound_layer_keeps_the_session(make_napari_viewer, movie):
    """Pressing 'Edit this atoms layer' again on the layer being edited keeps its edits,
    corrected frames and undo history (it used to start a new session from the layer)."""
    frames, atoms = movie
    viewer = make_napari_viewer()
    img = add_tuple(viewer, image_layer_tuple(frames, PX, "movie"))
    pts = add_tuple(viewer, atoms_layer_tuple(atoms, PX, name="atoms"))
    w = CorrectionWidget(viewer)
    w.image.value = img
    w.points.value = pts
    w.bind_button.clicked.emit()
    session = w.session
    pts.add(np.array([[0, 30.0, 31.0]]))
    assert session.can_undo and session.corrected_frames == [0]
    w.bind_button.clicked.emit()
    assert w.session is session and session.can_undo and session.corrected_frames == [0]
    assert w.status.value == "already editing 'atoms'"
