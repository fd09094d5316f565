"""Species from contrast: integrated intensities, their errors, classes and names.

Synthetic checks against known truth (rendered Gaussian columns with Poisson noise), and
on the real MoS2 images Mo vs S2 against the lattice-fit reference (skips without
``../shared/data``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atomlens.atoms.contrast import (
    UNCLASSIFIED,
    ContrastError,
    contrast_classes,
    integrated_intensity,
    name_classes,
    species_from_contrast,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"


def _render(
    yx: np.ndarray, amp: np.ndarray, shape=(96, 96), sigma_px=2.0, background=20.0
) -> np.ndarray:
    """Noise-free image (counts): Gaussian columns of total weight ``amp`` on a flat
    background."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = np.full(shape, background, float)
    for (y, x), a in zip(yx, amp):
        img += (
            a
            / (2 * np.pi * sigma_px**2)
            * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma_px**2))
        )
    return img


def _grid(n=6, step=14.0, off=13.0) -> np.ndarray:
    g = np.arange(n) * step + off
    return np.array([(y, x) for y in g for x in g], float)


def test_integrated_intensity_recovers_column_weights_and_its_error_is_calibrated():
    rng = np.random.default_rng(0)
    yx = _grid() + rng.uniform(-0.5, 0.5, (36, 2))
    amp = np.where(rng.random(36) < 0.5, 400.0, 900.0)
    clean = _render(yx, amp)
    r = 6.0  # 3 sigma of the probe: 98.9 % of a column's weight
    i0, _ = integrated_intensity(clean, yx, r)
    np.testing.assert_allclose(i0, amp * (1 - np.exp(-(r**2) / 8)), rtol=0.02)
    draws, sigmas = [], []
    for _ in range(60):
        noisy = rng.poisson(clean).astype(float)
        i, s = integrated_intensity(noisy, yx, r)
        draws.append(i)
        sigmas.append(s)
    spread = np.std(draws, axis=0)
    predicted = np.median(sigmas, axis=0)
    ratio = predicted / spread
    # the propagated error matches the scatter over noise realisations (per atom within
    # the sampling error of a 60-draw std, ~ +-20 %; on average within 15 %)
    assert 0.85 < np.median(ratio) < 1.15, np.median(ratio)
    assert np.all((ratio > 0.6) & (ratio < 1.6))
    # and noise biases the estimate by well under its own error (measured: ~0.15 sigma)
    bias = (np.mean(draws, axis=0) - i0) / spread
    assert abs(np.median(bias)) < 0.3, np.median(bias)


def test_classes_are_ordered_by_brightness_and_auto_k_finds_three_species():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 3, 300)
    means = np.array([100.0, 220.0, 400.0])
    x = rng.normal(means[true], 12.0)
    labels, model = contrast_classes(x, "auto")
    assert model.k == 3 and model.criterion == "icl"
    assert np.all(np.diff(model.means) > 0)
    np.testing.assert_allclose(model.means, means, rtol=0.05)
    assert (labels == true).mean() > 0.99
    # one broad peak stays one class
    labels1, m1 = contrast_classes(rng.normal(300, 30, 200), "auto")
    assert m1.k == 1 and set(labels1) == {0}
    # fixed k and NaN entries
    x2 = np.append(x, np.nan)
    labels2, m2 = contrast_classes(x2, 2)
    assert m2.k == 2 and m2.criterion == "fixed" and labels2[-1] == UNCLASSIFIED


def test_species_from_contrast_names_classes_from_an_image():
    rng = np.random.default_rng(2)
    yx = _grid()
    heavy = rng.random(len(yx)) < 0.4
    img = rng.poisson(_render(yx, np.where(heavy, 1500.0, 500.0))).astype(float)
    atoms = pd.DataFrame({"frame": 0, "y": yx[:, 0], "x": yx[:, 1], "cls": "C", "border": False})
    out, model = species_from_contrast(img, atoms, k="auto", names={"0": "S2", "1": "Mo"})
    assert model.k == 2
    assert list(out["cls"].cat.categories) == ["S2", "Mo"]
    assert (out["cls"].astype(str).to_numpy() == np.where(heavy, "Mo", "S2")).all()
    assert {"intensity", "intensity_sigma", "contrast_class"} <= set(out.columns)
    assert (out["intensity_sigma"] > 0).all()
    # the same names as a list and as "a,b"; unnamed classes get a placeholder
    assert (name_classes(out, ["S2", "Mo"])["cls"] == out["cls"]).all()
    assert (name_classes(out, "S2,Mo")["cls"] == out["cls"]).all()
    assert set(name_classes(out, {"1": "Mo"})["cls"].astype(str)) == {"class0", "Mo"}


def test_bad_input_gives_one_clear_error():
    atoms = pd.DataFrame({"y": [10.0, 20.0], "x": [10.0, 20.0]})
    img = np.zeros((32, 32))
    with pytest.raises(ContrastError, match="positive number of pixels"):
        integrated_intensity(img, atoms, -1)
    with pytest.raises(ContrastError, match="lacks columns"):
        integrated_intensity(img, pd.DataFrame({"y": [1.0]}), 2)
    with pytest.raises(ContrastError, match="numbered 0..1"):
        name_classes(atoms.assign(contrast_class=[0, 1]), {"2": "Mo"})
    with pytest.raises(ContrastError, match="same name"):
        name_classes(atoms.assign(contrast_class=[0, 1]), ["Mo", "Mo"])
    with pytest.raises(ContrastError, match="k must be"):
        contrast_classes(np.arange(10.0), 0)
    with pytest.raises(ContrastError, match="no atoms"):
        species_from_contrast(img, atoms.iloc[:0])


@pytest.mark.skipif(
    not (REAL / "MoS2_stem_Exp-001-5.npy").exists(),
    reason="real MoS2 images not found (../shared/data absent)",
)
@pytest.mark.parametrize("name", ["000-2", "001-5", "002-5"])
def test_mo_and_s2_separated_by_contrast_on_real_mos2(name):
    """Contrast classes of the lattice-fit columns agree with their Mo/S2 sites (the
    reference places sites by the lattice, not by brightness)."""
    from atomlens.atoms.lattice_reference import lattice_reference
    from atomlens.io import read_stack

    st = read_stack(REAL / f"MoS2_stem_Exp-{name}.npy")
    frame = np.asarray(st.data[0], np.float32)
    ref, _ = lattice_reference(frame, float(st.pixel_size))
    out, model = species_from_contrast(
        frame, ref[["frame", "y", "x"]], k="auto", names=["S2", "Mo"]
    )
    assert model.k == 2
    truth = ref["cls"].astype(str).replace({"S": "S2"}).to_numpy()
    agree = (out["cls"].astype(str).to_numpy() == truth).mean()
    print(f"MoS2 {name}: {len(ref)} lattice sites, contrast classes vs sites agree {agree:.4f}")
    assert agree >= 0.95, agree


def test_check_classes_setting():
    from atomlens.atoms.contrast import check_classes_setting

    assert check_classes_setting("auto") == "auto" and check_classes_setting("2", "S2,Mo") == 2
    with pytest.raises(ContrastError, match="whole number"):
        check_classes_setting("two")
    with pytest.raises(ContrastError, match="3 class names"):
        check_classes_setting(2, "a,b,c")


@pytest.mark.skipif(
    not (REAL / "MoS2_stem_Exp-002-5.npy").exists(),
    reason="real MoS2 images not found (../shared/data absent)",
)
def test_detect_workflow_names_species_from_contrast():
    """The detect workflow (what the dock and `atomlens detect --species contrast` run):
    MoS2 columns named S2 / Mo by contrast, checked against the lattice-fit sites."""
    from atomlens.atoms.lattice_reference import lattice_reference
    from atomlens.atoms.match import match_atoms
    from atomlens.io import Stack, read_stack
    from atomlens.workflows import detect
    from atomlens.workflows.events import drain

    st = read_stack(REAL / "MoS2_stem_Exp-002-5.npy")
    frame = np.asarray(st.data[0], np.float32)
    ref, fit = lattice_reference(frame, float(st.pixel_size))
    recipe = detect.DetectRecipe(
        model="graphene",
        species="contrast",
        contrast_classes="2",
        class_names="S2,Mo",
        save_maps=False,
    )
    res = drain(detect.run(Stack(frame[None], fit.pixel_size), recipe))
    atoms = res.atoms
    assert set(atoms["cls"].astype(str)) == {"S2", "Mo"} and res.species_model["k"] == 2
    assert {"intensity", "intensity_sigma", "contrast_class"} <= set(atoms.columns)
    ip, it = match_atoms(
        atoms[["y", "x"]].to_numpy(), ref[["y", "x"]].to_numpy(), 0.7 / fit.pixel_size
    )
    truth = ref["cls"].astype(str).replace({"S": "S2"}).to_numpy()[it]
    assert len(ip) > 300
    assert (atoms["cls"].astype(str).to_numpy()[ip] == truth).mean() >= 0.95
    with pytest.raises(ContrastError, match="whole number"):
        drain(
            detect.run(
                Stack(frame[None], fit.pixel_size),
                detect.DetectRecipe(species="contrast", contrast_classes="x"),
            )
        )


@pytest.mark.skipif(
    not (REAL / "MoS2_stem_Exp-002-5.npy").exists(),
    reason="real MoS2 images not found (../shared/data absent)",
)
def test_cli_detect_species_contrast(tmp_path, capsys):
    from atomlens.cli import main

    out = tmp_path / "atoms.csv"
    assert (
        main(
            [
                "detect",
                str(REAL / "MoS2_stem_Exp-002-5.npy"),
                "--model",
                "graphene",
                "--pixel-size",
                "0.19",
                "--species",
                "contrast",
                "--classes",
                "2",
                "--names",
                "S2,Mo",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    atoms = pd.read_csv(out)
    assert set(atoms["cls"]) == {"S2", "Mo"}
    assert {"intensity", "intensity_sigma", "contrast_class"} <= set(atoms.columns)
    mo = atoms[atoms.cls == "Mo"]["intensity"].median()
    assert mo > 1.5 * atoms[atoms.cls == "S2"]["intensity"].median()
    assert "contrast classes: 2" in capsys.readouterr().err


@pytest.mark.gui
def test_detect_dock_names_species_from_contrast(make_napari_viewer, qtbot):
    """The Detect dock's 'species: from contrast' option: the Points layer's features
    carry the user's class names and the intensity columns; heavy atoms found as such."""
    import warnings

    from atomlens._napari._layers import add_tuple
    from atomlens._napari.detect_widget import DetectWidget
    from atomlens.simulate import simulate_movie
    from atomlens.viz.layers import image_layer_tuple

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        movie = simulate_movie(1, 64, 0.2, seed=3)
    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(movie.frames, movie.pixel_size, "movie"))
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.model.value = "graphene"
    widget.species.value = "from contrast"
    widget.n_classes.value = "2"
    widget.class_names.value = "light,heavy"
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: "atoms movie" in viewer.layers, timeout=10_000)  # added in turns
    points = viewer.layers["atoms movie"]
    feats = points.features
    assert {"intensity", "intensity_sigma", "contrast_class"} <= set(feats.columns)
    assert set(feats["cls"].astype(str)) <= {"light", "heavy"} and len(feats) > 20
    # the brighter class has the larger integrated intensities
    med = feats.groupby(feats["cls"].astype(str))["intensity"].median()
    if len(med) == 2:
        assert med["heavy"] > med["light"]
