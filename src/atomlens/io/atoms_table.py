"""Atom tables as CSV files, with the flags that record manual corrections.

An atom table is a :class:`pandas.DataFrame` with one row per atom per frame and at
least ``frame`` (int), ``y``, ``x`` (float pixels, sub-pixel), ``cls`` (species name) and
``prob`` (float). Correction adds two columns:

``edited`` (bool)
    the row was added, moved or re-classified by hand.
``source`` (str)
    ``"detector"`` (found by a network) or ``"manual"`` (placed by hand).

Stable ids: ``atom_id`` (int) names an atom row for the life of a table; bonds,
subimages and corrections refer to atoms by ``atom_id``, never by row position
(:func:`with_atom_ids`, :func:`rows_of_ids`). :func:`write_atoms` is the one writer
(CSV or Parquet by suffix, written atomically through :mod:`atomlens.io.atomic`);
:func:`validate_atoms` is the one schema check.

CSV is plain comma-separated text with a header; booleans are written ``True``/``False``
and species as text, so the file opens in any spreadsheet and round-trips exactly
(floats are written with 17 significant digits).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.errors import InputFileError

#: Columns every atom table has after :func:`ensure_edit_columns`.
BASE_COLUMNS = ("frame", "y", "x", "cls", "prob")
#: The correction flags.
EDIT_COLUMNS = ("edited", "source")
#: Allowed values of ``source``.
SOURCES = ("detector", "manual")


class AtomsTableError(InputFileError):
    """An atom table (or CSV file) that cannot be used; the message names the fix."""


def ensure_edit_columns(atoms: pd.DataFrame, source: str = "detector") -> pd.DataFrame:
    """A copy of ``atoms`` with the standard columns and the correction flags.

    Missing ``cls`` becomes ``"C"``, missing ``prob`` 1.0, missing ``edited`` False and
    missing ``source`` ``source``. ``frame`` becomes int, ``y``/``x``/``prob`` float,
    ``cls`` and ``source`` str, ``edited`` bool. Raises :class:`AtomsTableError` when
    ``y`` or ``x`` is missing or ``source`` holds an unknown value.
    """
    if source not in SOURCES:
        raise AtomsTableError(f"source must be one of {SOURCES}, got {source!r}")
    missing = {"y", "x"} - set(atoms.columns)
    if missing:
        raise AtomsTableError(
            f"the atom table lacks column(s) {sorted(missing)}; it needs at least frame, y, x "
            "(pixels)"
        )
    out = atoms.reset_index(drop=True).copy()
    if "frame" not in out:
        out.insert(0, "frame", 0)
    if "cls" not in out:
        out["cls"] = "C"
    if "prob" not in out:
        out["prob"] = 1.0
    if "edited" not in out:
        out["edited"] = False
    if "source" not in out:
        out["source"] = source
    out["frame"] = np.rint(out["frame"].to_numpy(float)).astype(np.int64)
    for col in ("y", "x", "prob"):
        out[col] = out[col].to_numpy(float)
    out["cls"] = out["cls"].astype(str).to_numpy(dtype=object)
    out["source"] = out["source"].astype(str).to_numpy(dtype=object)
    out["edited"] = _as_bool(out["edited"])
    bad = sorted(set(out["source"]) - set(SOURCES))
    if bad:
        raise AtomsTableError(f"column 'source' holds {bad}; allowed values are {SOURCES}")
    return out


def _as_bool(col: pd.Series) -> np.ndarray:
    """Booleans from bools, 0/1 or the strings true/false (any case)."""
    if col.dtype == bool:
        return col.to_numpy(bool)
    text = col.astype(str).str.strip().str.lower()
    truthy = text.isin(["true", "1", "yes", "1.0"])
    falsy = text.isin(["false", "0", "no", "0.0", "", "nan", "none"])
    if not bool((truthy | falsy).all()):
        odd = sorted(set(text[~(truthy | falsy)]))[:5]
        raise AtomsTableError(f"column 'edited' must be true/false, found {odd}")
    return truthy.to_numpy(bool)


def with_atom_ids(atoms: pd.DataFrame, fresh: bool = False) -> pd.DataFrame:
    """``atoms`` with an int ``atom_id`` column; returns a copy.

    Existing ids are kept (unless ``fresh``): rows without one (NaN, e.g. atoms just added
    in a Points layer) and repeats of an id already used get new ids above the largest;
    a table without the column, or ``fresh``, is numbered ``0..N-1`` in row order."""
    out = atoms.copy()
    if "atom_id" not in out or fresh or len(out) == 0:
        out["atom_id"] = np.arange(len(out), dtype=np.int64)
        return out
    ids = pd.to_numeric(out["atom_id"], errors="coerce").to_numpy(float, copy=True)
    bad = ~np.isfinite(ids) | pd.Series(ids).duplicated().to_numpy()
    if bad.any():
        start = int(np.nanmax(np.where(bad, np.nan, ids))) + 1 if (~bad).any() else 0
        ids[bad] = np.arange(start, start + int(bad.sum()))
    out["atom_id"] = ids.astype(np.int64)
    return out


def rows_of_ids(atoms: pd.DataFrame, ids: Any) -> np.ndarray:
    """Row positions in ``atoms`` of the given ``atom_id`` values (-1 where absent)."""
    lookup = pd.Series(np.arange(len(atoms)), index=atoms["atom_id"].to_numpy())
    return lookup.reindex(np.asarray(ids).ravel()).fillna(-1).to_numpy(np.int64)


def validate_atoms(atoms: Any, name: str = "the atom table") -> pd.DataFrame:
    """The one schema check: a DataFrame with ``frame`` (int >= 0), finite ``y, x``
    (pixels) and, when present, ``cls`` as text. Returns a copy with int frames;
    raises :class:`AtomsTableError` naming the problem and the fix."""
    if not isinstance(atoms, pd.DataFrame):
        raise AtomsTableError(f"{name} must be a pandas DataFrame, got {type(atoms).__name__}")
    missing = [c for c in ("frame", "y", "x") if c not in atoms.columns]
    if missing:
        raise AtomsTableError(
            f"{name} lacks column(s) {missing}; it needs frame, y, x (pixels) and cls (species)"
        )
    out = atoms.copy()
    yx = out[["y", "x"]].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    if not np.isfinite(yx).all():
        raise AtomsTableError(f"{name} has rows with missing or non-finite y/x: drop or fix them")
    frame = pd.to_numeric(out["frame"], errors="coerce").to_numpy(float)
    if not np.isfinite(frame).all() or (frame < 0).any() or (frame != np.rint(frame)).any():
        raise AtomsTableError(f"{name} has frame values that are not whole numbers >= 0")
    out["frame"] = frame.astype(np.int64)
    out["y"], out["x"] = yx[:, 0], yx[:, 1]
    if "prob" in out:
        prob = pd.to_numeric(out["prob"], errors="coerce")
        if (prob.isna() & out["prob"].notna()).any():  # text, not a missing value
            raise AtomsTableError(
                f"{name} has prob values that are not numbers: fix them or drop the prob column"
            )
        out["prob"] = prob.to_numpy(float)
    if "cls" in out and not isinstance(out["cls"].dtype, pd.CategoricalDtype):
        out["cls"] = out["cls"].astype(str)
    return out


def write_atoms(path: str | Path, atoms: pd.DataFrame) -> Path:
    """The one atom-table writer: ``.csv`` (text, 17 significant digits, tuples as text)
    or ``.parquet``; written whole or not at all. Returns the path."""
    from atomlens.io import atomic

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import io as _io

        buf = _io.BytesIO()
        atoms.to_parquet(buf)
        return atomic.write_bytes(path, buf.getvalue())
    if suffix not in (".csv", ".txt"):
        raise AtomsTableError(f"atom tables are written as .csv or .parquet, not {path.name!r}")
    table = atoms.copy()
    for col in table.columns:
        if table[col].dtype == object and len(table) and isinstance(table[col].iloc[0], tuple):
            table[col] = [
                " ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in t)
                for t in table[col]
            ]
    return atomic.write_csv(path, table, float_format="%.17g")


def write_atoms_csv(path: str | Path, atoms: pd.DataFrame) -> Path:
    """Write an atom table (with its correction flags) as CSV; returns the path.

    Columns come in the order ``frame, y, x, cls, prob, edited, source`` then any other
    column (chemistry, latents...) as it is. Writes to a temporary file then renames, so
    an interrupted save never leaves a half-written table.
    """
    path = Path(path)
    table = ensure_edit_columns(atoms)
    first = [c for c in BASE_COLUMNS + EDIT_COLUMNS if c in table]
    table = table[first + [c for c in table.columns if c not in first]]
    return write_atoms(path, table)


def read_atoms_csv(path: str | Path) -> pd.DataFrame:
    """Read an atom table written by :func:`write_atoms_csv` (or any CSV with frame, y, x).

    Raises FileNotFoundError for a missing file and :class:`AtomsTableError` for a file
    that is not an atom table.
    """
    from atomlens.io.gate import check_declared_size, check_input_path, safe_reason

    path = check_input_path(path, "atom table", error=AtomsTableError)  # no FIFOs, devices
    check_declared_size(path.stat().st_size * 8, None, path, "an atom table")  # ~8x in memory
    try:
        table = pd.read_csv(
            path,
            dtype={"cls": str, "source": str},
            keep_default_na=False,
            na_values={c: ["", "nan", "NaN"] for c in ("y", "x", "prob")},
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise AtomsTableError(
            f"'{path.name}' is not a readable CSV atom table "
            f"({safe_reason(exc)}); export it again as CSV"
        ) from exc
    try:
        if "frame" not in table and {"y", "x"} <= set(table.columns):
            table.insert(0, "frame", 0)
        if "frame" in table:
            table = validate_atoms(table, f"'{path.name}'")
        table = ensure_edit_columns(table)
    except AtomsTableError as exc:
        raise AtomsTableError(
            f"'{path.name}': {exc}" if path.name not in str(exc) else str(exc)
        ) from exc
    except (ValueError, TypeError) as exc:
        raise AtomsTableError(
            f"'{path.name}': a column holds values of the wrong type ({safe_reason(exc)}); "
            "frame, y, x and prob must be numbers"
        ) from exc
    if table[["y", "x"]].isna().any().any():
        raise AtomsTableError(f"'{path.name}' has rows with empty y or x; fix or delete them")
    return table


__all__ = [
    "BASE_COLUMNS",
    "EDIT_COLUMNS",
    "SOURCES",
    "AtomsTableError",
    "ensure_edit_columns",
    "read_atoms_csv",
    "rows_of_ids",
    "validate_atoms",
    "with_atom_ids",
    "write_atoms",
    "write_atoms_csv",
]
