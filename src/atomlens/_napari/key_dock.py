"""The "Colour key" dock: a colour bar or legend for every coloured AtomLens layer shown.

Each AtomLens layer that is coloured records a :class:`~atomlens.viz.keys.ColourKey` in
its metadata (species, ring sizes, defect types, a latent's colour bar with its name,
units and fixed limits, PFM switching degree); this dock draws the keys of the visible
layers, topmost first, with the same :func:`atomlens.viz.keys.draw_key` that draws them
into exported movies. It follows the layer list, visibility and recolouring.
"""

from __future__ import annotations

from typing import Any

import napari
from matplotlib.figure import Figure
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from atomlens._napari._layers import colour_key_of
from atomlens._napari._links import disconnect_all
from atomlens._napari._workers import Throttle
from atomlens._napari.mpl_canvas import BackgroundCanvas
from atomlens._napari.state import COLOUR_KEYS, session_for
from atomlens.viz.keys import ColourKey, draw_key

_BG = "#262930"
_FG = "#d0d0d0"
#: At most this many keys are drawn (the topmost visible layers).
MAX_KEYS = 2


class ColourKeyDock(QWidget):
    """Colour bars and legends of the visible coloured layers."""

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.figure = Figure(figsize=(2.2, 3.0), facecolor=_BG)
        self.canvas = BackgroundCanvas(self.figure)  # drawn off the main thread
        self.empty = QLabel("no coloured layer shown")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.empty)
        layout.addWidget(self.canvas)
        self.setMinimumHeight(200)
        self.setMinimumWidth(150)
        self.keys: list[tuple[str, ColourKey]] = []
        self.redraw = Throttle(self._draw, 150, parent=self)
        from qtpy.QtCore import QTimer

        self._soon = QTimer(self)
        self._soon.setSingleShot(True)
        self._soon.setInterval(30)
        self._soon.timeout.connect(self.redraw)
        self._links: list[tuple[Any, Any]] = []
        self._link(COLOUR_KEYS.changed, self._on_change)
        for name in ("inserted", "removed", "reordered"):
            self._link(getattr(viewer.layers.events, name), self._on_change)
        self._link(viewer.layers.events.inserted, self._on_inserted)
        for layer in viewer.layers:
            self._link(layer.events.visible, self._on_change)
        links = self._links
        self.destroyed.connect(lambda *_: disconnect_all(links))
        session = session_for(viewer)
        if session.key_dock is None:  # opened from the Plugins menu: the viewer's key dock
            session.key_dock = self
        self._draw()

    def _link(self, emitter: Any, callback: Any) -> None:
        emitter.connect(callback)
        self._links.append((emitter, callback))

    def _on_inserted(self, event: Any = None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            self._link(layer.events.visible, self._on_change)

    def _on_change(self, *_: Any) -> None:
        # never inside the click that recoloured: the key draws on a later turn
        try:
            self._soon.start()
        except RuntimeError:  # deleted with a closed viewer
            pass

    def current_keys(self) -> list[tuple[str, ColourKey]]:
        """``(layer name, key)`` of the visible layers with a key, topmost first."""
        out = []
        for layer in reversed(self.viewer.layers):
            key = colour_key_of(layer)
            if key is not None and layer.visible:
                out.append((layer.name, key))
        return out[:MAX_KEYS]

    def _draw(self) -> None:
        """Find the keys here (main thread); build and render the figure on the canvas's
        helper thread (building the axes of two keys took ~30-60 ms of main thread)."""
        try:
            self.keys = keys = self.current_keys()
            self.empty.setVisible(not keys)
            self.canvas.draw_idle(prepare=lambda: self._build(keys))
        except RuntimeError:  # Qt widgets already deleted (viewer closing)
            pass

    def _build(self, keys: list[tuple[str, ColourKey]]) -> None:
        """Draw ``keys`` into the figure (on the render thread, under the canvas lock)."""
        self.figure.clear()
        n = len(keys)
        for i, (name, key) in enumerate(keys):
            top = 1.0 - i / max(n, 1)
            height = 1.0 / max(n, 1)
            if key.kind == "continuous":
                ax = self.figure.add_axes((0.12, top - height * 0.88, 0.14, height * 0.78))
            else:
                # (room above the legend for its title: 0.9 of the height clipped it)
                ax = self.figure.add_axes((0.05, top - height * 0.95, 0.9, height * 0.8))
            draw_key(ax, key, _FG)
            ax.set_title(name, color=_FG, fontsize=7, loc="left")


def ensure_key_dock(viewer: napari.viewer.Viewer) -> ColourKeyDock | None:
    """Dock the Colour key beside the canvas once per viewer (None without a window)."""
    session = session_for(viewer)
    dock = getattr(session, "key_dock", None)
    if dock is not None:
        try:
            dock.isVisible()
            return dock
        except RuntimeError:  # deleted with a closed dock
            pass
    window = getattr(viewer, "window", None)
    if window is None or not hasattr(window, "add_dock_widget"):
        return None
    dock = ColourKeyDock(viewer)
    window.add_dock_widget(dock, name="Colour key", area="left")
    session.key_dock = dock
    return dock
