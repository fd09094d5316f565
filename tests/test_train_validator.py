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
    """The general preset trains on its own batches and card fields, is validated by
    validate_general (or not), and its card gets the command that rebuilds it."""
    import atomlens.atoms.evaluate as ev
    import atomlens.segment.general as G
    import atomlens.segment.train as T
    from atomlens.cli import main

    got = {}

    def fake_train(cfg, out, command=None, validate=None, **kw):
        got.update(cfg=cfg, command=command, validate=validate, **kw)

    monkeypatch.setattr(T, "train_detector", fake_train)
    out = str(tmp_path / "g.pt")
    argv = ["train-detector", "--preset", "general", "--out", out, "--steps", "7"]
    assert main([*argv, "--threads", "1", "--average-from", "3", *flag]) == 0
    assert got["validate"] is (None if flag else ev.validate_general)
    assert got["batches"] is G.make_batch and got["card_fields"]["name"] == "general"
    assert got["cfg"].steps == 7 and got["cfg"].average_from == 3
    assert got["command"] == (
        f"atomlens train-detector --preset general --out {out} --steps 7 --seed 0 "
        "--threads 1 --average-from 3"
    )


def test_cli_bad_overrides_name_the_flag(tmp_path, capsys):
    from atomlens.cli import main

    for bad, word in (
        (["--steps", "0"], "--steps"),
        (["--lr", "-1"], "--lr"),
        (["--init", str(tmp_path / "none.pt")], "--init"),
        (["--checkpoint-every", "-2"], "--checkpoint-every"),
    ):
        for name in ("graphene", "general"):
            out = str(tmp_path / "x.pt")
            assert main(["train-detector", "--preset", name, "--out", out, *bad]) == 2
            err = capsys.readouterr().err.strip()
            assert err.startswith("atomlens train-detector: error: " + word), err
            assert "\n" not in err and not (tmp_path / "x.pt").exists()
