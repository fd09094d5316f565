"""Latents on atoms, manifold traversal, per-frame histograms, figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.latent import (
    circular_correlation,
    decode_manifold,
    encode_atoms,
    per_frame_histograms,
    per_frame_stats,
    plot_latent_vs_frame,
    plot_manifold,
)
from atomlens.models import RVAE, ModelError, make_model


@pytest.fixture(scope="module")
def movie():
    rng = np.random.default_rng(0)
    frames = rng.random((3, 40, 40)).astype(np.float32)
    atoms = pd.DataFrame({
        "frame": [0, 0, 1, 2, 2, 1],
        "y": [20.0, 2.0, 15.2, 30.0, 25.0, 39.0],
        "x": [20.0, 20.0, 18.7, 12.0, 25.0, 10.0],
        "cls": ["C", "C", "Si", "C", "C", "C"],
    })  # fmt: skip
    return frames, atoms


@pytest.fixture(scope="module")
def model(movie):
    from atomlens.descriptors import extract_windows

    frames, _ = movie
    rng = np.random.default_rng(1)
    centres = pd.DataFrame({"frame": rng.integers(0, 3, 80), "y": rng.uniform(6, 34, 80),
                            "x": rng.uniform(6, 34, 80)})  # fmt: skip
    m = RVAE(window=12, hidden=(16, 16), latent_dim=2)
    return m.fit(extract_windows(frames, centres, 12), epochs=1, batch_size=40)


def test_encode_atoms_adds_columns_with_nan_at_borders(movie, model):
    frames, atoms = movie
    out = encode_atoms(model, frames, atoms)
    assert list(out.columns) == list(atoms.columns) + ["angle", "dx", "dy", "z1", "z2"]
    pd.testing.assert_frame_equal(out[atoms.columns], atoms)  # original columns untouched
    border = [1, 5]  # y=2 and y=39 are closer than 6 px to the edge
    assert out.loc[border, "angle"].isna().all()
    inner = out.drop(index=border)
    assert inner[["angle", "z1", "z2"]].notna().all().all()
    # the same windows through transform() give the same latents
    from atomlens.descriptors import extract_windows

    direct = model.transform(extract_windows(frames, atoms.loc[[2]], 12))
    np.testing.assert_allclose(out.loc[2, ["angle", "z1", "z2"]].to_numpy(float),
                               direct[["angle", "z1", "z2"]].to_numpy()[0], atol=1e-6)  # fmt: skip
    padded = encode_atoms(model, frames, atoms, border="pad", prefix="r_")
    assert padded["r_z1"].notna().all()
    with pytest.raises(ModelError, match="12x12 windows but got 16x16"):
        encode_atoms(model, frames, atoms, window=16)


def test_per_frame_histograms_count_every_finite_value():
    atoms = pd.DataFrame({"frame": [0, 0, 0, 2, 2, 3],
                          "angle": [-3.0, 0.1, np.nan, 0.2, 3.1, 1.0]})  # fmt: skip
    counts, edges = per_frame_histograms(atoms, "angle", bins=4)
    assert counts.shape == (4, 4) and len(edges) == 5
    np.testing.assert_allclose(edges[[0, -1]], [-np.pi, np.pi])
    np.testing.assert_array_equal(counts.sum(1), [2, 0, 2, 1])
    assert counts[0, 0] == 1 and counts[0, 2] == 1 and counts[2, 3] == 1
    dens, _ = per_frame_histograms(atoms, "angle", bins=4, density=True)
    np.testing.assert_allclose((dens * np.diff(edges)).sum(1), [1, 0, 1, 1])
    stats = per_frame_stats(atoms, ["angle"])
    assert list(stats["angle_count"]) == [2, 2, 1]
    with pytest.raises(ModelError, match="no column"):
        per_frame_histograms(atoms, "z9")


def test_decode_manifold_tiles_decoder_images(model):
    img = decode_manifold(model, n=3, extent=(-1, 1, -2, 2))
    assert img.shape == (36, 36)
    # top-left tile: z1 = -1 (first column), z2 = +2 (top row)
    np.testing.assert_allclose(img[:12, :12], model.decode(np.array([[-1.0, 2.0]]))[0], atol=1e-6)
    np.testing.assert_allclose(img[24:, 24:], model.decode(np.array([[1.0, -2.0]]))[0], atol=1e-6)
    with pytest.raises(ModelError, match="no content latents"):
        decode_manifold(
            make_model("gmm").fit(np.zeros((8, 4, 4), np.float32) + np.arange(8)[:, None, None])
        )


def test_figures_written(tmp_path, movie, model):
    frames, atoms = movie
    table = encode_atoms(model, frames, atoms)
    plot_manifold(decode_manifold(model, n=4), 4, path=tmp_path / "m.png")
    plot_latent_vs_frame(table, ["angle", "z1"], bins=8, path=tmp_path / "t.png")
    for name in ("m.png", "t.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_circular_correlation():
    rng = np.random.default_rng(0)
    a = rng.uniform(-np.pi, np.pi, 500)
    assert circular_correlation(a, a + 1.0) == pytest.approx(1.0)
    assert circular_correlation(a, -a) == pytest.approx(-1.0)
    assert abs(circular_correlation(a, rng.uniform(-np.pi, np.pi, 500))) < 0.15


def test_cli_rvae_writes_model_table_and_figures(tmp_path, movie):
    import pandas as pd

    from atomlens.cli import main
    from atomlens.models import load_model

    frames, atoms = movie
    np.save(tmp_path / "stack.npy", frames)
    rng = np.random.default_rng(3)
    table = pd.DataFrame({"frame": rng.integers(0, 3, 60), "y": rng.uniform(0, 40, 60),
                          "x": rng.uniform(0, 40, 60)})  # fmt: skip
    table.to_csv(tmp_path / "atoms.csv", index=False)
    out = tmp_path / "out"
    rc = main(["rvae", str(tmp_path / "stack.npy"), str(tmp_path / "atoms.csv"), "--window", "12",
               "--epochs", "2", "--hidden", "16,16", "--out", str(out)])  # fmt: skip
    assert rc == 0
    model = load_model(out / "rvae.pt")
    assert model.window == (12, 12) and model.card["epochs"] == 2
    res = pd.read_csv(out / "atoms_latent.csv")
    assert len(res) == 60 and {"angle", "dx", "dy", "z1", "z2"} <= set(res.columns)
    assert res["z1"].notna().sum() == len(extract_windows_count(frames, table, 12))
    for name in ("manifold.png", "latent_vs_frame.png"):
        assert (out / name).stat().st_size > 2000
    bad = tmp_path / "bad.csv"
    table.drop(columns="x").to_csv(bad, index=False)
    assert main(["rvae", str(tmp_path / "stack.npy"), str(bad), "--out", str(out)]) == 2


def extract_windows_count(frames, table, window):
    from atomlens.descriptors import extract_windows

    return extract_windows(frames, table, window).index
