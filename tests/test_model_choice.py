"""Model registry, automatic model choice and the warnings when a model does not fit."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.atoms.suitability import choose_model, image_traits, model_fit_warnings
from atomlens.segment.model_file import ModelFileError
from atomlens.segment.registry import (
    list_models,
    load_model,
    model_info,
    resolve_model,
)

from .conftest import real_file

GENERAL_SHIPPED = model_info("general").available


@pytest.fixture(scope="module")
def graphene_frame() -> tuple[np.ndarray, float]:
    """A simulated HAADF graphene frame (256², 0.1 Å/px)."""
    from atomlens.simulate import simulate_frame

    mov = simulate_frame(256, 0.1, seed=3)
    return np.asarray(mov.frames[0], np.float32), 0.1


@pytest.fixture(scope="module")
def mos2_frame() -> tuple[np.ndarray, float]:
    """A simulated HAADF MoS2 frame (256², 0.12 Å/px) from the project's renderer."""
    from atomlens.simulate.image import render_image
    from atomlens.simulate.materials import tmd_2h
    from atomlens.simulate.probe import Probe

    rng = np.random.default_rng(5)
    cols = tmd_2h(256 * 0.12, rng, "MoS2")
    img, _ = render_image(
        cols.yx_A,
        cols.z,
        (256, 256),
        0.12,
        Probe.with_fwhm(0.9),
        rng,
        weights=cols.count,
        dose=2e5,
        background=2.0,
    )
    return img, 0.12


@pytest.fixture(scope="module")
def graphene_model():
    return load_model("graphene")


def test_list_models_describes_both_shipped_models():
    models = {m.name: m for m in list_models()}
    assert set(models) == {"graphene", "general"}
    g = models["graphene"]
    assert g.classes == ("C", "Si") and g.available and not g.handles_dark
    assert g.pixel_size_range[0] < 0.1 < g.pixel_size_range[1]
    gen = models["general"]
    assert gen.classes == ("atom",) and gen.handles_dark
    assert gen.pixel_size_range == (0.05, 0.5)


def test_names_and_paths_resolve_and_bad_names_say_what_exists(tmp_path):
    assert resolve_model("graphene").name == "graphene.pt"
    assert resolve_model(None).name == "graphene.pt"
    det = load_model("graphene")
    assert det.card["registry_name"] == "graphene" and det.classes == ("background", "C", "Si")
    with pytest.raises(ModelFileError, match="general.*graphene"):
        resolve_model("grapheen")
    with pytest.raises(ModelFileError, match="auto"):
        resolve_model("auto")
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model(str(tmp_path / "missing.pt"))


def test_polarity_and_noise_from_image_statistics(graphene_frame):
    img, px = graphene_frame
    bright = image_traits(img, px, lattice=False)
    dark = image_traits(img.max() - img, px, lattice=False)
    assert bright.polarity == "bright" and dark.polarity == "dark"
    assert not bright.noise_only and bright.structure > 2
    noise = np.random.default_rng(0).normal(50, 5, (256, 256))
    tr = image_traits(noise, 0.1)
    assert tr.noise_only and tr.structure == pytest.approx(1.0, abs=0.2)


def test_choose_graphene_for_graphene_general_otherwise(graphene_frame, mos2_frame):
    img, px = graphene_frame
    name, why = choose_model(img, px)
    assert name == "graphene", why
    fallback = "general" if GENERAL_SHIPPED else "graphene"
    mimg, mpx = mos2_frame
    name, why = choose_model(mimg, mpx)
    assert name == fallback and "sublattices" in why
    # a MoS2 pixel size 28 % too small puts its lattice near graphene's: still told apart
    name, why = choose_model(mimg, mpx / 1.28)
    assert name == fallback and "sublattices" in why
    name, why = choose_model(img.max() - img, px)
    assert name == fallback and "dark" in why
    name, why = choose_model(img, 0.9)
    assert name == fallback and "outside" in why


def test_warnings_fire_on_noise_and_dark_atoms_silent_on_graphene(graphene_frame, graphene_model):
    img, px = graphene_frame
    assert model_fit_warnings(img, px, graphene_model) == []
    noise = np.random.default_rng(1).normal(50, 5, (256, 256)).astype(np.float32)
    w = model_fit_warnings(noise, px, graphene_model)
    assert len(w) == 1 and "noise" in w[0]
    w = model_fit_warnings(img.max() - img, px, graphene_model)
    assert any("dark" in s and "--model general" in s for s in w), w


def test_warning_names_the_general_model_on_mos2(mos2_frame, graphene_model):
    if not GENERAL_SHIPPED:
        pytest.skip("the general model is not shipped yet")
    img, px = mos2_frame
    w = model_fit_warnings(img, px, graphene_model)
    assert any("does not look like graphene" in s and "--model general" in s for s in w), w


def test_cli_detect_prints_model_and_warning(tmp_path, capsys):
    from atomlens.cli import main

    noise = np.random.default_rng(2).normal(100, 10, (1, 96, 96)).astype(np.float32)
    np.save(tmp_path / "noise.npy", noise)
    rc = main(
        [
            "detect",
            str(tmp_path / "noise.npy"),
            "--pixel-size",
            "0.1",
            "--out",
            str(tmp_path / "a.csv"),
            "--refine",
            "none",
        ]
    )
    assert rc == 0
    out, err = capsys.readouterr()
    assert "model: " in out and "noise only" in out
    assert "warning:" in err and "noise" in err
    assert (
        main(["detect", str(tmp_path / "noise.npy"), "--pixel-size", "0.1", "--model", "nosuch"])
        != 0
    )


# --- real files (skipped when ../shared/data is absent) -------------------------------

REAL_GRAPHENE = [
    "real/graphene_si-2nm.npz",
    "real/graphene_grainboundary-4nm.npz",
    "real/graphene_si1c3_movie.npz",
]


def _frame(path) -> tuple[np.ndarray, float]:
    from atomlens.io import read_stack

    st = read_stack(path)
    return np.asarray(st.data[0], np.float32), float(st.pixel_size)


@pytest.mark.parametrize("rel", REAL_GRAPHENE)
def test_real_graphene_gets_graphene_and_no_warning(shared_data, graphene_model, rel):
    img, px = _frame(real_file(shared_data, rel))
    assert choose_model(img, px)[0] == "graphene"
    assert model_fit_warnings(img, px, graphene_model) == []


def test_real_abf_movie_warns_with_graphene_model(shared_data, graphene_model):
    img, px = _frame(real_file(shared_data, "formats/srtio3_abf_movie.hspy"))
    w = model_fit_warnings(img, px, graphene_model)
    assert any("dark" in s and "--model general" in s for s in w), w
    name, why = choose_model(img, px)
    assert "dark" in why and name == ("general" if GENERAL_SHIPPED else "graphene")


@pytest.mark.parametrize(
    "rel",
    [
        "real/MoS2_stem_Exp-001-5.npy",
        "formats/16_STOimage_1.ser",
        "real/pt_single_atoms/021_HAADF_15nm_Sample_PtNC_21Oct20.tif",
    ],
)
def test_real_non_graphene_is_not_called_graphene(shared_data, rel):
    if not GENERAL_SHIPPED:
        pytest.skip("the general model is not shipped yet")
    img, px = _frame(real_file(shared_data, rel))
    assert choose_model(img, px)[0] == "general"


def test_small_field_keeps_the_default_and_stays_silent(graphene_frame, graphene_model):
    """A 12.8 Å field holds too few cells to judge a lattice: graphene, no warning."""
    img, px = graphene_frame
    small = img[:128, :128]
    name, why = choose_model(small, px)
    assert name == "graphene" and "too small" in why
    assert model_fit_warnings(small, px, graphene_model) == []
