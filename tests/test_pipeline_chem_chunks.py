"""Chemistry run per frame chunk (as Dask tasks do) equals chemistry on the whole table."""

from __future__ import annotations

import numpy as np
import pandas as pd

from atomlens.chem import analyze
from atomlens.pipeline.executor import frame_chunks
from atomlens.pipeline.tasks import chem_chunk
from atomlens.simulate import simulate_movie
from atomlens.workflows.chemistry import merge_chunks


def test_chunked_chemistry_matches_whole_movie():
    movie = simulate_movie(n_frames=5, size=200, pixel_size=0.1, seed=3)
    atoms = movie.atoms[["frame", "y", "x", "cls"]].reset_index(drop=True)
    whole = analyze(atoms, 0.1, track=False)
    chunks = [atoms[atoms["frame"].isin(c)] for c in frame_chunks(sorted(atoms.frame.unique()), 2)]
    merged, note = merge_chunks([chem_chunk(c, pixel_size=0.1) for c in chunks])
    assert note == ""  # graphene: nothing dropped
    cols = ["frame", "coordination", "ring5", "ring6", "ring7", "ring8", "edge", "defect_id"]
    pd.testing.assert_frame_equal(merged["atoms"][cols], whole.atoms[cols], check_dtype=False)
    assert merged["rings"]["ring_id"].is_unique and merged["defects"]["defect_id"].is_unique
    for name, key in (
        ("bonds", ["frame", "a", "b"]),
        ("rings", ["frame", "size", "y"]),
        ("defects", ["frame", "type", "y"]),
    ):
        got = merged[name].sort_values(key).reset_index(drop=True)
        exp = whole.__getattribute__(name).sort_values(key).reset_index(drop=True)
        assert len(got) == len(exp) > 0
        np.testing.assert_array_equal(got[key].to_numpy(), exp[key].to_numpy())
    # member lists point at the same atoms (global rows)
    got_members = sorted(tuple(sorted(m)) for m in merged["rings"]["atoms"])
    exp_members = sorted(tuple(sorted(m)) for m in whole.rings["atoms"])
    assert got_members == exp_members
