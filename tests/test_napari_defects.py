"""The "Defects" dock and its headless rows (atomlens.chem.defect_table).

A small simulated movie with known Si and Stone-Wales defects: the headless rows follow
the chemistry's defect table; in a real viewer the dock runs the chemistry on the atoms
layer, lists the simulator's defect types, and a click on a row moves the time slider to
the defect's frame, centres the camera on its centre (in Å) and selects its atoms.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

simulate = pytest.importorskip("atomlens.simulate")

from atomlens.chem import analyze  # noqa: E402
from atomlens.chem.defect_table import (  # noqa: E402
    ALL_TYPES,
    MIN_VIEW_A,
    TABLE_COLUMNS,
    defect_table,
    defect_table_from_atoms,
    defect_types,
    export_table,
    filter_defects,
    jump_target,
)

COLS = ["frame", "y", "x", "cls", "prob"]


def _base(kind: str) -> str:
    """``Si3_edge`` -> ``Si3``: a defect cut by the frame border keeps its type."""
    return kind.removesuffix("_edge")


@pytest.fixture(scope="module")
def movie():
    # 3 frames of 25.6 Å: 2 three-fold Si, 1 four-fold Si, 2 Stone-Wales, nothing else
    return simulate.simulate_movie(
        3,
        size=256,
        pixel_size=0.1,
        seed=4,
        n_si3=2,
        n_si4=1,
        n_vacancies=0,
        n_stone_wales=2,
        n_holes=0,
        contamination_fraction=0.0,
        si_hop_prob=0.0,
        vacancy_rate=0.0,
        min_defect_separation_A=6.0,
    )


@pytest.fixture(scope="module")
def result(movie):
    return analyze(movie.atoms[COLS], movie.pixel_size)


def _nearest_truth(movie, frame: int, y_px: float, x_px: float) -> tuple[str, float]:
    """Type of the true defect of ``frame`` nearest to a centre, and its distance in Å."""
    d = movie.defects[movie.defects["frame"] == frame]
    dist = np.hypot(d["y"].to_numpy() - y_px, d["x"].to_numpy() - x_px) * movie.pixel_size
    i = int(np.argmin(dist))
    return str(d["type"].iloc[i]), float(dist[i])


# --- headless -------------------------------------------------------------------------


def test_rows_follow_the_chemistry_and_the_truth(movie, result):
    rows = defect_table(result)
    assert list(rows.columns) == TABLE_COLUMNS and len(rows) == len(result.defects)
    d = result.defects.sort_values(["frame", "defect_id"]).reset_index(drop=True)
    assert rows["type"].tolist() == d["type"].tolist()
    np.testing.assert_allclose(rows[["y_px", "x_px"]], d[["y", "x"]])
    np.testing.assert_allclose(rows[["y_A", "x_A"]], d[["y", "x"]].to_numpy() * movie.pixel_size)
    assert rows["n_atoms"].tolist() == d["n_atoms"].tolist()
    assert rows["si_coordination"].tolist() == d["dopant_coordination"].tolist()
    # every true defect type is listed; every row sits on a true defect of its type
    assert set(movie.defects["type"]) <= {_base(k) for k in defect_types(rows)}
    for r in rows.itertuples():
        kind, dist = _nearest_truth(movie, r.frame, r.y_px, r.x_px)
        assert _base(r.type) == kind and dist < 1.0, (r.type, kind, dist)
    # Si rows carry the Si's track id (tracked over the 3 frames: one id per Si)
    si = rows[rows["si_coordination"] != ""]
    assert (si["track_id"] >= 0).all() and si.groupby("track_id").size().eq(3).all()
    assert (rows.loc[rows["type"] == "SW", "track_id"] == -1).all()


def test_rows_from_an_analysed_atom_table_match(result):
    """An atoms layer that already carries the chemistry columns gives the same rows."""
    rows = defect_table(result)
    again = defect_table_from_atoms(result.atoms, result.pixel_size)
    pd.testing.assert_frame_equal(rows, again)
    pixels_only = defect_table_from_atoms(result.atoms, None)  # no pixel size: no Å
    assert pixels_only["y_A"].isna().all() and np.allclose(pixels_only["y_px"], rows["y_px"])
    with pytest.raises(ValueError, match="no chemistry"):
        defect_table_from_atoms(result.atoms[COLS[:4]], result.pixel_size)


def test_filter_jump_target_and_export(result, tmp_path):
    rows = defect_table(result)
    sw = filter_defects(rows, "SW")
    assert len(sw) == 6 and set(sw["type"]) == {"SW"} and sw.index.tolist() == list(range(6))
    assert len(filter_defects(rows, ALL_TYPES)) == len(rows)
    assert len(filter_defects(rows, "nonsense")) == 0
    t = jump_target(sw.iloc[0], result.pixel_size)
    assert (t.frame, t.y_px, t.x_px) == (
        sw["frame"].iloc[0],
        sw["y_px"].iloc[0],
        sw["x_px"].iloc[0],
    )
    assert t.atoms == sw["atoms"].iloc[0] and len(t.atoms) == 16
    assert t.view_px * result.pixel_size >= MIN_VIEW_A
    assert t.view_px * result.pixel_size >= 2 * sw["radius_px"].iloc[0] * result.pixel_size
    out = export_table(sw, tmp_path / "sw")
    assert out.name == "sw.csv"
    back = pd.read_csv(out, keep_default_na=False)
    assert len(back) == 6 and back["type"].eq("SW").all()
    assert back["atoms"].iloc[0].split() == [str(a) for a in sw["atoms"].iloc[0]]


def test_empty_result_gives_empty_table():
    yx = np.array([[10.0, 10.0], [10.0, 24.2]])  # two bonded C, no rings, no dopant
    atoms = pd.DataFrame({"frame": 0, "y": yx[:, 0], "x": yx[:, 1], "cls": "C"})
    rows = defect_table(analyze(atoms, 0.1))
    assert len(rows) == 0 and list(rows.columns) == TABLE_COLUMNS
    assert defect_types(rows) == []


# --- in a viewer ----------------------------------------------------------------------


@pytest.mark.gui
def test_dock_click_jumps_to_the_defect(make_napari_viewer, qtbot, movie, tmp_path):
    from qtpy.QtCore import Qt

    from atomlens._napari._layers import add_tuple, current_frame, set_frame
    from atomlens._napari.defects_dock import DefectsDock
    from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple

    px = movie.pixel_size
    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(movie.frames, px, "movie"))
    pts = add_tuple(viewer, atoms_layer_tuple(movie.atoms[COLS], px, name="atoms"))
    dock = DefectsDock(viewer)
    viewer.window.add_dock_widget(dock, name="Defects")
    assert dock.atoms.value is pts and dock.rows is None  # no chemistry on the layer yet

    worker = dock.run_chemistry()
    with qtbot.waitSignal(worker.finished, timeout=20_000):
        pass
    assert dock.rows is not None and len(dock.rows) > 0
    # the table lists the simulator's true defect types (Si 3-fold, Si 4-fold, Stone-Wales)
    assert set(movie.defects["type"]) <= {_base(k) for k in dock.rows["type"]}
    kinds = dock.type_filter.choices
    assert kinds[0] == ALL_TYPES and "SW" in kinds
    assert "defect_type" in pts.features and "coordination" in pts.features
    assert [lay.name for lay in viewer.layers] == ["movie", "atoms"]

    # filter to Stone-Wales, then click the row of a Stone-Wales in the last frame
    dock.type_filter.value = "SW"
    qt = dock.table.native
    assert qt.rowCount() == len(dock.shown) == 6
    assert set(dock.table.to_dataframe()["type"]) == {"SW"}
    row = int(np.flatnonzero(dock.shown["frame"].to_numpy() == 2)[-1])
    target = dock.shown.iloc[row]
    camera_before = viewer.scene.camera.center
    assert dock.last_target is None and camera_before == viewer.scene.camera.center
    set_frame(viewer, pts, 0)
    assert current_frame(viewer, pts) == 0
    rect = qt.visualItemRect(qt.item(row, 0))
    qtbot.mouseClick(qt.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())

    assert viewer.dims.current_step[0] == 2 == current_frame(viewer, pts)
    centre = np.asarray(viewer.scene.camera.center[-2:])
    np.testing.assert_allclose(centre, [target["y_A"], target["x_A"]], atol=1e-6)
    np.testing.assert_allclose(centre, [target["y_px"] * px, target["x_px"] * px], atol=1e-6)
    kind, dist = _nearest_truth(movie, 2, centre[0] / px, centre[1] / px)
    assert kind == "SW" and dist < 1.0
    # zoomed in: the canvas shows a few nm around the defect, not the whole 25.6 Å frame
    shown_A = min(viewer.canvas.size) / viewer.scene.camera.zoom
    assert MIN_VIEW_A - 1e-6 <= shown_A < 25.6
    assert pts.selected_data == set(target["atoms"]) and len(pts.selected_data) == 16
    assert np.all(pts.data[list(pts.selected_data), 0] == 2)
    assert "SW in frame 2" in dock.status.value

    # export what is shown
    out = dock.export_csv(tmp_path / "defects.csv")
    assert out is not None and len(pd.read_csv(out)) == 6

    # a re-picked layer that carries the chemistry fills the table without running it
    dock2 = DefectsDock(viewer)
    assert dock2.rows is not None and len(dock2.rows) == len(dock.rows)


@pytest.mark.gui
def test_dock_errors_are_notifications(make_napari_viewer, qtbot, tmp_path):
    from napari.utils.notifications import notification_manager

    from atomlens._napari._layers import add_tuple
    from atomlens._napari.defects_dock import DefectsDock
    from atomlens.viz.layers import atoms_layer_tuple

    viewer = make_napari_viewer()
    # opened as users do, through the manifest (Plugins > AtomLens > Defects)
    _, dock = viewer.window.add_plugin_dock_widget("atomlens", "Defects")
    assert isinstance(dock, DefectsDock)
    before = len(notification_manager.records)
    assert dock.run_chemistry() is None  # no atoms layer
    assert dock.export_csv(tmp_path / "x.csv") is None  # nothing to export
    # an atoms layer in pixels without a pixel size
    atoms = pd.DataFrame({"frame": [0, 0], "y": [10.0, 10.0], "x": [10.0, 24.2], "cls": "C"})
    add_tuple(viewer, atoms_layer_tuple(atoms, None, name="px atoms"))
    assert dock.run_chemistry() is None
    messages = [str(r.message) for r in notification_manager.records[before:]]
    assert any("no atoms layer" in m for m in messages), messages
    assert any("no defects to export" in m for m in messages), messages
    assert any("pixel size" in m for m in messages), messages
    # a layer with a pixel size but without defects: a notification, layers kept
    dock.atoms.value = add_tuple(viewer, atoms_layer_tuple(atoms, 0.1, name="two atoms"))
    before = len(notification_manager.records)
    worker = dock.run_chemistry()
    with qtbot.waitSignal(worker.finished, timeout=20_000):
        pass
    messages = [str(r.message) for r in notification_manager.records[before:]]
    assert any("no defects found" in m for m in messages), messages
    assert [lay.name for lay in viewer.layers] == ["px atoms", "two atoms"]
    assert dock.rows is not None and len(dock.rows) == 0 and dock.table.native.rowCount() == 0
