"""Issue 14, the command line on materials other than graphene: help texts, the detect
summary, graphene chemistry on a table without C (chem and run), a detector named in a
run config ('auto', 'general'), and calibrate's default lattice on MoS2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from atomlens.cli import build_parser, main
from atomlens.cli.detect import species_summary
from atomlens.pipeline import PipelineConfig, run_pipeline
from tests.conftest import real_file
from tests.test_chem_fixtures import honeycomb, table

MOS2_DM3 = "formats/mos2_se_implanted.dm3"
GRAPHENE = "real/graphene_grainboundary-4nm.npz"


def _subhelp(name: str) -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices[name].format_help()


def test_help_texts_do_not_speak_only_of_graphene() -> None:
    top = build_parser().format_help()
    flat = " ".join(top.split())  # argparse wraps lines
    assert "(C, Si)" not in flat and "any material" in flat  # detect serves any material
    assert "on simulated graphene" not in flat  # train-detector has a general preset too
    line = next(ln for ln in top.splitlines() if ln.strip().startswith("chem "))
    assert "graphene chemistry" in line  # chem says whose chemistry it is
    assert "without C atoms" in " ".join(_subhelp("chem").split())
    run = " ".join(_subhelp("run").split())
    assert "``" not in run and "'auto'" in run  # no reST markup; names the auto detector
    cal = " ".join(_subhelp("calibrate").split())
    assert "srtio3 (square, a = 3.905 Å" in cal and "square:<a in Å>" in cal  # not hexagonal only


def test_detect_summary_names_the_species_found() -> None:
    frame = pd.DataFrame
    assert species_summary(frame({"cls": ["C", "C", "Si"]})) == " (1 Si)"
    assert species_summary(frame({"cls": ["C", "C"]})) == " (0 Si)"
    assert species_summary(frame({"cls": ["Mo", "S2", "Mo"]})) == " (Mo: 2, S2: 1)"
    assert species_summary(frame({"cls": ["atom", "atom"]})) == ""  # the general model
    assert species_summary(frame({"cls": []})) == ""


def _holey_sheet(cls: str) -> pd.DataFrame:
    """A 12 x 12-cell honeycomb (1.42 Å bonds) with a hole of radius 4 Å in the middle,
    every atom of species ``cls``; pixel size 0.1 Å."""
    yx = honeycomb(12, 12)
    yx = yx[np.hypot(*(yx - yx.mean(axis=0)).T) > 4.0]
    return table(yx, 0.1, [cls] * len(yx))


@pytest.mark.parametrize("cls", ["atom", "Mo"])
def test_chem_on_a_table_without_carbon_warns_and_keeps_only_holes(tmp_path, capsys, cls):
    src, out, defects = tmp_path / "a.csv", tmp_path / "chem.csv", tmp_path / "defects.csv"
    _holey_sheet(cls).to_csv(src, index=False)
    args = ["chem", str(src), "--pixel-size", "0.1", "--out", str(out), "--defects", str(defects)]
    assert main(args) == 0
    io = capsys.readouterr()
    assert f"warning: No C atoms (species: {cls})" in io.err
    assert "(holes only: not graphene)" in io.out
    kinds = set(pd.read_csv(defects)["type"])
    assert kinds == {"hole"}  # the hole is found; no dopant-typed clusters of every atom
    chem = pd.read_csv(out)
    assert set(chem["defect_type"].astype(str)) <= {"hole", "none"}
    assert (chem["defect_type"] == "none").mean() > 0.8  # the sheet is not one defect


def test_chem_on_graphene_is_unchanged(tmp_path, capsys):
    src, defects = tmp_path / "a.csv", tmp_path / "defects.csv"
    _holey_sheet("C").to_csv(src, index=False)
    out = str(tmp_path / "chem.csv")
    assert (
        main(["chem", str(src), "--pixel-size", "0.1", "--out", out, "--defects", str(defects)])
        == 0
    )
    io = capsys.readouterr()
    assert "No C atoms" not in io.err and "holes only" not in io.out


def test_run_with_a_named_detector_and_whole_class_count(tmp_path, capsys):
    """A config naming the detector ('general' or 'auto', as --print-config offers) used
    to fail with 'No such file or directory: .../general'; contrast_classes = 3 (a TOML
    integer) with 'must be a text'. The run's chemistry on the general model's 'atom'
    table keeps only holes and says why."""
    from atomlens.io import write_tiff
    from atomlens.simulate import simulate_movie

    movie = simulate_movie(
        n_frames=2, size=128, pixel_size=0.1, seed=3, n_holes=0, n_stone_wales=0, n_vacancies=0
    )
    path = write_tiff(tmp_path / "movie.tif", movie.frames, 0.1)
    conf = tmp_path / "run.toml"
    conf.write_text(
        '[detect]\nmodel = "general"\nspecies = "contrast"\ncontrast_classes = 1\n'
        'class_names = "X"\n[latent]\nenabled = false\n[report]\nenabled = false\n'
    )
    cfg = PipelineConfig.from_file(conf).validate()
    assert cfg.detect.contrast_classes == 1
    res = run_pipeline(path, tmp_path / "out", cfg, scheduler=None, progress=False)
    assert len(res.atoms) > 50 and set(res.atoms["cls"].astype(str)) == {"X"}
    err = capsys.readouterr().err
    assert "detect: model general (as asked)" in err  # the detector is named, as in detect
    assert "chem: warning: No C atoms (species: X)" in err
    kinds = set(res.atoms["defect_type"].astype(str))
    assert kinds <= {"hole", "none"}
    meta = json.loads((tmp_path / "out" / "run.json").read_text())
    assert meta["config"]["detect"]["model"] == "general"
    # a rerun reads the holes-only chemistry from the cache and says why again, once
    again = run_pipeline(path, tmp_path / "out", cfg, scheduler=None, progress=False)
    assert again.stages["chem"] == "cached"
    assert capsys.readouterr().err.count("chem: warning: No C atoms (species: X)") == 1
    pd.testing.assert_frame_equal(again.atoms, res.atoms)

    from atomlens.pipeline.runner import _model_fingerprint

    assert _model_fingerprint("auto") == "auto" == _model_fingerprint(None)  # unset = auto
    assert _model_fingerprint("general")["path"].endswith(".pt")


def _crop_npy(shared_data, rel: str, tmp_path, size: int = 320):
    from atomlens.io import read_stack

    stack = read_stack(real_file(shared_data, rel))
    path = tmp_path / (rel.split("/")[-1].split(".")[0] + ".npy")
    np.save(path, np.asarray(stack.frame(0), np.float32)[:size, :size])
    return path


@pytest.mark.slow  # two lattice calibrations: ~10 s idle, ~20 s on a loaded 2-core box
def test_calibrate_default_lattice_is_unsure_on_mos2(shared_data, tmp_path, capsys):
    """MoS2 (mos2_se_implanted.dm3, 320² crop; the lattice gives ~0.134-0.137 Å/px):
    with the default graphene lattice the estimate is ~0.104 Å/px, 24 % off, and used
    to read 'verdict: sure'; now UNSURE naming --lattice, and --apply refuses it."""
    path = _crop_npy(shared_data, MOS2_DM3, tmp_path)
    assert main(["calibrate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "verdict:     UNSURE: the image does not look like graphene" in out
    assert "--lattice" in out
    assert main(["calibrate", str(path), "--apply", str(tmp_path / "c.tif")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not applied" in err
    assert not (tmp_path / "c.tif").exists()


def test_calibrate_default_lattice_still_sure_on_graphene(shared_data, tmp_path, capsys):
    path = _crop_npy(shared_data, GRAPHENE, tmp_path, 384)  # 30 Å: enough to judge
    assert main(["calibrate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "verdict:     sure" in out and "does not look like graphene" not in out


def test_run_model_option_and_auto_choice_printed(tmp_path, capsys):
    """``atomlens run --model auto`` (the fit warnings say 'try --model general', so run
    takes --model too): the choice and its reason are printed once, before detecting."""
    from atomlens.io import write_tiff
    from atomlens.simulate import simulate_movie

    movie = simulate_movie(
        n_frames=2, size=128, pixel_size=0.1, seed=4, n_holes=0, n_stone_wales=0, n_vacancies=0
    )
    path = write_tiff(tmp_path / "movie.tif", movie.frames, 0.1)
    conf = tmp_path / "run.toml"
    conf.write_text("[latent]\nenabled = false\n[report]\nenabled = false\n")
    out = tmp_path / "out"
    args = ["run", str(path), "--out", str(out), "--config", str(conf), "--model", "auto"]
    assert main([*args, "--quiet", "--scheduler", "none"]) == 0
    err = capsys.readouterr().err
    assert err.count("detect: model ") == 1 and "(auto: " in err
    assert json.loads((out / "run.json").read_text())["config"]["detect"]["model"] == "auto"


@pytest.mark.parametrize("pixel_size", [0.1, 0.5])
def test_run_without_a_model_chooses_as_detect_does(tmp_path, capsys, pixel_size):
    """No [detect] model and no --model: ``atomlens run`` used the graphene model while
    ``atomlens detect`` and the Detect dock default to 'auto' (a MoS2 movie got C/Si
    atoms, and the chemistry's not-graphene rule never fired). Now the run chooses from
    the first frame as detect does: graphene at 0.1 Å/px, general at 0.5 Å/px (outside
    the graphene model's range)."""
    from atomlens.atoms.suitability import choose_model, first_frame
    from atomlens.io import read_stack, write_tiff
    from atomlens.pipeline.runner import _settle_detector
    from atomlens.segment.registry import model_info
    from atomlens.simulate import simulate_movie

    movie = simulate_movie(n_frames=1, size=256, pixel_size=0.1, seed=4)
    path = write_tiff(tmp_path / "movie.tif", movie.frames, pixel_size)
    det = PipelineConfig().section("detect")
    assert det["model"] is None  # the default: unset
    settled = _settle_detector(path, [0], pixel_size, det)
    detect_choice, why = choose_model(first_frame(read_stack(path), [0]), pixel_size)
    expected = "graphene" if pixel_size == 0.1 else "general"
    if expected == "general" and not model_info("general").available:
        expected = "graphene"  # no general model shipped: auto falls back
    assert settled["model"] == detect_choice == expected
    assert f"detect: model {expected} (auto: {why}" in capsys.readouterr().err


def test_detect_warns_when_names_are_fewer_than_contrast_classes(tmp_path, capsys):
    """--classes 3 --names S2,Mo used to name the dimmest two silently (the user's 'Mo'
    became the middle class, the brightest 'class2'); now a warning says so."""
    from atomlens.io import write_tiff
    from atomlens.simulate import simulate_movie

    movie = simulate_movie(
        n_frames=1,
        size=128,
        pixel_size=0.1,
        seed=2,
        n_holes=0,
        n_stone_wales=0,
        n_vacancies=0,
        n_si3=0,
    )
    path = write_tiff(tmp_path / "frame.tif", movie.frames, 0.1)
    out = tmp_path / "atoms.csv"
    base = ["detect", str(path), "--model", "graphene", "--species", "contrast", "--out", str(out)]
    assert main([*base, "--classes", "3", "--names", "dim,mid"]) == 0
    io = capsys.readouterr()
    assert "warning: 3 contrast classes but 2 names (dim, mid)" in io.err
    assert "in 1 frame ->" in io.out
    assert "\r" not in io.err and "frame 1/1: " in io.err  # not a terminal: plain lines
    assert set(pd.read_csv(out)["cls"]) == {"dim", "mid", "class2"}
    assert main([*base, "--classes", "2", "--names", "dim,bright"]) == 0
    assert "contrast classes but" not in capsys.readouterr().err


def test_calibrate_on_a_square_lattice_names_the_square_lattices(shared_data, tmp_path, capsys):
    """SrTiO3 (Acquisition_18.emd, cubic a = 3.905 Å): a bare number of Å means a
    hexagonal lattice, so the error (once 'no 3.905 atoms found') names the lattice
    searched and the square ones; ``--lattice srtio3`` calibrates the 512² crop (the
    lattice gives 0.1168 Å/px; the file states 0.1225, 5 % more, see docs/chemistry.md)."""
    path = _crop_npy(shared_data, "formats/Acquisition_18.emd", tmp_path, 256)
    assert main(["calibrate", str(path), "--lattice", "3.905"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "hexagonal lattice with a = 3.905 Å" in err and "hexagonal lattices only" in err
    assert "srtio3 or square:<Å>" in err
    path = _crop_npy(shared_data, "formats/Acquisition_18.emd", tmp_path, 512)
    assert main(["calibrate", str(path), "--lattice", "srtio3"]) == 0
    out = capsys.readouterr().out
    ps = float(out.split("estimate:")[1].split("Å/px")[0])
    assert abs(ps / 0.1168 - 1) < 0.01 and "verdict:     sure" in out


def test_detect_refuses_names_without_species_contrast(tmp_path, capsys):
    """--names O,TiO,Sr without --species contrast was ignored silently (every atom
    'atom'); now a one-line error before any work names the missing option."""
    path = tmp_path / "frame.npy"
    np.save(path, np.zeros((32, 32), np.float32))
    for extra in (["--names", "O,TiO,Sr"], ["--classes", "3"]):
        args = ["detect", str(path), "--pixel-size", "0.1", "--out", str(tmp_path / "a.csv")]
        assert main([*args, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "add --species contrast" in err
    assert not (tmp_path / "a.csv").exists()


def test_run_detect_bar_reaches_the_end(tmp_path, capsys):
    """Five frames are two detect chunks: the bar used to stay at 1/2 (zip stopped on the
    chunk list before the bar's last step)."""
    from atomlens.io import write_tiff
    from atomlens.simulate import simulate_movie

    movie = simulate_movie(
        n_frames=5, size=112, pixel_size=0.1, seed=1, n_holes=0, n_stone_wales=0, n_vacancies=0
    )
    path = write_tiff(tmp_path / "movie.tif", movie.frames, 0.1)
    cfg = PipelineConfig()
    cfg.chem.enabled = cfg.latent.enabled = cfg.report.enabled = False
    run_pipeline(path, tmp_path / "out", cfg, scheduler=None, progress=True)
    err = capsys.readouterr().err
    assert "detect: 100%" in err and "2/2" in err


def test_chem_takes_the_pixel_size_from_the_stack(tmp_path, capsys):
    """--pixel-size was required although --stack names a calibrated movie; now the
    stack's calibration is used (and said), and with neither a one-line error."""
    from atomlens.io import write_tiff

    src, out = tmp_path / "a.csv", tmp_path / "chem.csv"
    _holey_sheet("C").to_csv(src, index=False)
    stack = write_tiff(tmp_path / "movie.tif", np.zeros((1, 200, 200), np.float32), 0.1)
    assert main(["chem", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--pixel-size" in err and "--stack" in err
    assert main(["chem", str(src), "--out", str(out), "--stack", str(stack)]) == 0
    assert "pixel size: 0.1 Å/px (metadata)" in capsys.readouterr().err
    same = tmp_path / "same.csv"
    assert main(["chem", str(src), "--out", str(same), "--pixel-size", "0.1"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out), pd.read_csv(same))


def test_detect_names_with_auto_classes_ask_one_class_per_name(shared_data, tmp_path, capsys):
    """SrTiO3 ABF (srtio3_abf_movie.hspy, frame 0, 256² crop): ICL finds 2 contrast
    classes, so --names O,TiO,Sr with --classes auto failed after detecting every frame
    ('classes [2] do not exist'); now auto with names asks for one class per name (in
    the detect workflow, so `atomlens run` with class_names does the same)."""
    from atomlens.workflows.detect import classes_for

    assert classes_for("auto", "O, TiO,Sr") == 3 and classes_for("2", "a,b") == "2"
    assert classes_for("auto", "") == "auto"
    path = _crop_npy(shared_data, "formats/srtio3_abf_movie.hspy", tmp_path, 256)
    base = ["detect", str(path), "--pixel-size", "0.092", "--species", "contrast"]
    assert main([*base, "--out", str(tmp_path / "auto.csv")]) == 0
    assert "contrast classes: 3" not in capsys.readouterr().err  # ICL alone: not 3
    out = tmp_path / "named.csv"
    assert main([*base, "--names", "O,TiO,Sr", "--out", str(out)]) == 0
    assert "contrast classes: 3" in capsys.readouterr().err
    assert set(pd.read_csv(out)["cls"]) == {"O", "TiO", "Sr"}
