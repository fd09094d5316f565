"""A microscopist's walk-through on real files nobody tuned on (issue 14): a crop of
the MoS2 dm3 and of the SrTiO3 ABF movie opened through AtomLens' reader, Detect with
model 'auto' and species from contrast, the classes named, the Defects dock on MoS2 and
the docks that pick an atoms layer afterwards.

What the dock must say: which model ran and why (the auto choice, dark atoms inverted),
the contrast classes with how to name them; names typed afterwards reach the layer's
species, its colour key and the saved table; the graphene chemistry says it does not
fit a layer without C."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens._napari._layers import add_tuple
from atomlens._napari.detect_notes import contrast_note, model_note
from atomlens.chem.host import lattice_note
from atomlens.segment.registry import model_info

from .conftest import real_file

GENERAL_SHIPPED = model_info("general").available


# --- the note's text (no viewer) -------------------------------------------------------


def _contrast_table(names: list[str], counts: list[int], levels: list[float]) -> pd.DataFrame:
    cc = np.repeat(np.arange(len(counts)), counts)
    inten = np.repeat(levels, counts).astype(float)
    return pd.DataFrame({"cls": np.asarray(names)[cc], "contrast_class": cc, "intensity": inten})


def test_contrast_note_counts_ratios_and_asks_for_names_until_named() -> None:
    unnamed = _contrast_table(["class0", "class1"], [30, 10], [100.0, 260.0])
    text = contrast_note(unnamed, {"k": 2, "criterion": "icl"})
    assert "2 class(es) (number chosen by ICL)" in text
    assert "class0 30; class1 10, x2.6" in text  # 260 / 100
    assert "type 2 name(s), dimmest first" in text and "'Name classes'" in text
    named = _contrast_table(["S2", "Mo"], [30, 10], [100.0, 260.0])
    text = contrast_note(named, {"k": 2, "criterion": "fixed"})
    assert text == "contrast: 2 class(es), dimmest first: S2 30; Mo 10, x2.6"
    # dark atoms (ABF): the note says the intensities are those of the inverted image
    assert "the lightest columns, count as dimmest" in contrast_note(named, None, True)
    # atoms not classified by contrast: nothing to say
    assert contrast_note(pd.DataFrame({"cls": ["C", "Si"]})) == ""


def test_model_note_gives_the_model_and_the_reason() -> None:
    from atomlens._napari.detect_widget import detector_name
    from atomlens.workflows.detect import DetectRecipe, DetectResult

    def result(name: str, reason: str, model: str | None = "auto") -> DetectResult:
        return DetectResult(
            pd.DataFrame(),
            None,
            [],
            0.1,
            [0],
            DetectRecipe(model=model),
            model_name=name,
            model_reason=reason,
        )

    dark = result("general", "auto: atoms look dark (ABF/BF contrast)")
    assert model_note(dark) == "model general: auto: atoms look dark (ABF/BF contrast)"
    assert dark.model_choice == "general (auto: atoms look dark (ABF/BF contrast))"
    assert detector_name(dark) == "general"
    # a .pt path with ' (' in it: the name is not cut at the first parenthesis
    path = "/data/models (old)/mos2.pt"
    mine = result(path, "as asked", model=None)
    assert model_note(mine) == f"model {path}: as asked" and detector_name(mine) == path
    assert model_note(result("", "")) == "" and result("", "").model_choice == ""


def test_lattice_note_only_without_the_host_species() -> None:
    assert lattice_note(pd.DataFrame({"cls": ["C", "Si", "C"]})) == ""
    text = lattice_note(pd.DataFrame({"cls": ["S2", "Mo", "Mo"]}))
    assert text.startswith("No C atoms (species: Mo, S2)") and "graphene" in text
    assert "would not describe this material, so only holes are listed" in text


# --- in napari, on crops of the real files -------------------------------------------


def _crop_layer(viewer, shared_data, rel: str, size: int, frames: int | None = None):
    """The file opened through AtomLens' reader (the function napari calls), cropped."""
    from atomlens._napari._reader import get_reader

    path = real_file(shared_data, rel)
    reader = get_reader(str(path))
    assert reader is not None, f"AtomLens' reader does not take {path.name}"
    data, kwargs, kind = reader(str(path))[0]
    data = data[: frames or len(data), :size, :size]
    return add_tuple(viewer, (data, kwargs, kind))


def _detect(widget, qtbot) -> None:
    worker = widget.run()
    assert worker is not None, widget.status.value
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: widget.results_shown, timeout=20_000)


@pytest.mark.gui
@pytest.mark.skipif(not GENERAL_SHIPPED, reason="the general model is not shipped")
def test_mos2_contrast_classes_named_after_detection_reach_layer_key_and_csv(
    make_napari_viewer, qtbot, shared_data, tmp_path
) -> None:
    from atomlens._napari._writer import write_atoms_csv
    from atomlens._napari.correction import CorrectionWidget
    from atomlens._napari.defects_dock import DefectsDock
    from atomlens._napari.detect_widget import DetectWidget
    from atomlens._napari.subimage_widget import SubimageWidget

    viewer = make_napari_viewer()
    img = _crop_layer(viewer, shared_data, "formats/mos2_se_implanted.dm3", 256)
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.model.value == "auto" and widget.note.native.isHidden()  # nothing to say yet
    widget.species.value = "from contrast"
    _detect(widget, qtbot)

    points = viewer.layers[f"atoms {img.name}"]
    note = widget.note.value
    assert not widget.note.native.isHidden()
    # the model that ran and why, in full (not behind a tooltip); not graphene's
    assert note.startswith("model general: auto: "), note
    assert "contrast: " in note and "'Name classes'" in note, note
    assert "pixel size 0.127 Å/px (the file's" in note, note  # the dm3's stated 0.12695
    k = int(points.features["contrast_class"].max()) + 1
    assert sorted(set(points.features["cls"].astype(str))) == [f"class{i}" for i in range(k)]

    # a wrong number of names: a one-line error, the layer unchanged
    widget.class_names.value = ",".join(f"X{i}" for i in range(k + 1))
    assert widget.name_classes() is None
    assert set(points.features["cls"].astype(str)) == {f"class{i}" for i in range(k)}

    names = ["S2", "Mo", "Se"][:k] if k <= 3 else [f"A{i}" for i in range(k)]
    widget.class_names.value = ",".join(names)
    assert widget.name_classes() is points
    cls = points.features["cls"].astype(str).to_numpy()
    cc = points.features["contrast_class"].to_numpy(int)
    np.testing.assert_array_equal(cls, np.asarray(names)[cc])  # dimmest class -> first name
    key = points.metadata["atomlens"]["colour_key"]
    assert sorted(e[0] for e in key["entries"]) == sorted(names)
    # each atom drawn in its named species' colour
    colours = {name: colour for name, colour in key["entries"]}
    for name in names:
        rgb = [int(colours[name][i : i + 2], 16) / 255 for i in (1, 3, 5)]
        np.testing.assert_allclose(points.face_color[cls == name, :3], [rgb] * (cls == name).sum())
    assert "Name them" not in widget.note.value  # named: no more asking
    out = write_atoms_csv(str(tmp_path / "atoms.csv"), points.data, {"features": points.features})
    saved = pd.read_csv(out[0], comment="#")
    assert sorted(set(saved["cls"])) == sorted(names)

    # the graphene chemistry on MoS2: it runs, and says it does not describe it
    defects = DefectsDock(viewer)
    viewer.window.add_dock_widget(defects)
    defects.atoms.value = points
    defects.add_layers.value = True
    worker = defects.run_chemistry()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: defects.rows is not None, timeout=20_000)
    assert not defects.note.native.isHidden() and defects.note.value.startswith("No C atoms"), (
        defects.note.value
    )
    # no dopant-typed defects ('Mo0_edge': every Mo a "dopant" of a C lattice): holes only,
    # in the table and in the layer's per-atom columns
    assert set(defects.rows["type"]) <= {"hole"}, set(defects.rows["type"])
    assert set(points.features["defect_type"].astype(str)) <= {"none", "hole"}
    assert defects.result is not None and len(defects.result.dopants) == 0
    # the ring / defect centre layers it added are not offered where atoms are asked for
    added = {lay.name for lay in viewer.layers} - {img.name, points.name}
    assert "defects" in added or "ring centres" in added, added
    correct = CorrectionWidget(viewer)
    for dock, picker in (
        (SubimageWidget(viewer), "atoms"),
        (correct, "points"),
        (defects, "atoms"),
    ):
        getattr(dock, picker).reset_choices()
        offered = [lay.name for lay in getattr(dock, picker).choices]
        assert offered == [points.name], (type(dock).__name__, offered)


@pytest.mark.gui
@pytest.mark.skipif(not GENERAL_SHIPPED, reason="the general model is not shipped")
def test_abf_movie_note_says_the_dark_atoms_were_inverted(
    make_napari_viewer, qtbot, shared_data
) -> None:
    from atomlens._napari.detect_widget import DetectWidget

    viewer = make_napari_viewer()
    img = _crop_layer(viewer, shared_data, "formats/srtio3_abf_movie.hspy", 192, frames=2)
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.species.value = "from contrast"
    _detect(widget, qtbot)
    note = widget.note.value
    assert note.startswith("model general"), note
    assert "dark" in note and "inverted" in note, note
    assert widget._result.inverted
    assert "measured on the inverted image" in note, note  # what 'dimmest' means here
    assert len(viewer.layers[f"atoms {img.name}"].data) > 50

    # names typed with 'auto' classes: one class per name (SrTiO3 [001] ABF shows three
    # column kinds; auto may find another number, and the names then failed after
    # every frame was detected)
    widget.class_names.value = "O, TiO,Sr"
    assert widget.n_classes.value == "auto"
    _detect(widget, qtbot)
    points = viewer.layers[f"atoms {img.name}"]
    assert set(points.features["cls"].astype(str)) == {"O", "TiO", "Sr"}
    assert "contrast: 3 class(es), dimmest first: O " in widget.note.value, widget.note.value


def test_typed_names_set_the_number_of_auto_classes() -> None:
    # the dock passes its choice to the detect workflow, which decides (classes_for)
    from atomlens.workflows.detect import classes_for

    assert classes_for("auto", "S2, Mo") == 2
    assert classes_for("auto", " ") == "auto"
    assert classes_for("3", "S2,Mo") == "3"  # a number chosen stays


@pytest.mark.gui
def test_graphene_model_on_mos2_keeps_its_warning_in_the_note(
    make_napari_viewer, qtbot, shared_data
) -> None:
    """The graphene model asked for on MoS2 (C/Si on a TMD): the 'does not look like
    graphene' warning stays in the dock's note after its notification has gone."""
    from atomlens._napari.detect_widget import DetectWidget, gui_wording

    viewer = make_napari_viewer()
    _crop_layer(viewer, shared_data, "formats/mos2_se_implanted.dm3", 256)
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = "graphene"
    outcome = []
    worker = widget.run()
    worker.returned.connect(outcome.append)
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: widget.results_shown, timeout=20_000)
    warnings = outcome[0][0].warnings
    assert any("does not look like graphene" in w for w in warnings), warnings
    note = widget.note.value
    assert note.startswith("model graphene"), note
    for w in warnings:
        assert f"warning: {gui_wording(w)}" in note


def test_empty_ring_and_defect_layers_can_be_made() -> None:
    """No defects (a clean frame, or MoS2 without holes) and no rings (SrTiO3: columns
    farther apart than a bond): 'add bonds / rings / defects layers' made a (0, 4) colour
    array that napari cannot build a layer from."""
    from napari.layers import Layer

    from atomlens._napari.chem_layers import defects_layer_tuple, rings_layer_tuple

    defects = pd.DataFrame(
        {"frame": [], "defect_id": [], "type": [], "y": [], "x": [], "atoms": []}
    )
    rings = pd.DataFrame({"frame": [], "ring_id": [], "size": [], "y": [], "x": []})
    for data, kw, kind in (defects_layer_tuple(defects, 0.1), rings_layer_tuple(rings, 0.1)):
        layer = Layer.create(data, dict(kw), kind)
        assert len(layer.data) == 0 and layer.ndim == 3


@pytest.mark.gui
def test_name_classes_reaches_a_correct_session_bound_to_the_layer(make_napari_viewer) -> None:
    """Naming the contrast classes of a layer the Correct dock is editing: the session
    takes the names (species are its own column; an edit afterwards redrew the layer
    from the session and the names went back to class0/class1)."""
    from atomlens._napari.correction import CorrectionWidget
    from atomlens._napari.detect_widget import DetectWidget
    from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple

    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(np.zeros((1, 64, 64), np.float32), 0.2, "img"))
    table = _contrast_table(["class0", "class1"], [6, 4], [100.0, 250.0])
    table["frame"] = 0
    table["y"] = np.linspace(5, 55, 10)
    table["x"] = np.linspace(8, 50, 10)
    table["cls"] = pd.Categorical(table["cls"], categories=["class0", "class1"])
    points = add_tuple(
        viewer, atoms_layer_tuple(table, 0.2, "atoms img", metadata={"atomlens": {"source": "img"}})
    )
    correct = CorrectionWidget(viewer)
    correct.points.value = points
    correct.bind_layer(points)
    detect = DetectWidget(viewer)
    detect.class_names.value = "S2,Mo"
    assert detect.name_classes() is points
    assert list(correct.session.atoms["cls"].astype(str)) == ["S2"] * 6 + ["Mo"] * 4
    # an edit redraws the layer from the session: the names stay
    correct.session.delete([int(correct.session.atoms["atom_id"].iloc[0])])
    assert list(points.features["cls"].astype(str)) == ["S2"] * 5 + ["Mo"] * 4
    assert "Mo" in correct.session.class_choices()


def test_pixel_note_says_where_the_pixel_size_came_from() -> None:
    from atomlens._napari.detect_notes import pixel_note

    assert pixel_note(0.12695, "user") == "pixel size 0.127 Å/px (typed)"
    assert "the file's; 'Calibrate pixel size'" in pixel_note(0.12695, "metadata")
    assert pixel_note(0.134, "calibration") == "pixel size 0.134 Å/px (calibration)"
    assert pixel_note(None, "metadata") == ""


@pytest.mark.gui
def test_calibrate_pixel_size_from_the_mos2_lattice(make_napari_viewer, qtbot, shared_data) -> None:
    """The MoS2 dm3 states 0.127 Å/px; its lattice (a = 3.16 Å) says ~0.134-0.137
    (README: FFT ~0.137; `atomlens calibrate --lattice mos2` on the whole image: 0.134).
    'Calibrate pixel size' puts the measured value in the field; Detect then uses it and
    the note says where it came from."""
    from atomlens._napari.detect_widget import DetectWidget

    viewer = make_napari_viewer()
    _crop_layer(viewer, shared_data, "formats/mos2_se_implanted.dm3", 512)
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.lattice.value = "mos2"
    assert widget.pixel_size.value == 0.0
    worker = widget.calibrate()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "calibrated from the mos2 lattice" in widget.note.value, timeout=10_000)
    assert 0.130 < widget.pixel_size.value < 0.140, widget.note.value
    assert "the file says 0.127" in widget.note.value
    if GENERAL_SHIPPED:
        _detect(widget, qtbot)
        px = widget.pixel_size.value
        assert f"pixel size {px:.4g} Å/px (calibration)" in widget.note.value, widget.note.value
