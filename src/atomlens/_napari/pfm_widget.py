"""Dock widget: the PFM domain-wall workflow on an image layer (a thin shell over
:func:`atomlens.pfm.workflow.run_pfm`)."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import FloatSpinBox, Label, PushButton, SpinBox

from atomlens._napari._base import ViewerWidget
from atomlens._napari._workers import start_generator

if TYPE_CHECKING:
    from atomlens.pfm.workflow import PFMResult


def _job(phase: np.ndarray, config: Any) -> Generator[str, None, PFMResult]:
    """Generator twin of :func:`run_pfm` for the worker: yields a status line, returns
    the result."""
    from atomlens.pfm.workflow import run_pfm

    yield "running the PFM workflow (walls, skip-rVAE, switching degree)"
    return run_pfm(phase, config)


def result_layers(result: PFMResult) -> list[tuple[Any, dict, str]]:
    """Layer tuples for a PFM result: the Canny walls (labels) and the windows (points
    at t, y, x with every table column as features, coloured by ``D``)."""
    tab = result.table
    pts = tab[["frame", "y", "x"]].to_numpy(dtype=float)
    lim = float(np.nanpercentile(np.abs(tab["D"]), 98)) or 1.0
    return [
        (result.walls.astype(np.uint8), {"name": "PFM walls (Canny)", "opacity": 0.6}, "labels"),
        (
            pts,
            {
                "name": "PFM windows",
                "features": tab.reset_index(drop=True),
                "face_color": "D",
                "face_colormap": "coolwarm",
                "face_contrast_limits": (-lim, lim),
                "size": 3,
            },
            "points",
        ),
    ]


class PFMWidget(ViewerWidget):
    """Pick a phase movie, set window / wall pixels / delay / epochs, run."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.image = self.layer_picker("phase movie", "image")
        self.window = SpinBox(label="window (px)", value=40, min=8, max=256)
        self.per_frame = SpinBox(label="wall pixels / frame", value=80, min=1, max=10000)
        self.delta = SpinBox(label="time delay (frames)", value=1, min=0, max=100)
        self.sigma = FloatSpinBox(label="Canny sigma", value=2.0, min=0.1, max=20.0)
        self.epochs = SpinBox(label="epochs", value=30, min=1, max=10000)
        self.run_button = PushButton(text="Run")
        self.status = Label(value="")
        self.extend([self.image, self.window, self.per_frame, self.delta, self.sigma,
                     self.epochs, self.run_button, self.status])  # fmt: skip
        self.run_button.changed.connect(self.run)
        self.worker = None
        self.result: PFMResult | None = None

    def config(self) -> Any:
        from atomlens.pfm.workflow import PFMConfig

        return PFMConfig(window=self.window.value, n_per_frame=self.per_frame.value,
                         delta=self.delta.value, canny_sigma=self.sigma.value,
                         epochs=self.epochs.value)  # fmt: skip

    def run(self) -> None:
        layer = self.image.value
        if layer is None:
            self.status.value = "add a phase movie first"
            return
        self.run_button.enabled = False
        self.worker = start_generator(
            _job, np.asarray(layer.data, dtype=np.float32), self.config(),
            on_yield=self._progress, on_return=self._done, on_finish=self._finish,
            what="PFM workflow",
        )  # fmt: skip

    def _progress(self, msg: str) -> None:
        self.status.value = msg

    def _done(self, result: PFMResult) -> None:
        from atomlens._napari._layers import replace_or_add

        self.result = result
        for lt in result_layers(result):
            replace_or_add(self.viewer, lt)
        self.status.value = f"{len(result.table)} windows"

    def _finish(self) -> None:
        self.run_button.enabled = True
