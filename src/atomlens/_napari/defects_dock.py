"""The "Defects" dock: a table of the defects of an atoms layer; a click jumps there.

Thin shell over headless code:

- chemistry: :func:`atomlens.chem.analyze` on the layer's atom table, in pieces of a
  few frames on a worker thread (:func:`atomlens.workflows.chemistry.analyze_events`:
  progress, time left, Stop; a stopped run keeps the frames done); its per-atom
  columns (``coordination, defect_id, defect_type, track_id``...) are written back into
  the layer's features, so the layer carries its chemistry; on atoms that are not
  graphene's the workflow keeps only holes and the dock shows its note
  (``AnalyzeRun.note``; its warning ``Log`` as a notification);
- the table rows, the type filter, the jump target and the CSV export:
  :mod:`atomlens.chem.defect_table`;
- the optional bonds / ring centres / defects layers:
  :func:`atomlens._napari.chem_layers.add_chem_layers`.

An atoms layer whose features already carry ``defect_id`` and ``defect_type`` (analysed
before) fills the table without running anything. Clicking a row moves the time slider
to the defect's frame, centres the camera on its centre (through the layer's scale and
translate, so in Å when the layer is in Å), zooms to show it with a few hexagons around,
and selects its atoms in the atoms layer.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    ProgressBar,
    PushButton,
    Table,
)
from napari.utils.notifications import show_info, show_warning

from atomlens._napari._base import ViewerWidget, note_label, set_note, status_label
from atomlens._napari._layers import (
    is_atoms_points,
    layer_atoms,
    merge_features,
    set_frame,
)
from atomlens._napari._layers import pixel_size_of as _resolve_px
from atomlens._napari._workers import notify_error, start_generator
from atomlens.chem.defect_table import (
    ALL_TYPES,
    JumpTarget,
    defect_table,
    defect_table_from_atoms,
    defect_types,
    export_table,
    filter_defects,
    has_chemistry,
    jump_target,
)

if TYPE_CHECKING:
    import napari
    from napari.layers import Points

    from atomlens.chem import ChemResult

#: Per-atom values for atoms of frames a stopped run did not reach.
_NOT_ANALYSED = {
    "coordination": -1,
    "ring5": -1,
    "ring6": -1,
    "ring7": -1,
    "ring8": -1,
    "edge": False,
    "defect_id": -1,
    "defect_type": "not analysed",
    "track_id": -1,
}
_HEADERS = {
    "defect_id": "id",
    "frame": "frame",
    "type": "type",
    "n_atoms": "n atoms",
    "y_A": "y (Å)",
    "x_A": "x (Å)",
    "y_px": "y (px)",
    "x_px": "x (px)",
    "si_coordination": "Si coord.",
    "track_id": "track",
}


def _is_atoms(layer: Any) -> bool:
    """Points layers that hold atoms (not ring centres, defect centres, subimages)."""
    return is_atoms_points(layer)


def pixel_size_of(layer: Any) -> float | None:
    """Å per pixel of a layer: the docks' one resolver
    (:func:`atomlens._napari._layers.resolve_layer_pixel_size`)."""
    return _resolve_px(layer)


class DefectsDock(ViewerWidget):
    """Defects of an atoms layer as a filterable table; a click jumps to the defect."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.rows: pd.DataFrame | None = None  # every defect (dock rows)
        self.shown: pd.DataFrame | None = None  # the rows the filter keeps
        self.result: ChemResult | None = None  # the last chemistry the dock ran
        self.source: Points | None = None  # the atoms layer the rows belong to
        self._n_source = -1  # its number of points when the rows were made
        self.worker: Any = None
        self.last_target: JumpTarget | None = None

        self.atoms = self.layer_picker("atoms", "points", _is_atoms)
        self.run_button = PushButton(text="Run chemistry")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.stop_button.tooltip = "end after the current frames; the frames done are kept"
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.add_layers = CheckBox(text="add bonds / rings / defects layers", value=False)
        self.type_filter = ComboBox(label="type", choices=self._type_choices)
        self.table = Table(value={h: [] for h in _HEADERS.values()})
        self.csv_file = FileEdit(label="CSV file", mode="w", filter="*.csv", value="")
        self.export_button = PushButton(text="Export CSV")
        self.status = status_label()
        self.note = note_label()  # the chemistry does not fit the atoms' material
        self.note.visible = False
        row = Container(  # the checkbox on its own line: the dock stays as narrow as the rest
            layout="horizontal", widgets=[self.run_button, self.stop_button], labels=False
        )
        self.extend(
            [
                self.atoms,
                self.add_layers,
                row,
                self.progress,
                self.type_filter,
                self.table,
                self.csv_file,
                self.export_button,
                self.status,
                self.note,
            ]
        )

        qt = self.table.native
        from qtpy.QtWidgets import QAbstractItemView

        qt.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        qt.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        qt.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        qt.cellClicked.connect(lambda r, _c: self.jump_to(r))
        qt.currentCellChanged.connect(self._on_current)

        self.atoms.changed.connect(self._on_layer)
        self.run_button.changed.connect(self.run_chemistry)
        self.stop_button.changed.connect(self.stop)
        self._stop = threading.Event()
        self._t0 = 0.0
        self.type_filter.changed.connect(self._refresh_table)
        self.export_button.changed.connect(lambda: self.export_csv())
        self._on_layer()

    # --- sources -------------------------------------------------------------------

    def _type_choices(self, _widget: Any = None) -> list[str]:
        return [ALL_TYPES, *defect_types(self.rows if self.rows is not None else pd.DataFrame())]

    def _on_layer(self, *_: Any) -> None:
        """A newly picked atoms layer: show its defects if it carries chemistry."""
        layer = self.atoms.value
        if layer is None or layer is self.source:
            return
        if has_chemistry(layer.features):
            try:
                self.load_layer(layer)
            except ValueError as exc:
                self.status.value = str(exc)
        else:
            self._set_rows(None, None)
            self.status.value = f"'{layer.name}' has no chemistry yet: press Run chemistry"

    def load_layer(self, layer: Points) -> pd.DataFrame:
        """Rows from an atoms layer whose features carry ``defect_id, defect_type``."""
        rows = defect_table_from_atoms(layer_atoms(layer), pixel_size_of(layer))
        self._set_rows(rows, layer)
        return rows

    def run_chemistry(self) -> Any:
        """Analyse the picked atoms layer on a worker thread, a few frames at a time
        (headless twin: :func:`atomlens.workflows.chemistry.analyze_events`, the same
        numbers as :func:`atomlens.chem.analyze`); returns the worker (None on error)."""
        from atomlens.workflows.chemistry import CHUNK_FRAMES, analyze_events

        layer = self.atoms.value
        try:
            if layer is None:
                raise ValueError("no atoms layer: detect atoms (or open an atom table) first")
            px = pixel_size_of(layer)
            if not px:
                raise ValueError(
                    f"'{layer.name}' has no pixel size in Å: detect the atoms again with the "
                    "Detect atoms dock's 'pixel size (Å)' field set (or `atomlens calibrate`)"
                )
            atoms = layer_atoms(layer)
            if len(atoms) == 0:
                raise ValueError(f"'{layer.name}' has no atoms")
        except ValueError as exc:
            notify_error(exc, "Defects")
            return None
        set_note(self.note, "")  # the run's own note (not graphene's atoms) comes back
        n_frames = int(atoms["frame"].nunique()) if "frame" in atoms else 1
        self.run_button.enabled, self.stop_button.enabled = False, True
        self.progress.max, self.progress.value = n_frames, 0
        self.status.value = f"chemistry of {len(atoms)} atoms..."
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self.worker = start_generator(
            analyze_events,
            atoms,
            px,
            chunk_frames=CHUNK_FRAMES,
            stop=self._stop,
            on_yield=self._on_progress,
            on_return=lambda run: self._on_run(run, layer, len(atoms)),
            on_error=lambda exc: setattr(self.status, "value", "chemistry failed"),
            on_finish=self._after,
            what="Defects",
        )
        return self.worker

    def stop(self) -> None:
        """End the chemistry after the current frames; the frames done are kept."""
        self._stop.set()
        self.status.value = "stopping after these frames..."

    def _after(self) -> None:
        self.run_button.enabled, self.stop_button.enabled = True, False

    def _on_progress(self, event: Any) -> None:
        from atomlens.workflows.events import Log

        if isinstance(event, Log):  # e.g. the atoms are not graphene's: holes only
            show_warning(f"Defects: {event.message}")
            return
        done, total = int(event.done), int(event.total or max(event.done, 1))
        self.progress.max, self.progress.value = total, done
        left = (time.perf_counter() - self._t0) / max(done, 1) * (total - done)
        self.status.value = f"chemistry: {done}/{total} frames, ~{left:.0f} s left"

    def _on_run(self, run: Any, layer: Points, n_points: int) -> None:
        set_note(self.note, run.note)  # not graphene's atoms: the workflow kept holes only
        if run.result is None:
            self.status.value = "stopped before the first frames: nothing analysed"
            return
        self.set_result(run.result, layer, n_points=n_points, rows=run.rows)
        if run.stopped:
            self.status.value = (
                f"stopped: {len(self.rows) if self.rows is not None else 0} defects in the "
                f"{len(run.frames)} frame(s) done (kept); Run chemistry again for all"
            )

    def set_result(
        self,
        result: ChemResult,
        layer: Points,
        n_points: int | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        """Show the defects of ``result`` (chemistry of ``layer``'s atoms, or of its rows
        ``rows`` when a stopped run did only some frames); writes the per-atom chemistry
        columns into the layer's features when it is unchanged (atoms of frames not
        analysed get ``defect_type`` 'not analysed' and -1 ids)."""
        from atomlens._napari.chem_layers import add_chem_layers
        from atomlens.chem.analyze import ATOM_CHEM_COLUMNS

        self.result = result
        expected = len(result.atoms) if n_points is None else n_points
        same = layer in self.viewer.layers and len(layer.data) == expected
        cols = [c for c in ATOM_CHEM_COLUMNS if c in result.atoms]
        if same and rows is not None and len(rows) < len(layer.data):
            merge_features(layer, _spread(result.atoms[cols], rows, len(layer.data)))
        elif same:
            merge_features(layer, result.atoms[cols])
        if self.add_layers.value:
            add_chem_layers(self.viewer, result)
        table = defect_table(result)
        if rows is not None and len(table):  # members: rows of the layer, not of the result
            table["atoms"] = [tuple(int(rows[i]) for i in m) for m in table["atoms"]]
        self._set_rows(table, layer if same else None)
        if not same:
            show_warning(
                "Defects: the atoms layer changed while the chemistry ran; "
                "the table does not select atoms (run it again)"
            )
        if len(result.defects) == 0:
            show_info(f"Defects: no defects found in '{layer.name}'")

    def _set_rows(self, rows: pd.DataFrame | None, layer: Points | None) -> None:
        self.rows = rows
        self.source = layer
        self._n_source = len(layer.data) if layer is not None else -1
        self.type_filter.reset_choices()
        self._refresh_table()
        if rows is not None:
            kinds = defect_types(rows)
            self.status.value = (
                f"{len(rows)} defects ({', '.join(kinds[:4])}"
                f"{'...' if len(kinds) > 4 else ''}): click one to go there"
                if len(rows)
                else "no defects found"
            )

    # --- table ---------------------------------------------------------------------

    def _refresh_table(self, *_: Any) -> None:
        rows = self.rows if self.rows is not None else pd.DataFrame()
        self.shown = filter_defects(rows, self.type_filter.value) if len(rows) else rows
        cols = [c for c in _HEADERS if c in self.shown.columns]
        if len(self.shown):
            if (self.shown["si_coordination"].astype(str) == "").all():
                cols.remove("si_coordination")
            if (self.shown["track_id"] < 0).all():
                cols.remove("track_id")
            if self.shown["y_A"].isna().all():  # no pixel size: pixels only
                cols.remove("y_A")
                cols.remove("x_A")
        value: dict[str, list] = {}
        for c in cols:
            col = self.shown[c]
            if c in ("y_A", "x_A", "y_px", "x_px"):
                value[_HEADERS[c]] = [f"{v:.{2 if c.endswith('A') else 1}f}" for v in col]
            else:
                value[_HEADERS[c]] = [str(v) for v in col]
        qt = self.table.native
        qt.blockSignals(True)  # a new table is no click: the view stays where it is
        try:
            self.table.value = value or {h: [] for h in _HEADERS.values()}
            qt.clearSelection()
            qt.setCurrentCell(-1, -1)
        finally:
            qt.blockSignals(False)
        qt.resizeColumnsToContents()

    def _on_current(self, row: int, _col: int, prev_row: int, _prev_col: int) -> None:
        if row >= 0 and row != prev_row:
            self.jump_to(row)

    def jump_to(self, index: int) -> JumpTarget | None:
        """Go to the defect in row ``index`` of the shown (filtered) table: its frame,
        its centre (camera), a zoom showing it, its atoms selected."""
        shown = self.shown
        layer = self.source if self.source is not None else self.atoms.value
        if shown is None or not 0 <= index < len(shown) or layer is None:
            return None
        if layer not in self.viewer.layers:
            notify_error(ValueError(f"the atoms layer '{layer.name}' is gone"), "Defects")
            return None
        row = shown.iloc[int(index)]
        target = jump_target(row, pixel_size_of(layer))
        if layer.ndim == 3:
            set_frame(self.viewer, layer, target.frame)
            data_point = [target.frame, target.y_px, target.x_px]
        else:
            data_point = [target.y_px, target.x_px]
        world = np.asarray(layer.data_to_world(data_point), dtype=float)
        camera = self.viewer.scene.camera
        camera.center = (float(world[-2]), float(world[-1]))
        side = target.view_px * abs(float(layer.scale[-1]))
        canvas = min(int(s) for s in self.viewer.canvas.size) or 600
        camera.zoom = canvas / side
        if target.atoms and layer is self.source and len(layer.data) == self._n_source:
            layer.selected_data = set(target.atoms)
            self.viewer.layers.selection.active = layer
        self.last_target = target
        where = (
            f"({row['y_A']:.1f}, {row['x_A']:.1f}) Å"
            if np.isfinite(row["y_A"])
            else f"({row['y_px']:.0f}, {row['x_px']:.0f}) px"
        )
        self.status.value = (
            f"{row['type']} in frame {target.frame} at {where}, {int(row['n_atoms'])} atoms"
        )
        return target

    # --- export --------------------------------------------------------------------

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the shown (filtered) defects as CSV (headless twin:
        :func:`atomlens.chem.defect_table.export_table`); None on error."""
        try:
            if path is None:
                text = str(self.csv_file.value) if self.csv_file.value is not None else ""
                if text in ("", "."):
                    raise ValueError("choose a CSV file name first")
                path = text
            if self.shown is None or len(self.shown) == 0:
                raise ValueError("no defects to export: run the chemistry first")
            out = export_table(self.shown, path)
        except (ValueError, OSError) as exc:
            notify_error(exc, "Export CSV")
            return None
        self.status.value = f"wrote {len(self.shown)} defects to {out.name}"
        return out


def _spread(columns: pd.DataFrame, rows: np.ndarray, n: int) -> pd.DataFrame:
    """``columns`` (one row per analysed atom) placed at ``rows`` of an ``n``-row table;
    the other rows get the 'not analysed' values."""
    out = {}
    for c in columns.columns:
        fill = _NOT_ANALYSED.get(c, -1)
        values = columns[c].to_numpy()
        full = np.full(n, fill, dtype=object if isinstance(fill, str) else values.dtype)
        full[np.asarray(rows, dtype=np.int64)] = values
        out[c] = full
    return pd.DataFrame(out)


def defects_dock(napari_viewer: napari.viewer.Viewer) -> DefectsDock:
    """npe2 widget factory."""
    return DefectsDock(napari_viewer)


__all__ = ["DefectsDock", "defects_dock", "pixel_size_of"]
