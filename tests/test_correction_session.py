"""Headless rules of :class:`CorrectionSession` that the Correct atoms dock relies on
(no napari): several atoms in one undo step, a drag as one step, columns other docks add,
a re-detection applied to the table as it is when it arrives, eager input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.corrections import RedetectResult, counts_per_frame
from atomlens.errors import SettingsError
from atomlens.io import Stack
from atomlens.workflows.correct import CorrectionSession, CorrectRecipe


@pytest.fixture
def session():
    rng = np.random.default_rng(1)
    atoms = pd.DataFrame(
        {
            "frame": np.repeat([0, 1, 2], 5),
            "y": rng.uniform(5, 55, 15),
            "x": rng.uniform(5, 55, 15),
            "cls": ["C"] * 14 + ["Si"],
        }
    )
    stack = Stack(np.zeros((3, 64, 64), np.float32), 0.2, "user", {}, "/tmp/movie.npy")
    return CorrectionSession(atoms, stack=stack)


def test_add_many_and_drag_are_one_undo_step_each(session):
    s = session
    s.update_columns(s.atoms[["atom_id"]].assign(track_id=np.arange(15)))  # an int column
    ids = s.add_many([0, 2], [10.0, 11.0], [12.0, 13.0], "Si")
    assert len(ids) == 2 and len(s.atoms) == 17 and s.corrected_frames == [0, 2]
    assert s.atoms["atom_id"].is_unique and (s.atoms["source"].iloc[-2:] == "manual").all()
    assert s.atoms["track_id"].iloc[-2:].isna().all() and s.atoms["frame"].dtype == np.int64
    a = int(s.atoms.loc[s.atoms["frame"] == 1, "atom_id"].iloc[0])
    y0 = float(s.atoms.loc[s.atoms["atom_id"] == a, "y"].item())
    for step in (1.0, 2.0, 3.0):  # a drag reports every mouse move
        s.move_many([a], [y0 + step], [20.0], continue_drag=step > 1)
    assert s.atoms.loc[s.atoms["atom_id"] == a, "y"].item() == y0 + 3
    assert s.undo() and s.atoms.loc[s.atoms["atom_id"] == a, "y"].item() == y0  # whole drag
    assert s.undo() and len(s.atoms) == 15 and s.corrected_frames == []  # both adds at once
    with pytest.raises(SettingsError, match="outside the movie"):
        s.add_many([0, 5], [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(SettingsError, match="finite"):
        s.add_many([0], [np.nan], [1.0])
    assert len(s.atoms) == 15  # a refused edit changes nothing


def test_rows_ids_classes_and_columns_from_other_docks(session):
    s = session
    assert s.ids_at([0, 14]) == [0, 14] and s.class_choices() == ["C", "Si"]
    s.set_species([3], "N")
    assert s.class_choices() == ["C", "Si", "N"]
    with pytest.raises(SettingsError, match="outside"):
        s.ids_at([15])
    extra = pd.DataFrame({"atom_id": s.atoms["atom_id"][::-1], "z1": np.arange(15.0)[::-1]})
    assert s.update_columns(extra) == ["z1"]  # matched on atom_id, not row order
    assert s.atoms["z1"].tolist() == list(np.arange(15.0)) and s.history.can_undo
    s.undo()  # undo the species edit: the table of then, without z1
    assert s.atoms.loc[3, "cls"] == "C"


def test_redetect_applies_to_the_table_as_it_is_now(session):
    """Frames corrected while a re-detection ran keep the user's atoms and ids."""
    s = session
    s.mark_frames([0])
    before = s.atoms.copy()
    new = pd.DataFrame({"frame": [1, 1, 2], "y": [1.0, 2.0, 3.0], "x": [4.0, 5.0, 6.0]})
    merged = pd.concat([before[before["frame"] == 0], new], ignore_index=True)
    res = RedetectResult(merged, [0], [1, 2], counts_per_frame(before, merged, [0], 3))
    s.move(int(before["atom_id"].iloc[12]), 30.0, 30.0)  # frame 2 corrected meanwhile
    moved = s.atoms[s.atoms["frame"] == 2].copy()
    s.apply_redetect(res, model="m")
    assert s.atoms.loc[s.atoms["frame"] == 1, "y"].tolist() == [1.0, 2.0]
    assert (s.atoms.loc[s.atoms["frame"] == 1, "source"] == "detector").all()
    kept = s.atoms[s.atoms["frame"] == 2].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, moved.reset_index(drop=True))
    assert s.atoms["atom_id"].is_unique and s.current_model == "m"
    assert s.undo() and len(s.atoms) == 15


def test_inputs_are_checked_when_asked_not_on_a_worker(session):
    s = CorrectionSession(session.atoms)  # no movie
    s.mark_frames([0])
    with pytest.raises(SettingsError, match="no movie"):
        s.retrain()  # raises here, before any generator step
    with pytest.raises(SettingsError, match="retrain first"):
        s.redetect_job()
    t = CorrectionSession(session.atoms, stack=session.stack, recipe=CorrectRecipe())
    with pytest.raises(SettingsError, match="no corrected frames"):
        t.retrain()


def test_from_table_reads_the_layer_metadata(session):
    meta = {
        "corrected_frames": [2, 0],
        "stack_path": "/data/movie.tif",
        "project": "/w/p.atomlens",
        "models": {"detector": "shipped", "finetuned": "/w/p.atomlens/models/f-001.pt"},
    }
    s = CorrectionSession.from_table(session.atoms, meta)
    assert s.corrected_frames == [0, 2] and s.stack_path == "/data/movie.tif"
    assert s.model == "/w/p.atomlens/models/f-001.pt" and s.project_path == "/w/p.atomlens"
    s.set_movie(Stack(np.zeros((3, 16, 16)), 0.077, "user"))
    assert (s.pixel_size, s.pixel_size_source, s.stack_path) == (0.077, "user", "/data/movie.tif")
    assert not s.dirty  # a movie is not an edit
