"""Worker-thread plumbing: start a generator on a napari worker, report errors, throttle.

Layers and widgets are only touched in the callbacks, which Qt runs on the main thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

from napari.utils.notifications import show_error
from qtpy.QtCore import QTimer


def notify_error(exc: BaseException, what: str = "") -> None:
    """Show an exception as a napari error notification (the one-line message)."""
    prefix = f"{what}: " if what else ""
    show_error(f"{prefix}{exc}")


def start_generator(
    func: Callable[..., Generator],
    *args: Any,
    on_yield: Callable[[Any], None] | None = None,
    on_return: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    on_finish: Callable[[], None] | None = None,
    what: str = "",
    **kwargs: Any,
):
    """Run ``func(*args, **kwargs)`` (a generator) on a napari worker thread.

    ``on_yield`` gets every yielded event, ``on_return`` the generator's return value,
    ``on_error`` the exception (after a napari notification); ``on_finish`` runs last in
    every case. Returns the worker; it starts on the next turn of the Qt event loop.
    """
    from napari.qt.threading import create_worker

    def _errored(exc: BaseException) -> None:
        notify_error(exc, what)
        if on_error is not None:
            on_error(exc)

    # connecting `errored` at creation stops superqt from re-raising the exception in
    # the worker thread (which would skip `finished`); we report it instead
    worker = create_worker(
        func, *args, _start_thread=False, _connect={"errored": _errored}, **kwargs
    )
    if on_yield is not None:
        worker.yielded.connect(on_yield)
    if on_return is not None:
        worker.returned.connect(on_return)
    if on_finish is not None:
        worker.finished.connect(on_finish)
    # start on the next turn of the event loop, so whoever gets the worker back can
    # connect to its signals first (a fast job could otherwise finish unobserved)
    QTimer.singleShot(0, worker.start)
    return worker


class Throttle:
    """Call ``func`` at most every ``interval_ms`` on the main thread; extra requests in
    between coalesce into one trailing call (so the last state is always drawn)."""

    def __init__(
        self, func: Callable[[], None], interval_ms: int = 200, parent: Any = None
    ) -> None:
        self._func = func
        self._interval = interval_ms / 1000.0
        self._last = 0.0
        self._timer = QTimer(parent)  # parented: it dies with its widget
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._fire)

    def __call__(self) -> None:
        wait = self._last + self._interval - time.perf_counter()
        if wait <= 0 and not self._timer.isActive():
            self._fire()
        elif not self._timer.isActive():
            self._timer.start(max(1, int(wait * 1000)))

    def flush(self) -> None:
        """Run a pending call now."""
        if self._timer.isActive():
            self._timer.stop()
        self._fire()

    def _fire(self) -> None:
        self._last = time.perf_counter()
        self._func()


def make_layers(tuples: list[Any]) -> list[Any]:
    """napari layers from ``(data, kwargs, type)`` tuples, made where this is called:
    on a worker thread, so a layer's set-up (contrast limits, thumbnails, colour
    mapping, napari's first-layer tables; 25-570 ms each, measured) never blocks the
    main thread. Adding them to the viewer stays on the main thread
    (:func:`add_layers_in_turns`)."""
    import warnings

    from napari.layers import Layer

    from atomlens._napari._reuse import MADE_WITH

    out = []
    for data, kwargs, kind in tuples:
        with warnings.catch_warnings():  # integer features coloured as categories on purpose
            warnings.filterwarnings(
                "ignore", message=".*looks like categorical data", category=RuntimeWarning
            )
            layer = Layer.create(data, dict(kwargs), kind)
        MADE_WITH[layer] = dict(kwargs)  # how a re-run colours the layer it reuses
        out.append(layer)
    return out


#: Pause between two layers added in turns (ms): long enough that the repaint of one
#: layer and any due timer or input run before the next layer's set-up (a 0 ms timer
#: let Qt run two ~70 ms ``add_layer`` calls back to back).
TURN_GAP_MS = 20


def add_layers_in_turns(
    viewer: Any,
    layers: list[Any],
    then: Callable[[list[Any]], None] | None = None,
    stale: list[Any] = (),
) -> None:
    """Put ready-made layers into the viewer in short turns of the Qt event loop,
    :data:`TURN_GAP_MS` apart, so no two long napari tasks run back to back.

    A layer whose name is already a layer of the same kind (a re-run) is **reused**: the
    new data, features, colours and place are written into the existing layer
    (:mod:`atomlens._napari._reuse`, a few turns of tens of ms; docks bound to it stay
    bound). Otherwise the layer is added hidden on one turn (layer list, controls, vispy
    visual, first slice: ~85 ms) and shown on the one after (its first draw: vispy builds
    and Mesa compiles its shaders, ~80-110 ms under software OpenGL); a layer of the same
    name but another kind is removed on a turn before. When a batch both reuses and adds
    layers, the batch is moved back on top in its own order at the end (new probability
    maps must not cover reused atoms). ``then(layers)`` runs on the turn after the last,
    with the batch's layers as they are in the viewer. ``stale`` layers (e.g. the
    previous run's probability maps when this run made none) are removed, one per turn,
    before the batch."""
    from atomlens._napari._layers import layer_named
    from atomlens._napari._reuse import can_reuse, reuse_steps

    steps: list[Callable[[], None]] = []
    added: list[Any] = []
    mixed = [False, False]  # (a layer reused, a layer added)
    for old in stale:
        steps.append(lambda old=old: old in viewer.layers and viewer.layers.remove(old))

    def _remove_old(layer: Any) -> None:
        old = layer_named(viewer, layer.name)  # (not viewer.layers[name]: a proxy in plugins)
        if old is not None and type(old) is type(layer):
            viewer.layers.remove(old)

    def _add(layer: Any, visible: bool) -> None:
        layer.visible = False
        viewer.add_layer(layer)
        if visible:
            steps.insert(0, lambda: setattr(layer, "visible", True))

    def _order() -> None:
        if not all(mixed):
            return
        for layer in added:
            if layer in viewer.layers:
                viewer.layers.move(viewer.layers.index(layer), len(viewer.layers))

    for layer in layers:
        old = layer_named(viewer, layer.name)
        if old is not None and can_reuse(old, layer):
            added.append(old)
            mixed[0] = True
            steps.extend(reuse_steps(old, layer))
            continue
        added.append(layer)
        mixed[1] = True
        steps.append(lambda layer=layer: _remove_old(layer))
        steps.append(lambda layer=layer, visible=bool(layer.visible): _add(layer, visible))
    steps.append(_order)

    def _step() -> None:
        from atomlens._napari._base import pickers_deferred

        try:
            if steps:
                with pickers_deferred():  # the docks' layer pickers: on the next turn
                    steps.pop(0)()
                # the next step after a pause; ``then`` on the very next turn
                QTimer.singleShot(TURN_GAP_MS if steps else 0, _step)
            elif then is not None:
                then(added)
        except (RuntimeError, AttributeError):  # the viewer was closed meanwhile
            steps.clear()

    QTimer.singleShot(0, _step)
