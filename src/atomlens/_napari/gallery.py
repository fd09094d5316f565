"""The subimage gallery dock: the windows of the selected atoms, beside the canvas.

Follows the centres layer: selecting atoms (or clicking one) shows their windows, up to
:data:`GRID` x :data:`GRID`, each titled with its row and frame, on one grey scale (the
range of the whole set, so windows compare). It never adds a layer to the canvas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from matplotlib.figure import Figure
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from atomlens._napari._links import disconnect_all
from atomlens._napari._workers import Throttle
from atomlens._napari.mpl_canvas import BackgroundCanvas
from atomlens._napari.state import session_for

if TYPE_CHECKING:
    from napari.layers import Points

GRID = 3
_BG = "#262930"
_FG = "#d0d0d0"


class SubimageGallery(QWidget):
    """A GRID x GRID gallery of windows that follows the selected atoms."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.figure = Figure(figsize=(3, 3), facecolor=_BG)
        self.canvas = BackgroundCanvas(self.figure)  # drawn off the main thread
        self.label = QLabel("cut subimages, then select or click atoms")
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.label)
        layout.addWidget(self.canvas)
        self.setMinimumHeight(180)
        self.ax = self.figure.add_axes((0.01, 0.01, 0.98, 0.98))
        self.ax.set_axis_off()
        self.image = None
        self.labels = [
            self.ax.text(0, 0, "", color="#ffe119", fontsize=7, va="top")
            for _ in range(GRID * GRID)
        ]
        self._limits_for: tuple[Any, tuple[float, float]] = (None, (0.0, 1.0))
        self.subs: Any = None
        self.layer: Points | None = None
        self.rows: list[int] = []
        self.redraw = Throttle(self._draw, 120, parent=self)
        self._links: list[tuple[Any, Any]] = []
        links = self._links
        self.destroyed.connect(lambda *_: disconnect_all(links))
        from qtpy.QtCore import QTimer

        from atomlens._napari._base import tabify_with_atomlens

        QTimer.singleShot(0, lambda: tabify_with_atomlens(self))
        session = session_for(viewer)
        if session.gallery is None:  # opened from the Plugins menu: the viewer's gallery
            session.gallery = self

    def show_set(self, subs: Any, layer: Points) -> None:
        """Follow ``layer`` (the centres) and show windows of ``subs``."""
        disconnect_all(self._links)
        self.subs, self.layer = subs, layer
        self._links.append((layer.selected_data.events.items_changed, self._on_selection))
        layer.selected_data.events.items_changed.connect(self._on_selection)
        _link_clicks(layer, self)
        sel = sorted(layer.selected_data)
        self.show_rows(sel or [int(r) for r in subs.index[: GRID * GRID]])

    def _on_selection(self, *_: Any) -> None:
        if self.layer is not None and self.layer.selected_data:
            self.show_rows(sorted(self.layer.selected_data))

    def show_rows(self, rows: list[int]) -> list[int]:
        """Show the windows of centre rows ``rows`` (those that have one); returns them."""
        if self.subs is None:
            return []
        have = set(int(r) for r in self.subs.index)
        self.rows = [int(r) for r in rows if int(r) in have][: GRID * GRID]
        self.redraw()
        return self.rows

    def _limits(self, images: np.ndarray) -> tuple[float, float]:
        """One grey scale for the whole set (1-99 % over at most 200 windows, cached)."""
        key = id(self.subs)
        if self._limits_for[0] != key:
            take = images[:: max(1, len(images) // 200)]
            lo, hi = (float(v) for v in np.percentile(take, [1, 99]))
            self._limits_for = (key, (lo, hi if hi > lo else lo + 1.0))
        return self._limits_for[1]

    def mosaic(self) -> np.ndarray:
        """The shown windows as one ``(GRID*(h+1)-1, GRID*(w+1)-1)`` image (NaN between and
        in empty cells): one image artist instead of GRID² axes, so a redraw is cheap."""
        images = self.subs.images
        images = images[:, 0] if images.ndim == 4 else images
        h, w = images.shape[-2:]
        out = np.full((GRID * (h + 1) - 1, GRID * (w + 1) - 1), np.nan, np.float32)
        pos = {int(r): i for i, r in enumerate(self.subs.index)}
        for k, row in enumerate(self.rows):
            r, c = divmod(k, GRID)
            out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[pos[row]]
        return out

    def _draw(self) -> None:
        try:
            subs = self.subs
            if subs is None:
                return
            images = subs.images
            lo, hi = self._limits(images)
            mosaic = self.mosaic()
            if self.image is None:
                self.image = self.ax.imshow(
                    mosaic, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest"
                )
            else:
                self.image.set_data(mosaic)
                self.image.set_extent((-0.5, mosaic.shape[1] - 0.5, mosaic.shape[0] - 0.5, -0.5))
                self.image.set_clim(lo, hi)
            h, w = subs.window
            frames = (
                subs.windows.centres["frame"].to_numpy()
                if "frame" in subs.windows.centres
                else None
            )
            for k, text in enumerate(self.labels):
                if k < len(self.rows):
                    row = self.rows[k]
                    r, c = divmod(k, GRID)
                    frame = f" t{int(frames[row])}" if frames is not None else ""
                    text.set_position((c * (w + 1) + 1, r * (h + 1) + 1))
                    text.set_text(f"#{row}{frame}")
                else:
                    text.set_text("")
            if self.rows:
                self.label.setText(
                    f"{subs.name}: {len(self.rows)} of {len(images)} windows ({h}x{w} px)"
                )
            else:
                self.label.setText(
                    "no window for these atoms: they sit too close to the frame "
                    "edge for the Subimages dock's 'window (px)'"
                )
            self.canvas.draw_idle()
        except RuntimeError:  # deleted with a closed viewer
            pass


def _link_clicks(points: Points, gallery: SubimageGallery) -> None:
    """Clicking a point of ``points`` shows its window (also in pan mode)."""

    def _on_click(layer: Points, event: Any) -> None:
        row = layer.get_value(
            event.position,
            view_direction=event.view_direction,
            dims_displayed=event.dims_displayed,
            world=True,
        )
        if row is not None:
            gallery.show_rows([int(row)])

    points.mouse_drag_callbacks[:] = [
        cb for cb in points.mouse_drag_callbacks if getattr(cb, "__name__", "") != "_on_click"
    ]
    points.mouse_drag_callbacks.append(_on_click)


def ensure_gallery(viewer: napari.viewer.Viewer) -> SubimageGallery | None:
    """Dock the gallery once per viewer (a tab of the AtomLens docks on the right); None
    without a window."""
    session = session_for(viewer)
    gallery = session.gallery
    if gallery is not None:
        try:
            gallery.isVisible()
            return gallery
        except RuntimeError:
            pass
    window = getattr(viewer, "window", None)
    if window is None or not hasattr(window, "add_dock_widget"):
        return None
    gallery = SubimageGallery(viewer)
    window.add_dock_widget(gallery, name="Subimage gallery", area="right")
    session.gallery = gallery
    return gallery
