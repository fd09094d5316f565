"""A magicgui Container bound to a viewer, with layer pickers that follow the layer list
and every layer's features and name (so a picker that accepts only layers with latents
fills in as soon as encoding adds them)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, Label

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer


#: The scale bar is shown this long after the first AtomLens dock opens (ms).
SCALE_BAR_MS = 500


def show_scale_bar(viewer: napari.Viewer) -> None:
    """Show napari's scale bar (in Å on calibrated layers) once per viewer, on an idle
    turn after the first AtomLens dock opens. Besides the scale it sets up the canvas's
    text font: napari draws an (empty) text visual with every Points layer, and the first
    text drawn in a viewer renders the font's glyphs (~100-150 ms of main thread under
    software OpenGL), which otherwise fell on Detect's first atoms layer. A scale bar the
    user hides stays hidden."""
    from atomlens._napari.state import session_for

    try:
        session = session_for(viewer)
        if session.scale_bar_shown:
            return
        session.scale_bar_shown = True
        scale_bar_of(viewer).visible = True
    except (RuntimeError, AttributeError):  # the viewer closed meanwhile
        pass


_DEFER = [0]  # > 0 inside pickers_deferred()
_PENDING: dict[int, weakref.ref] = {}  # docks whose pickers wait for the next turn


@contextmanager
def pickers_deferred() -> Iterator[None]:
    """Layer-list and layer changes made inside this block refresh the AtomLens docks'
    layer pickers once, on the next turn of the Qt event loop, instead of inside the
    change. Used where AtomLens adds, removes or rewrites result layers in turns
    (:func:`~atomlens._napari._workers.add_layers_in_turns`): the ~10 pickers of the
    open docks (and the relayout of the visible one) no longer add to napari's own
    ~70-100 ms ``add_layer`` turn. Changes made by the user or by scripts refresh the
    pickers at once, as before."""
    _DEFER[0] += 1
    try:
        yield
    finally:
        _DEFER[0] -= 1


def _flush_pickers() -> None:
    pending = list(_PENDING.values())
    _PENDING.clear()
    for ref in pending:
        widget = ref()
        if widget is not None:
            widget._refresh_choices()


def scale_bar_of(viewer: napari.Viewer):
    """The viewer's scale-bar overlay: ``viewer.canvas.overlays.scale_bar`` (napari 0.9;
    ``viewer.scale_bar`` is deprecated there), else ``viewer.scale_bar`` (older napari)."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    bar = getattr(overlays, "scale_bar", None)
    return bar if bar is not None else viewer.scale_bar


class ViewerWidget(Container):
    """Base of AtomLens dock widgets: keeps its layer pickers in sync with the viewer."""

    def __init__(self, viewer: napari.Viewer, **kwargs) -> None:
        super().__init__(**kwargs)
        self.viewer = viewer
        from qtpy.QtCore import QTimer

        # once docked (napari docks a widget right after making it), join the other
        # AtomLens docks as a tab, so opening several keeps the window on the screen
        QTimer.singleShot(0, lambda: tabify_with_atomlens(self.native))
        QTimer.singleShot(SCALE_BAR_MS, lambda: show_scale_bar(viewer))
        from atomlens._napari.autosave import start_autosave

        start_autosave(viewer)  # atoms layers snapshotted for crash recovery
        ev = viewer.layers.events
        for name in ("inserted", "removed", "reordered"):
            getattr(ev, name).connect(self._refresh_choices)
        ev.inserted.connect(self._on_inserted)
        for layer in viewer.layers:
            self._watch(layer)

    def _on_inserted(self, event=None) -> None:
        if event is not None and getattr(event, "value", None) is not None:
            self._watch(event.value)

    def _watch(self, layer: Layer) -> None:
        """Refresh the pickers when ``layer``'s features or name change."""
        for name in ("features", "name"):
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(self._refresh_choices)

    def _refresh_choices(self, event=None) -> None:
        if _DEFER[0]:
            from qtpy.QtCore import QTimer

            if not _PENDING:
                QTimer.singleShot(0, _flush_pickers)
            _PENDING[id(self)] = weakref.ref(self)
            return
        try:
            self.reset_choices()
        except RuntimeError:  # the dock's Qt widgets are already deleted (viewer closing)
            pass

    def layer_picker(
        self,
        label: str,
        layer_type: str | tuple[str, ...],
        accept: Callable[[Layer], bool] | None = None,
    ) -> ComboBox:
        """A combo box listing the viewer's layers of ``layer_type`` ('image', 'points'...)
        that ``accept`` (if given) accepts; the topmost is the default, except that movies
        come before derived images (probability maps, latent maps: the
        :func:`~atomlens.workflows.layers.is_derived_image` rule), so after Detect the
        default is still the movie while the maps stay choosable."""
        from atomlens.workflows.layers import is_derived_image

        types = (layer_type,) if isinstance(layer_type, str) else layer_type

        def _choices(_widget=None) -> list[tuple[str, Layer]]:
            layers = [
                lay
                for lay in reversed(self.viewer.layers)
                if layer_kind(lay) in types and (accept is None or accept(lay))
            ]
            layers.sort(key=is_derived_image)  # stable: topmost movie first
            return [(lay.name, lay) for lay in layers]

        return ComboBox(label=label, choices=_choices, nullable=False)


def tabify_with_atomlens(widget) -> bool:
    """Make the dock holding ``widget`` scroll its content and join the other visible
    AtomLens docks of its dock area as a tab (Qt's own ``tabifyDockWidget``); returns True
    when it joined a group."""
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    dock = widget
    try:
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
    except RuntimeError:  # deleted before the event loop came round
        return False
    if dock is None:
        return False
    if not dock.property("atomlens_dock"):
        _scroll_inside(dock)
    dock.setProperty("atomlens_dock", True)
    main = dock.parentWidget()
    if not isinstance(main, QMainWindow) or dock.isFloating():
        return False
    area = main.dockWidgetArea(dock)
    others = [
        d
        for d in main.findChildren(QDockWidget)
        if d is not dock
        and d.property("atomlens_dock")
        and not d.isFloating()
        and d.isVisible()
        and main.dockWidgetArea(d) == area
    ]
    if not others:
        return False
    main.tabifyDockWidget(others[0], dock)
    dock.show()
    dock.raise_()
    return True


def _scroll_inside(dock) -> None:
    """Put the dock's content in a scroll area: a long dock scrolls (vertically) instead of
    making the main window taller than the screen; it is never narrower than its content
    needs, so no button or field is cut at the right edge."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea

    content = dock.widget()
    if content is None or isinstance(content, QScrollArea):
        return

    class VerticalScroll(QScrollArea):
        def minimumSizeHint(self):  # noqa: N802 - Qt's name
            hint = super().minimumSizeHint()
            inner = self.widget()
            if inner is not None:  # the content's width now, plus the vertical bar
                bar = self.verticalScrollBar().sizeHint().width()
                hint.setWidth(inner.minimumSizeHint().width() + bar + 2 * self.frameWidth())
            return hint

    scroll = VerticalScroll()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(content)
    scroll.setMinimumHeight(120)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    dock.setWidget(scroll)


def layer_kind(layer: Layer) -> str:
    """``'image'``, ``'points'``, ``'labels'``... from the layer's public class (no private
    napari attribute)."""
    return type(layer).__name__.lower()


def status_label(value: str = "") -> Label:
    """A Label whose changing text never resizes its dock: a growing text would relayout
    the main window and resize napari's canvas (a full redraw of the canvas and of every
    plot, hundreds of ms on a slow machine)."""
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value=value)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    label.native.setMinimumWidth(0)
    # one line tall even while empty: the first text would otherwise grow the dock
    # (measured: a 30-50 ms relayout and canvas redraw at the start of every training)
    label.native.setFixedHeight(label.native.fontMetrics().lineSpacing() + 4)
    return label


def note_label() -> Label:
    """A word-wrapped, top-aligned Label for what a one-line status would cut off (the
    model chosen and why, the contrast classes, a warning that a dock does not fit the
    material). Unlike :func:`status_label` it grows with its text: it changes once per
    run, not on every progress step, so the one relayout is cheap."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value="")
    label.native.setWordWrap(True)
    label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    label.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
    label.native.setMinimumWidth(0)
    return label


def set_note(label: Label, text: str) -> None:
    """Show ``text`` in a :func:`note_label` (and its tooltip); hidden while empty."""
    label.value = text
    label.tooltip = text
    label.visible = bool(text)
