"""The learned spot classifier (atomlens.atoms.spot_classifier) against simulator truth:
trained on labelled frames, scored on another; stored in and read from a model card;
learned by fine-tuning from the general model and used by detection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.atoms.match import match_atoms
from atomlens.atoms.spot_classifier import (
    FEATURES,
    SpotClassifier,
    SpotScales,
    candidates,
    suppress,
    train_spot_classifier,
)

PX, FWHM_A = 0.3, 3.0


def _pt_on_carbon(seed: int, crop: int = 320):
    """A simulated HAADF frame of Pt single atoms (3 Å spots, 0.3 Å/px, as measured on
    ``pt_single_atoms``) on a carbon support with lumps: (image, truth yx px)."""
    from atomlens.segment.general import general_config, render_native
    from atomlens.simulate.materials import single_atoms
    from atomlens.simulate.probe import Probe

    rng = np.random.default_rng(seed)
    img, yx, _ = render_native(
        general_config(crop=crop),
        rng,
        lambda s, r: single_atoms(s, r, element="Pt", density=0.01, support_ratio=1.0, lumps=0.05),
        pixel_size_A=PX,
        snr=2.5,
        z_exponent=1.7,
        probe_override=Probe.with_fwhm(FWHM_A, 200.0, 25.0),
    )
    inside = np.all((yx >= 0) & (yx <= np.array(img.shape) - 1), axis=1)
    return img, yx[inside]


def _labels(truths) -> pd.DataFrame:
    """The atom table (frame, y, x, cls "Pt") of the truths of consecutive frames."""
    return pd.concat(
        [
            pd.DataFrame({"frame": k, "y": t[:, 0], "x": t[:, 1], "cls": "Pt"})
            for k, t in enumerate(truths)
        ],
        ignore_index=True,
    )


def _f1(found: np.ndarray, truth: np.ndarray, r: float = 6.0) -> float:
    m = len(match_atoms(found, truth, r)[0])
    return 2 * m / max(len(found) + len(truth), 1)


def test_candidates_find_the_atoms_and_features_are_scale_free():
    img, yx = _pt_on_carbon(4)
    cand = candidates(img, PX)
    assert set(FEATURES) <= set(cand.columns) and "net" not in cand.columns
    inner = yx[np.all((yx > 8) & (yx < img.shape[0] - 9), axis=1)]
    recall = len(match_atoms(cand[["y", "x"]].to_numpy(), inner, 6.0)[0]) / len(inner)
    assert recall > 0.75  # a third come in pairs 2.2-3.2 Å apart: 3 Å spots merge
    # every feature is unchanged by an offset and a gain of the image
    again = candidates(3.0 * img + 100.0, PX)
    assert np.allclose(cand[list(FEATURES)], again[list(FEATURES)], atol=1e-6)


def test_trained_on_two_frames_finds_atoms_on_a_third():
    """Held-out frame: better F1 than keeping every candidate above the frame's median
    contrast, and the card round trip detects the same atoms."""
    frames, truths = zip(*(_pt_on_carbon(s) for s in (4, 6)))
    clf = train_spot_classifier(list(frames), list(truths), PX)
    assert 0.05 <= clf.threshold <= 0.9 and clf.report["n_frames"] == 2
    assert clf.report["held_out_f1"] > 0.5
    img, yx = _pt_on_carbon(9)
    found = clf.detect(img, PX)
    f1 = _f1(found[["y", "x"]].to_numpy(), yx)
    cand = candidates(img, PX)
    naive = cand[cand["con_m"] > np.median(cand["con_m"])][["y", "x"]].to_numpy()
    assert f1 > 0.6 and f1 > _f1(naive, yx) + 0.2
    back = SpotClassifier.from_card({"spot_classifier": clf.to_card()})
    assert back is not None and back.threshold == clf.threshold
    assert back.detect(img, PX).equals(found)


def test_one_frame_uses_its_halves_and_the_net_feature():
    img, yx = _pt_on_carbon(7)
    yy, xx = np.indices(img.shape)
    net = np.zeros(img.shape)
    for y, x in yx:  # a perfect "network": probability 1 on the atoms
        net = np.maximum(net, np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8.0))
    clf = train_spot_classifier([img], [yx], PX, net_probs=[net])
    assert clf.uses_net and clf.report["threshold_by"] == "left/right halves"
    found = clf.detect(img, PX, net)
    plain = train_spot_classifier([img], [yx], PX).detect(img, PX)
    f1_net = _f1(found[["y", "x"]].to_numpy(), yx)
    assert f1_net > 0.7 and f1_net > _f1(plain[["y", "x"]].to_numpy(), yx) + 0.1
    with pytest.raises(ValueError, match="network's atom probability"):
        clf.detect(img, PX)


def test_suppress_keeps_the_most_probable_of_close_spots():
    yx = np.array([[10.0, 10.0], [10.0, 12.0], [30.0, 30.0], [50.0, 50.0]])
    keep = suppress(yx, np.array([0.6, 0.9, 0.7, 0.1]), 0.5, 4.0)
    assert sorted(keep.tolist()) == [1, 2]


def test_bad_input_names_the_problem():
    img, yx = _pt_on_carbon(4, crop=96)
    with pytest.raises(ValueError, match="one .Y, X. frame"):
        candidates(np.zeros((2, 64, 64)), PX)
    with pytest.raises(ValueError, match="pixel size"):
        candidates(img, 0.0)
    with pytest.raises(ValueError, match="too small"):
        candidates(np.zeros((10, 10)), PX)
    with pytest.raises(ValueError, match="at least 10 atoms"):
        train_spot_classifier([img], [yx[:3]], PX)
    with pytest.raises(ValueError, match="one label array"):
        train_spot_classifier([img, img], [yx], PX)
    assert SpotClassifier.from_card({"spot_classifier": {"features": ["a"]}}) is None
    assert SpotScales.from_dict(SpotScales().to_dict()) == SpotScales()


def test_finetune_from_the_general_model_learns_it_and_detect_uses_it(tmp_path):
    """Fine-tuning the general model on sparse Pt-like spots stores a spot classifier in
    the card; detection with the new model returns exactly the classifier's atoms."""
    from atomlens.atoms import detect
    from atomlens.atoms.finetune import finetune
    from atomlens.segment.registry import load_model

    base = load_model("general")
    if "spot_verify" not in base.card:
        pytest.skip("the general model's card has no spot_verify rule")
    frames, truths = zip(*(_pt_on_carbon(s) for s in (4, 6)))

    atoms = _labels(truths)
    two_steps = {"pixel_size": PX, "steps": 2, "threads": 1, "val_fraction": 0}
    res = finetune(np.stack(frames), atoms, [0, 1], base, out=tmp_path / "pt.pt", **two_steps)
    if "spot_verify" not in res.card:
        pytest.skip("these frames were not spot-resampled (no contrast verification)")
    assert "spot_classifier" in res.card and "threshold" in res.card["finetune"]["spot_classifier"]
    img, yx = _pt_on_carbon(9)
    out = detect(img, res.detector, pixel_size=PX, return_maps=True)
    assert "spot_classifier" in out.spot_scale
    from atomlens.segment.model_file import load_detector

    clf = SpotClassifier.from_card(load_detector(tmp_path / "pt.pt").card)  # saved with it
    assert clf is not None and clf.uses_net
    assert len(out.atoms) > 0 and (out.atoms["cls"].astype(str) == "Pt").all()
    mine = clf.detect(img, PX, out.maps[0, 1:].max(0))
    plain = detect(img, res.detector, pixel_size=PX, refine="none").atoms
    assert np.array_equal(plain[["y", "x"]].to_numpy(), mine[["y", "x"]].to_numpy())
    # refined like the network's atoms: sub-pixel, a stated sigma, within a few pixels
    shift = np.hypot(*(out.atoms[["y", "x"]].to_numpy() - mine[["y", "x"]].to_numpy()).T)
    assert shift.max() < 4.0 and np.isfinite(out.atoms["sigma_A"]).mean() > 0.9
    assert _f1(out.atoms[["y", "x"]].to_numpy(), yx) >= _f1(plain[["y", "x"]].to_numpy(), yx) - 0.05
    off = finetune(np.stack(frames), atoms, [0, 1], base, spot_classifier=False, **two_steps)
    assert "spot_classifier" not in off.card
    # the probability-mass warning is about the network's threshold: not raised where the
    # spot classifier decides (resampled frames), raised for the same network without it
    from atomlens.atoms.suitability import model_fit_warnings

    low = {"threshold": 0.99, "network_pixel_size_A": PX / 3}
    said = [w for w in model_fit_warnings(img, PX, res.detector, **low) if "below the" in w]
    assert said == []
    assert any("below the" in w for w in model_fit_warnings(img, PX, off.detector, **low))


def test_cli_finetune_reports_the_spot_classifier(tmp_path, capsys):
    """``atomlens finetune`` from the general model on sparse Pt-like spots prints the
    learned classifier's threshold and its F1 on the labelled frames, and puts them in
    its JSON summary."""
    import json

    from atomlens.cli import main
    from atomlens.io.atoms_table import write_atoms_csv

    frames, truths = zip(*(_pt_on_carbon(s) for s in (4, 6)))
    np.save(tmp_path / "pt.npy", np.stack(frames))

    labels = _labels(truths)
    write_atoms_csv(tmp_path / "pt.csv", labels)
    argv = ["finetune", str(tmp_path / "pt.npy"), str(tmp_path / "pt.csv"), "--base", "general"]
    argv += ["--frames", "0:2", "--out", str(tmp_path / "ft.pt"), "--steps", "2", "--threads", "1"]
    assert main([*argv, "--pixel-size", str(PX)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    if "spot_classifier" not in summary:
        pytest.skip("these frames were not spot-resampled (no spot classifier learned)")
    assert 0.0 < summary["spot_classifier"]["threshold"] < 1.0
    assert "spot classifier: threshold" in captured.err


def test_retrain_message_names_the_spot_classifier():
    from types import SimpleNamespace

    from atomlens.workflows.correct import retrain_message

    scores = {"before": {"f1": 0.3}, "after": {"f1": 0.6}}
    card = {"finetune": {"steps": 120, "spot_classifier": {"held_out_f1": 0.657}}}
    msg = retrain_message(SimpleNamespace(scores=scores, card=card, reason="done"))
    assert msg == (
        "retraining done after 120 steps; held-back F1 (network) 0.30 -> 0.60; spot classifier F1 "
        "0.66 (leave one frame out): re-detect to apply it"
    )
    plain = retrain_message(SimpleNamespace(scores={}, card={"finetune": {}}, reason="stopped"))
    assert plain == "retraining stopped after ? steps: re-detect to apply it"
