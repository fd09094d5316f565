"""Latent trajectories of tracked atoms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.latent.chemspace import chemical_space_map
from atomlens.latent.trajectory import (
    TrajectoryError,
    latent_trajectory,
    longest_track,
    pick_frames,
    plot_trajectory,
    trajectory_neighbourhoods,
)
from tests.test_chemspace import L, TwoPhaseDecoder


def _table() -> pd.DataFrame:
    rows = []
    for f in range(8):
        # track 1 (Si): walks from z1 = -2 to +2, crossing into the defect region at frame 4
        rows.append(dict(frame=f, track_id=1, cls="Si", y=10.0, x=10.0, z1=-2 + 4 * f / 7, z2=0.0))
        if f < 3:  # track 2: short-lived carbon
            rows.append(dict(frame=f, track_id=2, cls="C", y=5.0, x=5.0, z1=0.5, z2=1.0))
    rows.append(dict(frame=0, track_id=3, cls="Si", y=1.0, x=1.0, z1=0.0, z2=0.0))
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # shuffled rows


def test_trajectory_rows_and_steps() -> None:
    tab = _table()
    assert longest_track(tab) == 1
    assert longest_track(tab, cls=None) == 1
    traj = latent_trajectory(tab, 1)
    assert list(traj["frame"]) == list(range(8))
    assert np.isnan(traj["step"].iloc[0])
    assert traj["step"].iloc[1:].to_numpy() == pytest.approx(4 / 7)
    with pytest.raises(TrajectoryError, match="no atom"):
        latent_trajectory(tab, 99)
    with pytest.raises(TrajectoryError, match="track"):
        longest_track(tab.drop(columns="track_id"))


def test_trajectory_over_chemical_space_map(tmp_path) -> None:
    dec = TwoPhaseDecoder()
    cmap = chemical_space_map(dec, L, grid=16, z_range=((-3, 3), (-3, 3)))
    traj = latent_trajectory(_table(), 1)
    labels = cmap.lookup(traj[["z1", "z2"]].to_numpy())[["ring5", "ring6", "ring7"]]
    frames = pick_frames(traj, 3, labels)
    # the first frame and the frame where the label changes from graphene to 5-7
    change = int(traj["frame"][np.flatnonzero(labels["ring7"].to_numpy() == 2)[0]])
    assert frames[0] == 0 and change in frames
    imgs = trajectory_neighbourhoods(dec, traj, frames)
    assert imgs.shape == (len(frames), 32, 32)
    fig = plot_trajectory(traj, cmap, dec, frames, tmp_path / "traj.png")
    assert len(fig.axes) >= 1 + len(frames)
    assert (tmp_path / "traj.png").stat().st_size > 0
    manifold = {"z1": cmap.z1[:4], "z2": cmap.z2[:4], "images": np.zeros((4, 4, 8, 8))}
    plot_trajectory(traj, manifold, path=tmp_path / "traj2.png")
    assert (tmp_path / "traj2.png").exists()


def test_chemspace_dock_draws_the_selected_atoms_track(make_napari_viewer) -> None:
    from atomlens._napari.chemspace_dock import ChemSpaceDock

    viewer = make_napari_viewer()
    tab = _table().reset_index(drop=True)
    layer = viewer.add_points(tab[["frame", "y", "x"]].to_numpy(float), features=tab, name="atoms")
    dock = ChemSpaceDock(viewer)
    assert dock.points.value is layer
    dock.show_selected()  # nothing selected: a hint, no trajectory
    assert dock.trajectory is None and "select" in dock.status.value
    layer.selected_data = {int(np.flatnonzero(tab["track_id"] == 1)[0])}
    dock.show_selected()
    assert dock.trajectory is not None and list(dock.trajectory["frame"]) == list(range(8))
    assert dock.canvas.wait_drawn()  # built and rendered off the main thread
    assert len(dock.figure.axes) == 1 and "8 frames" in dock.status.value
