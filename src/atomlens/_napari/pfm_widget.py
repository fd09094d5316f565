"""Dock widget: the PFM domain-wall workflow on an image layer (a thin shell over
:func:`atomlens.workflows.pfm.run` with a :class:`~atomlens.workflows.pfm.PFMRecipe`
filled in from the dock).

The workflow runs on a worker thread; the dock shows its stage, a progress bar per
training epoch with the time left, the time elapsed (a timer) and a Stop: before training
it ends the run (nothing half-made is added); while the skip-rVAE trains it ends training
after the current step and the windows are encoded with the epochs done (the dock says
so). The result's layers are made on the worker and added one per event-loop turn; the
walls are an Image layer (a first Labels layer costs napari ~0.7 s on the main thread).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import Container, FloatSpinBox, ProgressBar, PushButton, SpinBox

from atomlens._napari._base import ViewerWidget, status_label
from atomlens._napari._workers import notify_error, start_generator
from atomlens.viz.keys import ColourKey

if TYPE_CHECKING:
    from atomlens.pfm.workflow import PFMResult


def _job(phase: np.ndarray, recipe: Any, stop: threading.Event) -> Generator[Any, None, Any]:
    """The PFM workflow on the worker: yields its events; returns ``(result, layers)``
    (the layers made here, off the main thread), or None when stopped before training."""
    from atomlens._napari._workers import make_layers
    from atomlens.workflows import pfm
    from atomlens.workflows.events import Cancelled

    try:
        result = yield from pfm.run(phase, recipe, stop=stop)
    except Cancelled:
        return None
    yield "making the layers"
    return result, make_layers(result_layers(result))


def d_limits(result: PFMResult) -> tuple[float, float]:
    """Symmetric colour limits of the switching degree D (98th percentile of |D|)."""
    lim = float(np.nanpercentile(np.abs(result.table["D"]), 98)) or 1.0
    return (-lim, lim)


def result_layers(result: PFMResult) -> list[tuple[Any, dict, str]]:
    """Layer tuples for a PFM result: the Canny walls (an Image, 0/1, drawn additively in
    yellow) and the windows (points at t, y, x with every table column as features,
    coloured by ``D``, its colour key in the metadata)."""
    tab = result.table
    pts = np.asfortranarray(tab[["frame", "y", "x"]].to_numpy(dtype=float))  # see atoms_points_data
    lim = d_limits(result)
    key = ColourKey(
        "D", "continuous", "switching degree", "coolwarm", lim, n_missing=int(tab["D"].isna().sum())
    )
    # the same axes and units as the phase movie's layer (no "inconsistent units" warning)
    axes = {"units": ("dimensionless", "pixel", "pixel"), "axis_labels": ("t", "y", "x")}
    return [
        (
            result.walls.astype(np.uint8),
            {
                "name": "PFM walls (Canny)",
                "opacity": 0.6,
                "colormap": "yellow",
                "contrast_limits": (0, 1),
                "blending": "additive",
                **axes,
                "metadata": {"atomlens": {"kind": "walls"}},
            },
            "image",
        ),
        (
            pts,
            {
                "name": "PFM windows",
                "features": tab.reset_index(drop=True),
                "face_color": "D",
                "face_colormap": "coolwarm",
                "face_contrast_limits": lim,
                "size": 3,
                **axes,
                "metadata": {"atomlens": {"kind": "pfm_windows", "colour_key": key.to_dict()}},
            },
            "points",
        ),
    ]


class PFMWidget(ViewerWidget):
    """Pick a phase movie, set window / wall pixels / delay / epochs, run; Stop."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.image = self.layer_picker("phase movie", "image", lambda lay: lay.ndim in (2, 3))
        self.window = SpinBox(label="window (px)", value=40, min=8, max=256)
        self.per_frame = SpinBox(label="wall pixels / frame", value=80, min=1, max=10000)
        self.delta = SpinBox(label="time delay (frames)", value=1, min=0, max=100)
        self.sigma = FloatSpinBox(label="Canny sigma", value=2.0, min=0.1, max=20.0)
        self.epochs = SpinBox(label="epochs", value=30, min=1, max=10000)
        self.run_button = PushButton(text="Run")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.stop_button.tooltip = (
            "before training: end the run; while training: end training now and keep the "
            "epochs done"
        )
        self.progress = ProgressBar(label="epochs", min=0, max=1, value=0)
        self.status = status_label()
        self.clock = status_label()
        self.extend([self.image, self.window, self.per_frame, self.delta, self.sigma, self.epochs,
                     Container(widgets=[self.run_button, self.stop_button], layout="horizontal",
                               labels=False),
                     self.progress, self.status, self.clock])  # fmt: skip
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.worker: Any = None
        self.result: PFMResult | None = None
        self._stop = threading.Event()
        self._t0 = 0.0
        self.results_shown = False  # the last run's layers are in the viewer
        from qtpy.QtCore import QTimer

        self._timer = QTimer(self.native)
        self._timer.setInterval(1000)
        self._timer.timeout.connect(self._tick)

    def recipe(self) -> Any:
        """The :class:`~atomlens.workflows.pfm.PFMRecipe` the dock's fields say."""
        from atomlens.workflows.pfm import PFMRecipe

        return PFMRecipe(window=self.window.value, n_per_frame=self.per_frame.value,
                         delta=self.delta.value, canny_sigma=self.sigma.value,
                         epochs=self.epochs.value).validate()  # fmt: skip

    def run(self) -> Any:
        """Start the workflow on a worker thread; returns the worker (None on bad input)."""
        layer = self.image.value
        try:
            if layer is None:
                raise ValueError(
                    "no phase movie: open one (File > Open, or File > Open Sample > "
                    "AtomLens > Simulated PFM domain-wall movie)"
                )
            frames = 1 if layer.ndim == 2 else int(layer.data.shape[0])
            if self.delta.value > 0 and frames <= self.delta.value:
                raise ValueError(
                    f"'{layer.name}' has {frames} frame(s): set this dock's "
                    "'time delay (frames)' to 0 for single images"
                )
            recipe = self.recipe()
        except ValueError as exc:
            notify_error(exc, "PFM")
            return None
        self.run_button.enabled, self.stop_button.enabled = False, True
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self.results_shown = False
        self._timer.start()
        self.progress.max, self.progress.value = int(recipe.epochs), 0
        self.status.value = "starting"
        self.worker = start_generator(
            _job, np.asarray(layer.data, dtype=np.float32), recipe, self._stop,
            on_yield=self._progress, on_return=self._done, on_finish=self._finish,
            on_error=lambda exc: setattr(self.status, "value", "failed"),
            what="PFM workflow",
        )  # fmt: skip
        return self.worker

    def stop(self) -> None:
        """Before training: end the run. While training: end training after the current
        step; the result is made with the epochs done."""
        self._stop.set()
        self.status.value = "stopping..."

    def _tick(self) -> None:
        self.clock.value = f"{time.perf_counter() - self._t0:.0f} s elapsed"

    def _progress(self, msg: Any) -> None:
        from atomlens.workflows.events import Progress

        if isinstance(msg, Progress) and msg.total:
            self.progress.max, self.progress.value = int(msg.total), int(msg.done)
        if not self._stop.is_set():
            self.status.value = str(getattr(msg, "message", msg))

    def _done(self, outcome: tuple[PFMResult, list] | None) -> None:
        from atomlens._napari._workers import add_layers_in_turns
        from atomlens._napari.key_dock import ensure_key_dock

        if outcome is None:
            self.status.value = "stopped before training: no result"
            return
        result, layers = outcome
        self.result = result
        n_ep = result.config.epochs
        self.progress.max, self.progress.value = n_ep, min(int(result.epochs_done), n_ep)
        self.status.value = f"{len(result.table)} windows" + (
            f" (stopped: model of {result.epochs_done}/{n_ep} epochs)" if result.stopped else ""
        )

        def _shown(_layers: list) -> None:
            ensure_key_dock(self.viewer)
            self.results_shown = True

        add_layers_in_turns(self.viewer, layers, _shown)

    def _finish(self) -> None:
        self._timer.stop()
        self._tick()
        self.run_button.enabled, self.stop_button.enabled = True, False
