"""``atomlens watch`` end to end: tables, queue policy, kill -9 and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atomlens.io.writers import write_tiff
from atomlens.live.output import read_state, read_table
from atomlens.live.watch import FrameDone, FrameSkipped, WatchRecipe, run
from atomlens.simulate import simulate_movie
from atomlens.workflows.events import drain

N_FRAMES = 6


@pytest.fixture(scope="module")
def movie_folder(tmp_path_factory) -> Path:
    movie = simulate_movie(
        N_FRAMES,
        size=128,
        seed=3,
        n_si3=2,
        si_hop_prob=0.5,
        drift_px_per_frame=0.5,
        n_holes=0,
        n_vacancies=0,
        n_stone_wales=0,
    )
    folder = tmp_path_factory.mktemp("incoming")
    for t in range(N_FRAMES):
        tmp = folder / f".frame_{t}.tif.tmp"
        write_tiff(tmp, movie.frames[t], movie.pixel_size)
        os.replace(tmp, folder / f"frame_{t}.tif")
    old = time.time() - 5
    for p in folder.iterdir():
        os.utime(p, (old, old))
    return folder


@pytest.fixture(scope="module")
def reference(movie_folder, tmp_path_factory) -> Path:
    """One uninterrupted watch over the folder."""
    out = tmp_path_factory.mktemp("ref") / "out"
    events = []
    summary = drain(run(movie_folder, out, WatchRecipe(settle_s=0, idle_stop_s=0.5)), events.append)
    assert summary.processed == N_FRAMES and summary.stopped_by == "idle"
    assert [e.frame for e in events if isinstance(e, FrameDone)] == list(range(N_FRAMES))
    assert all(e.latency_s > 0 for e in events if isinstance(e, FrameDone))
    return out


def test_watch_writes_the_tables_of_atomlens_run(reference):
    atoms = read_table(reference, "atoms")
    assert {
        "frame",
        "y",
        "x",
        "cls",
        "prob",
        "atom_id",
        "coordination",
        "track_id",
        "y_reg",
        "x_reg",
    } <= set(atoms)
    assert sorted(atoms["frame"].unique()) == list(range(N_FRAMES))
    assert (atoms["atom_id"].to_numpy() == np.arange(len(atoms))).all()  # atom_id = row
    bonds = read_table(reference, "bonds")
    assert bonds["a"].max() < len(atoms)
    drift = read_table(reference, "drift")
    assert len(drift) == N_FRAMES and np.hypot(drift["dy_px"], drift["dx_px"]).iloc[-1] > 1.0
    frames = read_table(reference, "frames")
    assert (frames["status"] == "processed").all() and frames["source"].is_unique
    assert (reference / "atoms.parquet").exists() and (reference / "events.csv").exists()
    # every row is whole: the committed length is the file length after a clean stop
    state = read_state(reference)
    for name, n in state["bytes"].items():
        assert (reference / f"{name}.csv").stat().st_size == n


def test_newest_policy_drops_the_older_waiting_frames(movie_folder, tmp_path):
    out = tmp_path / "out"
    events = []
    drain(
        run(movie_folder, out, WatchRecipe(policy="newest", settle_s=0, idle_stop_s=0.3)),
        events.append,
    )
    skipped = [e.source for e in events if isinstance(e, FrameSkipped)]
    done = [e.source for e in events if isinstance(e, FrameDone)]
    assert done == [f"frame_{N_FRAMES - 1}.tif#0"] and len(skipped) == N_FRAMES - 1
    frames = read_table(out, "frames")
    assert list(frames["status"]) == ["skipped"] * (N_FRAMES - 1) + ["processed"]
    # a restart redoes nothing
    again = drain(run(movie_folder, out, WatchRecipe(settle_s=0, idle_stop_s=0.3)))
    assert again.processed == 0 and again.resumed_from == N_FRAMES


def _watch_cmd(folder: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "atomlens",
        "watch",
        str(folder),
        "--out",
        str(out),
        "--settle",
        "0",
        "--idle-stop",
        "1",
        "--quiet",
    ]


@pytest.mark.slow
def test_kill_9_then_restart_loses_no_frame_and_repeats_no_row(movie_folder, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the reference: one uninterrupted watch in the same conditions (one thread: the
    # detector's sub-pixel fits differ in the last digits between thread counts)
    reference = tmp_path / "reference"
    res = subprocess.run(
        _watch_cmd(movie_folder, reference), env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-800:]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _watch_cmd(movie_folder, out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    while time.time() < deadline:
        state = read_state(out) if (out / "watch_state.json").exists() else None
        if state and len(state["processed"]) >= 2:
            break
        if proc.poll() is not None:
            pytest.fail(f"watch ended early: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    done_before = len(read_state(out)["processed"])
    assert 2 <= done_before < N_FRAMES
    res = subprocess.run(
        _watch_cmd(movie_folder, out), env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-800:]
    frames = read_table(out, "frames")
    assert list(frames["frame"]) == list(range(N_FRAMES))
    assert sorted(frames["source"]) == sorted(read_table(reference, "frames")["source"])
    got, ref = read_table(out, "atoms"), read_table(reference, "atoms")
    assert len(got) == len(ref) and got["atom_id"].is_unique
    cols = ["frame", "atom_id", "y", "x", "track_id", "y_reg", "x_reg"]
    pd.testing.assert_frame_equal(got[cols], ref[cols], check_exact=False, atol=1e-9)
    for name in ("bonds", "rings", "defects", "events", "drift"):
        assert len(read_table(out, name)) == len(read_table(reference, name)), name
    # the files hold exactly the committed rows
    for name, n in read_state(out)["bytes"].items():
        assert (out / f"{name}.csv").stat().st_size == n


def test_watch_encodes_atoms_with_a_latent_model(movie_folder, tmp_path):
    from atomlens.models.classic import PCAModel

    model = PCAModel(window=16, n_components=2)
    model.fit(np.random.default_rng(0).random((64, 16, 16)).astype(np.float32))
    path = model.save(tmp_path / "pca.pt")
    out = tmp_path / "out"
    drain(run(movie_folder, out, WatchRecipe(settle_s=0, max_frames=2, latent_model=str(path))))
    atoms = read_table(out, "atoms")
    assert {"pc1", "pc2"} <= set(atoms) and atoms["frame"].nunique() == 2
    assert atoms["pc1"].notna().mean() > 0.5  # atoms whose window fits in the frame
    frames = read_table(out, "frames")
    assert (frames["t_encode"] > 0).all()
