"""Manual corrections of an atom table, headless: which frames are corrected, edit flags,
undo history, and re-detection that never overwrites corrected frames.

The session that holds a correction's state and rules (edits by ``atom_id``, undo/redo,
dirty state, autosave, model lineage, project mapping) is
:class:`atomlens.workflows.correct.CorrectionSession`, built on these functions; the
"Correct atoms" dock is wiring around it.

A frame is *corrected* once the user has added, deleted, moved or re-classified an atom
on it (or declared it checked). Corrected frames are the training set of
:func:`atomlens.atoms.finetune.finetune` and are protected from re-detection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from atomlens.errors import FrameSelectionError
from atomlens.io.atoms_table import ensure_edit_columns
from atomlens.io.frames import format_frames, parse_frames

# One frame grammar for every command: atomlens.io.frames (re-exported here for old callers).
FrameSpecError = FrameSelectionError


def merge_detections(
    current: pd.DataFrame | None,
    new: pd.DataFrame,
    corrected_frames: Iterable[int],
) -> tuple[pd.DataFrame, list[int]]:
    """Merge a fresh detection into the working atom table without touching corrected
    frames.

    Parameters
    ----------
    current : the working table (may hold corrections), or None/empty.
    new : detections for some frames (one row per atom; ``frame, y, x, cls, prob``).
    corrected_frames : frames whose rows in ``current`` must be kept as they are.

    Returns
    -------
    table : for every frame present in ``new`` and not corrected, the new rows (flagged
        ``edited=False, source='detector'``); every other frame keeps its ``current``
        rows. Sorted by frame, stable within a frame.
    skipped_frames : sorted frames that ``new`` covered but were kept because corrected.
    """
    corrected = {int(f) for f in corrected_frames}
    new = ensure_edit_columns(new)
    new["edited"] = False
    new["source"] = "detector"
    if current is None or len(current) == 0:
        cur = new.iloc[0:0]
    else:
        cur = ensure_edit_columns(current)
    new_frames = set(new["frame"].unique().tolist())
    skipped = sorted(new_frames & corrected)
    replaced = new_frames - corrected
    keep_cur = cur[~cur["frame"].isin(replaced)]
    take_new = new[new["frame"].isin(replaced)]
    parts = [p for p in (keep_cur, take_new) if len(p)]
    if not parts:
        return new.iloc[0:0].reset_index(drop=True), skipped
    table = pd.concat(parts, ignore_index=True, sort=False)
    table = table.sort_values("frame", kind="stable").reset_index(drop=True)
    return ensure_edit_columns(table), skipped


def counts_per_frame(
    before: pd.DataFrame | None,
    after: pd.DataFrame,
    corrected_frames: Iterable[int] = (),
    n_frames: int | None = None,
) -> pd.DataFrame:
    """Atoms per frame before and after a re-detection.

    Returns a table with columns ``frame, before, after, change, corrected`` (one row per
    frame in either table, or ``0..n_frames-1`` when given).
    """

    def _counts(t: pd.DataFrame | None) -> pd.Series:
        if t is None or len(t) == 0:
            return pd.Series(dtype=np.int64)
        return t["frame"].astype(np.int64).value_counts()

    b, a = _counts(before), _counts(after)
    if n_frames is not None:
        frames = list(range(n_frames))
    else:
        frames = sorted(set(b.index.tolist()) | set(a.index.tolist()))
    corrected = {int(f) for f in corrected_frames}
    out = pd.DataFrame({"frame": np.asarray(frames, dtype=np.int64)})
    out["before"] = [int(b.get(f, 0)) for f in frames]
    out["after"] = [int(a.get(f, 0)) for f in frames]
    out["change"] = out["after"] - out["before"]
    out["corrected"] = [f in corrected for f in frames]
    return out


@dataclass
class RedetectResult:
    """Outcome of :func:`redetect`.

    ``atoms``: the merged table; ``skipped_frames``: corrected frames kept as they were;
    ``detected_frames``: frames that got new detections; ``counts``: see
    :func:`counts_per_frame`.
    """

    atoms: pd.DataFrame
    skipped_frames: list[int]
    detected_frames: list[int]
    counts: pd.DataFrame

    @property
    def message(self) -> str:
        msg = f"re-detected {len(self.detected_frames)} frame(s)"
        if self.skipped_frames:
            msg += (
                f"; kept {len(self.skipped_frames)} corrected frame(s) untouched "
                f"({format_frames(self.skipped_frames)})"
            )
        return msg


def redetect(
    stack: Any,
    current: pd.DataFrame | None,
    corrected_frames: Iterable[int],
    model: Any = None,
    frames: Iterable[int] | None = None,
    threshold: float = 0.5,
) -> RedetectResult:
    """Detect atoms with ``model`` on ``frames`` (default all) except corrected frames,
    and merge them into ``current`` with :func:`merge_detections`.

    Corrected frames are not even run through the network (they would be dropped anyway);
    they are reported in ``skipped_frames``. ``stack`` is an :class:`atomlens.io.Stack`
    or a ``(T, Y, X)`` array; ``model`` a loaded detector, a path, or None (shipped model).
    """
    from atomlens.atoms import detect
    from atomlens.segment.model_file import load_detector

    data = getattr(stack, "data", stack)
    n = int(data.shape[0])
    wanted = list(range(n)) if frames is None else parse_frames(list(frames), n)
    corrected = {int(f) for f in corrected_frames}
    run = [f for f in wanted if f not in corrected]
    skipped = sorted(set(wanted) & corrected)
    if model is None or isinstance(model, str) or hasattr(model, "__fspath__"):
        model = load_detector(model)
    if run:
        new = detect(stack, model=model, frames=run, threshold=threshold).atoms
        new = ensure_edit_columns(new)
    else:
        new = ensure_edit_columns(pd.DataFrame({"frame": [], "y": [], "x": []}))
    # frames with no atoms found still replace old rows: add them to the merge explicitly
    merged, _ = merge_detections(_drop_frames(current, run), new, corrected)
    counts = counts_per_frame(current, merged, corrected, n_frames=n)
    return RedetectResult(merged, skipped, run, counts)


def _drop_frames(table: pd.DataFrame | None, frames: Iterable[int]) -> pd.DataFrame | None:
    if table is None or len(table) == 0:
        return table
    return table[~table["frame"].isin(list(frames))]


def mark_edited(
    atoms: pd.DataFrame, rows: Iterable[int], source: str | None = None
) -> pd.DataFrame:
    """A copy of ``atoms`` with ``edited=True`` on the given row positions (and ``source``
    set when given)."""
    out = ensure_edit_columns(atoms)
    idx = np.asarray(sorted({int(r) for r in rows}), dtype=np.int64)
    if len(idx):
        col = out.columns.get_loc("edited")
        out.iloc[idx, col] = True
        if source is not None:
            out.iloc[idx, out.columns.get_loc("source")] = source
    return out


def set_species(atoms: pd.DataFrame, rows: Iterable[int], cls: str) -> pd.DataFrame:
    """A copy of ``atoms`` with species ``cls`` (and ``edited=True``) on the given rows."""
    out = mark_edited(atoms, rows)
    idx = np.asarray(sorted({int(r) for r in rows}), dtype=np.int64)
    if len(idx):
        out.iloc[idx, out.columns.get_loc("cls")] = str(cls)
    return out


def edited_frames(atoms: pd.DataFrame) -> list[int]:
    """Frames holding at least one row flagged ``edited`` (deletions leave no row: keep
    the corrected-frame set alongside, e.g. :class:`CorrectionState`)."""
    if len(atoms) == 0 or "edited" not in atoms:
        return []
    return sorted(int(f) for f in atoms.loc[atoms["edited"].astype(bool), "frame"].unique())


@dataclass
class Snapshot:
    """One undo step: the layer's ``(N, 3)`` points data (frame, y, x pixels), its
    features table and the corrected frames at that moment."""

    data: np.ndarray
    features: pd.DataFrame
    corrected: frozenset[int]


@dataclass
class EditHistory:
    """Undo/redo by whole snapshots (atom tables are small: 10^5 rows is a few MB).

    ``push`` before every edit; ``undo(current)`` returns the snapshot to restore and keeps
    ``current`` for ``redo``. A new ``push`` clears the redo stack. At most ``limit``
    steps are kept.
    """

    limit: int = 100
    _undo: list[Snapshot] = field(default_factory=list)
    _redo: list[Snapshot] = field(default_factory=list)

    def push(self, snap: Snapshot) -> None:
        self._undo.append(snap)
        del self._undo[: max(0, len(self._undo) - self.limit)]
        self._redo.clear()

    def undo(self, current: Snapshot) -> Snapshot | None:
        if not self._undo:
            return None
        self._redo.append(current)
        return self._undo.pop()

    def redo(self, current: Snapshot) -> Snapshot | None:
        if not self._redo:
            return None
        self._undo.append(current)
        return self._redo.pop()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()


@dataclass
class CorrectionState:
    """The frames the user has corrected (plus the undo history of the edits)."""

    corrected: set[int] = field(default_factory=set)
    history: EditHistory = field(default_factory=EditHistory)

    def mark(self, frames: Iterable[int]) -> list[int]:
        """Mark frames corrected; returns those that were not before."""
        fs = {int(f) for f in frames}
        new = sorted(fs - self.corrected)
        self.corrected |= fs
        return new

    def unmark(self, frames: Iterable[int]) -> None:
        self.corrected -= {int(f) for f in frames}

    @property
    def frames(self) -> list[int]:
        return sorted(self.corrected)


__all__ = [
    "CorrectionState",
    "EditHistory",
    "FrameSpecError",
    "RedetectResult",
    "Snapshot",
    "counts_per_frame",
    "edited_frames",
    "format_frames",
    "mark_edited",
    "merge_detections",
    "parse_frames",
    "redetect",
    "set_species",
]
