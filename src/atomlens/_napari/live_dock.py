"""The "Live" dock: analyse frames as the microscope writes them into a folder.

A thin shell over :func:`atomlens.live.watch.run` (the headless twin is
``atomlens watch DIR --out OUT``), run on a worker thread. Each analysed frame arrives
on the main thread as a :class:`~atomlens.live.watch.FrameDone`, and only there are
layers touched:

- ``live movie``: the frames so far (T grows; a buffer that doubles, so adding a frame
  copies nothing);
- ``live atoms``: points ``(t, y, x)`` with the atom table as features, coloured by
  species (or any column, e.g. a latent);
- ``live tracks``: tracks of the dopants (every species but the host, ``C``);
- the events table: one row per event; a click moves the slider to the event's frame
  and centres the camera on it.

The viewer follows the newest frame until the user moves the time slider to an older
one; moving it back to the newest frame follows again. The status line shows the last
frame's latency (file arrival to rows committed) and the queue.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, PushButton, Table

from atomlens._napari._base import ViewerWidget, status_label
from atomlens._napari._workers import notify_error, start_generator

if TYPE_CHECKING:
    import napari

    from atomlens.live.watch import FrameDone

HOST = "C"
EVENT_HEADERS = ["frame", "type", "y (px)", "x (px)", "detail", "tracks"]


class FrameBuffer:
    """A (T, Y, X) float32 movie that grows one frame at a time without copying the
    earlier frames every time (capacity doubles); :attr:`view` is the filled part."""

    def __init__(self) -> None:
        self._data: np.ndarray | None = None
        self.n = 0

    def append(self, image: np.ndarray) -> np.ndarray:
        image = np.asarray(image, dtype=np.float32)
        if self._data is None:
            self._data = np.empty((4, *image.shape), np.float32)
        elif image.shape != self._data.shape[1:]:
            raise ValueError(
                f"frame {self.n} is {image.shape}, the earlier ones "
                f"{self._data.shape[1:]}: a live movie keeps one frame size"
            )
        if self.n == len(self._data):
            grown = np.empty((2 * len(self._data), *image.shape), np.float32)
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n] = image
        self.n += 1
        return self.view

    @property
    def view(self) -> np.ndarray:
        assert self._data is not None
        return self._data[: self.n]


class LiveDock(ViewerWidget):
    """Follow a folder; layers grow frame by frame; an events table that jumps."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.worker: Any = None
        self.stop_event: threading.Event | None = None
        self.movie = FrameBuffer()
        self.atoms = pd.DataFrame()
        self.events = pd.DataFrame()
        self.layers: dict[str, Any] = {}
        self.follow = True
        self._moving = False
        self.last: FrameDone | None = None
        self.folder = FileEdit(label="folder", mode="d", value="")
        self.out = FileEdit(label="output", mode="d", value="")
        self.pixel_size = FloatSpinBox(
            label="Å/px (0: file)", value=0.0, min=0.0, max=20.0, step=0.001
        )
        self.policy = ComboBox(label="queue", choices=["all", "newest"], value="all")
        self.colour_by = ComboBox(label="colour", choices=self._colour_choices)
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.events_table = Table(value={h: [] for h in EVENT_HEADERS})
        self.status = status_label()
        buttons = Container(
            layout="horizontal", widgets=[self.start_button, self.stop_button], labels=False
        )
        self.extend(
            [
                self.folder,
                self.out,
                self.pixel_size,
                self.policy,
                self.colour_by,
                buttons,
                self.status,
                self.events_table,
            ]
        )

        from qtpy.QtWidgets import QAbstractItemView

        qt = self.events_table.native
        qt.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        qt.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        qt.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        qt.cellClicked.connect(lambda r, _c: self.jump_to(r))

        self.start_button.changed.connect(lambda: self.start())
        self.stop_button.changed.connect(lambda: self.stop())
        self.colour_by.changed.connect(self._recolour)
        viewer.dims.events.current_step.connect(self._on_slider)

    # --- start / stop ----------------------------------------------------------------

    def start(self, folder: str | Path | None = None, out: str | Path | None = None) -> Any:
        """Start watching (folder/out from the widgets unless given); returns the worker
        (None on a bad setting)."""
        from atomlens.live.watch import WatchRecipe, run

        try:
            folder = Path(folder if folder is not None else str(self.folder.value or ""))
            if str(folder) in ("", "."):
                raise ValueError("choose the folder the microscope writes frames to")
            if not folder.is_dir():
                raise ValueError(f"{folder} is not a folder")
            out_text = str(out if out is not None else (self.out.value or ""))
            out_dir = Path(out_text) if out_text not in ("", ".") else folder / "atomlens_live"
            px = float(self.pixel_size.value) or None
            recipe = WatchRecipe(policy=self.policy.value, pixel_size=px)
        except ValueError as exc:
            notify_error(exc, "Live")
            return None
        self.stop_event = threading.Event()
        self.start_button.enabled = False
        self.stop_button.enabled = True
        self.status.value = f"watching {folder.name} -> {out_dir}"
        self.worker = start_generator(
            run,
            folder,
            out_dir,
            recipe,
            stop=self.stop_event,
            on_yield=self._on_event,
            on_return=self._on_return,
            on_finish=self._on_finish,
            what="Live",
        )
        return self.worker

    def stop(self) -> None:
        """Stop after the frame being analysed (its rows are kept)."""
        if self.stop_event is not None:
            self.stop_event.set()
            self.status.value = "stopping after the current frame..."

    def _on_return(self, summary: Any) -> None:
        self.status.value = (
            f"stopped: {summary.processed} frames analysed, "
            f"{summary.skipped} skipped; tables in {summary.out}"
        )

    def _on_finish(self) -> None:
        self.start_button.enabled = True
        self.stop_button.enabled = False

    # --- frames (main thread) --------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        from atomlens.live.watch import FrameDone, FrameSkipped
        from atomlens.workflows.events import Log

        if isinstance(event, FrameDone):
            self.add_frame(event)
        elif isinstance(event, FrameSkipped):
            self.status.value = event.line()
        elif isinstance(event, Log):
            self.status.value = event.message
            if event.message.startswith("warning:"):  # said once; the status line moves on
                from napari.utils.notifications import show_warning

                show_warning(f"Live: {event.message[len('warning:') :].strip()}")

    def add_frame(self, done: FrameDone) -> None:
        """Grow the layers and the events table by one analysed frame."""
        out = done.output
        px = out.pixel_size or None
        movie = self.movie.append(done.image)
        # the movie holds the analysed frames only (the "newest" policy drops some), so
        # layers use the analysed-frame index t; tables keep the watch's frame number
        t = self.movie.n - 1
        atoms = out.atoms.assign(t=t)
        self.atoms = pd.concat([self.atoms, atoms], ignore_index=True) if len(self.atoms) else atoms
        ev = out.events.assign(t=t)
        if len(ev):
            self.events = (
                pd.concat([self.events, ev], ignore_index=True) if len(self.events) else ev
            )
        self._update_layers(movie, px)
        self._update_events()
        if self.follow:
            self._show_frame(t)
        self.colour_by.reset_choices()
        self.last = done
        self.status.value = (
            f"frame {done.frame}: {len(out.atoms)} atoms, {len(out.events)} "
            f"events, latency {done.latency_s:.2f} s, queue {done.queue}"
        )

    def _update_layers(self, movie: np.ndarray, px: float | None) -> None:
        from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple

        scale = (1.0, px, px) if px else (1.0, 1.0, 1.0)
        img = self.layers.get("movie")
        if img is None or img not in self.viewer.layers:
            data, kw, _ = image_layer_tuple(movie, px, name="live movie")
            self.layers["movie"] = self.viewer.add_image(data, **kw)
        else:
            img.data = movie
            img.reset_contrast_limits()
        pts_data = np.column_stack(
            [
                self.atoms["t"].to_numpy(float),
                self.atoms["y"].to_numpy(float),
                self.atoms["x"].to_numpy(float),
            ]
        )
        features = self.atoms.drop(columns=["t"])
        pts = self.layers.get("atoms")
        if pts is None or pts not in self.viewer.layers:
            _, kw, _ = atoms_layer_tuple(features, px, name="live atoms")
            kw.pop("features", None)
            self.layers["atoms"] = pts = self.viewer.add_points(pts_data, features=features, **kw)
        else:
            pts.data = pts_data
            pts.features = features
        self._recolour()
        dop = self.atoms[(self.atoms["cls"].astype(str) != HOST) & (self.atoms["track_id"] >= 0)]
        if len(dop):
            tracks = dop.sort_values(["track_id", "t"])[["track_id", "t", "y", "x"]].to_numpy(float)
            trk = self.layers.get("tracks")
            if trk is None or trk not in self.viewer.layers:
                self.layers["tracks"] = self.viewer.add_tracks(
                    tracks, name="live tracks", scale=scale, tail_length=50, blending="translucent"
                )
            else:
                trk.data = tracks

    def _colour_choices(self, _widget: Any = None) -> list[str]:
        if not len(self.atoms):
            return ["cls"]
        skip = {"t", "frame", "y", "x", "y_reg", "x_reg", "atom_id", "track_id"}
        return ["cls", *[c for c in self.atoms.columns if c not in skip and c != "cls"]]

    def _recolour(self, *_: Any) -> None:
        pts = self.layers.get("atoms")
        if pts is None or pts not in self.viewer.layers or not len(pts.features):
            return
        from atomlens.viz.colours import colour_spec

        col = self.colour_by.value or "cls"
        if col not in pts.features:
            col = "cls"
        kw = colour_spec(col, pts.features[col]).points_kwargs()
        for key in ("face_colormap", "face_contrast_limits", "face_color_cycle"):
            if key in kw:
                setattr(pts, key, kw[key])
        pts.face_color = kw.get("face_color", col)
        pts.refresh_colors(update_color_mapping=False)

    # --- slider ----------------------------------------------------------------------

    def _show_frame(self, t: int) -> None:
        from atomlens._napari._layers import set_frame

        layer = self.layers.get("movie")
        if layer is None:
            return
        self._moving = True
        try:
            set_frame(self.viewer, layer, t)
        finally:
            self._moving = False

    def current_frame(self) -> int:
        return int(self.viewer.dims.current_step[0]) if self.viewer.dims.ndim >= 3 else 0

    def _on_slider(self, *_: Any) -> None:
        if self._moving or self.movie.n == 0:
            return
        self.follow = self.current_frame() >= self.movie.n - 1

    # --- events table ----------------------------------------------------------------

    def _update_events(self) -> None:
        ev = self.events
        value = {h: [] for h in EVENT_HEADERS}
        if len(ev):
            value = {
                "frame": [str(int(v)) for v in ev["frame"]],
                "type": [str(v) for v in ev["type"]],
                "y (px)": [f"{v:.1f}" for v in ev["y"]],
                "x (px)": [f"{v:.1f}" for v in ev["x"]],
                "detail": [str(v) for v in ev["detail"]],
                "tracks": [str(v) for v in ev["track_ids"]],
            }
        qt = self.events_table.native
        qt.blockSignals(True)
        try:
            self.events_table.value = value
        finally:
            qt.blockSignals(False)

    def jump_to(self, row: int) -> tuple[int, float, float] | None:
        """Go to event ``row``: its frame on the slider (stops following), the camera
        on its place. Returns (movie index, y, x) in pixels."""
        if not 0 <= row < len(self.events):
            return None
        ev = self.events.iloc[int(row)]
        t, y, x = int(ev["t"]), float(ev["y"]), float(ev["x"])
        self.follow = t >= self.movie.n - 1
        self._show_frame(t)
        layer = self.layers.get("movie")
        if layer is not None:
            world = np.asarray(layer.data_to_world([t, y, x]), dtype=float)
            self.viewer.camera.center = (float(world[-2]), float(world[-1]))
        self.status.value = f"{ev['type']} in frame {int(ev['frame'])} at ({y:.0f}, {x:.0f}) px"
        return t, y, x


def live_dock(napari_viewer: napari.viewer.Viewer) -> LiveDock:
    """npe2 widget factory."""
    return LiveDock(napari_viewer)


__all__ = ["FrameBuffer", "LiveDock", "live_dock"]
