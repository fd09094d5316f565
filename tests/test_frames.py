"""The one frame grammar (atomlens.io.frames) and its use by every command."""

from __future__ import annotations

import pytest

from atomlens.errors import FrameSelectionError, SettingsError
from atomlens.io.frames import format_frames, parse_frames


@pytest.mark.parametrize(
    ("spec", "n", "want"),
    [
        (None, 4, [0, 1, 2, 3]),
        ("all", 3, [0, 1, 2]),
        ("", 2, [0, 1]),
        ("5", 10, [5]),
        (5, 10, [5]),
        ("0:3", 10, [0, 1, 2]),
        ("0:3,8", 10, [0, 1, 2, 8]),
        (" 8: ", 10, [8, 9]),
        (":2", 10, [0, 1]),
        ("::3", 7, [0, 3, 6]),
        ("1:9:4", 10, [1, 5]),
        ("3,1,3", 5, [1, 3]),
        ([2, 0], 3, [0, 2]),
        ("0:3,7", None, [0, 1, 2, 7]),
    ],
)
def test_parse_frames_grammar(spec, n, want) -> None:
    assert parse_frames(spec, n) == want


@pytest.mark.parametrize(
    ("spec", "n", "match"),
    [
        ("0:12", 10, r"out of range \(the movie has frames 0\.\.9\)"),
        ("10", 10, "out of range"),
        ("-1", 10, "cannot read"),
        ("a-b", 10, "cannot read frame selection 'a-b'"),
        ("1,,2", 10, "empty part"),
        ("0:5:0", 10, "step cannot be 0"),
        ("5:5", 10, "selects no frame"),
        ("all", None, "needs the number of frames"),
        ("8:", None, "needs the number of frames"),
        ([1.5], 4, "not a frame number"),
        (True, 4, "cannot read"),
        ("0:1:2:3", 10, "cannot read"),
    ],
)
def test_parse_frames_errors_name_spec_and_range(spec, n, match) -> None:
    with pytest.raises(FrameSelectionError, match=match) as info:
        parse_frames(spec, n)
    assert isinstance(info.value, SettingsError)
    assert "\n" not in str(info.value)


def test_format_frames_roundtrip() -> None:
    for frames in ([0, 1, 2, 7, 9, 10], [3], list(range(48))):
        assert parse_frames(format_frames(frames)) == frames
    assert format_frames([0, 1, 2, 5]) == "0:3,5"


def test_one_grammar_everywhere() -> None:
    """The old copies are gone: every command resolves frames through atomlens.io.frames."""
    import atomlens.corrections as corrections
    import atomlens.pipeline as pipeline

    assert corrections.parse_frames is parse_frames
    assert pipeline.parse_frames is parse_frames
    assert corrections.FrameSpecError is FrameSelectionError


@pytest.mark.parametrize("command", ["detect", "chem", "rvae", "run", "finetune", "pfm"])
def test_every_command_speaks_the_grammar(command, tmp_path, capsys) -> None:
    """Each command refuses frames outside the movie with the one grammar's message."""
    import numpy as np
    import pandas as pd

    from atomlens.cli import main

    movie = tmp_path / "movie.npy"
    np.save(movie, np.random.default_rng(0).random((4, 32, 32), dtype=np.float32))
    atoms = tmp_path / "atoms.csv"
    pd.DataFrame({"frame": [0, 1], "y": [10.0, 12.0], "x": [10.0, 12.0], "cls": ["C", "C"]}).to_csv(
        atoms, index=False
    )
    spec = "0:2,9"
    argv = {
        "detect": ["detect", str(movie), "--pixel-size", "0.1", "--out", str(tmp_path / "a.csv")],
        "chem": [
            "chem",
            str(atoms),
            "--pixel-size",
            "0.1",
            "--stack",
            str(movie),
            "--out",
            str(tmp_path / "c.csv"),
        ],
        "rvae": [
            "rvae",
            str(movie),
            str(atoms),
            "--pixel-size",
            "0.1",
            "--out",
            str(tmp_path / "r"),
        ],
        "run": [
            "run",
            str(movie),
            "--pixel-size",
            "0.1",
            "--scheduler",
            "none",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ],
        "finetune": [
            "finetune",
            str(movie),
            str(atoms),
            "--pixel-size",
            "0.1",
            "--out",
            str(tmp_path / "f.pt"),
        ],
        "pfm": ["pfm", str(movie), "--out", str(tmp_path / "p")],
    }[command]
    assert main([*argv, "--frames", spec]) == 2
    err = capsys.readouterr().err.strip()
    assert "'0:2,9'" in err and "frames 0..3" in err and len(err.splitlines()) == 1, err
