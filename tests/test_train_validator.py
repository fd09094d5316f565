"""The detector training loop scores a model through a passed-in validator (a protocol),
never by importing atom finding: ``segment.train.train_detector(validate=...)`` and the
CLI that passes :mod:`atomlens.atoms.evaluate`'s scorers."""

from __future__ import annotations

import json

import pytest

from atomlens.segment.model_file import load_detector
from atomlens.segment.nets import NetConfig
from atomlens.segment.train import preset, train_detector

TINY = NetConfig(base_filters=4, levels=2, dilations=(1, 2))


def _cfg():
    return preset("graphene", batch=2, crop=32, steps=1, net=TINY, threads=1)


def test_validator_result_goes_into_the_card(tmp_path):
    seen = []

    def validate(det):
        seen.append(det)
        return {"n_classes": len(det.classes), "pixel_size_A": det.pixel_size}

    det = train_detector(_cfg(), tmp_path / "v.pt", validate=validate, log=lambda s: None)
    assert seen == [det]
    card = json.loads((tmp_path / "v_card.json").read_text())
    assert card["validation"] == {"n_classes": 3, "pixel_size_A": det.pixel_size}
    assert load_detector(tmp_path / "v.pt").card["validation"]["n_classes"] == 3


def test_no_validator_no_validation_and_a_failing_one_keeps_the_weights(tmp_path):
    train_detector(_cfg(), tmp_path / "a.pt", log=lambda s: None)
    assert "validation" not in load_detector(tmp_path / "a.pt").card

    def broken(det):
        raise RuntimeError("no frames")

    lines: list[str] = []
    train_detector(_cfg(), tmp_path / "b.pt", validate=broken, log=lines.append)
    card = load_detector(tmp_path / "b.pt").card
    assert "no frames" in card["validation"]["error"]
    assert any("validation failed" in line for line in lines)


def test_cli_passes_the_atom_level_validator(tmp_path, monkeypatch):
    """``atomlens train-detector`` hands atoms.evaluate.validation_metrics to the loop
    (with the CLI's log); ``--no-validate`` hands nothing."""
    import atomlens.atoms.evaluate as ev
    from atomlens.cli import main

    calls = []

    def fake(det, log=print, n_frames=4):
        calls.append(det.classes)
        log("fake validation ran")
        return {"synth": {"f1": 0.5}}

    monkeypatch.setattr(ev, "validation_metrics", fake)
    args = ["train-detector", "--steps", "1", "--threads", "1", "--checkpoint-every", "0"]
    assert main([*args, "--out", str(tmp_path / "m.pt")]) == 0
    assert calls == [("background", "C", "Si")]
    assert load_detector(tmp_path / "m.pt").card["validation"] == {"synth": {"f1": 0.5}}
    assert main([*args, "--no-validate", "--out", str(tmp_path / "n.pt")]) == 0
    assert len(calls) == 1 and "validation" not in load_detector(tmp_path / "n.pt").card


@pytest.mark.parametrize("flag", [[], ["--no-validate"]])
def test_cli_general_preset_passes_validate_general(tmp_path, monkeypatch, flag):
    import atomlens.atoms.evaluate as ev
    import atomlens.segment.general as G
    from atomlens.cli import main

    got = {}

    def fake_run_cli(args, validate=None):
        got["validate"] = validate
        return 0

    monkeypatch.setattr(G, "run_cli", fake_run_cli)
    out = str(tmp_path / "g.pt")
    assert main(["train-detector", "--preset", "general", "--out", out, *flag]) == 0
    assert got["validate"] is (None if flag else ev.validate_general)
