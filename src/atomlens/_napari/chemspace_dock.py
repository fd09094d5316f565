"""Dock widget: select an atom in a Points layer (with latent features) and see its
latent trajectory over the frames. Thin: the rows come from
:func:`atomlens.latent.trajectory.latent_trajectory`; this only draws."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Label, PushButton
from matplotlib.figure import Figure

from atomlens._napari._base import ViewerWidget
from atomlens._napari.mpl_canvas import BackgroundCanvas
from atomlens.latent.trajectory import TrajectoryError, latent_trajectory

if TYPE_CHECKING:
    import pandas as pd


def _has_latents(layer: Any) -> bool:
    cols = set(getattr(layer, "features", {}).keys()) if hasattr(layer, "features") else set()
    return {"z1", "z2"} <= cols


class ChemSpaceDock(ViewerWidget):
    """Latent trajectory of the selected atom (track column: ``track_id`` or ``atom_id``)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.points = self.layer_picker("atoms", "points", accept=_has_latents)
        self.track_col = ComboBox(label="track column", choices=["track_id", "atom_id"])
        self.show_button = PushButton(text="Show trajectory of selected atom")
        self.status = Label(value="select one atom, then press the button")
        self.figure = Figure(figsize=(4, 4))
        self.figure.subplots_adjust(left=0.16, right=0.96, bottom=0.14, top=0.9)  # no tight_layout
        self.canvas = BackgroundCanvas(self.figure)  # drawn off the main thread
        self.extend([self.points, self.track_col, self.show_button, self.status])
        self.native.layout().addWidget(self.canvas)
        self.show_button.changed.connect(self.show_selected)
        self.trajectory: pd.DataFrame | None = None

    def show_selected(self) -> None:
        layer = self.points.value
        if layer is None or not layer.selected_data:
            self.status.value = (
                "pick a layer with z1, z2 in this dock's 'atoms' field (Latent "
                "colouring: Encode atoms), then select one atom"
            )
            return
        idx = sorted(layer.selected_data)[0]
        feats = layer.features
        col = self.track_col.value
        if col not in feats.columns:
            self.status.value = (
                f"the layer has no '{col}' feature: choose another 'track column' "
                "or track the atoms (Defects: Run chemistry)"
            )
            return
        table = feats.assign(frame=np.asarray(layer.data)[:, 0].round().astype(int)) \
            if "frame" not in feats.columns else feats  # fmt: skip
        try:
            traj = latent_trajectory(table, int(feats[col].iloc[idx]), col)
        except TrajectoryError as exc:
            self.status.value = str(exc)
            return
        self.trajectory = traj
        self.draw(traj)
        self.status.value = f"{col} {int(feats[col].iloc[idx])}: {len(traj)} frames"

    def draw(self, traj: pd.DataFrame) -> None:
        """Draw ``traj`` (columns ``z1, z2, frame``) over the layer's latent cloud; the
        arrays are read here, the figure is built and rendered on the canvas's helper
        thread (building it took ~20-40 ms of main thread)."""
        feats = self.points.value.features if self.points.value is not None else None
        cloud = None
        if feats is not None:  # at most 5,000 background points: the draw stays quick
            step = max(1, len(feats) // 5000)
            cloud = (feats["z1"].to_numpy()[::step], feats["z2"].to_numpy()[::step])
        z = traj[["z1", "z2"]].to_numpy(dtype=float)
        frames = traj["frame"].to_numpy()
        self.canvas.draw_idle(prepare=lambda: self._build(cloud, z, frames))

    def _build(self, cloud: tuple | None, z: np.ndarray, frames: np.ndarray) -> None:
        """The trajectory figure: ``cloud`` (z1, z2 of all atoms) in grey, the track
        ``z`` (n, 2) coloured by ``frames`` (n,), at most ~12 frame labels."""
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        if cloud is not None:
            ax.scatter(cloud[0], cloud[1], s=1, c="0.7", alpha=0.4)
        ax.plot(z[:, 0], z[:, 1], "-", color="k", lw=1)
        ax.scatter(z[:, 0], z[:, 1], c=frames, cmap="plasma", s=20, zorder=3)
        step = max(1, len(z) // 12)  # text layout is the slow part
        for (x, y), f in list(zip(z, frames))[::step]:
            ax.annotate(str(int(f)), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="z1", ylabel="z2", title="latent trajectory")
