"""The "Latent colouring" dock: encode every window, colour atoms by any feature, animate.

Encoding runs :func:`atomlens.latent.encode_atoms` on a worker thread and writes the
latents (``angle, dx, dy, z1, z2...``) into the atoms layer's features. "Colour by" maps
any feature with :func:`atomlens.viz.colours.colour_spec` (species: fixed colours; angle:
'twilight' over a whole period; others: limits fixed over all frames, so colours compare
over time). "Export GIF" steps the time slider and saves viewer screenshots. "Plots" docks
the decoded manifold, the latent scatter (with lasso) and the per-frame distribution.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton

from atomlens._napari._base import ViewerWidget, status_label
from atomlens._napari._layers import (
    apply_colour,
    atomlens_kind,
    layer_atoms,
    merge_features,
    set_frame,
    time_axis,
)
from atomlens._napari._workers import notify_error, start_generator
from atomlens._napari.state import SessionModel, session_for
from atomlens.viz.animation import write_gif
from atomlens.viz.colours import colour_spec

if TYPE_CHECKING:
    from napari.layers import Points


def encoding_job(model: Any, data: np.ndarray, atoms: Any) -> Generator:
    """Encode every atom's window (headless :func:`atomlens.latent.encode_atoms`, with the
    model's window size) on a worker; returns only the latent columns (NaN for atoms
    whose window crosses the frame edge)."""
    from atomlens.latent import encode_atoms

    yield "encoding"
    table = encode_atoms(model, data, atoms)
    return table[list(model.latent_names())]


def _image_layers(layer: Any) -> bool:
    return atomlens_kind(layer) != "subimages" and layer.ndim in (2, 3) and not layer.rgb


class LatentWidget(ViewerWidget):
    """Encode atoms with the session's model; colour by a feature; export an animation."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.session = session_for(viewer)
        self.atoms = self.layer_picker("atoms", "points")
        self.image = self.layer_picker("image / map", "image", _image_layers)
        self.model_label = Label(value="model: none (train or load one)")
        self.encode_button = PushButton(text="Encode atoms", enabled=False)
        self.colour_by = ComboBox(label="colour by", choices=self._feature_choices)
        self.gif_path = FileEdit(label="GIF", mode="w", filter="*.gif", value="atoms.gif")
        self.gif_button = PushButton(text="Export GIF")
        self.plots_button = PushButton(text="Show plots")
        self.status = status_label()
        row = Container(widgets=[self.gif_button, self.plots_button], layout="horizontal", labels=False)
        self.extend([self.atoms, self.image, self.model_label, self.encode_button, self.colour_by,
                     self.gif_path, row, self.status])
        self.encode_button.changed.connect(self.encode)
        self.colour_by.changed.connect(self._on_colour_by)
        self.gif_button.changed.connect(lambda: self.export_gif(self.gif_path.value))
        self.plots_button.changed.connect(self.show_plots)
        self.atoms.changed.connect(self._watch_layer)
        self.session.model_changed.connect(self._on_model)
        self._on_model(self.session.model)
        self._watched: Points | None = None
        self._watch_layer()
        self.worker: Any = None
        self.plots: dict[str, Any] = {}

    # -- model ---------------------------------------------------------------------------
    def _on_model(self, current: SessionModel | None) -> None:
        self.encode_button.enabled = current is not None
        if current is not None:
            self.model_label.value = f"model: {current.name or type(current.model).__name__}" + (
                f", {current.window} px windows" if current.window else ""
            )

    # -- encode --------------------------------------------------------------------------
    def encode(self) -> Any:
        """Encode every atom of the chosen layer on a worker thread; returns the worker."""
        points, image, current = self.atoms.value, self.image.value, self.session.model
        if points is None or image is None or current is None:
            notify_error(ValueError("need an atoms layer, an image layer and a trained model"), "Encode")
            return None
        data = np.asarray(image.data)
        data = data[None] if data.ndim == 2 else data
        self.status.value = "encoding..."
        self.encode_button.enabled = False
        self.worker = start_generator(
            encoding_job, current.model, data, layer_atoms(points),
            on_return=lambda latents: self._write_latents(points, latents),
            on_error=lambda exc: setattr(self.status, "value", "encoding failed"),
            on_finish=lambda: setattr(self.encode_button, "enabled", self.session.model is not None),
            what="Encode",
        )
        return self.worker

    def _write_latents(self, points: Points, latents: Any) -> None:
        table = latents.reset_index(drop=True)
        keep = list(table.columns)
        merge_features(points, table)
        self.reset_choices()
        first = next((c for c in ("angle", "z1") if c in keep), keep[0] if keep else None)
        n_ok = int(table.notna().all(axis=1).sum())
        self.status.value = f"latents {', '.join(keep)} on {n_ok}/{len(table)} atoms"
        if first is not None:
            self.colour_by.value = first

    # -- colour --------------------------------------------------------------------------
    def _feature_choices(self, _widget: Any = None) -> list[str]:
        points = self.atoms.value if hasattr(self, "atoms") else None
        return [] if points is None else [str(c) for c in points.features.columns]

    def _watch_layer(self, *_: Any) -> None:
        if self._watched is not None:
            self._watched.events.features.disconnect(self._refresh_features)
        self._watched = self.atoms.value
        if self._watched is not None:
            self._watched.events.features.connect(self._refresh_features)
        self._refresh_features()

    def _refresh_features(self, *_: Any) -> None:
        self.colour_by.reset_choices()

    def _on_colour_by(self, column: str | None) -> None:
        if column:
            self.colour(column)

    def colour(self, column: str) -> None:
        """Colour the atoms layer by ``column`` (limits fixed over all frames)."""
        points = self.atoms.value
        if points is None or column not in points.features:
            return
        apply_colour(points, colour_spec(column, points.features[column]))

    # -- animation -----------------------------------------------------------------------
    def export_gif(self, path: str | Path, fps: float = 5.0, max_side: int = 640) -> Path | None:
        """Step the time slider over every frame, screenshot the canvas, write a GIF."""
        points = self.atoms.value
        if points is None or points.ndim < 3:
            notify_error(ValueError("need an atoms layer with a time axis"), "Export GIF")
            return None
        n_frames = int(np.max(points.data[:, 0])) + 1 if len(points.data) else 1
        axis = time_axis(self.viewer, points)
        before = self.viewer.dims.current_step[axis]
        frames = []
        try:
            for t in range(n_frames):
                set_frame(self.viewer, points, t)
                frames.append(self.viewer.screenshot(canvas_only=True, flash=False))
            out = write_gif(frames, path, fps=fps, max_side=max_side)
        except (OSError, ValueError) as exc:
            notify_error(exc, "Export GIF")
            return None
        finally:
            self.viewer.dims.set_current_step(axis, before)
        self.status.value = f"wrote {Path(out).name} ({n_frames} frames)"
        return out

    # -- plots ---------------------------------------------------------------------------
    def show_plots(self) -> dict[str, Any]:
        """Dock the manifold, the latent scatter and the per-frame distribution."""
        from atomlens._napari.plots import FrameDistribution, LatentScatter, ManifoldPlot

        points = self.atoms.value
        if points is None:
            notify_error(ValueError("need an atoms layer"), "Plots")
            return {}
        feats = points.features.columns
        x, y = ("z1", "z2") if {"z1", "z2"} <= set(feats) else ("angle", "z1")
        column = "angle" if "angle" in feats else ("z1" if "z1" in feats else "")
        self.plots["scatter"] = LatentScatter(points, x, y)
        self.plots["distribution"] = FrameDistribution(self.viewer, points, column or feats[-1])
        self.viewer.window.add_dock_widget(self.plots["scatter"], name="latent scatter", area="right")
        # frames run along x, like the time slider: the heat map sits under the canvas
        self.viewer.window.add_dock_widget(self.plots["distribution"], name="per-frame distribution",
                                           area="bottom")
        current = self.session.model
        if current is not None:
            from atomlens.latent import decode_manifold

            names = [c for c in current.model.latent_names() if c in feats]
            try:
                image = decode_manifold(current.model, 8, latents=points.features[names] if names else None)
            except (ValueError, NotImplementedError) as exc:  # e.g. PCA/GMM: no decoder grid
                self.status.value = f"no manifold: {exc}"
            else:
                self.plots["manifold"] = ManifoldPlot()
                self.plots["manifold"].show_image(np.asarray(image))
                self.viewer.window.add_dock_widget(self.plots["manifold"], name="latent manifold",
                                                   area="right")
        return self.plots
