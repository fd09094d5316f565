"""``atomlens finetune PROJECT`` replays a saved correction session: it trains on the
session's corrected frames and atoms, from its latest detector, with its step count, and
the new model joins the project's lineage (as :func:`atomlens.workflows.correct.replay`)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from atomlens.cli import main
from atomlens.io import Stack
from atomlens.segment.model_file import Detector, load_detector, save_detector
from atomlens.segment.nets import NetConfig, build_net
from atomlens.workflows.correct import CorrectionSession, CorrectRecipe


@pytest.fixture
def saved_session(tmp_path):
    from atomlens.simulate import simulate_movie

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        movie = simulate_movie(3, 64, 0.2, seed=3)
    np.save(tmp_path / "movie.npy", movie.frames)
    net = build_net(NetConfig(base_filters=4, levels=2, dilations=(1, 2)))
    base = save_detector(
        Detector(net, net.config, 0.2, 0.35, 256, {"name": "tiny"}), tmp_path / "b.pt"
    )
    s = CorrectionSession(
        movie.atoms[["frame", "y", "x", "cls"]],
        stack=Stack(movie.frames, 0.2, "user", {}, str(tmp_path / "movie.npy")),
        model=str(base),
        recipe=CorrectRecipe(steps=2, threads=1),
    )
    first = int(s.atoms.loc[s.atoms["frame"] == 2, "atom_id"].iloc[0])
    s.move(first, 30.0, 30.5)  # frame 2 corrected
    s.add(0, 12.0, 40.0, "Si")  # frame 0 corrected
    return s.save(tmp_path / "work.atomlens"), base


def test_cli_finetune_replays_a_saved_session(saved_session, tmp_path, capsys):
    folder, base = saved_session
    out = tmp_path / "ft.pt"
    rc = main(
        ["finetune", str(folder), "--out", str(out), "--batch", "2", "--crop", "32"]
        + ["--threads", "1", "--val-fraction", "0"]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the session's corrected frames, its two edits, its step count, from its detector
    assert summary["frames"] == [0, 2] and summary["n_corrections"] == 2
    assert summary["steps"] == 2 and summary["base_model"] == str(base)
    card = load_detector(out).card["finetune"]
    assert card["stack"].endswith("movie.npy") and card["frames"] == [0, 2]
    back = CorrectionSession.load(folder)
    assert back.lineage[-1]["model"] == str(out) and back.lineage[-1]["parent"] == str(base)
    assert back.lineage[-1]["frames"] == [0, 2] and back.corrected_frames == [0, 2]
    # a second replay starts from the model the first one made
    rc = main(
        ["finetune", str(folder), "--out", str(tmp_path / "ft2.pt"), "--batch", "2"]
        + ["--crop", "32", "--threads", "1", "--val-fraction", "0"]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["base_model"] == str(out)
    assert len(CorrectionSession.load(folder).lineage) == 2
