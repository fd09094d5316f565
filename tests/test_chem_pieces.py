"""Chemistry in pieces (the Defects dock's worker and Stop): joined pieces equal one
:func:`atomlens.chem.analyze` call, and a stopped run keeps exact chemistry for the
frames done."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from atomlens.chem import analyze
from atomlens.simulate import sample_movie
from atomlens.workflows.chemistry import analyze_events
from atomlens.workflows.events import Progress, drain

_COLUMNS = ["coordination", "ring5", "ring6", "ring7", "ring8", "edge", "defect_type", "track_id"]


@pytest.fixture(scope="module")
def movie():
    return sample_movie()


def _defect_sets(result) -> list[tuple]:
    """Defects as (frame, type, sorted member positions), id-free."""
    return sorted(
        (int(r.frame), str(r.type), tuple(sorted(int(i) for i in r.atoms)))
        for r in result.defects.itertuples()
    )


def _bond_set(result) -> set[tuple[int, int]]:
    return {tuple(sorted(ab)) for ab in result.bonds[["a", "b"]].to_numpy(int)}


def test_pieces_equal_one_call_in_the_input_order(movie) -> None:
    # a shuffled table: rows must come back in the input's order
    atoms = movie.atoms.sample(frac=1.0, random_state=3).reset_index(drop=True)
    whole = analyze(atoms, movie.pixel_size)
    events: list = []
    run = drain(analyze_events(atoms, movie.pixel_size, chunk_frames=3), events.append)
    assert not run.stopped and run.frames == list(range(movie.frames.shape[0]))
    assert [e.done for e in events] == [3, 6, 9, 10] and all(
        isinstance(e, Progress) for e in events
    )
    got = run.result
    pd.testing.assert_frame_equal(got.atoms[_COLUMNS], whole.atoms[_COLUMNS])
    assert _bond_set(got) == _bond_set(whole)
    assert _defect_sets(got) == _defect_sets(whole)
    assert len(got.rings) == len(whole.rings) and got.rings["ring_id"].is_unique
    assert got.defects["defect_id"].is_unique
    # per-atom defect ids point at the defect holding the atom
    ids = got.atoms["defect_id"].to_numpy()
    for row in got.defects.itertuples():
        assert (ids[list(row.atoms)] >= 0).all()
    dop = got.dopants
    assert (got.atoms["cls"].to_numpy()[dop["atom"].to_numpy(int)] != "C").all()
    # against the simulator's truth: the defects found in both cover the true Si atoms
    si = atoms["cls"].astype(str).to_numpy() == "Si"
    assert (got.atoms["defect_id"].to_numpy()[si] >= 0).all()


def test_stop_keeps_exact_chemistry_of_the_frames_done(movie) -> None:
    atoms = movie.atoms
    stop = threading.Event()
    gen = analyze_events(atoms, movie.pixel_size, chunk_frames=2, stop=stop)

    def _stop_after_two(ev):
        if ev.done >= 4:
            stop.set()

    run = drain(gen, _stop_after_two)
    assert run.stopped and run.frames == [0, 1, 2, 3]
    done = atoms[atoms["frame"].isin(run.frames)].reset_index(drop=True)
    np.testing.assert_array_equal(run.rows, np.flatnonzero(atoms["frame"].isin(run.frames)))
    alone = analyze(done, movie.pixel_size)
    pd.testing.assert_frame_equal(run.result.atoms[_COLUMNS], alone.atoms[_COLUMNS])
    assert _defect_sets(run.result) == _defect_sets(alone)

    stop_now = threading.Event()
    stop_now.set()
    empty = drain(analyze_events(atoms, movie.pixel_size, stop=stop_now))
    assert empty.result is None and empty.stopped and empty.frames == []
    with pytest.raises(ValueError, match="chunk_frames"):
        drain(analyze_events(atoms, movie.pixel_size, chunk_frames=0))
