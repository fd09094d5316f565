"""The not-graphene rule lives in the chemistry workflow (atomlens.chem.host applied by
atomlens.workflows.chemistry): on atoms without C every path (``run``, the Defects dock's
``analyze_events``, the pipeline's per-chunk ``per_frame`` + ``merge_chunks``) keeps only
the holes, no dopants, and gives the note once per run; on graphene it drops nothing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.chem import analyze
from atomlens.workflows import chemistry
from atomlens.workflows.events import Log, drain
from tests.test_chem_fixtures import honeycomb, si_substitution, table

PX = 0.1
N_FRAMES = 3


def _frames(*tables: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([t.assign(frame=f) for f, t in enumerate(tables)], ignore_index=True)


@pytest.fixture(scope="module")
def mos2() -> pd.DataFrame:
    """A MoS2-like honeycomb (Mo and S2 sublattices) with a 4 Å hole, on 3 frames."""
    yx = honeycomb(12, 12)
    cls = np.array(["Mo", "S2"] * (len(yx) // 2))
    keep = np.hypot(*(yx - yx.mean(axis=0)).T) > 4.0
    one = table(yx[keep], PX, cls[keep])
    return _frames(*[one] * N_FRAMES)


@pytest.fixture(scope="module")
def graphene() -> pd.DataFrame:
    """Graphene: a 4 Å hole on frames 0 and 2, a substituted Si (3-fold) on frame 1."""
    yx = honeycomb(12, 12)
    holey = table(yx[np.hypot(*(yx - yx.mean(axis=0)).T) > 4.0], PX)
    si_yx, si_cls, _ = si_substitution(yx)
    return _frames(holey, table(si_yx, PX, si_cls), holey)


def _defects(defects: pd.DataFrame) -> list[tuple]:
    return sorted((int(r.frame), str(r.type), tuple(sorted(r.atoms))) for r in defects.itertuples())


def _logs(events: list) -> list[str]:
    return [e.message for e in events if isinstance(e, Log)]


def test_not_graphene_keeps_only_holes_and_says_so_once(mos2) -> None:
    raw = analyze(mos2, PX, track=False)
    kinds = set(raw.defects["type"])
    assert "hole" in kinds and kinds != {"hole"} and len(raw.dopants) > 0  # what it drops
    holes = _defects(raw.defects[raw.defects["type"] == "hole"])
    assert len(holes) == N_FRAMES  # one hole per frame

    events: list = []
    out = drain(chemistry.run(mos2, PX, chemistry.ChemRecipe(register=False)), events.append)
    assert out.note.startswith("No C atoms (species: Mo, S2)")
    assert _logs(events) == [f"warning: {out.note}"]  # once
    assert _defects(out.defects) == holes and len(out.dopants) == 0
    types = out.atoms["defect_type"].astype(str).to_numpy()
    assert set(types) == {"hole", "none"}
    ids = out.atoms["defect_id"].to_numpy()
    for d in out.defects.itertuples():  # the hole's rim carries its id (was 'none')
        assert (ids[list(d.atoms)] == d.defect_id).all()
    assert (types == "hole").sum() == sum(len(h[2]) for h in holes)
    assert (ids[types == "none"] == -1).all()
    assert out.atoms["track_id"].nunique() < len(out.atoms)  # tracked as before

    # the Defects dock's path: pieces of one frame, the rule decided once on the table
    events = []
    piecewise = drain(chemistry.analyze_events(mos2, PX, chunk_frames=1), events.append)
    assert _logs(events) == [f"warning: {out.note}"] and piecewise.note == out.note
    res = piecewise.result
    assert _defects(res.defects) == holes and len(res.dopants) == 0
    assert set(res.atoms["defect_type"].astype(str)) == {"hole", "none"}

    # the pipeline's path: per_frame per chunk (no rule there), merge_chunks once
    recipe = chemistry.ChemRecipe()
    parts = [chemistry.per_frame(mos2[mos2["frame"] == f], PX, recipe) for f in range(N_FRAMES)]
    assert all("Mo_cluster_edge" in set(p["defects"]["type"]) for p in parts)
    tables, note = chemistry.merge_chunks(parts)
    assert note == out.note
    assert _defects(tables["defects"]) == holes
    np.testing.assert_array_equal(tables["atoms"]["defect_type"].astype(str), types)


def test_graphene_with_si_drops_nothing(graphene) -> None:
    raw = analyze(graphene, PX, track=False)
    expected = _defects(raw.defects)
    assert {t for _, t, _ in expected} == {"hole", "Si3"} and len(raw.dopants) == 1

    events: list = []
    out = drain(chemistry.run(graphene, PX, chemistry.ChemRecipe(register=False)), events.append)
    assert out.note == "" and _logs(events) == []
    assert _defects(out.defects) == expected
    cols = [c for c in raw.dopants.columns if c != "track_id"]  # run tracks; raw does not
    pd.testing.assert_frame_equal(out.dopants[cols], raw.dopants[cols], check_dtype=False)
    np.testing.assert_array_equal(out.atoms["defect_type"], raw.atoms["defect_type"])

    events = []
    piecewise = drain(chemistry.analyze_events(graphene, PX, chunk_frames=1), events.append)
    assert piecewise.note == "" and _logs(events) == []
    assert _defects(piecewise.result.defects) == expected
    assert len(piecewise.result.dopants) == 1

    recipe = chemistry.ChemRecipe()
    parts = [chemistry.per_frame(graphene[graphene["frame"] == f], PX, recipe) for f in range(3)]
    tables, note = chemistry.merge_chunks(parts)
    assert note == "" and _defects(tables["defects"]) == expected


def test_live_frames_keep_only_holes_and_say_so_once(mos2, graphene, monkeypatch) -> None:
    """A live watch applies the same rule per frame: on atoms without C only holes, no
    dopants, and the note handed out once (not once per frame); on graphene nothing."""
    from atomlens.live.processor import FrameProcessor

    def run_live(atoms: pd.DataFrame) -> tuple[list, list[str]]:
        proc = FrameProcessor(PX, chem=chemistry.ChemRecipe(register=False))
        frames = [atoms[atoms["frame"] == f].drop(columns="frame") for f in range(N_FRAMES)]
        monkeypatch.setattr(proc, "_detect", lambda image, f: frames[f].assign(frame=f))
        outs, notes = [], []
        for f in range(N_FRAMES):
            outs.append(proc.process(np.zeros((8, 8), np.float32), f))
            notes += proc.take_notes()
        return outs, notes

    outs, notes = run_live(mos2)
    assert len(notes) == 1 and notes[0].startswith("warning: No C atoms (species: Mo, S2)")
    raw = analyze(mos2, PX, track=False)
    for out in outs:
        assert set(out.tables["defects"]["type"]) == {"hole"}
        assert len(out.tables["dopants"]) == 0
    assert sum(len(o.tables["defects"]) for o in outs) == (raw.defects["type"] == "hole").sum()

    outs, notes = run_live(graphene)
    assert notes == []
    assert sum(len(o.tables["dopants"]) for o in outs) == len(analyze(graphene, PX).dopants) > 0
