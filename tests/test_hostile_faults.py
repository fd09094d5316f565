"""Faults (issue 17): ``kill -9`` during each stage of ``atomlens run`` and during a
project save, then rerun or reopen: the same outputs as an uninterrupted run, no
half-written file, no inconsistent project.

Each kill is a real SIGKILL of a child process, sent by the child to itself at a chosen
point (a stage's function patched to kill on entry or part-way), so the point is exact
and the test does not depend on timing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atomlens.io.project import Project, load_project, save_project

pytestmark = pytest.mark.slow

#: arms the kill at the second call of one pipeline.runner chunk function
_SECOND_CALL_DIES = """
import atomlens.pipeline.runner as R
orig = R.{fn}
calls = []
def chunk(*a, **k):
    calls.append(1)
    if len(calls) == 2:
        die()
    return orig(*a, **k)
R.{fn} = chunk
"""

#: kill points: name -> (python statements that arm the kill in the child, report on?)
KILLS = {
    # the second detection chunk (frames 4-5), after the first chunk's maps were written
    "detect": (_SECOND_CALL_DIES.format(fn="detect_chunk"), False),
    "chem": (_SECOND_CALL_DIES.format(fn="chem_chunk"), False),
    "latent": (
        """
import atomlens.pipeline.latent_stage as L
L._train_and_encode = lambda *a, **k: die()
""",
        False,
    ),
    # outputs: killed after two files were renamed into place, a third one half-way
    "outputs": (
        """
import os
import atomlens.io.atomic as A
orig = os.replace
calls = []
def replace(src, dst):
    calls.append(str(dst))
    if len(calls) == 3:
        die()
    return orig(src, dst)
A.os.replace = replace
""",
        False,
    ),
    # the project beside the results: killed after atoms.csv, before project.json
    "project": (
        """
import atomlens.io.project as P
orig = P.write_atoms_csv
def write(*a, **k):
    orig(*a, **k)
    die()
P.write_atoms_csv = write
""",
        False,
    ),
    "report": (
        """
import atomlens.pipeline.report as Rep
Rep.write_report = lambda *a, **k: die()
""",
        True,
    ),
}

CHILD = """
import os, signal, sys
import torch
torch.set_num_threads(1)
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
{arm}
from atomlens.pipeline import PipelineConfig, run_pipeline
cfg = PipelineConfig.from_file(sys.argv[3])
run_pipeline(sys.argv[1], sys.argv[2], cfg, scheduler=None, progress=False)
print("finished without being killed")
"""


def _config(path: Path, report: bool) -> Path:
    path.write_text(
        textwrap.dedent(f"""
        [input]
        pixel_size = 0.1
        [descriptors]
        window = 16
        [latent]
        epochs = 2
        batch_size = 64
        [report]
        enabled = {"true" if report else "false"}
    """)
    )
    return path


@pytest.fixture(scope="module")
def movie(tmp_path_factory) -> Path:
    from atomlens.atoms.evaluate import synth_validation_set

    root = tmp_path_factory.mktemp("faults")
    frames, _ = synth_validation_set(n_frames=6, size=96, seed=4242)
    np.save(root / "movie.npy", frames)
    return root / "movie.npy"


def _run_here(movie: Path, out: Path, cfg: Path) -> None:
    """An uninterrupted run in this process (one torch thread, as in the children)."""
    import torch

    from atomlens.pipeline import PipelineConfig, run_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_pipeline(movie, out, PipelineConfig.from_file(cfg), scheduler=None, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(movie) -> pd.DataFrame:
    """The atom table of an uninterrupted run."""
    out = movie.parent / "reference"
    _run_here(movie, out, _config(movie.parent / "ref.toml", False))
    return pd.read_csv(out / "atoms.csv")


def _child(movie: Path, out: Path, cfg: Path, arm: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", CHILD.format(arm=arm), str(movie), str(out), str(cfg)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def _temporaries(folder: Path) -> list[str]:
    return [str(p.relative_to(folder)) for p in folder.rglob("*.atomlens-tmp")]


def _consistent_after_kill(out: Path) -> None:
    """What a killed run leaves is whole: run.json (if any) matches atoms.csv, a project
    (if any) opens or is refused with a clear error, never half-read."""
    from atomlens.errors import AtomLensError

    if (out / "run.json").exists():
        run = json.loads((out / "run.json").read_text())
        assert run["atoms"] == len(pd.read_csv(out / "atoms.csv"))
    proj = out / "project.atomlens"
    if (proj / "project.json").exists():
        try:
            p = load_project(proj)
        except AtomLensError:
            pass  # refused clearly: acceptable, the rerun rewrites it
        else:
            assert p.atoms is not None and len(p.atoms) > 0


@pytest.mark.parametrize("point", list(KILLS))
def test_kill_9_then_rerun_gives_the_uninterrupted_outputs(point, movie, reference, tmp_path):
    arm, report = KILLS[point]
    cfg = _config(tmp_path / "cfg.toml", report)
    out = tmp_path / "out"
    proc = _child(movie, out, cfg, arm)
    assert proc.returncode == -9, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    _consistent_after_kill(out)
    _run_here(movie, out, cfg)  # rerun: resumes from what was finished
    atoms = pd.read_csv(out / "atoms.csv")
    pd.testing.assert_frame_equal(atoms, reference, check_exact=False, rtol=1e-6, atol=1e-6)
    run = json.loads((out / "run.json").read_text())
    assert run["atoms"] == len(reference)
    assert _temporaries(out) == []
    proj = load_project(out / "project.atomlens")
    assert len(proj.atoms) == len(reference)
    if report:
        assert (out / "report.html").stat().st_size > 1000


SAVE_CHILD = """
import os, signal, sys
import pandas as pd
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
{arm}
from atomlens.io.project import load_project, save_project
p = load_project(sys.argv[1])
p.atoms = pd.read_csv(sys.argv[2])
p.corrected_frames = [0, 1]
save_project(sys.argv[1], p)
print("finished without being killed")
"""

SAVE_KILLS = {
    # the new atoms.csv is in place, project.json still describes the old one
    "after_atoms": """
import atomlens.io.project as P
orig = P.write_atoms_csv
def write(*a, **k):
    orig(*a, **k)
    die()
P.write_atoms_csv = write
""",
    # the new atoms.csv is written to its temporary but not renamed
    "before_rename": """
import os
import atomlens.io.atomic as A
A.os.replace = lambda src, dst: die()
""",
    # both files written, killed before the previous table is dropped
    "after_manifest": """
import atomlens.io.atomic as A
orig = A.write_text
def write(path, text):
    orig(path, text)
    die()
A.write_text = write
""",
}


def _atoms(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "frame": np.arange(n) % 2,
            "y": rng.uniform(0, 60, n),
            "x": rng.uniform(0, 60, n),
            "cls": "C",
            "prob": 0.9,
        }
    )


@pytest.mark.parametrize("point", list(SAVE_KILLS))
def test_kill_9_during_project_save_leaves_a_whole_project(point, tmp_path):
    old, new = _atoms(50, 1), _atoms(80, 2)
    folder = save_project(tmp_path / "p", Project(pixel_size=0.1, atoms=old))
    new.to_csv(tmp_path / "new.csv", index=False)
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SAVE_CHILD.format(arm=SAVE_KILLS[point]),
            str(folder),
            str(tmp_path / "new.csv"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, (proc.returncode, proc.stderr[-2000:])
    reopened = load_project(folder)  # never an error, never a mix
    if point == "after_manifest":  # the new save completed: the new table, its frames
        assert len(reopened.atoms) == len(new) and reopened.corrected_frames == [0, 1]
    else:  # the last complete save
        assert len(reopened.atoms) == len(old) and reopened.corrected_frames == []
        np.testing.assert_allclose(reopened.atoms["y"], old["y"])
    # saving again cleans what the killed save left
    reopened.atoms = new
    save_project(folder, reopened)
    assert _temporaries(folder) == [] and not (folder / ".atoms.csv.prev").exists()
    assert len(load_project(folder).atoms) == len(new)
