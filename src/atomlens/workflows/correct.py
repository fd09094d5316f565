"""Correction workflow: :class:`CorrectionSession`, the headless twin of the "Correct
atoms" dock.

A session holds the working atom table (one row per atom; ``atom_id`` names an atom
for good, so edits and undo never depend on row positions), the corrected frames, the
undo history, the detector lineage (which model found the atoms, which fine-tuned
models followed), dirty state and autosave, and maps itself to a
:class:`atomlens.io.project.Project`. Every change emits a :class:`SessionEvent` to the
listeners (the dock redraws its layer on them). The rules:

- an edit (add, delete, move, set species) flags the rows ``edited`` (added rows are
  ``source = "manual"``) and marks their frames corrected;
- corrected frames are the fine-tuning set and are never overwritten by re-detection;
- undo/redo restore the table AND the corrected frames;
- the session is dirty after any change until saved; :meth:`autosave_due` says when
  changes have stayed unsaved for the autosave interval;
- retraining and re-detection read a copy of the inputs taken when they are asked for,
  and a re-detection is applied (:meth:`apply_redetect`) to the table as it is then:
  frames corrected in the meantime keep the user's atoms;
- saving always records the movie (path and pixel size) and the model lineage.

``atomlens finetune PROJECT`` replays a saved session (:func:`replay`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.corrections import EditHistory, RedetectResult, Snapshot, redetect
from atomlens.errors import SettingsError
from atomlens.io.atoms_table import ensure_edit_columns, rows_of_ids, with_atom_ids
from atomlens.workflows.events import Log, Progress
from atomlens.workflows.recipe import Recipe, setting


@dataclass
class CorrectRecipe(Recipe):
    """Retraining and session settings (``settings`` of a project)."""

    section = "correct"

    steps: int = setting(150, min=1, max=100000, doc="fine-tuning steps")
    self_train: bool = setting(False, doc="fine-tune on the model's own confident detections")
    threads: int = setting(2, min=1, max=64, doc="torch CPU threads while retraining")
    threshold: float = setting(0.5, min=0.0, max=1.0, doc="re-detection probability threshold")
    autosave: bool = setting(False, doc="save the project every autosave_s seconds when dirty")
    autosave_s: int = setting(30, min=2, max=3600, doc="autosave interval, seconds")


#: Species offered for new atoms before any atom table says otherwise.
DEFAULT_CLASSES = ("C", "Si")

#: The columns a correction owns; every other column of the table rides along.
CORE_COLUMNS = ("frame", "y", "x", "cls", "prob", "edited", "source", "atom_id")


@dataclass(frozen=True)
class SessionEvent:
    """What changed: ``kind`` is ``"edit"`` (table and/or corrected frames), ``"undo"``,
    ``"redo"``, ``"frames"`` (corrected set only), ``"saved"``, ``"loaded"``,
    ``"model"`` (a new fine-tuned detector) or ``"redetected"``; ``frames`` the frames
    concerned; ``atom_ids`` the atoms concerned (may be empty)."""

    kind: str
    frames: tuple[int, ...] = ()
    atom_ids: tuple[int, ...] = ()
    message: str = ""


@dataclass
class CorrectionSession:
    """Headless correction of one movie's atom table (see the module docstring).

    Parameters
    ----------
    atoms : the atom table (``frame, y, x`` px, ``cls``, ``prob``; flags are added). The
        session's :attr:`atoms` is replaced, never changed in place, by each change (undo
        keeps earlier tables as they are): read it, do not write into it.
    stack : :class:`atomlens.io.Stack` (or ``(T, Y, X)`` array) the atoms belong to.
    stack_path : the movie's file (recorded in the project; needed to reopen and retrain).
    pixel_size : Å per pixel (one value for detection, correction and retraining).
    model : the detector that found the atoms (path, or None = the shipped model).
    recipe : :class:`CorrectRecipe`.
    """

    atoms: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["frame", "y", "x"]))
    stack: Any = None
    stack_path: str | None = None
    pixel_size: float | None = None
    pixel_size_source: str = "unknown"
    model: str | None = None
    recipe: CorrectRecipe = field(default_factory=CorrectRecipe)
    corrected: set[int] = field(default_factory=set)
    lineage: list[dict] = field(default_factory=list)
    project_path: str | None = None
    history: EditHistory = field(default_factory=EditHistory)
    new_model: Any = None  # the last fine-tuned Detector (not yet applied)
    new_model_path: str | None = None
    current_model: Any = None  # the Detector applied by the last re-detection
    _listeners: list[Callable[[SessionEvent], None]] = field(default_factory=list, repr=False)
    _version: int = 0
    _saved_version: int = 0
    _last_save: float = field(default_factory=time.monotonic)
    _dirty_since: float | None = None  # when the first unsaved change happened
    _last_move: frozenset | None = None  # ids of the last change if it was a move

    def __post_init__(self) -> None:
        self.atoms = with_atom_ids(ensure_edit_columns(self.atoms))
        self.corrected = {int(f) for f in self.corrected}
        if self.stack is not None and self.pixel_size is None:
            self.pixel_size = getattr(self.stack, "pixel_size", None)
            self.pixel_size_source = getattr(self.stack, "pixel_size_source", "unknown")
        if self.stack is not None and self.stack_path is None:
            path = getattr(self.stack, "path", None)
            self.stack_path = str(path) if path else None

    # -- events -------------------------------------------------------------------------

    def connect(self, listener: Callable[[SessionEvent], None]) -> None:
        """Call ``listener(event)`` after every change."""
        self._listeners.append(listener)

    def disconnect(self, listener: Callable[[SessionEvent], None]) -> None:
        self._listeners.remove(listener)

    def _emit(
        self,
        kind: str,
        frames: Iterable[int] = (),
        ids: Iterable[int] = (),
        message: str = "",
        dirty: bool = True,
    ) -> None:
        self._last_move = None
        if dirty:
            self._version += 1
            if self._dirty_since is None:
                self._dirty_since = time.monotonic()
        ev = SessionEvent(
            kind, tuple(sorted({int(f) for f in frames})), tuple(int(i) for i in ids), message
        )
        for fn in list(self._listeners):
            fn(ev)

    # -- state --------------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        """Changes since the last save (or load)."""
        return self._version != self._saved_version

    @property
    def corrected_frames(self) -> list[int]:
        return sorted(self.corrected)

    @property
    def can_undo(self) -> bool:
        return self.history.can_undo

    @property
    def can_redo(self) -> bool:
        return self.history.can_redo

    def class_choices(self, defaults: Iterable[str] | None = None) -> list[str]:
        """Species to offer for new atoms: ``defaults`` then the table's classes (its
        categories, then the values in order of first appearance); key ``n`` of the dock
        picks the n-th. ``defaults`` None: :data:`DEFAULT_CLASSES` when the table is empty
        or holds one of them, else none (a general-model table offers its ``atom``, a
        contrast-named one its ``S2, Mo``: not a C the user never asked for)."""
        present: list[str] = []
        if "cls" in self.atoms:
            col = self.atoms["cls"]
            if isinstance(col.dtype, pd.CategoricalDtype):
                present += [str(c) for c in col.cat.categories]
            present += [str(c) for c in pd.unique(col.dropna())]
        if defaults is None:
            hit = not present or bool(set(present) & set(DEFAULT_CLASSES))
            defaults = DEFAULT_CLASSES if hit else ()
        return list(dict.fromkeys([*map(str, defaults), *present]))

    def ids_at(self, rows: Iterable[int]) -> list[int]:
        """``atom_id`` of the atoms at row positions ``rows`` of :attr:`atoms` (the order
        of a napari Points layer drawn from the session)."""
        rows = np.asarray(list(rows), dtype=np.int64)
        if len(rows) and (rows.min() < -len(self.atoms) or rows.max() >= len(self.atoms)):
            raise SettingsError(f"rows {rows.tolist()} outside the {len(self.atoms)} atoms")
        return self.atoms["atom_id"].to_numpy()[rows].astype(np.int64).tolist()

    def set_movie(
        self,
        stack: Any,
        stack_path: str | None = None,
        pixel_size: float | None = None,
        pixel_size_source: str | None = None,
    ) -> None:
        """The movie the atoms belong to (an :class:`atomlens.io.Stack` or ``(T, Y, X)``
        array, or None: no movie open), its file and its pixel size in Å/px (default: the
        stack's). Not an edit: not undoable, the session does not become dirty."""
        self.stack = stack
        if stack is None:
            return
        path = stack_path or getattr(stack, "path", None)
        self.stack_path = str(path) if path else self.stack_path
        px = pixel_size if pixel_size is not None else getattr(stack, "pixel_size", None)
        if px:
            self.pixel_size = float(px)
            self.pixel_size_source = pixel_size_source or getattr(
                stack, "pixel_size_source", "unknown"
            )

    @property
    def n_frames(self) -> int | None:
        if self.stack is None:
            return None
        return int(
            getattr(self.stack, "n_frames", None)
            or np.shape(getattr(self.stack, "data", self.stack))[0]
        )

    def _snapshot(self) -> Snapshot:
        # every change builds a new table (copy on write), so the history may keep the
        # current one itself: treat ``atoms`` as read-only from outside
        return Snapshot(
            self.atoms[["frame", "y", "x"]].to_numpy(float),
            self.atoms,
            frozenset(self.corrected),
        )

    def _next_ids(self, n: int) -> np.ndarray:
        start = int(self.atoms["atom_id"].max()) + 1 if len(self.atoms) else 0
        return np.arange(start, start + n, dtype=np.int64)

    def _check_ids(self, ids: Iterable[int]) -> np.ndarray:
        ids = np.asarray(list(ids), dtype=np.int64)
        rows = rows_of_ids(self.atoms, ids)
        if (rows < 0).any():
            raise SettingsError(f"no atom with atom_id {ids[rows < 0].tolist()} in the session")
        return rows

    def _check_frame(self, frame: int) -> int:
        n = self.n_frames
        if n is not None and not 0 <= int(frame) < n:
            raise SettingsError(f"frame {frame} is outside the movie (frames 0..{n - 1})")
        return int(frame)

    # -- edits --------------------------------------------------------------------------

    def add(self, frame: int, y: float, x: float, cls: str = "C") -> int:
        """Add a manual atom at ``(y, x)`` pixels on ``frame``; returns its ``atom_id``."""
        return self.add_many([frame], [y], [x], cls)[0]

    def add_many(
        self, frames: Iterable[int], ys: Iterable[float], xs: Iterable[float], cls: str = "C"
    ) -> list[int]:
        """Add manual atoms (one undo step) at ``(ys[i], xs[i])`` pixels on ``frames[i]``,
        appended in that order; returns their ``atom_id``."""
        fs = [self._check_frame(f) for f in frames]
        yx = np.column_stack([np.asarray(list(ys), float), np.asarray(list(xs), float)])
        if len(yx) != len(fs):
            raise SettingsError(f"{len(fs)} frames for {len(yx)} positions")
        if not np.isfinite(yx).all():
            raise SettingsError(f"atom positions must be finite pixels, got {yx.tolist()}")
        if not fs:
            return []
        self.history.push(self._snapshot())
        new_ids = self._next_ids(len(fs))
        rows = pd.DataFrame({"frame": fs, "y": yx[:, 0], "x": yx[:, 1], "cls": str(cls)})
        rows["prob"], rows["edited"], rows["source"], rows["atom_id"] = 1.0, True, "manual", new_ids
        rows = ensure_edit_columns(rows, source="manual")
        core = {c: t for c, t in self.atoms.dtypes.items() if c in CORE_COLUMNS}
        rows = rows.astype({c: t for c, t in core.items() if len(self.atoms)})
        # other columns (latents, chemistry) are NaN for a new atom
        parts = [p for p in (self.atoms, rows) if len(p)]
        self.atoms = pd.concat(parts, ignore_index=True)  # (the table's columns are checked)
        self.corrected |= set(fs)
        self._emit("edit", fs, new_ids)
        return [int(i) for i in new_ids]

    def delete(self, atom_ids: Iterable[int]) -> None:
        """Delete atoms; their frames become corrected."""
        rows = self._check_ids(atom_ids)
        if not len(rows):
            return
        self.history.push(self._snapshot())
        frames = self.atoms["frame"].to_numpy()[rows]
        ids = self.atoms["atom_id"].to_numpy()[rows]
        self.atoms = self.atoms.drop(index=self.atoms.index[rows]).reset_index(drop=True)
        self.corrected |= {int(f) for f in frames}
        self._emit("edit", frames, ids)

    def move(self, atom_id: int, y: float, x: float) -> None:
        """Move one atom to ``(y, x)`` pixels (same frame); flags it edited."""
        self.move_many([atom_id], [y], [x])

    def move_many(
        self,
        atom_ids: Iterable[int],
        ys: Iterable[float],
        xs: Iterable[float],
        continue_drag: bool = False,
    ) -> None:
        """Move atoms (one undo step) to ``(ys[i], xs[i])`` pixels, each on its own frame;
        flags them edited. ``continue_drag``: this continues the last change, a move of
        the same atoms (a mouse drag reports every step): no new undo step."""
        ids = [int(i) for i in atom_ids]
        rows = self._check_ids(ids)
        yx = np.column_stack([np.asarray(list(ys), float), np.asarray(list(xs), float)])
        if len(yx) != len(rows):
            raise SettingsError(f"{len(rows)} atoms for {len(yx)} positions")
        if not np.isfinite(yx).all():
            raise SettingsError(f"atom positions must be finite pixels, got {yx.tolist()}")
        if not len(rows):
            return
        if not (continue_drag and self._last_move == frozenset(ids)):
            self.history.push(self._snapshot())
        atoms = self.atoms.copy()  # a new table: a running retrain keeps reading the old one
        for col, values in (("y", yx[:, 0]), ("x", yx[:, 1]), ("edited", True)):
            atoms.iloc[rows, atoms.columns.get_loc(col)] = values
        self.atoms = atoms
        frames = atoms["frame"].to_numpy()[rows]
        self.corrected |= {int(f) for f in frames}
        self._emit("edit", frames, ids)
        self._last_move = frozenset(ids)

    def set_species(self, atom_ids: Iterable[int], cls: str) -> None:
        """Re-classify atoms as ``cls``; flags them edited."""
        rows = self._check_ids(atom_ids)
        if not len(rows):
            return
        self.history.push(self._snapshot())
        atoms = self.atoms.copy()
        atoms.iloc[rows, atoms.columns.get_loc("cls")] = str(cls)
        atoms.iloc[rows, atoms.columns.get_loc("edited")] = True
        self.atoms = atoms
        frames = self.atoms["frame"].to_numpy()[rows]
        self.corrected |= {int(f) for f in frames}
        self._emit("edit", frames, self.atoms["atom_id"].to_numpy()[rows])

    def update_columns(self, table: pd.DataFrame) -> list[str]:
        """Take extra per-atom columns (latents, chemistry... anything but the position,
        species, flags and ``atom_id``) from ``table``, matched on ``atom_id``; atoms it
        lacks get NaN. Not an edit: not undoable, not dirty. Returns the columns taken."""
        if "atom_id" not in table or not len(self.atoms):
            return []
        cols = [c for c in table.columns if c not in CORE_COLUMNS]
        if not cols:
            return []
        src = table.drop_duplicates("atom_id").set_index("atom_id")[cols]
        ids = self.atoms["atom_id"].to_numpy()
        atoms = self.atoms.drop(columns=cols, errors="ignore").reset_index(drop=True)
        taken = src.reindex(ids).reset_index(drop=True)
        self.atoms = pd.concat([atoms, taken], axis=1)
        return cols

    def replace_table(self, atoms: pd.DataFrame, changed_frames: Iterable[int] = ()) -> None:
        """Take a whole edited table (e.g. from a napari Points layer after a drag);
        rows keep their ``atom_id`` where given. ``changed_frames`` become corrected."""
        self.history.push(self._snapshot())
        self.atoms = with_atom_ids(ensure_edit_columns(atoms))
        self.corrected |= {int(f) for f in changed_frames}
        self._emit("edit", changed_frames)

    def mark_frames(self, frames: Iterable[int], corrected: bool = True) -> None:
        """Mark (or unmark) frames corrected; undoable."""
        fs = {self._check_frame(f) for f in frames}
        self.history.push(self._snapshot())
        if corrected:
            self.corrected |= fs
        else:
            self.corrected -= fs
        self._emit("frames", fs)

    def undo(self) -> bool:
        """Restore the state before the last change; False when there is none."""
        snap = self.history.undo(self._snapshot())
        if snap is None:
            return False
        self._restore(snap, "undo")
        return True

    def redo(self) -> bool:
        """Re-apply the last undone change; False when there is none."""
        snap = self.history.redo(self._snapshot())
        if snap is None:
            return False
        self._restore(snap, "redo")
        return True

    def _restore(self, snap: Snapshot, kind: str) -> None:
        before = set(self.atoms["frame"].astype(int)) | set(self.corrected)
        self.atoms = snap.features.copy()
        self.corrected = set(snap.corrected)
        self._emit(kind, before | set(self.corrected))

    # -- retrain and re-detect ----------------------------------------------------------

    def _training_frames(self, frame_hint: int | None = None) -> list[int]:
        frames = self.corrected_frames
        if not frames and self.recipe.self_train and frame_hint is not None:
            frames = [int(frame_hint)]
        if not frames:
            raise SettingsError("no corrected frames yet: correct a frame (or set self_train)")
        return frames

    def _stack(self) -> Any:
        if self.stack is None:
            raise SettingsError(
                "the session has no movie: open the movie the atoms were detected on "
                "(or a project that records it)"
            )
        from atomlens.io.stack import Stack

        if isinstance(self.stack, Stack):
            if self.pixel_size and self.stack.pixel_size != self.pixel_size:
                return self.stack.with_pixel_size(self.pixel_size, self.pixel_size_source)
            return self.stack
        return Stack(
            np.asarray(self.stack), self.pixel_size, self.pixel_size_source, {}, self.stack_path
        )

    def next_model_path(self, project: str | Path | None = None) -> str | None:
        """``<project>/models/finetuned-NNN.pt`` for the next fine-tuned detector
        (``project``: default this session's project; None when there is none)."""
        from atomlens.io.project import project_folder

        project = project or self.project_path
        if not project:
            return None
        folder = project_folder(project)
        n = len(list((folder / "models").glob("finetuned-*.pt"))) if folder.exists() else 0
        return str(folder / "models" / f"finetuned-{n + 1:03d}.pt")

    def retrain(
        self,
        *,
        stop: threading.Event | None = None,
        frame_hint: int | None = None,
        out: str | None = None,
        adopt: bool = True,
    ) -> Generator[Any, None, Any]:
        """Fine-tune the current detector on the corrected frames, yielding the
        fine-tuning events (:func:`atomlens.atoms.finetune.iter_finetune`); returns
        the :class:`FinetuneResult` (or None when stopped before a model existed).

        The inputs (table, frames, movie, recipe) are checked and copied now: a bad input
        raises :class:`SettingsError` here, not on the first step, and edits made while
        training do not reach it. With ``adopt`` the new model joins the lineage when the
        generator ends (:meth:`adopt_model`; a GUI passes False and adopts on its main
        thread); :meth:`redetect` applies it."""
        frames = self._training_frames(frame_hint)
        stack = self._stack()
        base = self.current_model if self.current_model is not None else self.model
        return self._retrain_job(
            stack, self.atoms.copy(), frames, base, out or self.next_model_path(), stop, adopt
        )

    def _retrain_job(
        self,
        stack: Any,
        atoms: pd.DataFrame,
        frames: list[int],
        base: Any,
        out: str | None,
        stop: threading.Event | None,
        adopt: bool,
    ) -> Generator[Any, None, Any]:
        from atomlens.atoms.finetune import FinetuneFinished, FinetuneNote, iter_finetune

        recipe = self.recipe
        result = None
        yield Log("correct", f"retraining on {len(frames)} corrected frame(s)")
        for ev in iter_finetune(
            stack,
            atoms,
            frames,
            base,
            out=out,
            stop=stop,
            pixel_size=self.pixel_size,
            stack_path=self.stack_path,
            steps=recipe.steps,
            self_train=recipe.self_train,
            threads=recipe.threads,
        ):
            if isinstance(ev, FinetuneFinished):
                result = ev.result
            yield Log("finetune", ev.message) if isinstance(ev, FinetuneNote) else ev
        if result is not None and adopt:
            self.adopt_model(result)
        return result

    def adopt_model(self, result: Any) -> None:
        """Take a fine-tuning result as the new model (not yet applied: :meth:`redetect`)
        and record it in the lineage (parent, file, frames, steps, why it ended)."""
        ft = result.card.get("finetune", {})
        frames = [int(f) for f in ft.get("frames", [])]
        self.new_model = result.detector
        self.new_model_path = str(result.path) if result.path else None
        self.lineage.append(
            {
                "parent": self.model,
                "model": self.new_model_path,
                "frames": frames,
                "steps": int(ft.get("steps", self.recipe.steps)),
                "reason": result.reason,
            }
        )
        n = self.n_frames
        message = retrain_message(
            result,
            "every frame is corrected: detect other images with it (Detect: model 'file')"
            if n is not None and set(range(n)) <= self.corrected  # e.g. one image: nothing
            else "re-detect to apply it",  # left to re-detect here
        )
        where = (
            f"; saved as {Path(self.new_model_path).name}"
            if self.new_model_path
            else "; save the project to keep it as a file"
        )
        self._emit("model", frames, message=message + where)

    def redetect(self, *, model: Any = None) -> Generator[Any, None, RedetectResult]:
        """Re-detect every frame except the corrected ones with ``model`` (default: the
        last fine-tuned one) and apply it (:meth:`apply_redetect`); undoable. Returns the
        :class:`RedetectResult`."""
        model = model if model is not None else self.new_model
        job = self.redetect_job(model=model)
        res = yield from job
        self.apply_redetect(res, model)
        yield Progress("correct", "redetect", 1, 1, res.message)
        return res

    def redetect_job(self, *, model: Any = None) -> Generator[Any, None, RedetectResult]:
        """Only the detection of :meth:`redetect` (no change to the session: a GUI runs
        it on a worker, then :meth:`apply_redetect` on its main thread). Inputs are checked
        and copied now (:class:`SettingsError` when there is no model or movie)."""
        model = model if model is not None else self.new_model
        if model is None:
            raise SettingsError("retrain first: there is no new model yet")
        stack, atoms, corrected = self._stack(), self.atoms.copy(), self.corrected_frames
        threshold = self.recipe.threshold

        def _job() -> Generator[Any, None, RedetectResult]:
            yield Progress("correct", "redetect", 0, 1, "re-detecting")
            return redetect(stack, atoms, corrected, model, threshold=threshold)

        return _job()

    def apply_redetect(self, res: RedetectResult, model: Any = None) -> None:
        """Put a re-detection into the table as it is now (undoable): its detected frames
        that are not corrected *now* get the new atoms (fresh ``atom_id``); every other
        frame keeps its rows and ids, so frames corrected while it ran stay the user's.
        ``model`` (default: the last fine-tuned one) becomes the current detector."""
        replaced = set(res.detected_frames) - self.corrected
        new = res.atoms[res.atoms["frame"].isin(replaced)]
        new = ensure_edit_columns(
            new.drop(columns=["atom_id", "edited", "source"], errors="ignore")
        )
        keep = self.atoms[~self.atoms["frame"].isin(replaced)]
        ids = self._next_ids(len(new))
        new = new.assign(atom_id=ids)
        self.history.push(self._snapshot())
        parts = [p for p in (keep, new) if len(p)]
        table = pd.concat(parts, ignore_index=True, sort=False) if parts else keep
        table = table.sort_values("frame", kind="stable").reset_index(drop=True)
        self.atoms = with_atom_ids(ensure_edit_columns(table))
        self.current_model = model if model is not None else self.new_model
        if self.new_model_path:
            self.model = self.new_model_path
        self._emit("redetected", sorted(replaced), message=res.message)

    # -- project ------------------------------------------------------------------------

    def model_roles(self) -> dict[str, str]:
        """The detector files by role, as a project (and an atoms layer's metadata)
        records them: ``detector`` the model that found the atoms (after a re-detection,
        the fine-tuned one once it has a file), ``finetuned`` the last fine-tuned model's
        file; roles without a file (the shipped model, a model not saved yet) are left
        out. :meth:`from_table` and :meth:`load` start from ``finetuned``, else
        ``detector``."""
        roles = {"detector": self.model, "finetuned": self.new_model_path}
        return {k: str(v) for k, v in roles.items() if v}

    def to_project(self) -> Any:
        """The session as a :class:`atomlens.io.project.Project` (movie always recorded
        when known; raises when the movie is unknown, since the project could not retrain)."""
        from atomlens.io.project import Project

        if not self.stack_path:
            raise SettingsError(
                "the session does not know its movie file: open the movie from a file "
                "(not a probability map) before saving, so the project can be reopened"
            )
        return Project(
            stack_path=str(Path(self.stack_path).resolve()),
            pixel_size=self.pixel_size,
            pixel_size_source=self.pixel_size_source,
            models=self.model_roles(),
            settings={"correct": self.recipe.to_dict(), "lineage": list(self.lineage)},
            corrected_frames=self.corrected_frames,
            atoms=self.atoms.copy(),
        )

    def save(self, path: str | Path | None = None) -> Path:
        """Save the project (to ``path`` or where it was last saved/loaded)."""
        from atomlens.io.project import save_project

        target = path or self.project_path
        if not target:
            raise SettingsError("choose a project file name (NAME.atomlens) first")
        if self.new_model is not None and not self.new_model_path:
            self._keep_model(target)  # retrained before the project had a name
        folder = save_project(target, self.to_project())
        self.project_path = str(folder)
        self._saved_version = self._version
        self._last_save = time.monotonic()
        self._dirty_since = None
        self._emit("saved", message=f"saved {folder.name}", dirty=False)
        return folder

    def _keep_model(self, target: str | Path) -> None:
        """Write the in-memory fine-tuned model into project ``target``'s ``models/``
        (``finetuned-NNN.pt``) and record the file in the lineage, so that saving a
        project after retraining keeps the model (re-detection of other images, the
        Detect dock's model file)."""
        from atomlens.segment.model_file import save_detector

        out = Path(self.next_model_path(target))
        out.parent.mkdir(parents=True, exist_ok=True)
        save_detector(self.new_model, out)
        self.new_model_path = str(out)
        if self.lineage and self.lineage[-1].get("model") is None:
            self.lineage[-1]["model"] = str(out)
        if self.current_model is self.new_model:
            self.model = str(out)

    def autosave_due(self, now: float | None = None) -> bool:
        """True when autosave is on, a project path is set and changes have stayed
        unsaved for ``autosave_s`` seconds (``now``: :func:`time.monotonic` seconds).
        Counting from the first unsaved change, not from the last save, a clock that
        ticks every ``autosave_s`` saves each change within two ticks."""
        now = time.monotonic() if now is None else now
        since = self._dirty_since if self._dirty_since is not None else self._last_save
        return (
            self.recipe.autosave
            and bool(self.project_path)
            and self.dirty
            and now - since >= self.recipe.autosave_s
        )

    def autosave(self, now: float | None = None) -> Path | None:
        """Save when :meth:`autosave_due`; returns the folder or None."""
        return self.save() if self.autosave_due(now) else None

    @classmethod
    def from_table(
        cls, atoms: pd.DataFrame, metadata: dict | None = None, **kwargs: Any
    ) -> CorrectionSession:
        """A session for an atom table and the AtomLens metadata it came with (a napari
        atoms layer's ``metadata["atomlens"]``, or a project's): its corrected frames,
        movie file, project and model lineage (``models``: finetuned, else detector;
        ``"shipped"`` = None). ``kwargs`` go to the constructor and win."""
        meta = metadata or {}
        models = meta.get("models") or {}
        model = models.get("finetuned") or models.get("detector")
        args: dict[str, Any] = {
            "atoms": atoms,
            "corrected": {int(f) for f in meta.get("corrected_frames") or []},
            "stack_path": meta.get("stack_path"),
            "project_path": meta.get("project"),
            "model": None if model in (None, "shipped") else str(model),
            "new_model_path": models.get("finetuned"),
        }
        args.update(kwargs)
        return cls(**args)

    @classmethod
    def load(cls, path: str | Path, *, lazy: bool = True) -> CorrectionSession:
        """Open a saved project: its atoms, corrected frames, recipe, lineage and movie
        (read when the file exists)."""
        from atomlens.io.project import load_project

        proj = load_project(path)
        stack = None
        if proj.stack_path and Path(proj.stack_path).exists():
            from atomlens.io import read_stack

            stack = read_stack(proj.stack_path, pixel_size=proj.pixel_size, lazy=lazy)
        settings = proj.settings or {}
        recipe = CorrectRecipe.from_dict(
            settings.get("correct")
            or {k: v for k, v in settings.items() if k in CorrectRecipe.docs()}
        )
        session = cls(
            atoms=proj.atoms
            if proj.atoms is not None
            else pd.DataFrame(columns=["frame", "y", "x"]),
            stack=stack,
            stack_path=proj.stack_path,
            pixel_size=proj.pixel_size,
            pixel_size_source=proj.pixel_size_source,
            model=(proj.models or {}).get("finetuned") or (proj.models or {}).get("detector"),
            recipe=recipe,
            corrected=set(proj.corrected_frames or []),
            lineage=list(settings.get("lineage", [])),
            project_path=str(proj.path or path),
        )
        if session.model == "shipped":
            session.model = None
        session._emit("loaded", session.corrected_frames, dirty=False)
        return session


def retrain_message(result: Any, next_step: str = "re-detect to apply it") -> str:
    """One line on how a fine-tuning ended: why, after how many steps, the F1 on the
    strip held back from the corrected frames before -> after (when it was scored) and,
    for sparse spots, the learned spot classifier's F1 on the corrected frames (it then
    decides which spots are atoms, so the strip's score is the network's alone); then
    ``next_step``."""
    sc = getattr(result, "scores", None) or {}
    ft = result.card.get("finetune", {})
    spot = ft.get("spot_classifier") or {}
    clf = spot.get("held_out_f1") is not None  # sparse spots: a learned verifier decides
    score = (
        f"; held-back F1{' (network)' if clf else ''} {sc['before']['f1']:.2f} -> "
        f"{sc['after']['f1']:.2f}"
        if sc.get("before") and sc.get("after")
        else ""
    )
    if clf:
        score += f"; spot classifier F1 {spot['held_out_f1']:.2f} (leave one frame out)"
    steps = ft.get("steps", "?")
    return f"retraining {result.reason} after {steps} steps{score}: {next_step}"


def replay(
    project: str | Path,
    *,
    steps: int | None = None,
    out: str | None = None,
    frames: Any = None,
    stop: threading.Event | None = None,
) -> Generator[Any, None, Any]:
    """Replay a saved session's fine-tuning: load the project, fine-tune on its corrected
    frames (or ``frames``, any frame selection) with its recipe (``steps`` overrides),
    write the model to ``out`` (default: the project's next ``finetuned-NNN.pt``) and
    save the project with the new model in its lineage. Returns the FinetuneResult."""
    from atomlens.io.frames import parse_frames

    session = CorrectionSession.load(project)
    if steps is not None:
        session.recipe = session.recipe.replace(steps=steps)
    if frames is not None:
        session.corrected = set(parse_frames(frames, session.n_frames))
    result = yield from session.retrain(stop=stop, out=out)
    if result is not None:
        session.save()
    return result


__all__ = [
    "CORE_COLUMNS",
    "DEFAULT_CLASSES",
    "CorrectRecipe",
    "CorrectionSession",
    "SessionEvent",
    "replay",
    "retrain_message",
]
