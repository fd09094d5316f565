"""Teaching a new material in the GUI: Detect with the general model on sparse Pt-like
spots, replace two frames' atoms with their truth in the Correct dock (napari's own
delete and add), retrain from the dock, re-detect. The dock must fine-tune the model
Detect used (the general one, not graphene), offer its class (``atom``, not C/Si), and
the re-detected frame must hold the atoms of the fine-tuned model's spot classifier."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens._napari._layers import add_tuple
from atomlens._napari.correction import CorrectionWidget
from atomlens._napari.detect_widget import DetectWidget
from atomlens.viz.layers import image_layer_tuple
from tests.test_spot_classifier import PX, _pt_on_carbon

pytestmark = pytest.mark.gui


def test_retrain_from_the_dock_on_the_general_model_learns_spots(
    make_napari_viewer, qtbot, tmp_path
):
    from atomlens.atoms import detect
    from atomlens.segment.registry import load_model

    if "spot_verify" not in load_model("general").card:
        pytest.skip("the general model's card has no spot_verify rule")
    frames, truths = zip(*(_pt_on_carbon(s, crop=256) for s in (4, 6, 9)))
    movie = np.stack(frames).astype(np.float32)
    np.save(tmp_path / "pt.npy", movie)
    viewer = make_napari_viewer()
    meta = {"atomlens": {"path": str(tmp_path / "pt.npy")}}
    img = add_tuple(viewer, image_layer_tuple(movie, PX, "pt", metadata=meta))

    dw = DetectWidget(viewer)
    viewer.window.add_dock_widget(dw)
    dw.image.value, dw.model.value, dw.frames.value = img, "general", "all"
    dw.run()
    qtbot.waitUntil(lambda: dw.results_shown, timeout=120_000)
    pts = viewer.layers["atoms pt"]
    assert pts.metadata["atomlens"]["models"] == {"detector": "general"}
    # markers half as wide as the ~3 Å spots, not the 0.5 Å default (1.7 px: invisible)
    assert pts.size.min() > 2 * 0.5 / PX

    w = CorrectionWidget(viewer)
    viewer.window.add_dock_widget(w)
    w.image.value = img
    w.bind_layer(pts)
    assert w.session.model == "general" and list(w.cls.choices) == ["atom"]
    for t in (0, 1):  # the user deletes frame t's detections and clicks its atoms
        pts.selected_data = set(np.flatnonzero(pts.data[:, 0] == t).tolist())
        w.delete_selected()
        pts.add(np.column_stack([np.full(len(truths[t]), t), truths[t]]))
        assert list(w.cls.choices) == ["atom"]  # (an edit does not bring back C/Si)
    assert w.session.corrected_frames == [0, 1]
    assert list(w.corrected_list.choices) == [0, 1]  # listed (an edit emptied the list)
    added = w.session.atoms[w.session.atoms["source"] == "manual"]
    assert len(added) == len(truths[0]) + len(truths[1])
    assert (added["cls"] == "atom").all()

    w.steps.value, w.threads = 2, 1
    said: list[str] = []  # the status line after each retraining event
    shown = w._on_ft_event
    w._on_ft_event = lambda ev: (shown(ev), said.append(str(w.status.value)))
    worker = w.start_retrain()
    assert worker is not None
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    model = w.new_model
    assert model is not None and w.redetect_button.enabled
    ft = model.card["finetune"]
    assert ft["base_model_name"] == "general" and ft["labels_per_species"] == {"atom": len(added)}
    if "spot_verify" not in model.card:
        pytest.skip("these frames were not spot-resampled (no contrast verification)")
    assert "spot_classifier" in model.card
    assert "spot classifier F1" in w.status.value
    # the 1-3 s the classifier learns after the last step are not silent
    assert "learning the spot classifier on 2 corrected frame(s) ..." in said
    assert w.progress.value == w.progress.max  # finished: a full bar
    assert "save the project to keep it as a file" in w.status.value  # no project yet

    worker = w.start_redetect()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    assert w.last_redetect.detected_frames == [2] and w.session.current_model is model
    want = detect(movie[2], model, pixel_size=PX)
    assert "spot_classifier" in want.spot_scale  # the classifier decided, not the net alone
    got = pts.features[pts.features["frame"] == 2]
    assert len(got) == len(want.atoms) > 0 and (got["cls"].astype(str) == "atom").all()
    np.testing.assert_allclose(
        np.sort(pts.data[pts.data[:, 0] == 2][:, 1:], axis=0),
        np.sort(want.atoms[["y", "x"]].to_numpy(float), axis=0),
        atol=1e-6,
    )
    # the corrected frames kept the user's atoms
    assert (pts.data[:, 0] == 0).sum() == len(truths[0])

    # retrained before the project had a name: saving it keeps the model as a file
    from atomlens.io.project import load_project
    from atomlens.segment.model_file import load_detector

    w.save(tmp_path / "pt.atomlens")
    kept = str(tmp_path / "pt.atomlens" / "models" / "finetuned-001.pt")
    assert w.session.new_model_path == kept and w.session.model == kept
    assert w.session.lineage[-1]["model"] == kept
    assert load_project(tmp_path / "pt.atomlens").models["finetuned"] == kept
    assert "spot_classifier" in load_detector(kept).card


def test_delete_every_atom_then_click_them_again(make_napari_viewer):
    """Select all + Delete (to click an image's atoms from scratch) leaves an empty,
    working layer: napari's species colours failed on the empty table (KeyError nan)."""
    import pandas as pd

    from atomlens.viz.layers import atoms_layer_tuple

    viewer = make_napari_viewer()
    img = add_tuple(viewer, image_layer_tuple(np.zeros((1, 64, 64), np.float32), PX, "pt"))
    atoms = pd.DataFrame(
        {"frame": [0, 0], "y": [10.0, 20.0], "x": [10.0, 30.0], "cls": pd.Categorical(["atom"] * 2)}
    )
    pts = add_tuple(viewer, atoms_layer_tuple(atoms.assign(prob=0.9), PX, "atoms pt"))
    w = CorrectionWidget(viewer)
    w.image.value = img
    w.bind_layer(pts)
    pts.selected_data = {0, 1}
    w.delete_selected()
    assert len(pts.data) == len(w.session.atoms) == 0 and w.session.corrected_frames == [0]
    pts.add(np.array([[0, 5.0, 6.0]]))
    assert w.session.atoms[["y", "x", "cls", "source"]].values.tolist() == [
        [5.0, 6.0, "atom", "manual"]
    ]
    assert list(w.corrected_list.choices) == [0]
    green = [int("4daf4a"[i : i + 2], 16) / 255 for i in (0, 2, 4)]  # the 'atom' colour
    np.testing.assert_allclose(pts.face_color[0, :3], green, atol=1e-6)
    w.undo()
    w.undo()
    assert len(pts.data) == 2 and np.allclose(pts.data[:, 1:], [[10.0, 10.0], [20.0, 30.0]])


def test_retraining_line_when_every_frame_is_corrected(tmp_path):
    """One image, corrected: the line says to detect other images with the model (there
    is nothing left to re-detect), and where the model file is once there is one."""
    from types import SimpleNamespace

    import pandas as pd

    from atomlens.workflows.correct import CorrectionSession

    movie = np.zeros((2, 32, 32), np.float32)
    atoms = pd.DataFrame({"frame": [0, 1], "y": [5.0, 6.0], "x": [5.0, 6.0], "cls": "atom"})
    s = CorrectionSession(atoms=atoms, stack=movie, pixel_size=PX)
    seen = []
    s.connect(lambda ev: seen.append(ev.message))
    card = {"finetune": {"steps": 5, "frames": [0]}}
    result = SimpleNamespace(card=card, detector=object(), path=None, reason="done", scores={})
    s.mark_frames([0])
    s.adopt_model(result)
    assert seen[-1].endswith("re-detect to apply it; save the project to keep it as a file")
    s.mark_frames([1])
    s.adopt_model(SimpleNamespace(**{**vars(result), "path": tmp_path / "finetuned-002.pt"}))
    assert "every frame is corrected: detect other images with it" in seen[-1]
    assert "re-detect" not in seen[-1] and seen[-1].endswith("saved as finetuned-002.pt")


def test_detect_warnings_in_the_docks_words():
    """The dock shows the detection warnings with its own controls named, not CLI flags."""
    from atomlens._napari.detect_widget import gui_wording

    text = (
        "most of the atom probability lies below the threshold 0.5 (80% of candidate "
        "pixels): the graphene model is unsure on this image; try --model general, or "
        "correct a frame and retrain (atomlens finetune)"
    )
    out = gui_wording(text)
    assert "--" not in out and "atomlens finetune" not in out
    assert out.endswith(
        "try model 'general' in this dock, or correct a frame and retrain (Correct atoms dock)"
    )
    assert "check the pixel size (Å) field, or" in gui_wording("check --pixel-size, or")
