"""The subimage gallery dock: the windows of the selected atoms, beside the canvas.

Follows the centres layer: selecting atoms (or clicking one) shows their windows, up to
:data:`GRID` x :data:`GRID`, each titled with its row and frame, on one grey scale (the
range of the whole set, so windows compare). It never adds a layer to the canvas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from atomlens._napari._workers import Throttle
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
        self.figure.subplots_adjust(0.02, 0.02, 0.98, 0.92, 0.08, 0.25)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.label = QLabel("cut subimages, then select or click atoms")
        self.label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.label)
        layout.addWidget(self.canvas)
        self.setMinimumHeight(180)
        self.axes = [self.figure.add_subplot(GRID, GRID, i + 1) for i in range(GRID * GRID)]
        for ax in self.axes:
            ax.set_axis_off()
        self.subs: Any = None
        self.layer: Points | None = None
        self.rows: list[int] = []
        self.redraw = Throttle(self._draw, 120, parent=self)
        self._links: list[tuple[Any, Any]] = []
        links = self._links
        self.destroyed.connect(lambda *_: _disconnect(links))
        from qtpy.QtCore import QTimer

        from atomlens._napari._base import tabify_with_atomlens

        QTimer.singleShot(0, lambda: tabify_with_atomlens(self))

    def show_set(self, subs: Any, layer: Points) -> None:
        """Follow ``layer`` (the centres) and show windows of ``subs``."""
        _disconnect(self._links)
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

    def _draw(self) -> None:
        try:
            subs = self.subs
            if subs is None:
                return
            images = subs.images
            images = images[:, 0] if images.ndim == 4 else images
            lo, hi = (float(v) for v in np.percentile(images, [1, 99]))
            pos = {int(r): i for i, r in enumerate(subs.index)}
            frames = subs.windows.centres["frame"].to_numpy() if "frame" in subs.windows.centres else None
            for k, ax in enumerate(self.axes):
                ax.clear()
                ax.set_axis_off()
                if k < len(self.rows):
                    row = self.rows[k]
                    ax.imshow(images[pos[row]], cmap="gray", vmin=lo, vmax=hi)
                    frame = f", t {int(frames[row])}" if frames is not None else ""
                    ax.set_title(f"#{row}{frame}", color=_FG, fontsize=7)
            self.label.setText(f"{subs.name}: {len(self.rows)} of {len(images)} windows "
                               f"({subs.window[0]}x{subs.window[1]} px)")
            self.canvas.draw_idle()
        except RuntimeError:  # deleted with a closed viewer
            pass


def _link_clicks(points: Points, gallery: SubimageGallery) -> None:
    """Clicking a point of ``points`` shows its window (also in pan mode)."""

    def _on_click(layer: Points, event: Any) -> None:
        row = layer.get_value(
            event.position, view_direction=event.view_direction,
            dims_displayed=event.dims_displayed, world=True,
        )
        if row is not None:
            gallery.show_rows([int(row)])

    points.mouse_drag_callbacks[:] = [
        cb for cb in points.mouse_drag_callbacks if getattr(cb, "__name__", "") != "_on_click"
    ]
    points.mouse_drag_callbacks.append(_on_click)


def _disconnect(links: list[tuple[Any, Any]]) -> None:
    for emitter, callback in links:
        try:
            emitter.disconnect(callback)
        except (RuntimeError, ValueError, TypeError):
            pass
    links.clear()


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
