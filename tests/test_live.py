"""Live watch: folder follower, online tracking, append-only output, resume, events."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atomlens.chem import link_atoms
from atomlens.errors import InputFileError, OutputError
from atomlens.io.writers import write_tiff
from atomlens.live.evaluate import match_events, truth_hops
from atomlens.live.events import (
    EventParams,
    FrameTables,
    frame_events,
    movie_events,
)
from atomlens.live.follower import FolderFollower
from atomlens.live.output import LiveOutput, read_state, read_table
from atomlens.live.tracker import OnlineLinker
from atomlens.simulate import simulate_movie


@pytest.fixture(scope="module")
def hopping_movie():
    return simulate_movie(10, size=256, seed=4, n_si3=4, si_hop_prob=0.5, drift_px_per_frame=0.6)


def drop_file(folder: Path, name: str, image: np.ndarray, pixel_size: float = 0.1) -> Path:
    """Write-then-rename, as a microscope writer should."""
    tmp = folder / f".{name}.tmp"
    write_tiff(tmp, image, pixel_size)
    os.replace(tmp, folder / name)
    return folder / name


# ---------------------------------------------------------------- tracking
def test_online_linker_gives_the_tracks_of_link_atoms(hopping_movie):
    a = hopping_movie.atoms[["frame", "y", "x", "cls", "atom_id"]]
    a = a[np.random.default_rng(0).random(len(a)) > 0.05].reset_index(drop=True)  # gaps
    disp = {"*": 1.0, "Si": 4.0}
    batch = link_atoms(a, 0.1, disp, max_gap=2)
    linker = OnlineLinker(0.1, disp, max_gap=2)
    online = np.full(len(a), -1)
    for f in range(hopping_movie.n_frames):
        rows = np.flatnonzero(a["frame"].to_numpy() == f)
        online[rows] = linker.add(a.iloc[rows], f)
    assert (online == batch).all()
    # restoring from the written rows continues the same tracks
    cut = 6
    rest = OnlineLinker(0.1, disp, max_gap=2)
    recent = a.assign(track_id=online)[(a["frame"] >= cut - 3) & (a["frame"] < cut)]
    rest.restore(recent, int(online[a["frame"].to_numpy() < cut].max()) + 1)
    for f in range(cut, hopping_movie.n_frames):
        rows = np.flatnonzero(a["frame"].to_numpy() == f)
        assert (rest.add(a.iloc[rows], f) == online[rows]).all()


# ---------------------------------------------------------------- follower
def test_follower_reads_only_complete_files_and_growing_stacks(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    img = rng.random((3, 32, 32)).astype(np.float32)
    fol = FolderFollower(tmp_path, settle_s=0.3)
    drop_file(tmp_path, "b_10.tif", img[0])
    drop_file(tmp_path, "b_2.tif", img[1])
    (tmp_path / ".hidden.tif").write_bytes(b"x")
    (tmp_path / "c.tif.part").write_bytes(b"x")
    assert fol.poll() == []  # just written: not settled yet
    time.sleep(0.35)
    got = fol.poll()
    assert [a.key for a in got] == ["b_2.tif#0", "b_10.tif#0"]  # natural order
    assert np.allclose(got[0].image, img[1]) and got[0].pixel_size == pytest.approx(0.1)
    assert fol.poll() == []  # never twice
    # a stack that grows: each settled size yields its new frames only
    stack = tmp_path / "movie.tif"
    tifffile.imwrite(stack, img[:1])
    os.utime(stack, (time.time() - 1, time.time() - 1))
    assert [a.key for a in fol.poll()] == ["movie.tif#0"]
    tifffile.imwrite(stack, img[:3])  # the acquisition rewrote it with two more frames
    os.utime(stack, (time.time() - 1, time.time() - 1))
    assert [a.key for a in fol.poll()] == ["movie.tif#1", "movie.tif#2"]
    # a truncated file is retried, not fatal
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY")
    os.utime(tmp_path / "broken.npy", (time.time() - 1, time.time() - 1))
    assert fol.poll() == [] and "broken.npy" in fol.errors
    with pytest.raises(InputFileError, match="does not exist"):
        FolderFollower(tmp_path / "nope")


# ---------------------------------------------------------------- output
def test_output_commits_whole_rows_and_cuts_uncommitted_bytes(tmp_path):
    out = LiveOutput(tmp_path)
    out.open({"pixel_size": 0.1})
    atoms = pd.DataFrame({"frame": [0, 0], "atom_id": [0, 1], "y": [1.5, 2.5], "x": [3.0, 4.0]})
    row = {"frame": 0, "source": "a.tif#0", "status": "processed"}
    out.commit("a.tif#0", {"atoms": atoms}, row, {"atom": 2}, None)
    committed = (tmp_path / "atoms.csv").stat().st_size
    # a watch killed in the middle of the next frame's write: half a row on disk
    with open(tmp_path / "atoms.csv", "ab") as fh:
        fh.write(b"1,2,7.5,")
    assert len(read_table(tmp_path, "atoms")) == 2  # readers see committed rows only
    again = LiveOutput(tmp_path)
    state = again.open({"pixel_size": 0.1})
    assert (tmp_path / "atoms.csv").stat().st_size == committed
    assert state["processed"] == ["a.tif#0"] and again.seen() == {"a.tif#0"}
    assert read_state(tmp_path)["next_ids"] == {"atom": 2}
    # a folder with tables but no state is not silently appended to
    other = tmp_path / "other"
    other.mkdir()
    (other / "atoms.csv").write_text("frame\n0\n")
    with pytest.raises(OutputError, match="empty --out"):
        LiveOutput(other).open({})


# ---------------------------------------------------------------- events
def _tables(movie, frame: int, track: np.ndarray, drift) -> FrameTables:
    a = movie.atoms
    sel = a["frame"].to_numpy() == frame
    atoms = a[sel].reset_index(drop=True).assign(track_id=track[sel])
    return FrameTables(frame, atoms, drift=tuple(drift[frame]))


def test_si_hops_from_tracks_match_the_simulator(hopping_movie):
    from atomlens.chem.registration import estimate_drift

    m = hopping_movie
    drift = estimate_drift(m.frames)
    reg = m.atoms.assign(
        y_reg=m.atoms["y"] - drift[m.atoms["frame"], 0],
        x_reg=m.atoms["x"] - drift[m.atoms["frame"], 1],
    )
    track = link_atoms(reg, m.pixel_size, {"*": 1.0, "Si": 4.0}, max_gap=2)
    found = pd.concat(
        [
            frame_events(_tables(m, t - 1, track, drift), _tables(m, t, track, drift), m.pixel_size)
            for t in range(1, m.n_frames)
        ]
    )
    hops = found[found["type"] == "si_hop"]
    truth = truth_hops(m.atoms, m.pixel_size)
    assert len(truth) >= 8  # the movie really has hops
    score = match_events(hops, truth, radius_px=0.7 / m.pixel_size)
    assert score["recall"] >= 0.95 and score["precision"] >= 0.9, score
    # the same on the whole movie at once (atoms.attrs drift)
    whole = movie_events(reg.assign(track_id=track), m.pixel_size, drift=drift)
    assert len(whole[whole["type"] == "si_hop"]) == len(hops)


def test_coordination_defect_and_ring_events():
    px = 0.1
    a0 = pd.DataFrame(
        {
            "atom_id": [0, 1],
            "y": [10.0, 50.0],
            "x": [10.0, 50.0],
            "cls": ["Si", "C"],
            "track_id": [0, 1],
            "coordination": [3, 3],
            "border": [False, False],
        }
    )
    a1 = a0.assign(atom_id=[2, 3], coordination=[4, 3])
    d0 = pd.DataFrame(
        {"y": [30.0], "x": [30.0], "type": ["vacancy"], "n_atoms": [9], "atoms": [(0, 1)]}
    )
    d1 = pd.DataFrame(
        {
            "y": [30.4, 90.0],
            "x": [30.0, 90.0],
            "type": ["divacancy", "hole"],
            "n_atoms": [14, 20],
            "atoms": [(0,), (1,)],
        }
    )
    r0 = pd.DataFrame({"y": [70.0, 20.0], "x": [70.0, 80.0], "size": [6, 6]})
    r1 = pd.DataFrame({"y": [71.0, 20.0], "x": [70.0, 80.0], "size": [7, 6], "atoms": [(0, 1), ()]})
    # the whole field drifted by (+1, 0) px: the ring at (71, 70) is the ring at (70, 70)
    ev = frame_events(
        FrameTables(0, a0, d0, r0, (0.0, 0.0)),
        FrameTables(1, a1, d1, r1, (1.0, 0.0)),
        px,
        EventParams(),
    )
    kinds = dict(zip(ev["type"], ev["detail"]))
    assert kinds["coordination_change"] == "3->4"
    assert kinds["vacancy_grow"] == "9->14 atoms"
    assert kinds["hole_new"].startswith("hole")
    assert kinds["ring_change"] == "6->7"
    assert "si_hop" not in kinds  # Si stayed (1 px of drift is not a hop)
    assert ev.loc[ev["type"] == "ring_change", "atom_ids"].item() == "2 3"
    assert frame_events(None, FrameTables(0, a0), px).empty
