"""`atomlens run` end to end on a small simulated movie: outputs, resume, Dask equality."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from atomlens.atoms.match import table_scores
from atomlens.io import write_tiff
from atomlens.pipeline import PipelineConfig, run_pipeline
from atomlens.simulate import simulate_movie


@pytest.fixture(scope="module")
def movie_file(tmp_path_factory):
    movie = simulate_movie(n_frames=3, size=160, pixel_size=0.1, seed=5, n_holes=0)
    path = write_tiff(tmp_path_factory.mktemp("movie") / "movie.tif", movie.frames, 0.1)
    return path, movie


def small_config(epochs: int = 2) -> PipelineConfig:
    cfg = PipelineConfig()
    cfg.descriptors.window = 12  # px of the movie binned to ~0.3 Å/px (3 x 3 here)
    cfg.latent.epochs = epochs
    cfg.latent.batch_size = 64
    return cfg


def test_run_writes_everything_and_resumes(movie_file, tmp_path, monkeypatch):
    path, movie = movie_file
    out = tmp_path / "out"
    # 1. a run interrupted in the latent stage (as by Ctrl-C) leaves detect and chem done
    import atomlens.pipeline.latent_stage as latent_stage

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(latent_stage, "run_latent_stage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(path, out, small_config(), progress=False)
    monkeypatch.undo()
    assert not (out / "report.html").exists()

    # 2. running again redoes only what did not finish
    res = run_pipeline(path, out, small_config(), progress=False)
    assert res.stages == {
        "detect": "cached",
        "chem": "cached",
        "descriptors": "ran",
        "latent": "ran",
    }
    atoms = pd.read_parquet(out / "atoms.parquet")
    for col in (
        "frame",
        "y",
        "x",
        "cls",
        "prob",
        "coordination",
        "ring6",
        "edge",
        "defect_id",
        "track_id",
        "angle",
        "dx",
        "dy",
        "z1",
        "z2",
    ):
        assert col in atoms.columns, col
    assert table_scores(atoms, movie.atoms, 0.1)["f1"] > 0.9
    bulk = atoms[(atoms["coordination"] == 3) & ~atoms["edge"]]
    assert (bulk["ring6"] >= 2).mean() > 0.8  # bulk atoms sit in hexagons (small frame: borders)
    assert atoms["z1"].notna().mean() > 0.5
    for name in (
        "atoms.csv",
        "bonds.csv",
        "rings.csv",
        "maps.zarr",
        "subimages.zarr",
        "model.pt",
        "report.html",
        "run.json",
        "project.atomlens",
    ):
        assert (out / name).exists(), name
    html = (out / "report.html").read_text()
    for section in (
        "probability maps",
        "rings and defects",
        "Latent manifold",
        "Latent-coloured lattices",
        "Latent distributions against frame",
    ):
        assert section in html
    assert html.count("data:image/png;base64,") >= 6
    # what `atomlens demo --gui` loads into napari
    from atomlens._napari.open_results import results_layer_tuples

    names = {kw["name"]: kind for _, kw, kind in results_layer_tuples(out)}
    assert names["atoms"] == "points" and names["bonds"] == "vectors"
    assert {"P(C) U-Net", "P(Si) U-Net", "ring centres"} <= set(names)

    # 3. a changed latent setting reruns the latent stage only
    res = run_pipeline(path, out, small_config(epochs=3), progress=False)
    assert res.stages == {
        "detect": "cached",
        "chem": "cached",
        "descriptors": "cached",
        "latent": "ran",
    }
    assert json.loads((out / "run.json").read_text())["stages"]["latent"] == "ran"


def test_run_starts_from_its_project(movie_file, tmp_path):
    path, _ = movie_file
    cfg = small_config()
    cfg.latent.enabled = False
    cfg.report.enabled = False
    first = run_pipeline(path, tmp_path / "a", cfg, progress=False)
    again = run_pipeline(tmp_path / "a" / "project.atomlens", tmp_path / "b", cfg, progress=False)
    assert again.pixel_size == first.pixel_size
    pd.testing.assert_frame_equal(
        first.atoms[["frame", "y", "x"]], again.atoms[["frame", "y", "x"]]
    )


def test_dask_local_cluster_gives_the_same_atom_table(movie_file, tmp_path):
    path, _ = movie_file
    cfg = small_config()
    cfg.latent.enabled = False
    cfg.report.enabled = False
    cfg.detect.save_maps = False
    mem = run_pipeline(path, tmp_path / "mem", cfg, scheduler=None, progress=False)
    dsk = run_pipeline(path, tmp_path / "dask", cfg, scheduler="local", progress=False)
    cols = [
        "frame",
        "y",
        "x",
        "cls",
        "prob",
        "coordination",
        "ring5",
        "ring6",
        "ring7",
        "defect_id",
        "track_id",
    ]
    pd.testing.assert_frame_equal(mem.atoms[cols], dsk.atoms[cols])
