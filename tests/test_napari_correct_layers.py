"""The Correct dock keeps one correction session per atoms layer, and a layer's metadata
names the model that found its atoms: after retrain + re-detect a new session on the
layer (another dock, a reopened one) retrains the fine-tuned model, not the one Detect
used; binding another layer and coming back keeps the first one's edits and its
retrained model that is not saved yet."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens._napari._layers import add_tuple
from atomlens._napari._reuse import REPLACED
from atomlens._napari.correction import CorrectionWidget
from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple
from tests import test_napari_correction as _dock_tests

PX = _dock_tests.PX
movie, tiny_model = _dock_tests.movie, _dock_tests.tiny_model  # the same fixtures

pytestmark = pytest.mark.gui


def _retrain_and_redetect(w: CorrectionWidget, qtbot) -> None:
    w.steps.value, w.threads = 2, 1
    worker = w.start_retrain()
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert w.new_model is not None
    worker = w.start_redetect()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass


def test_layer_metadata_follows_the_model_after_redetect(
    make_napari_viewer,
    qtbot,
    tmp_path,
    movie,
    tiny_model,
):
    frames, atoms = movie
    np.save(tmp_path / "movie.npy", frames)
    viewer = make_napari_viewer()
    meta = {"atomlens": {"path": str(tmp_path / "movie.npy")}}
    img = add_tuple(viewer, image_layer_tuple(frames, PX, "movie", metadata=meta))
    detected = {"atomlens": {"models": {"detector": tiny_model}}}  # what Detect records
    pts = add_tuple(viewer, atoms_layer_tuple(atoms, PX, "atoms", metadata=detected))
    w = CorrectionWidget(viewer)
    w.image.value = img
    w.bind_layer(pts)
    assert w.session.model == tiny_model
    w.project_file.value = str(tmp_path / "work.atomlens")  # the model gets a file
    pts.selected_data = {int(np.flatnonzero(pts.data[:, 0] == 0)[0])}
    w.delete_selected()
    _retrain_and_redetect(w, qtbot)
    new = w.new_model_path
    assert new and new.startswith(str(tmp_path / "work.atomlens"))
    assert w.last_redetect.detected_frames == [1, 2, 3]
    # the layer's atoms now come from the fine-tuned model: its metadata says so
    assert pts.metadata["atomlens"]["models"] == {"detector": new, "finetuned": new}
    assert pts.metadata["atomlens"]["corrected_frames"] == [0]
    # a new session on the layer (a second dock) starts from the fine-tuned model
    w2 = CorrectionWidget(viewer)
    w2.image.value = img
    w2.bind_layer(pts)
    assert w2.session.model == new and w2.session.corrected_frames == [0]
    # once saved, the layer names its project too (a new dock shows and saves to it)
    folder = w.save(tmp_path / "work.atomlens")
    assert pts.metadata["atomlens"]["project"] == str(folder)
    w3 = CorrectionWidget(viewer)
    w3.bind_layer(pts)
    assert w3.session.project_path == str(folder) and w3.project_file.value == folder


def test_switching_layers_keeps_each_session_and_its_unsaved_model(
    make_napari_viewer,
    qtbot,
    tmp_path,
    movie,
    tiny_model,
):
    frames, atoms = movie
    viewer = make_napari_viewer()
    img = add_tuple(viewer, image_layer_tuple(frames, PX, "movie"))
    a = add_tuple(viewer, atoms_layer_tuple(atoms, PX, "atoms a"))
    b = add_tuple(viewer, atoms_layer_tuple(atoms.iloc[:30], PX, "atoms b"))
    w = CorrectionWidget(viewer)
    w.image.value = img
    w.bind_layer(a)
    w.model_path = tiny_model
    session_a = w.session
    a.add(np.array([[1, 30.0, 31.0]]))
    _retrain_and_redetect(w, qtbot)  # no project: the model lives in memory only
    model_a = w.new_model
    assert w.new_model_path is None and w.session.current_model is model_a
    # no file names the unsaved model: the metadata keeps the last file, the session it
    assert a.metadata["atomlens"]["models"] == {"detector": tiny_model}
    w.project_file.value = str(tmp_path / "a.atomlens")  # named, not saved yet

    w.points.value = b
    w.bind_button.clicked.emit()
    assert w.session is not session_a and w.new_model is None and len(w.session.atoms) == 30
    # 'atoms a''s project is not offered for 'atoms b' (saving would overwrite it)
    assert str(w.project_file.value) in ("", ".") and w.session.project_path is None
    session_b = w.session
    b.selected_data = {0}
    w.delete_selected()
    assert session_b.corrected_frames == [0]

    w.points.value = a
    w.bind_button.clicked.emit()  # back to 'atoms a': its session, model and undo history
    assert w.session is session_a and w.new_model is model_a and w.redetect_button.enabled
    assert w.session.current_model is model_a and w.session.corrected_frames == [1]
    assert w.session.can_undo and len(a.data) == len(w.session.atoms)
    assert w.project_file.value == tmp_path / "a.atomlens"

    # 'atoms b' changed while the dock edited 'atoms a': taken in when bound again
    b.data = b.data[1:]  # frame 0 loses one more atom (a layer the dock does not watch)
    w.points.value = b
    w.bind_button.clicked.emit()
    assert w.session is session_b and len(session_b.atoms) == 28
    assert session_b.corrected_frames == [0]
    w.undo()  # the outside change is one undo step
    assert len(session_b.atoms) == 29 and len(b.data) == 29

    # a new result written into 'atoms a' (e.g. Detect re-run) drops its old session
    REPLACED.replaced.emit(a)
    w.points.value = a
    w.bind_button.clicked.emit()
    assert w.session is not session_a and w.new_model is None
