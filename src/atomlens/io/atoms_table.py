"""Atom tables as CSV files, with the flags that record manual corrections.

An atom table is a :class:`pandas.DataFrame` with one row per atom per frame and at
least ``frame`` (int), ``y``, ``x`` (float pixels, sub-pixel), ``cls`` (species name) and
``prob`` (float). Correction adds two columns:

``edited`` (bool)
    the row was added, moved or re-classified by hand.
``source`` (str)
    ``"detector"`` (found by a network) or ``"manual"`` (placed by hand).

CSV is plain comma-separated text with a header; booleans are written ``True``/``False``
and species as text, so the file opens in any spreadsheet and round-trips exactly
(floats are written with 17 significant digits).
"""

from __future__ import annotations

from pathlib import Path

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
        raise AtomsTableError(
            f"column 'source' holds {bad}; allowed values are {SOURCES}"
        )
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
    tmp = path.with_name(path.name + ".tmp")
    table.to_csv(tmp, index=False, float_format="%.17g")
    tmp.replace(path)
    return path


def read_atoms_csv(path: str | Path) -> pd.DataFrame:
    """Read an atom table written by :func:`write_atoms_csv` (or any CSV with frame, y, x).

    Raises FileNotFoundError for a missing file and :class:`AtomsTableError` for a file
    that is not an atom table.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such atom table: {path}")
    try:
        table = pd.read_csv(path, dtype={"cls": str, "source": str}, keep_default_na=False,
                            na_values={c: ["", "nan", "NaN"] for c in ("y", "x", "prob")})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AtomsTableError(f"'{path.name}' is not a readable CSV atom table: {exc}") from exc
    try:
        table = ensure_edit_columns(table)
    except AtomsTableError as exc:
        raise AtomsTableError(f"'{path.name}': {exc}") from exc
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
    "write_atoms_csv",
]
