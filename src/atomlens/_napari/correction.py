"""The "Correct atoms" dock: fix detections by hand, save the work, retrain, re-detect.

Thin shell over headless code:

- edit flags, corrected frames, undo history and merging re-detections:
  :mod:`atomlens.corrections` (``merge_detections``, ``redetect``, ``set_species``...);
- saving: :func:`atomlens.io.project.save_project` / ``load_project``;
- retraining: :func:`atomlens.atoms.finetune.iter_finetune` on a worker thread.

Editing uses the Points layer's own tools (add mode, delete, drag to move); the widget
listens to ``layer.events.data`` to flag edited rows (``edited``, ``source``) and mark
their frames corrected. napari 0.9 has no undo for Points layers (only Labels), so the
widget keeps its own snapshot history (:class:`atomlens.corrections.EditHistory`) bound
to Ctrl+Z / Ctrl+Shift+Z on the layer. Keys 1..9 on the layer pick the class of new
atoms and re-classify the selected ones (they shadow napari's digit shortcuts for Points
modes on this layer; P, S and Z still switch modes).
"""

from __future__ import annotations

import threading
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

from atomlens._napari._base import ViewerWidget
from atomlens._napari._layers import add_tuple, current_frame, layer_pixel_size, set_frame
from atomlens._napari._workers import notify_error, start_generator
from atomlens.corrections import (
    CorrectionState,
    RedetectResult,
    Snapshot,
    format_frames,
    redetect,
    set_species,
)
from atomlens.io.atoms_table import ensure_edit_columns
from atomlens.io.project import Project, load_project, project_layer_data, save_project
from atomlens.io.stack import Stack
from atomlens.viz.layers import META_KEY, points_to_atoms

if TYPE_CHECKING:
    import napari
    from napari.layers import Points

DEFAULT_CLASSES = ("C", "Si")


class CorrectionWidget(ViewerWidget):
    """Correct atoms on an atoms Points layer, save a project, retrain and re-detect."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.state = CorrectionState()
        self.layer: Points | None = None
        self._restoring = False
        self._pending_frames: list[int] = []
        self._dirty = 0
        self._saved_dirty = 0
        self.project = Project()
        self.model_path: str | None = None  # detector in use (None = shipped)
        self.new_model: Any = None  # last fine-tuned Detector
        self.current_model: Any = None  # Detector applied by the last re-detection
        self.new_model_path: str | None = None
        self.worker: Any = None
        self.redetect_worker: Any = None
        self.last_redetect: RedetectResult | None = None
        self._stop = threading.Event()

        # -- layers and class
        self.points = self.layer_picker("atoms", "points")
        self.image = self.layer_picker("image", "image", lambda lay: lay.ndim in (2, 3))
        self.bind_button = PushButton(text="Edit this atoms layer")
        self.cls = ComboBox(
            label="class (keys 1-9)", choices=list(DEFAULT_CLASSES), value=DEFAULT_CLASSES[0]
        )
        self.add_button = PushButton(text="Add atoms (click)")
        self.delete_button = PushButton(text="Delete selected")
        self.species_button = PushButton(text="Set class of selected")
        self.undo_button = PushButton(text="Undo (Ctrl+Z)")
        self.redo_button = PushButton(text="Redo (Ctrl+Shift+Z)")
        self.mark_button = PushButton(text="Mark frame corrected")
        self.unmark_button = PushButton(text="Unmark")
        self.corrected_list = Select(label="corrected frames", choices=[], allow_multiple=True)
        self.corrected_label = Label(value="corrected: none")
        # -- project
        self.project_file = FileEdit(label="project", mode="w", filter="*.atomlens", value="")
        self.save_button = PushButton(text="Save project")
        self.open_button = PushButton(text="Open project")
        self.autosave = CheckBox(text="autosave", value=False)
        self.autosave_s = SpinBox(label="every (s)", min=2, max=3600, value=30)
        # -- retrain
        self.steps = SpinBox(label="steps", min=1, max=100000, value=150)
        self.threads = 2  # torch CPU threads while retraining
        self.self_train = CheckBox(text="self-train (no corrections needed)", value=False)
        self.retrain_button = PushButton(text="Retrain on corrected frames")
        self.stop_button = PushButton(text="Stop")
        self.stop_button.enabled = False
        self.progress = ProgressBar(label="training", min=0, max=1, value=0)
        self.redetect_button = PushButton(text="Re-detect all frames with new model")
        self.redetect_button.enabled = False
        self.counts = Table(value={"frame": [], "before": [], "after": [], "corrected": []})
        self.status = Label(value="")

        row = Container(
            layout="horizontal", widgets=[self.undo_button, self.redo_button], labels=False
        )
        row2 = Container(
            layout="horizontal", widgets=[self.mark_button, self.unmark_button], labels=False
        )
        row3 = Container(
            layout="horizontal",
            widgets=[self.save_button, self.open_button, self.autosave],
            labels=False,
        )
        row4 = Container(
            layout="horizontal", widgets=[self.retrain_button, self.stop_button], labels=False
        )
        self.extend(
            [
                self.points,
                self.image,
                self.bind_button,
                self.cls,
                self.add_button,
                self.delete_button,
                self.species_button,
                row,
                row2,
                self.corrected_label,
                self.corrected_list,
                self.project_file,
                row3,
                self.autosave_s,
                self.steps,
                self.self_train,
                row4,
                self.progress,
                self.redetect_button,
                self.counts,
                self.status,
            ]
        )

        self.bind_button.changed.connect(lambda: self.bind_layer(self.points.value))
        self.cls.changed.connect(self._apply_class_defaults)
        self.add_button.changed.connect(self._add_mode)
        self.delete_button.changed.connect(self.delete_selected)
        self.species_button.changed.connect(lambda: self.set_species_selected(self.cls.value))
        self.undo_button.changed.connect(self.undo)
        self.redo_button.changed.connect(self.redo)
        self.mark_button.changed.connect(lambda: self.mark_frames([self._frame()]))
        self.unmark_button.changed.connect(self._unmark_selected)
        self.corrected_list.changed.connect(self._jump_to_selected)
        self.save_button.changed.connect(lambda: self.save(self._project_path()))
        self.open_button.changed.connect(lambda: self.open_project(self._project_path()))
        self.autosave.changed.connect(self._autosave_changed)
        self.autosave_s.changed.connect(self._autosave_changed)
        self.retrain_button.changed.connect(self.start_retrain)
        self.stop_button.changed.connect(self.stop_retrain)
        self.redetect_button.changed.connect(self.start_redetect)

        self.timer = QTimer()
        self.timer.timeout.connect(self.autosave_now)
        if self.points.value is not None:
            self.bind_layer(self.points.value)

    # --- binding ---------------------------------------------------------------------

    def bind_layer(self, layer: Points | None) -> None:
        """Start correcting ``layer``: add edit flags, class keys, undo keys, listeners."""
        if layer is None:
            return
        if self.layer is not None and self.layer is not layer:
            self.layer.events.data.disconnect(self._on_data)
        self.layer = layer
        feats = ensure_edit_columns(points_to_atoms(layer.data, layer.features))
        self._restoring = True
        try:
            layer.features = feats
        finally:
            self._restoring = False
        meta = layer.metadata.get(META_KEY, {}) if isinstance(layer.metadata, dict) else {}
        self.state.corrected = {int(f) for f in meta.get("corrected_frames", [])}
        self.state.history.clear()
        classes = list(dict.fromkeys([*DEFAULT_CLASSES, *feats["cls"].astype(str)]))
        self.cls.choices = classes
        layer.events.data.connect(self._on_data)
        for i in range(1, 10):
            layer.bind_key(str(i), self._class_key(i), overwrite=True)
        layer.bind_key("Control-Z", lambda _layer: self.undo(), overwrite=True)
        layer.bind_key("Control-Shift-Z", lambda _layer: self.redo(), overwrite=True)
        self._apply_class_defaults()
        self._refresh_frames()

    def _class_key(self, i: int):
        def _key(_layer: Points) -> None:
            choices = list(self.cls.choices)
            if i <= len(choices):
                self.cls.value = choices[i - 1]
                if self.layer is not None and self.layer.selected_data:
                    self.set_species_selected(choices[i - 1])

        return _key

    def _apply_class_defaults(self, *_: Any) -> None:
        """New atoms get the chosen class and are flagged manual."""
        layer = self.layer
        if layer is None or len(layer.features.columns) == 0:
            return
        if len(layer.features):
            defaults = layer.feature_defaults.iloc[0].to_dict()
        else:
            defaults = {c: None for c in layer.features.columns}
        defaults.update(cls=str(self.cls.value), prob=1.0, edited=True, source="manual")
        layer.feature_defaults = defaults

    # --- edit tracking ---------------------------------------------------------------

    def _snapshot(self) -> Snapshot:
        assert self.layer is not None
        return Snapshot(
            np.array(self.layer.data, copy=True),
            self.layer.features.copy(),
            frozenset(self.state.corrected),
        )

    def _on_data(self, event: Any) -> None:
        if self._restoring or self.layer is None:
            return
        action = getattr(event, "action", None)
        layer = self.layer
        idx = [int(i) for i in getattr(event, "data_indices", ()) if i is not None]
        if action in (ActionType.ADDING, ActionType.REMOVING, ActionType.CHANGING):
            self.state.history.push(self._snapshot())  # data not yet changed
            if action == ActionType.REMOVING:
                self._pending_frames = self._frames_of(np.asarray(event.value), idx)
            return
        if action == ActionType.ADDED:
            n = len(layer.data)
            rows = [i % n for i in idx]
            self._flag(rows, source="manual")
            self.mark_frames(self._frames_of(layer.data, rows))
        elif action == ActionType.REMOVED:
            self.mark_frames(self._pending_frames)
            self._pending_frames = []
        elif action == ActionType.CHANGED:
            self._flag(idx)
            self.mark_frames(self._frames_of(layer.data, idx))

    @staticmethod
    def _frames_of(data: np.ndarray, rows: list[int]) -> list[int]:
        data = np.asarray(data)
        if not len(rows) or data.ndim != 2 or len(data) == 0:
            return []
        rows = [r for r in rows if -len(data) <= r < len(data)]
        col = data[rows, 0] if data.shape[1] == 3 else np.zeros(len(rows))
        return sorted({int(round(float(v))) for v in col})

    def _flag(self, rows: list[int], source: str | None = None) -> None:
        layer = self.layer
        if layer is None or not rows:
            return
        feats = layer.features.copy()
        feats.loc[feats.index[rows], "edited"] = True
        if source is not None:
            feats.loc[feats.index[rows], "source"] = source
        self._set_features(feats)

    def _set_features(self, feats: pd.DataFrame) -> None:
        assert self.layer is not None
        self._restoring = True
        try:
            self.layer.features = feats
            self.layer.refresh_colors(update_color_mapping=False)
        finally:
            self._restoring = False

    # --- actions (each with a headless twin in atomlens.corrections) -----------------

    def _add_mode(self) -> None:
        if self.layer is not None:
            self.viewer.layers.selection.active = self.layer
            self.layer.mode = "add"

    def delete_selected(self) -> None:
        """Delete the selected atoms (napari's own remove: the history records it)."""
        if self.layer is not None and self.layer.selected_data:
            self.layer.remove_selected()

    def set_species_selected(self, cls: str) -> None:
        """Re-classify the selected atoms as ``cls`` (flags them edited; undoable)."""
        layer = self.layer
        if layer is None or not layer.selected_data:
            return
        rows = sorted(layer.selected_data)
        self.state.history.push(self._snapshot())
        table = set_species(layer.features, rows, cls)
        self._set_features(table)
        self.mark_frames(self._frames_of(layer.data, rows))

    def undo(self) -> None:
        """Restore the state before the last edit."""
        if self.layer is None:
            return
        snap = self.state.history.undo(self._snapshot())
        if snap is not None:
            self._restore(snap)

    def redo(self) -> None:
        """Re-apply the last undone edit."""
        if self.layer is None:
            return
        snap = self.state.history.redo(self._snapshot())
        if snap is not None:
            self._restore(snap)

    def _restore(self, snap: Snapshot) -> None:
        layer = self.layer
        assert layer is not None
        self._restoring = True
        try:
            layer.selected_data = set()
            layer.data = snap.data
            layer.features = snap.features
            layer.refresh_colors(update_color_mapping=False)
        finally:
            self._restoring = False
        self.state.corrected = set(snap.corrected)
        self._dirty += 1
        self._refresh_frames()

    def mark_frames(self, frames: list[int]) -> None:
        """Mark frames corrected (protected from re-detection, used for retraining)."""
        self.state.mark(frames)
        self._dirty += 1
        self._refresh_frames()

    def _unmark_selected(self) -> None:
        frames = list(self.corrected_list.value) or [self._frame()]
        self.state.unmark(frames)
        self._dirty += 1
        self._refresh_frames()

    def _refresh_frames(self) -> None:
        frames = self.state.frames
        self.corrected_list.choices = frames
        self.corrected_label.value = f"corrected: {format_frames(frames) or 'none'}"
        if self.layer is not None and isinstance(self.layer.metadata, dict):
            self.layer.metadata.setdefault(META_KEY, {})["corrected_frames"] = frames

    def _jump_to_selected(self, *_: Any) -> None:
        sel = list(self.corrected_list.value)
        if sel and self.layer is not None and self.layer.ndim == 3:
            set_frame(self.viewer, self.layer, int(sel[0]))

    def _frame(self) -> int:
        return current_frame(self.viewer, self.layer) if self.layer is not None else 0

    # --- data in and out ---------------------------------------------------------------

    def atoms_table(self) -> pd.DataFrame:
        """The working atom table (positions from the layer data, flags from features)."""
        if self.layer is None:
            raise ValueError("no atoms layer bound: pick one and press 'Edit this atoms layer'")
        return ensure_edit_columns(points_to_atoms(self.layer.data, self.layer.features))

    def stack(self) -> Stack:
        """The image stack under correction, with its pixel size in Å."""
        layer = self.image.value
        if layer is None:
            raise ValueError("no image layer: open the movie the atoms were detected on")
        meta = layer.metadata.get(META_KEY, {}) if isinstance(layer.metadata, dict) else {}
        px = meta.get("pixel_size") or layer_pixel_size(layer)
        if px is None and self.layer is not None:
            px = layer_pixel_size(self.layer)
        path = meta.get("path") or getattr(layer.source, "path", None)
        return Stack(layer.data, px, "user" if px else "unknown", {}, path)

    def _project_path(self) -> str:
        value = self.project_file.value
        text = str(value) if value is not None else ""
        if text in ("", "."):
            raise ValueError("choose a project file name (NAME.atomlens) first")
        return text

    def build_project(self) -> Project:
        """The widget's state as a :class:`Project`."""
        stack = None
        try:
            stack = self.stack()
        except ValueError:
            pass
        proj = self.project
        proj.atoms = self.atoms_table()
        proj.corrected_frames = self.state.frames
        if stack is not None:
            proj.stack_path = stack.path or proj.stack_path
            proj.pixel_size = stack.pixel_size
            proj.pixel_size_source = stack.pixel_size_source
        proj.models = {
            k: v
            for k, v in {"detector": self.model_path, "finetuned": self.new_model_path}.items()
            if v
        }
        proj.settings.update(
            autosave=bool(self.autosave.value),
            autosave_s=int(self.autosave_s.value),
            steps=int(self.steps.value),
            self_train=bool(self.self_train.value),
        )
        return proj

    def save(self, path: str | Path) -> Path:
        """Save the project (headless twin: :func:`atomlens.io.project.save_project`)."""
        folder = save_project(path, self.build_project())
        self.project_file.value = str(folder)
        self._saved_dirty = self._dirty
        self.status.value = f"saved {folder.name}"
        return folder

    def autosave_now(self) -> Path | None:
        """Save if there were edits since the last save and a project path is set."""
        if self._dirty == self._saved_dirty or self.layer is None:
            return None
        try:
            return self.save(self._project_path())
        except (ValueError, OSError) as exc:
            notify_error(exc, "autosave")
            return None

    def _autosave_changed(self, *_: Any) -> None:
        if self.autosave.value:
            self.timer.start(int(self.autosave_s.value) * 1000)
        else:
            self.timer.stop()

    def open_project(self, path: str | Path) -> Points:
        """Open a project: its stack (if the file exists) and atoms as layers; bind them."""
        proj = load_project(path)
        self.project = proj
        points = None
        for tup in project_layer_data(path):
            layer = add_tuple(self.viewer, tup)
            if tup[2] == "points":
                points = layer
            else:
                self.image.value = layer
        if points is None:
            raise ValueError(f"project {path} has no atom table")
        self.reset_choices()
        self.points.value = points
        self.bind_layer(points)
        self.state.corrected = set(proj.corrected_frames)
        self.model_path = proj.models.get("detector")
        self.new_model_path = proj.models.get("finetuned")
        self.project_file.value = str(proj.path)
        if proj.settings.get("autosave"):
            self.autosave_s.value = int(proj.settings.get("autosave_s", 30))
            self.autosave.value = True
        self._refresh_frames()
        self._saved_dirty = self._dirty
        return points

    # --- retraining and re-detection ---------------------------------------------------

    def start_retrain(self) -> Any:
        """Fine-tune the detector on the corrected frames on a worker thread; returns it."""
        from atomlens.atoms.finetune import iter_finetune

        try:
            frames = self.state.frames
            if not frames and self.self_train.value:
                frames = [self._frame()]
            if not frames:
                raise ValueError("no corrected frames yet: correct a frame (or tick self-train)")
            stack, atoms = self.stack(), self.atoms_table()
        except ValueError as exc:
            notify_error(exc, "retrain")
            return None
        self._stop.clear()
        self.progress.max = int(self.steps.value)
        self.progress.value = 0
        self.retrain_button.enabled = False
        self.stop_button.enabled = True
        self.status.value = f"retraining on frames {format_frames(frames)}..."
        out = self._new_model_file()
        self.worker = start_generator(
            iter_finetune,
            stack,
            atoms,
            frames,
            self.current_model if self.current_model is not None else self.model_path,
            out=out,
            stop=self._stop,
            steps=int(self.steps.value),
            self_train=bool(self.self_train.value),
            threads=self.threads,
            on_yield=self._on_ft_event,
            on_finish=self._ft_finished,
            what="retrain",
        )
        return self.worker

    def _new_model_file(self) -> str | None:
        try:
            folder = Path(self._project_path())
        except ValueError:
            return None
        if folder.suffix != ".atomlens":
            folder = folder.with_name(folder.name + ".atomlens")
        n = len(list((folder / "models").glob("finetuned-*.pt"))) if folder.exists() else 0
        return str(folder / "models" / f"finetuned-{n + 1:03d}.pt")

    def _on_ft_event(self, ev: Any) -> None:
        from atomlens.atoms.finetune import FinetuneFinished, FinetuneStarted, FinetuneStep

        if isinstance(ev, FinetuneStarted):
            self.status.value = (
                f"training on {ev.n_labels} atoms of frames {format_frames(ev.frames)}"
            )
        elif isinstance(ev, FinetuneStep):
            self.progress.value = ev.step
            self.status.value = f"step {ev.step}/{ev.steps} loss {ev.loss_ema:.3f}"
        elif isinstance(ev, FinetuneFinished):
            res = ev.result
            self.new_model = res.detector
            self.new_model_path = str(res.path) if res.path else None
            self.redetect_button.enabled = True
            # before/after on the strip held back from the corrected frames (if any)
            sc = getattr(res, "scores", None) or {}
            score = (
                f"; held-back F1 {sc['before']['f1']:.2f} -> {sc['after']['f1']:.2f}"
                if sc.get("before") and sc.get("after")
                else ""
            )
            self.status.value = (
                f"retraining {ev.reason} after {res.card['finetune']['steps']}"
                f" steps{score}: re-detect to apply the new model"
            )
            show_info(
                f"Retraining {ev.reason}{score}. Press 'Re-detect all frames with new "
                "model' (corrected frames stay untouched)."
            )

    def _ft_finished(self) -> None:
        self.retrain_button.enabled = True
        self.stop_button.enabled = False

    def stop_retrain(self) -> None:
        """Ask the training to stop after the current step (the model so far is kept)."""
        self._stop.set()
        self.status.value = "stopping..."

    def start_redetect(self) -> Any:
        """Re-detect every frame except the corrected ones with the new model (worker)."""
        if self.new_model is None:
            notify_error(ValueError("retrain first: there is no new model yet"), "re-detect")
            return None
        try:
            stack, before = self.stack(), self.atoms_table()
        except ValueError as exc:
            notify_error(exc, "re-detect")
            return None
        self.redetect_button.enabled = False
        self.status.value = "re-detecting..."

        def _job():
            yield "running"
            return redetect(stack, before, self.state.frames, self.new_model)

        self.redetect_worker = start_generator(
            _job,
            on_return=self._apply_redetect,
            on_finish=lambda: setattr(self.redetect_button, "enabled", True),
            what="re-detect",
        )
        return self.redetect_worker

    def _apply_redetect(self, res: RedetectResult) -> None:
        layer = self.layer
        assert layer is not None
        self.state.history.push(self._snapshot())
        table = res.atoms
        self._restoring = True
        try:
            layer.selected_data = set()
            layer.data = table[["frame", "y", "x"]].to_numpy(float)
            layer.features = table
            layer.refresh_colors(update_color_mapping=False)
        finally:
            self._restoring = False
        self._apply_class_defaults()
        self.last_redetect = res
        self.current_model = self.new_model
        self.model_path = self.new_model_path or self.model_path
        self._dirty += 1
        c = res.counts
        self.counts.value = {
            "frame": c["frame"].tolist(),
            "before": c["before"].tolist(),
            "after": c["after"].tolist(),
            "corrected": [str(v) for v in c["corrected"]],
        }
        self.status.value = res.message
        show_info(res.message)


def correction_widget(napari_viewer: napari.viewer.Viewer) -> CorrectionWidget:
    """npe2 widget factory."""
    return CorrectionWidget(napari_viewer)


__all__ = ["CorrectionWidget", "correction_widget"]
