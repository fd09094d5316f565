"""Atom tables with edit flags (CSV) and AtomLens project folders round-trip; merging
re-detections never overwrites corrected frames."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from atomlens.corrections import (
    CorrectionState,
    EditHistory,
    FrameSpecError,
    Snapshot,
    counts_per_frame,
    edited_frames,
    format_frames,
    mark_edited,
    merge_detections,
    parse_frames,
    set_species,
)
from atomlens.io.atoms_table import (
    AtomsTableError,
    ensure_edit_columns,
    read_atoms_csv,
    write_atoms_csv,
)
from atomlens.io.project import (
    Project,
    ProjectError,
    is_project,
    load_project,
    napari_get_reader,
    napari_write_project,
    save_project,
)


def _table(frames=(0, 1, 2), n=4, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for f in frames:
        for i in range(n):
            rows.append(
                {
                    "frame": f,
                    "y": rng.uniform(0, 60),
                    "x": rng.uniform(0, 60),
                    "cls": "Si" if i == 0 else "C",
                    "prob": rng.uniform(0.5, 1),
                }
            )
    return pd.DataFrame(rows)


def test_csv_round_trip_keeps_flags_and_extra_columns(tmp_path):
    atoms = ensure_edit_columns(_table())
    atoms = set_species(atoms, [1], "Si")
    atoms.loc[len(atoms)] = [2, 10.25, 11.5, "C", 1.0, True, "manual"]
    atoms["ring6"] = np.arange(len(atoms)) % 3
    path = write_atoms_csv(tmp_path / "atoms.csv", atoms)
    back = read_atoms_csv(path)
    pd.testing.assert_frame_equal(back, ensure_edit_columns(atoms), check_dtype=False)
    assert back["edited"].dtype == bool
    assert back["edited"].tolist() == atoms["edited"].tolist()
    assert back["y"].to_numpy() == pytest.approx(atoms["y"].to_numpy(), abs=0)  # exact floats
    assert list(back.columns[:7]) == ["frame", "y", "x", "cls", "prob", "edited", "source"]
    assert edited_frames(back) == [0, 2]


def test_csv_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("frame,a,b\n0,1,2\n")
    with pytest.raises(AtomsTableError, match="lacks column"):
        read_atoms_csv(bad)
    bad.write_text("frame,y,x,edited\n0,1,2,maybe\n")
    with pytest.raises(AtomsTableError, match="true/false"):
        read_atoms_csv(bad)
    with pytest.raises(FileNotFoundError):
        read_atoms_csv(tmp_path / "none.csv")


def test_project_round_trip(tmp_path):
    stack_file = tmp_path / "data" / "movie.npy"
    stack_file.parent.mkdir()
    np.save(stack_file, np.zeros((3, 32, 32), np.float32))
    atoms = mark_edited(_table(), [0, 5], source="manual")
    proj = Project(
        stack_path=str(stack_file),
        pixel_size=0.1,
        pixel_size_source="user",
        models={"detector": "/models/base.pt"},
        settings={"threshold": 0.5},
        corrected_frames=[1, 0],
        atoms=atoms,
    )
    folder = save_project(tmp_path / "work", proj)
    assert folder.name == "work.atomlens" and is_project(folder)
    meta = json.loads((folder / "project.json").read_text())
    assert meta["corrected_frames"] == [0, 1] and meta["pixel_size"]["source"] == "user"
    back = load_project(folder)
    assert back.stack_path == str(stack_file.resolve())
    assert back.pixel_size == 0.1 and back.pixel_size_source == "user"
    assert back.models == {"detector": "/models/base.pt"} and back.settings == {"threshold": 0.5}
    assert back.corrected_frames == [0, 1]
    pd.testing.assert_frame_equal(back.atoms, ensure_edit_columns(atoms), check_dtype=False)
    # moving project and data together still finds the stack through the relative path
    import shutil

    dest = tmp_path / "copied"
    dest.mkdir()
    shutil.move(str(tmp_path / "data"), str(dest / "data"))
    shutil.move(str(folder), str(dest / "work.atomlens"))
    again = load_project(dest / "work.atomlens" / "project.json")
    assert again.stack_path == str((dest / "data" / "movie.npy").resolve())


def test_project_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no AtomLens project"):
        load_project(tmp_path / "nothing.atomlens")
    f = tmp_path / "x.atomlens"
    f.mkdir()
    (f / "project.json").write_text("{not json")
    with pytest.raises(ProjectError, match="not valid JSON"):
        load_project(f)
    (f / "project.json").write_text(
        json.dumps({"format": "atomlens-project", "format_version": 99})
    )
    with pytest.raises(ProjectError, match="newer AtomLens"):
        load_project(f)


def test_napari_reader_writer_functions(tmp_path):
    atoms = mark_edited(_table(), [2])
    data = atoms[["frame", "y", "x"]].to_numpy(float)
    data[2, 1] += 1.5  # the user moved the point: the layer's data wins over features
    attrs = {
        "features": atoms,
        "scale": (1, 0.1, 0.1),
        "metadata": {"atomlens": {"corrected_frames": [0], "pixel_size": 0.1}},
    }
    (written,) = napari_write_project(str(tmp_path / "p"), [(data, attrs, "points")])
    reader = napari_get_reader(written)
    assert reader is not None and napari_get_reader(str(tmp_path)) is None
    layers = reader(written)
    (pts,) = [layer for layer in layers if layer[2] == "points"]
    assert pts[0][2, 1] == pytest.approx(data[2, 1])
    assert pts[1]["metadata"]["atomlens"]["corrected_frames"] == [0]
    assert bool(pts[1]["features"]["edited"].iloc[2])


def test_merge_never_overwrites_corrected_frames():
    current = ensure_edit_columns(_table(frames=(0, 1, 2), n=4))
    current = set_species(current, [4], "Si")  # frame 1 edited
    new = _table(frames=(0, 1, 2, 3), n=6, seed=1)
    merged, skipped = merge_detections(current, new, corrected_frames={1})
    assert skipped == [1]
    pd.testing.assert_frame_equal(
        merged[merged.frame == 1].reset_index(drop=True),
        current[current.frame == 1].reset_index(drop=True),
    )
    assert (merged.frame.value_counts().sort_index().tolist()) == [6, 4, 6, 6]
    assert not merged.loc[merged.frame != 1, "edited"].any()
    # frames absent from the new detection keep their rows
    merged2, skipped2 = merge_detections(current, new[new.frame == 3], corrected_frames=[1])
    assert skipped2 == [] and len(merged2) == len(current) + 6
    counts = counts_per_frame(current, merged, [1], n_frames=5)
    assert counts["before"].tolist() == [4, 4, 4, 0, 0]
    assert counts["after"].tolist() == [6, 4, 6, 6, 0]
    assert counts["corrected"].tolist() == [False, True, False, False, False]


def test_frame_specs_and_history():
    assert parse_frames("0:3,7", 10) == [0, 1, 2, 7]
    assert parse_frames("8:", 10) == [8, 9]
    assert format_frames([0, 1, 2, 7, 9, 10]) == "0:3,7,9:11"
    assert parse_frames(format_frames([0, 1, 2, 7, 9, 10])) == [0, 1, 2, 7, 9, 10]
    with pytest.raises(FrameSpecError, match="out of range"):
        parse_frames("0:12", 10)
    with pytest.raises(FrameSpecError, match="cannot read"):
        parse_frames("a-b")
    hist = EditHistory(limit=2)
    snaps = [
        Snapshot(np.full((1, 3), i, float), pd.DataFrame({"a": [i]}), frozenset({i}))
        for i in range(4)
    ]
    for s in snaps[:3]:
        hist.push(s)
    assert hist.undo(snaps[3]) is snaps[2] and hist.undo(snaps[2]) is snaps[1]
    assert hist.undo(snaps[1]) is None  # limit of 2 steps
    assert hist.redo(snaps[1]) is snaps[2]
    state = CorrectionState()
    assert state.mark([3, 1]) == [1, 3] and state.mark([1, 2]) == [2]
    assert state.frames == [1, 2, 3]


# --- issue 17: a project is one unit; its fields and paths are checked -----------------------


def test_project_json_is_a_manifest_of_the_atom_table(tmp_path):
    folder = save_project(tmp_path / "p", Project(pixel_size=0.1, atoms=_table()))
    meta = json.loads((folder / "project.json").read_text())
    entry = meta["files"]["atoms.csv"]
    assert entry["size"] == (folder / "atoms.csv").stat().st_size and len(entry["sha256"]) == 64
    # a table that matches no manifest (edited outside, or half of a save) is refused
    (folder / "atoms.csv").write_text(
        (folder / "atoms.csv").read_text() + "0,1,1,C,1,False,manual\n"
    )
    with pytest.raises(ProjectError, match="does not match project.json"):
        load_project(folder)


def test_an_interrupted_save_reopens_as_the_last_complete_save(tmp_path):
    old, new = _table(n=3), _table(n=5, seed=1)
    folder = save_project(tmp_path / "p", Project(pixel_size=0.1, atoms=old))
    # what a save killed after writing atoms.csv leaves: the previous table kept aside,
    # the new table in place, project.json still the old manifest
    import os

    os.link(folder / "atoms.csv", folder / ".atoms.csv.prev")
    write_atoms_csv(folder / "atoms.csv", new)
    back = load_project(folder)
    assert len(back.atoms) == len(old)
    save_project(folder, back)  # the next save drops the leftover
    assert not (folder / ".atoms.csv.prev").exists()


@pytest.mark.parametrize(
    "edit, words",
    [
        ({"stack": {"path": "../../etc/passwd"}}, "not an image file"),
        ({"atoms_file": "../../outside.csv"}, "inside the project folder"),
        ({"corrected_frames": 5}, "corrected_frames must be a list"),
        ({"pixel_size": {"value_A": "ten"}}, "value_A must be a number"),
        ({"models": {"detector": 3}}, "models.detector must be a file path"),
    ],
)
def test_project_fields_and_paths_are_checked(tmp_path, edit, words):
    folder = save_project(tmp_path / "p", Project(pixel_size=0.1, atoms=_table()))
    meta = json.loads((folder / "project.json").read_text())
    meta.update(edit)
    (folder / "project.json").write_text(json.dumps(meta))
    with pytest.raises(ProjectError, match=words):
        load_project(folder)


def test_project_stack_can_be_limited_to_allowed_folders(tmp_path):
    movie = tmp_path / "data" / "m.npy"
    movie.parent.mkdir()
    np.save(movie, np.zeros((1, 32, 32), np.float32))
    folder = save_project(tmp_path / "p", Project(stack_path=str(movie), atoms=_table()))
    assert load_project(folder, allowed_roots=[tmp_path / "data"]).stack_path == str(movie)
    with pytest.raises(ProjectError, match="outside the allowed folders"):
        load_project(folder, allowed_roots=[tmp_path / "elsewhere"])
    (folder / "project.json").write_text("[1, 2]")
    with pytest.raises(ProjectError, match="must hold a JSON object"):
        load_project(folder)
