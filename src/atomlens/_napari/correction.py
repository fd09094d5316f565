"""The "Correct atoms" dock: wiring around a headless
:class:`atomlens.workflows.correct.CorrectionSession`.

Every rule and every piece of state (edit flags, corrected frames, undo/redo, dirty
state and autosave, model lineage, retraining and re-detection, the project) lives in the
session; this dock only maps

- napari Points events to session calls: a point added -> ``add_many``, removed ->
  ``delete``, dragged -> ``move_many`` (one drag, one undo step), keys 1..9 ->
  ``set_species``, Ctrl+Z / Ctrl+Shift+Z -> ``undo`` / ``redo`` (napari 0.9 has no undo
  for Points layers); buttons to the matching calls;
- session events to layer updates (the layer is redrawn from ``session.atoms``, row for
  row) and to the status line, progress bar and corrected-frames list;
- its fields to the session's :class:`~atomlens.workflows.correct.CorrectRecipe` and movie.

Retraining and re-detection run the session's jobs on worker threads; their results are
adopted (``adopt_model``, ``apply_redetect``) on the main thread. Keys 1..9 on the layer
shadow napari's digit shortcuts for Points modes there; P, S and Z still switch modes.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    Select,
    SpinBox,
    Table,
)
from napari.layers.base._base_constants import ActionType
from napari.utils.notifications import show_info
from qtpy.QtCore import QTimer

from atomlens._napari._base import ViewerWidget, status_label
from atomlens._napari._layers import (
    add_tuple,
    current_frame,
    is_atoms_points,
    layer_atoms,
    layer_stack,
    set_frame,
)
from atomlens._napari._reuse import REPLACED, is_replacing, unwrapped
from atomlens._napari._workers import notify_error, start_generator
from atomlens.errors import SettingsError
from atomlens.io.frames import format_frames
from atomlens.io.project import project_layer_data
from atomlens.viz.layers import META_KEY, atoms_points_data
from atomlens.workflows.correct import CorrectionSession, SessionEvent
from atomlens.workflows.events import Log, training_progress
from atomlens.workflows.layers import is_derived_image

if TYPE_CHECKING:
    import napari
    from napari.layers import Points

_ERRORS = (ValueError, OSError)  # SettingsError, AtomsTableError, ProjectError are ValueErrors


class CorrectionWidget(ViewerWidget):
    """Correct atoms on an atoms Points layer, save a project, retrain and re-detect."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.session = CorrectionSession()
        self.layer: Points | None = None
        # each atoms layer's session (edits, undo history, a retrained model not saved
        # yet): binding another layer and coming back picks it up again
        self._sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._syncing = False  # the dock is writing the layer: ignore its data events
        self._removing: list[int] = []  # atom ids napari is about to remove
        self._dragging = False  # CHANGED events since the last CHANGING are one drag
        self.worker: Any = None
        self.redetect_worker: Any = None
        self.last_redetect: Any = None
        self._stop = threading.Event()

        # -- layers and class
        # atoms, not the ring / defect centres the Defects dock adds on top of them
        self.points = self.layer_picker("atoms", "points", is_atoms_points)
        # the movie, never a probability map (the project must record the movie's file)
        self.image = self.layer_picker(
            "movie", "image", lambda lay: lay.ndim in (2, 3) and not is_derived_image(lay)
        )
        self.bind_button = PushButton(text="Edit this atoms layer")
        # the classes offered: the bound table's (a callable, so that the pickers'
        # reset on every layer change re-reads them instead of going back to C/Si)
        self._offered: list[str] = self.session.class_choices()
        self.cls = ComboBox(
            label="class (keys 1-9)", choices=lambda _w: list(self._offered), value=self._offered[0]
        )
        self.add_button = PushButton(text="Add atoms (click)")
        self.delete_button = PushButton(text="Delete selected")
        self.species_button = PushButton(text="Set class of selected")
        self.undo_button = PushButton(text="Undo (Ctrl+Z)")
        self.redo_button = PushButton(text="Redo (Ctrl+Shift+Z)")
        self.mark_button = PushButton(text="Mark frame corrected")
        self.unmark_button = PushButton(text="Unmark")
        # (callable choices: the pickers' reset on every layer change re-reads them; a
        # list set once went back to [] on the next edit)
        self.corrected_list = Select(
            label="corrected frames",
            choices=lambda _w: self.session.corrected_frames,
            allow_multiple=True,
        )
        self.corrected_label = Label(value="corrected: none")
        # -- project
        self.project_file = FileEdit(label="project", mode="w", filter="*.atomlens", value="")
        self.save_button = PushButton(text="Save project")
        self.open_button = PushButton(text="Open project")
        recipe = self.session.recipe
        self.autosave = CheckBox(text="autosave", value=recipe.autosave)
        self.autosave_s = SpinBox(label="every (s)", min=2, max=3600, value=recipe.autosave_s)
        # -- retrain
        self.steps = SpinBox(label="steps", min=1, max=100000, value=recipe.steps)
        self.self_train = CheckBox(
            text="self-train (no corrections needed)", value=recipe.self_train
        )
        self.retrain_button = PushButton(text="Retrain on corrected frames")
        self.stop_button = PushButton(text="Stop")
        self.stop_button.enabled = False
        self.progress = ProgressBar(label="training", min=0, max=1, value=0)
        self.redetect_button = PushButton(text="Re-detect all frames with new model")
        self.redetect_button.enabled = False
        self.counts = Table(value={"frame": [], "before": [], "after": [], "corrected": []})
        # a long line (the retraining summary) must not widen the dock past the window:
        # clipped, the whole text in its tooltip (and in the notification)
        self.status = status_label()
        self.status.changed.connect(lambda text: setattr(self.status, "tooltip", str(text)))

        def row(*widgets: Any) -> Container:
            return Container(layout="horizontal", widgets=list(widgets), labels=False)

        self.extend(
            [
                self.points,
                self.image,
                self.bind_button,
                self.cls,
                self.add_button,
                self.delete_button,
                self.species_button,
                row(self.undo_button, self.redo_button),
                row(self.mark_button, self.unmark_button),
                self.corrected_label,
                self.corrected_list,
                self.project_file,
                row(self.save_button, self.open_button, self.autosave),
                self.autosave_s,
                self.steps,
                self.self_train,
                row(self.retrain_button, self.stop_button),
                self.progress,
                self.redetect_button,
                self.counts,
                self.status,
            ]
        )

        self.bind_button.changed.connect(self._bind_clicked)
        self.image.changed.connect(self._movie_to_session)
        self.cls.changed.connect(self._apply_class_defaults)
        self.add_button.changed.connect(self._add_mode)
        self.delete_button.changed.connect(self.delete_selected)
        self.species_button.changed.connect(lambda: self.set_species_selected(self.cls.value))
        self.undo_button.changed.connect(self.undo)
        self.redo_button.changed.connect(self.redo)
        self.mark_button.changed.connect(lambda: self.mark_frames([self._frame()]))
        self.unmark_button.changed.connect(self._unmark_selected)
        self.corrected_list.changed.connect(self._jump_to_selected)
        self.save_button.changed.connect(
            lambda: self._guard(lambda: self.save(self._project_path()), "save")
        )
        self.open_button.changed.connect(
            lambda: self._guard(lambda: self.open_project(self._project_path()), "open")
        )
        for w in (self.autosave, self.autosave_s):
            w.changed.connect(self._autosave_changed)
        for w in (self.steps, self.self_train, self.project_file):
            w.changed.connect(self._settings_to_session)
        self.retrain_button.changed.connect(self.start_retrain)
        self.stop_button.changed.connect(self.stop_retrain)
        self.redetect_button.changed.connect(self.start_redetect)

        self.timer = QTimer()
        self.timer.timeout.connect(self.autosave_now)
        self.session.connect(self._on_session)
        # a re-run of Detect (or any AtomLens result) written into the bound layer
        REPLACED.replaced.connect(self._on_replaced)
        if self.points.value is not None:
            self.bind_layer(self.points.value)

    # --- the session's state, as the dock's API ------------------------------------------

    @property
    def model_path(self) -> str | None:
        """The detector that found the atoms (None = the shipped model)."""
        return self.session.model

    @model_path.setter
    def model_path(self, value: str | None) -> None:
        self.session.model = value

    @property
    def new_model(self) -> Any:
        return self.session.new_model

    @property
    def new_model_path(self) -> str | None:
        return self.session.new_model_path

    @property
    def threads(self) -> int:
        """torch CPU threads while retraining."""
        return self.session.recipe.threads

    @threads.setter
    def threads(self, value: int) -> None:
        self.session.recipe = self.session.recipe.replace(threads=int(value))

    def atoms_table(self):
        """The working atom table (a copy of the session's)."""
        if self.layer is None:
            raise ValueError("no atoms layer bound: pick one and press 'Edit this atoms layer'")
        self._absorb_layer_columns()
        return self.session.atoms.copy()

    # --- binding ---------------------------------------------------------------------

    def _bind_clicked(self) -> None:
        """'Edit this atoms layer': start a session on the picked layer; on the layer
        already being edited it changes nothing (its edits, corrected frames, undo
        history and a retrained model that is not saved yet stay)."""
        layer = self.points.value
        if layer is not None and self.layer is not None and layer is self.layer:
            self.status.value = f"already editing '{layer.name}'"
            return
        self.bind_layer(layer)

    def bind_layer(self, layer: Points | None) -> None:
        """Correct ``layer``: its session from an earlier binding in this dock (edits,
        undo history, a retrained model not saved yet; points changed in the layer
        meanwhile are taken in), else a new session from its atoms and AtomLens metadata
        (the model recorded there is the one retraining starts from)."""
        if layer is None:
            return
        kept = self._sessions.get(unwrapped(layer))
        if kept is not None:
            if not _drawn_from(layer, kept.atoms):  # (80,000 atoms: ms, the diff 0.6 s)
                table = layer_atoms(layer)
                changed = _changed_frames(kept.atoms, table)
                if changed:
                    kept.replace_table(table, changed)  # (undoable, like any edit)
            self._use(layer, kept)
            return
        meta = layer.metadata.get(META_KEY, {}) if isinstance(layer.metadata, dict) else {}
        keep = {} if meta.get("models") else {"model": self.session.model}
        session = CorrectionSession.from_table(
            layer_atoms(layer), meta, recipe=self.session.recipe, **keep
        )
        self._use(layer, session)

    def _use(self, layer: Points, session: CorrectionSession) -> None:
        """Wire ``layer`` to ``session``: listeners, keys, movie, then draw the session."""
        old, old_layer = self.session, self.layer
        if self.layer is not None and self.layer is not layer:
            self.layer.events.data.disconnect(self._on_data)
        self.session.disconnect(self._on_session)
        self.session = session
        session.connect(self._on_session)
        if self.layer is not layer:
            layer.events.data.connect(self._on_data)
        self.layer = layer
        self._sessions[unwrapped(layer)] = session
        for i in range(1, 10):
            layer.bind_key(str(i), self._class_key(i), overwrite=True)
        layer.bind_key("Control-Z", lambda _layer: self.undo(), overwrite=True)
        layer.bind_key("Control-Shift-Z", lambda _layer: self.redo(), overwrite=True)
        self._project_to_field(old, old_layer is not None and old_layer is not layer)
        self._movie_to_session()
        self._settings_to_session()
        self._draw()
        self._offer(session.class_choices())  # this table's classes, not the last layer's

    def _project_to_field(self, old: CorrectionSession, other_layer: bool) -> None:
        """The project field names the bound session's project; one that names the
        project of another layer's session (``old``, ``other_layer``) is cleared: saving
        would write this layer's atoms over it. A name typed before binding stays."""
        text = str(self.project_file.value or "")
        if self.session.project_path:
            self.project_file.value = str(self.session.project_path)
        elif other_layer and old.project_path and text not in ("", "."):
            if Path(text) == Path(old.project_path):  # (FileEdit.value = "" means cwd)
                self.project_file.line_edit.value = ""

    def _movie_to_session(self, *_: Any) -> None:
        """The picked image layer is the session's movie (pixel size: the docks' one
        resolver, image first, then the atoms layer)."""
        image = self.image.value
        self.session.set_movie(layer_stack(image, self.layer) if image is not None else None)

    def _settings_to_session(self, *_: Any) -> None:
        recipe = self.session.recipe.replace(
            steps=int(self.steps.value),
            self_train=bool(self.self_train.value),
            autosave=bool(self.autosave.value),
            autosave_s=int(self.autosave_s.value),
        )
        self.session.recipe = recipe
        text = str(self.project_file.value or "")
        if text not in ("", "."):
            self.session.project_path = text

    def _class_key(self, i: int) -> Callable[[Any], None]:
        def _key(_layer: Points) -> None:
            choices = list(self.cls.choices)
            if i <= len(choices):
                self.cls.value = choices[i - 1]
                if self.layer is not None and self.layer.selected_data:
                    self.set_species_selected(choices[i - 1])

        return _key

    def _apply_class_defaults(self, *_: Any) -> None:
        """Points napari adds get the chosen class until the session redraws them."""
        layer = self.layer
        if layer is None or len(layer.features.columns) == 0 or not len(layer.features):
            return
        defaults = layer.feature_defaults.iloc[0].to_dict()
        want = {"cls": str(self.cls.value), "edited": True, "source": "manual"}
        want = {k: v for k, v in want.items() if k in defaults}  # (layer not drawn yet)
        if all(defaults.get(k) == v for k, v in want.items()):
            return  # (setting them recolours napari's current colour: ~60 ms at 80k atoms)
        defaults.update(want)
        layer.feature_defaults = defaults

    # --- napari events -> session ---------------------------------------------------------

    def _on_replaced(self, layer: Any) -> None:
        """AtomLens wrote a new result (e.g. a re-detection) into the bound layer: a new
        baseline, not an edit. The correction session restarts from the layer's table
        (corrected frames, edit flags and the undo history of the old one are dropped);
        so does a layer bound earlier, when it is bound again."""
        if layer is None:
            return
        self._sessions.pop(unwrapped(layer), None)
        if self.layer is None or unwrapped(layer) is not unwrapped(self.layer):
            return
        old = self.session
        had_work = old.can_undo or bool(old.corrected_frames)
        self.bind_layer(layer)
        self.status.value = f"new detections in '{layer.name}': a new correction session"
        if had_work:  # the user may be on another tab: say what happened to their edits
            kept = f" (the project {old.project_path} keeps them)" if old.project_path else ""
            show_info(
                f"Correct atoms: '{layer.name}' holds new detections; the earlier corrections, "
                f"corrected frames and undo history are not applied to them{kept}"
            )

    def _on_data(self, event: Any) -> None:
        if self._syncing or self.layer is None or is_replacing(self.layer):
            return
        try:
            self._map_data_event(event)
        except _ERRORS as exc:  # e.g. a point added outside the movie's frames
            notify_error(exc, "Correct atoms")
            self._draw()  # back to the session's table

    def _map_data_event(self, event: Any) -> None:
        layer, session = self.layer, self.session
        assert layer is not None
        action = getattr(event, "action", None)
        idx = [int(i) for i in getattr(event, "data_indices", ()) if i is not None]
        n = len(layer.data)
        if action in (ActionType.ADDING, ActionType.REMOVING, ActionType.CHANGING):
            self._absorb_layer_columns()  # layer and session still row for row here
            self._dragging = False
            if action == ActionType.ADDING:  # (selecting a point makes it napari's default)
                self._apply_class_defaults()
            if action == ActionType.REMOVING and len(idx) and len(session.atoms) == n:
                self._removing = session.ids_at(idx)
            return
        if action == ActionType.ADDED and n == len(session.atoms) + len(idx):
            rows = sorted(i % n for i in idx)
            data = np.asarray(layer.data)[rows]
            frames = np.rint(data[:, 0]).astype(int) if data.shape[1] == 3 else [0] * len(rows)
            session.add_many(frames, data[:, -2], data[:, -1], str(self.cls.value))
        elif action == ActionType.REMOVED and self._removing:
            ids, self._removing = self._removing, []
            session.delete(ids)
        elif action == ActionType.CHANGED and n == len(session.atoms):
            # the rows whose position differs from the session's were dragged
            data = np.asarray(layer.data, dtype=float)
            old = session.atoms[["y", "x"]].to_numpy(float)
            rows = np.flatnonzero((data[:, -2:] != old).any(axis=1))
            if len(rows):
                session.move_many(
                    session.ids_at(rows),
                    data[rows, -2],
                    data[rows, -1],
                    continue_drag=self._dragging,
                )
                self._dragging = True
        elif n != len(session.atoms):
            # replaced from outside (another dock set the data): take the layer as it is
            session.replace_table(layer_atoms(layer))

    def _absorb_layer_columns(self) -> None:
        """Columns other docks wrote into the layer (latents, chemistry) join the session."""
        layer = self.layer
        if layer is not None and len(layer.features) == len(self.session.atoms):
            feats = layer.features.reset_index(drop=True)
            if "atom_id" in feats:
                self.session.update_columns(feats)

    # --- session events -> layer ---------------------------------------------------------

    def _on_session(self, ev: SessionEvent) -> None:
        if ev.kind in ("model", "redetected", "saved", "loaded"):
            self._write_meta(saved=ev.kind in ("saved", "loaded"))
        if ev.kind in ("edit", "undo", "redo", "frames", "redetected", "loaded"):
            self._draw(frames_only=ev.kind == "frames")
        if ev.kind == "saved":
            self.project_file.value = str(self.session.project_path)
        if ev.kind == "model":
            self.redetect_button.enabled = True
            if self.session.lineage and self.session.lineage[-1].get("reason") != "stopped":
                # ended early (validation stopped improving): the bar says "finished",
                # not a run cut short at 56 % (the status line says after how many steps)
                self.progress.value = self.progress.max
            show_info(f"Correct atoms: {ev.message} (corrected frames stay untouched)")
        if ev.kind == "redetected":
            show_info(ev.message)
        if ev.message:
            self.status.value = ev.message

    def _draw(self, frames_only: bool = False) -> None:
        """Redraw the layer from the session: row i of the layer is row i of the table."""
        layer, session = self.layer, self.session
        frames = session.corrected_frames
        if list(self.corrected_list.choices) != frames:
            self.corrected_list.reset_choices()
        self.corrected_label.value = f"corrected: {format_frames(frames) or 'none'}"
        self.undo_button.enabled, self.redo_button.enabled = session.can_undo, session.can_redo
        if layer is None:
            return
        self._write_meta()
        if frames_only:
            return
        atoms = session.atoms
        data = atoms_points_data(atoms)
        if layer.ndim == 2:
            data = data[:, 1:]
        # napari already drew what its own tools did (an added point in the chosen class,
        # a removed one): write only what differs, recolour only when species moved
        self._syncing = True
        try:
            moved = len(layer.data) != len(data) or not np.array_equal(layer.data, data)
            if len(layer.data) != len(data):
                layer.selected_data = set()
            if moved:
                layer.data = data
            old = layer.features
            same_cls = len(old) == len(atoms) and "cls" in old and _same(old["cls"], atoms["cls"])
            # (an empty table keeps the layer's emptied features: napari's species colour
            # cycle fails on the NaN defaults of an empty DataFrame, e.g. after Select
            # all + Delete to click a frame again from scratch)
            if len(atoms) and (moved or not (same_cls and _same_flags(old, atoms))):
                layer.features = atoms.reset_index(drop=True)
            if moved or not same_cls:
                layer.refresh_colors(update_color_mapping=False)
        finally:
            self._syncing = False
        self._offer(session.class_choices(self._offered))

    def _write_meta(self, saved: bool = False) -> None:
        """The layer's AtomLens metadata follows the session: its corrected frames, the
        models (the one that found its atoms, the last fine-tuned file: what a new
        session on the layer retrains) and, ``saved``, the project just saved."""
        layer, session = self.layer, self.session
        if layer is None or not isinstance(layer.metadata, dict):
            return
        meta = layer.metadata.setdefault(META_KEY, {})
        meta["corrected_frames"] = session.corrected_frames
        roles = session.model_roles()
        if roles or session.lineage:  # (a layer without models keeps its fallback)
            meta["models"] = roles or {"detector": "shipped"}
        if saved and session.project_path:
            meta["project"] = str(session.project_path)

    def _offer(self, classes: list[str]) -> None:
        """Offer ``classes`` in the class box (keys 1-9 pick them in this order)."""
        if classes != self._offered or list(self.cls.choices) != classes:
            self._offered = list(classes)
            self.cls.reset_choices()

    # --- buttons -> session ----------------------------------------------------------------

    def _guard(self, action: Callable[[], Any], what: str) -> Any:
        """Run a user action; a bad input becomes a notification (the table is kept)."""
        try:
            return action()
        except _ERRORS as exc:
            notify_error(exc, f"Correct atoms ({what})")
            return None

    def _selected_ids(self) -> list[int]:
        layer = self.layer
        if layer is None or not layer.selected_data:
            return []
        return self.session.ids_at(sorted(layer.selected_data))

    def _add_mode(self) -> None:
        if self.layer is not None:
            self.viewer.layers.selection.active = self.layer
            self.layer.mode = "add"

    def delete_selected(self) -> None:
        """Delete the selected atoms (undoable)."""
        ids = self._selected_ids()
        if ids:
            self._guard(lambda: self.session.delete(ids), "delete")

    def set_species_selected(self, cls: str) -> None:
        """Re-classify the selected atoms as ``cls`` (undoable)."""
        ids = self._selected_ids()
        if ids:
            self._absorb_layer_columns()
            self._guard(lambda: self.session.set_species(ids, str(cls)), "set class")

    def undo(self) -> None:
        """Restore the state before the last change."""
        self._absorb_layer_columns()
        self.session.undo()

    def redo(self) -> None:
        """Re-apply the last undone change."""
        self.session.redo()

    def mark_frames(self, frames: list[int], corrected: bool = True) -> None:
        """Mark (or unmark) frames corrected: protected from re-detection, trained on."""
        self._guard(lambda: self.session.mark_frames(frames, corrected), "mark frames")

    def _unmark_selected(self) -> None:
        self.mark_frames(list(self.corrected_list.value) or [self._frame()], corrected=False)

    def _jump_to_selected(self, *_: Any) -> None:
        sel = list(self.corrected_list.value)
        if sel and self.layer is not None and self.layer.ndim == 3:
            set_frame(self.viewer, self.layer, int(sel[0]))

    def _frame(self) -> int:
        return current_frame(self.viewer, self.layer) if self.layer is not None else 0

    # --- project ---------------------------------------------------------------------------

    def _project_path(self) -> str:
        text = str(self.project_file.value or "")
        if text in ("", "."):
            raise SettingsError("choose a project file name (NAME.atomlens) first")
        return text

    def save(self, path: str | Path) -> Path:
        """Save the project (headless: :meth:`CorrectionSession.save`)."""
        self._absorb_layer_columns()
        self._movie_to_session()
        return self.session.save(path)

    def autosave_now(self) -> Path | None:
        """The autosave clock ticked: the session saves when its rule says so."""
        if self.layer is None:
            return None
        self._absorb_layer_columns()
        try:
            return self.session.autosave()
        except _ERRORS as exc:  # one notification, not one per tick
            self.autosave.value = False
            notify_error(exc, "Correct atoms (autosave turned off)")
            return None

    def _autosave_changed(self, *_: Any) -> None:
        self._settings_to_session()
        if self.autosave.value:
            self.timer.start(int(self.autosave_s.value) * 1000)
        else:
            self.timer.stop()

    def open_project(self, path: str | Path) -> Points:
        """Open a project: its movie (if the file exists) and atoms as layers, and its
        session (corrected frames, model lineage, settings)."""
        session = CorrectionSession.load(path)
        points = None
        for tup in project_layer_data(path):
            layer = add_tuple(self.viewer, tup)
            if tup[2] == "points":
                points = layer
            else:
                self.image.value = layer
        if points is None:
            raise SettingsError(f"project {path} has no atom table")
        self.reset_choices()
        self.points.value = points
        recipe = session.recipe
        self.steps.value, self.self_train.value = recipe.steps, recipe.self_train
        self.autosave_s.value = recipe.autosave_s
        self.project_file.value = str(session.project_path)
        self._use(points, session)
        self.autosave.value = recipe.autosave
        return points

    # --- retraining and re-detection ---------------------------------------------------

    def start_retrain(self) -> Any:
        """Fine-tune the detector on the corrected frames on a worker thread; returns it
        (None, with a notification, when an input is missing)."""
        self._absorb_layer_columns()
        self._movie_to_session()
        self._settings_to_session()
        self._stop = threading.Event()
        try:
            job = self.session.retrain(stop=self._stop, frame_hint=self._frame(), adopt=False)
        except _ERRORS as exc:
            notify_error(exc, "retrain")
            return None
        self.progress.max, self.progress.value = int(self.steps.value), 0
        self.retrain_button.enabled, self.stop_button.enabled = False, True
        self.status.value = "retraining..."

        def _run():
            return (yield from job)

        self.worker = start_generator(
            _run,
            on_yield=self._on_ft_event,
            on_return=lambda result: result is not None and self.session.adopt_model(result),
            on_finish=self._ft_finished,
            what="retrain",
        )
        return self.worker

    def _on_ft_event(self, ev: Any) -> None:
        if isinstance(ev, Log):
            self.status.value = ev.message
            return
        tp = training_progress(ev)
        if tp is None:
            return
        if tp.total:
            self.progress.max = int(tp.total)
        if tp.kind == "step":
            self.progress.value = int(tp.done)
        if tp.kind != "finished":  # the session's "model" event says how it ended
            self.status.value = tp.text()

    def _ft_finished(self) -> None:
        self.retrain_button.enabled, self.stop_button.enabled = True, False

    def stop_retrain(self) -> None:
        """Ask the training to stop after the current step (the model so far is kept)."""
        self._stop.set()
        self.status.value = "stopping..."

    def start_redetect(self) -> Any:
        """Re-detect every frame except the corrected ones with the new model (worker);
        the result is applied to the table as it is when it arrives."""
        self._movie_to_session()
        try:
            job = self.session.redetect_job()
        except _ERRORS as exc:
            notify_error(exc, "re-detect")
            return None
        model = self.session.new_model
        self.redetect_button.enabled = False
        self.status.value = "re-detecting..."

        def _run():
            return (yield from job)

        self.redetect_worker = start_generator(
            _run,
            on_return=lambda res: self._apply_redetect(res, model),
            on_finish=lambda: setattr(self.redetect_button, "enabled", True),
            what="re-detect",
        )
        return self.redetect_worker

    def _apply_redetect(self, res: Any, model: Any) -> None:
        self.last_redetect = res
        c = res.counts
        self.counts.value = {
            "frame": c["frame"].tolist(),
            "before": c["before"].tolist(),
            "after": c["after"].tolist(),
            "corrected": [str(v) for v in c["corrected"]],
        }
        self._absorb_layer_columns()
        self.session.apply_redetect(res, model)


def _same(a: Any, b: Any) -> bool:
    """Two columns hold the same values (pandas' own comparison: ~2 ms for 80,000 str)."""
    a, b = pd.Series(a).reset_index(drop=True), pd.Series(b).reset_index(drop=True)
    if len(a) != len(b):
        return False
    try:
        return bool(a.eq(b).all())
    except TypeError:  # e.g. categories that differ
        return bool(a.astype(str).eq(b.astype(str)).all())


def _drawn_from(layer: Points, atoms: pd.DataFrame) -> bool:
    """The layer still shows ``atoms`` row for row (positions, frames and species)."""
    data = atoms_points_data(atoms)
    if layer.ndim == 2:
        data = data[:, 1:]
    if len(layer.data) != len(data) or not np.array_equal(layer.data, data):
        return False
    feats = layer.features
    return "cls" not in atoms or ("cls" in feats and _same(feats["cls"], atoms["cls"]))


def _changed_frames(old: pd.DataFrame, new: pd.DataFrame) -> list[int]:
    """Frames whose atoms (``frame, y, x`` px, ``cls``) differ between two tables, in
    any row order (points edited in a layer while the dock edited another)."""

    def rows(table: pd.DataFrame) -> pd.Series:
        if not len(table):
            return pd.Series([], dtype=object)
        cls = table["cls"].astype(str) if "cls" in table else ""
        frame = table["frame"].astype(int).astype(str)
        y, x = (table[c].astype(float).map(repr) for c in ("y", "x"))
        return frame + " " + y + " " + x + " " + cls

    a, b = rows(old), rows(new)
    diff = set(a.value_counts().items()) ^ set(b.value_counts().items())
    return sorted({int(key.split(" ", 1)[0]) for key, _n in diff})


def _same_flags(old: Any, new: Any) -> bool:
    """The layer's features already hold what an edit of the session changes (the
    columns, and ``edited, source, atom_id``: positions and species are checked apart)."""
    if len(old) != len(new) or list(old.columns) != list(new.columns):
        return False
    return all(_same(old[c], new[c]) for c in ("edited", "source", "atom_id") if c in new)


def correction_widget(napari_viewer: napari.viewer.Viewer) -> CorrectionWidget:
    """npe2 widget factory."""
    return CorrectionWidget(napari_viewer)


__all__ = ["CorrectionWidget", "correction_widget"]
