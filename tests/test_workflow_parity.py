"""One recipe, one answer: the dock's headless twin (the workflows), the CLI
(``atomlens detect`` -> ``chem`` -> ``rvae``) and ``atomlens run`` give identical atoms,
chemistry and latents for the same recipe and seed; ``atomlens run`` trains every
registered latent model; on the real movie the Si keeps one track id in every path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.cli import main
from atomlens.io import read_stack, write_tiff
from atomlens.pipeline import PipelineConfig, run_pipeline
from atomlens.simulate import simulate_movie
from atomlens.workflows import chemistry, detect, drain, latent

ATOM_COLS = ["frame", "y", "x", "prob"]
CHEM_COLS = ["coordination", "ring5", "ring6", "ring7", "edge", "defect_id", "track_id"]
#: the small recipe every path is given (tiny network, 2 epochs, 1 thread)
DESC = latent.DescriptorRecipe(window=12)
LAT = latent.LatentRecipe(epochs=2, batch_size=64, hidden=(16, 16), latent_dim=2, threads=1)


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory):
    movie = simulate_movie(n_frames=3, size=160, pixel_size=0.1, seed=5, n_holes=0)
    return write_tiff(tmp_path_factory.mktemp("parity") / "movie.tif", movie.frames, 0.1)


def _workflow(path) -> pd.DataFrame:
    """What the docks do: the workflows, one after the other."""
    stack = read_stack(path)
    det = drain(detect.run(stack, detect.DetectRecipe(save_maps=False)))
    chem = drain(chemistry.run(det.atoms, det.pixel_size, chemistry.ChemRecipe(), movie=stack.data))
    lat = drain(latent.run(stack, chem.atoms, DESC, LAT))
    return latent.latents_on_atoms(chem.atoms, lat.latents, lat.windows)


def _cli(path, tmp) -> pd.DataFrame:
    assert main(["detect", str(path), "--out", str(tmp / "atoms.csv")]) == 0
    assert (
        main(
            [
                "chem",
                str(tmp / "atoms.csv"),
                "--pixel-size",
                "0.1",
                "--tracks",
                "--stack",
                str(path),
                "--out",
                str(tmp / "chem.csv"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "rvae",
                str(path),
                str(tmp / "chem.csv"),
                "--out",
                str(tmp / "rvae"),
                "--window",
                "12",
                "--epochs",
                "2",
                "--batch-size",
                "64",
                "--hidden",
                "16,16",
                "--latent",
                "2",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    return pd.read_csv(tmp / "rvae" / "atoms_latent.csv")


def _pipeline(path, tmp, model: str = "rvae") -> pd.DataFrame:
    cfg = PipelineConfig.from_dict(
        {
            "detect": {"save_maps": False},
            "descriptors": DESC.to_dict(),
            "latent": LAT.replace(model=model).to_dict(),
            "report": {"enabled": False},
        }
    )
    return run_pipeline(path, tmp, cfg, progress=False).atoms


def test_dock_twin_cli_and_run_give_the_same_answer(movie_file, tmp_path) -> None:
    ours = _workflow(movie_file)
    cli = _cli(movie_file, tmp_path / "cli")
    run = _pipeline(movie_file, tmp_path / "run")
    assert len(ours) == len(cli) == len(run) > 200
    lat_cols = ["angle", "dx", "dy", "z1", "z2"]
    for name, other in (("cli", cli), ("atomlens run", run)):
        for cols, what in ((ATOM_COLS, "atoms"), (CHEM_COLS, "chemistry"), (lat_cols, "latents")):
            a = ours[cols].to_numpy(float)
            b = other[cols].to_numpy(float)
            np.testing.assert_allclose(
                a, b, rtol=1e-6, atol=1e-6, equal_nan=True, err_msg=f"{what}: workflow vs {name}"
            )
        assert (ours["cls"].astype(str).to_numpy() == other["cls"].astype(str).to_numpy()).all()
    assert ours["z1"].notna().mean() > 0.3


@pytest.mark.parametrize("model", ["skip-rvae", "vae", "conv-ae", "pca", "nmf", "gmm"])
def test_atomlens_run_trains_every_registered_model(movie_file, tmp_path_factory, model) -> None:
    from atomlens.models import MODELS, load_model

    assert set(MODELS) == set(latent.MODEL_NAMES)
    out = tmp_path_factory.getbasetemp() / "every-model"  # detect/chem cached between models
    atoms = _pipeline(movie_file, out, model)
    m = load_model(out / "model.pt")
    assert m.kind == model and m.card["recipe"]["model"] == model
    names = m.latent_names()
    assert set(names) <= set(atoms.columns)
    assert atoms[names[0]].notna().mean() > 0.3


def _si_track_ids(atoms: pd.DataFrame, npz) -> list[int]:
    """Track id of the detection nearest (< 5 px) the annotated Si, per frame."""
    ids = []
    for fr in sorted(set(npz["atom_frame"].tolist())):
        m = (npz["atom_frame"] == fr) & (npz["atom_element"] == "Si")
        if not m.any():
            continue
        g = atoms[atoms["frame"] == fr]
        dist = np.hypot(
            g["y"].to_numpy() - npz["atom_row"][m][0], g["x"].to_numpy() - npz["atom_col"][m][0]
        )
        if len(dist) and dist.min() < 5:
            ids.append(int(g["track_id"].to_numpy()[int(np.argmin(dist))]))
    return ids


@pytest.mark.slow
def test_si_keeps_one_track_in_every_path(shared_data, tmp_path) -> None:
    """Real movie (48 frames): the Si has one track id through all frames in the
    pipeline, the CLI (chem --tracks --stack) and the chemistry workflow (the docks)."""
    from tests.conftest import real_file

    path = real_file(shared_data, "real/graphene_si1c3_movie.npz")
    npz = np.load(path)
    cfg = PipelineConfig.from_dict(
        {"detect": {"save_maps": False}, "latent": {"enabled": False}, "report": {"enabled": False}}
    )
    run = run_pipeline(path, tmp_path / "run", cfg, progress=False).atoms
    detected = run[["frame", "y", "x", "cls", "prob", "border"]]
    px = float(read_stack(path).pixel_size)
    ours = drain(chemistry.run(detected, px, chemistry.ChemRecipe(), movie=read_stack(path))).atoms
    detected.to_csv(tmp_path / "atoms.csv", index=False, float_format="%.17g")
    assert (
        main(
            [
                "chem",
                str(tmp_path / "atoms.csv"),
                "--pixel-size",
                repr(px),
                "--tracks",
                "--stack",
                str(path),
                "--out",
                str(tmp_path / "chem.csv"),
            ]
        )
        == 0
    )
    cli = pd.read_csv(tmp_path / "chem.csv")
    for name, table in (("atomlens run", run), ("workflow", ours), ("cli", cli)):
        ids = _si_track_ids(table, npz)
        assert len(ids) == 48, (name, len(ids))
        assert len(set(ids)) == 1, (name, pd.Series(ids).value_counts().to_dict())
