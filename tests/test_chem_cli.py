"""``atomlens chem`` and ``atomlens calibrate`` command lines."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from atomlens.cli import main
from tests.test_chem_fixtures import honeycomb, lattice_image, stone_wales, table

PS = 0.1


def test_chem_cli_writes_tables(tmp_path, capsys):
    yx = stone_wales(honeycomb(9, 9))
    far = int(np.argmin(np.hypot(*(yx - yx.mean(axis=0) - [0.0, 6.0]).T)))  # 6 Å from the SW
    cls = ["C"] * len(yx)
    cls[far] = "Si"
    atoms = pd.concat([table(yx, PS, cls, frame=0), table(yx + 0.03, PS, cls, frame=1)])
    src = tmp_path / "atoms.csv"
    atoms.to_csv(src, index=False)
    out, rings, defects = tmp_path / "chem.csv", tmp_path / "rings.csv", tmp_path / "defects.csv"
    code = main(
        [
            "chem",
            str(src),
            "--pixel-size",
            str(PS),
            "--out",
            str(out),
            "--rings",
            str(rings),
            "--defects",
            str(defects),
            "--tracks",
            "--max-bond",
            "C-Si=2.1",
            "--max-disp",
            "Si=2",
        ]
    )
    assert code == 0
    chem = pd.read_csv(out)
    for col in (
        "coordination",
        "ring5",
        "ring6",
        "ring7",
        "ring8",
        "edge",
        "defect_id",
        "track_id",
    ):
        assert col in chem
    assert chem["track_id"].nunique() == len(yx)
    r = pd.read_csv(rings)
    assert set(r.columns) >= {"frame", "ring_id", "size", "y", "x", "atoms"}
    assert (r["size"] == 7).sum() == 4  # two 7-rings per frame (the SW)
    d = pd.read_csv(defects)
    assert "Si3" in set(d["type"])
    assert "rings by size" in capsys.readouterr().out


def test_chem_cli_errors_are_one_line(tmp_path, capsys):
    src = tmp_path / "bad.csv"
    pd.DataFrame({"frame": [0], "y": [1.0], "x": [2.0]}).to_csv(src, index=False)
    code = main(["chem", str(src), "--pixel-size", "0.1", "--out", str(tmp_path / "o.csv")])
    err = capsys.readouterr().err
    assert code == 2 and "cls" in err and len(err.strip().splitlines()) == 1
    code = main(["chem", str(src), "--pixel-size", "0.1", "--out", "o.csv", "--max-bond", "C-C"])
    assert code == 2


def test_calibrate_cli_reports_discrepancy_and_applies(tmp_path, capsys):
    img = lattice_image(192, 0.1, seed=4)
    path = tmp_path / "graphene.npy"
    np.save(path, img)
    code = main(
        ["calibrate", str(path), "--lattice", "graphene", "--pixel-size", "0.108", "--json"]
    )
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["pixel_size"] == pytest.approx(0.1, rel=0.01)
    assert res["discrepancy_pct"] == pytest.approx(8.0, abs=1.0)
    out = tmp_path / "calibrated.tif"
    code = main(
        ["calibrate", str(path), "--lattice", "2.46", "--pixel-size", "0.108", "--apply", str(out)]
    )
    text = capsys.readouterr().out
    assert code == 0 and "discrepancy" in text and out.exists()
    from atomlens.io import read_stack

    assert read_stack(out).pixel_size == pytest.approx(0.1, rel=0.01)
