"""The atom-table owner: stable atom ids, the schema check and the one writer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.io.atoms_table import (
    AtomsTableError,
    rows_of_ids,
    validate_atoms,
    with_atom_ids,
    write_atoms,
)


def test_atom_ids_are_kept_and_new_rows_get_fresh_ones() -> None:
    t = pd.DataFrame(
        {
            "frame": [0, 0, 1, 1],
            "y": [1.0, 2, 3, 4],
            "x": [1.0, 2, 3, 4],
            "atom_id": [5, np.nan, 5, 2],
        }
    )
    assert with_atom_ids(t)["atom_id"].tolist() == [5, 6, 7, 2]
    assert with_atom_ids(t, fresh=True)["atom_id"].tolist() == [0, 1, 2, 3]
    assert with_atom_ids(t.drop(columns="atom_id"))["atom_id"].tolist() == [0, 1, 2, 3]
    ided = with_atom_ids(t)
    assert rows_of_ids(ided, [2, 7, 99]).tolist() == [3, 2, -1]


def test_validate_names_the_problem() -> None:
    with pytest.raises(AtomsTableError, match=r"lacks column\(s\) \['x'\]"):
        validate_atoms(pd.DataFrame({"frame": [0], "y": [1.0]}))
    with pytest.raises(AtomsTableError, match="non-finite"):
        validate_atoms(pd.DataFrame({"frame": [0], "y": [np.nan], "x": [1.0]}))
    with pytest.raises(AtomsTableError, match="whole numbers"):
        validate_atoms(pd.DataFrame({"frame": [0.5], "y": [1.0], "x": [1.0]}))
    out = validate_atoms(pd.DataFrame({"frame": [1.0], "y": ["2.5"], "x": [3], "cls": ["C"]}))
    assert out["frame"].dtype == np.int64 and out["y"].item() == 2.5


def test_one_writer_round_trips_csv_and_parquet(tmp_path) -> None:
    t = with_atom_ids(
        pd.DataFrame({"frame": [0, 1], "y": [1 / 3, 2.0], "x": [0.1, 7.25], "cls": ["C", "Si"]})
    )
    for name in ("a.csv", "a.parquet"):
        path = write_atoms(tmp_path / name, t)
        back = pd.read_csv(path) if name.endswith("csv") else pd.read_parquet(path)
        pd.testing.assert_frame_equal(back, t, check_dtype=False)
    rings = pd.DataFrame({"ring_id": [0], "atoms": [(1, 2, 3)]})
    write_atoms(tmp_path / "r.csv", rings)
    assert pd.read_csv(tmp_path / "r.csv")["atoms"].item() == "1 2 3"
    with pytest.raises(AtomsTableError, match=r"\.csv or \.parquet"):
        write_atoms(tmp_path / "a.xlsx", t)
