"""The general atom-column model: its training structures, images and labels, and the
shipped weights on held-out simulations and real files (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomlens.segment.registry import model_info
from atomlens.simulate import materials as M

from .conftest import real_file

GENERAL_SHIPPED = model_info("general").available


def _column_nn(cols: M.Columns) -> float:
    """Smallest distance (Å) between two columns of a structure."""
    ids = np.unique(cols.column[~cols.support])
    first = {c: i for i, c in reversed(list(enumerate(cols.column)))}
    pos = cols.yx_A[[first[c] for c in ids]]
    d, _ = cKDTree(pos).query(pos, k=2)
    return float(d[:, 1].min())


@pytest.mark.parametrize(
    "build, kwargs, expected",
    [
        (M.tmd_2h, {"name": "MoS2"}, 3.16 / np.sqrt(3)),  # Mo to S2
        (M.perovskite, {"name": "SrTiO3", "zone": "001"}, 3.905 / 2),  # Sr to O
        (M.perovskite, {"name": "SrTiO3", "zone": "110"}, 3.905 / (2 * np.sqrt(2))),  # Ti to O
        (M.fcc, {"element": "Au", "zone": "001"}, 4.08 / 2),
        (M.fcc, {"element": "Au", "zone": "110"}, 4.08 * np.sqrt(3 / 8)),
        (M.fcc, {"element": "Au", "zone": "111"}, 4.08 / np.sqrt(6)),
        (M.honeycomb_2d, {"name": "graphene"}, 1.42),
    ],
)
def test_projected_column_spacings_match_crystallography(build, kwargs, expected):
    cols = build(30.0, np.random.default_rng(0), **kwargs)
    assert _column_nn(cols) == pytest.approx(expected, rel=0.04)  # 1 % strain allowed
    assert cols.min_spacing_A == pytest.approx(expected, rel=0.04)


def test_visibility_follows_z_contrast():
    cols = M.perovskite(20.0, np.random.default_rng(1), zone="001", name="SrTiO3")
    o_only = np.array([set(cols.z[cols.column == c]) == {8} for c in cols.column])
    haadf = M.visible(cols, 1.7)
    abf = M.visible(cols, 0.6)
    assert not haadf[o_only].any() and haadf[~o_only].all()  # O columns: 7 % of Sr
    assert abf.all()  # in ABF-like contrast O shows
    sa = M.single_atoms(40.0, np.random.default_rng(2), element="Pt", density=0.02)
    assert not M.visible(sa, 1.7)[sa.support].any()  # the support is never labelled
    assert (sa.z[~sa.support] == 78).all() and (~sa.support).sum() >= 3


def test_rendered_sample_labels_sit_on_the_atoms():
    from atomlens.segment.general import general_config, render_general

    cfg = general_config(crop=64)
    rng = np.random.default_rng(4)
    cols = M.fcc(64 * 0.2 * 1.5, rng, zone="001", element="Pt", thickness=10)
    x, mask, yx, info = render_general(cfg, rng, cols, pixel_size_A=0.2, z_exponent=1.7, snr=200.0)
    assert x.shape == mask.shape == (64, 64) and x.dtype == np.float32
    assert len(yx) > 20 and set(np.unique(mask)) == {0, 1}
    # every label is a local maximum of the (noise-free-ish) image within a pixel or two
    from scipy import ndimage as ndi

    smooth = ndi.gaussian_filter(x, 1.0)
    inner = yx[np.all((yx > 4) & (yx < 59), axis=1)]
    peak = ndi.maximum_filter(smooth, 5) == smooth
    near = [
        peak[int(round(y)) - 1 : int(round(y)) + 2, int(round(x_)) - 1 : int(round(x_)) + 2].any()
        for y, x_ in inner
    ]
    assert np.mean(near) > 0.9


def test_broad_isolated_atoms_get_labels_as_wide_as_their_spots():
    """A 3 Å spot with a 0.4 Å label is unlearnable in noise (the network hedges below
    0.5): isolated atoms are labelled with 0.35 x the probe FWHM, crystals keep 0.4 Å,
    and each label disk sits on its (noise-free) spot's maximum within a pixel."""
    from scipy import ndimage as ndi

    from atomlens.segment.general import general_config, render_general
    from atomlens.simulate.probe import Probe

    cfg = general_config(crop=96)
    rng = np.random.default_rng(8)
    heavy = M.Columns(
        np.array([[4.0, 4.0], [4.0, 10.0], [10.0, 6.0]]),  # Å, inside the smallest field
        np.full(3, 78),
        np.ones(3),
        np.arange(3),
        np.zeros(3, bool),
        2.0,
        "Pt single atoms",
    )
    x, mask, yx, info = render_general(
        cfg,
        rng,
        heavy,
        pixel_size_A=0.2,
        z_exponent=1.7,
        snr=1e4,
        probe_override=Probe.with_fwhm(3.0),
    )
    assert info["probe_fwhm_A"] == pytest.approx(3.0, rel=0.1)
    assert info["label_radius_A"] == pytest.approx(0.35 * info["probe_fwhm_A"])
    labelled = ndi.label(mask)[0]
    areas = np.bincount(labelled.ravel())[1:]
    r_px = info["label_radius_A"] / cfg.pixel_size  # labels are drawn on the model grid
    assert len(areas) == len(yx) == 3 and np.all(areas > 0.7 * np.pi * r_px**2)
    for y, x_ in yx:  # the spot's maximum is under its label
        w = x[int(y) - 3 : int(y) + 4, int(x_) - 3 : int(x_) + 4]
        dy, dx = np.unravel_index(np.argmax(w), w.shape)
        assert mask[int(y) - 3 + dy, int(x_) - 3 + dx] == 1
    cols = M.fcc(96 * 0.2 * 1.5, rng, zone="001", element="Pt", thickness=10)
    *_, info = render_general(cfg, rng, cols, pixel_size_A=0.2, z_exponent=1.7, snr=200.0)
    assert info["label_radius_A"] == cfg.radius_A


def test_general_preset_trains_through_train_detector_and_writes_a_card(tmp_path):
    """The general preset is train_detector with its own data and card (no second loop)."""
    import json

    from atomlens.segment.general import card_fields, general_config, make_batch
    from atomlens.segment.nets import NetConfig
    from atomlens.segment.train import iter_train, train_detector

    cfg = general_config(
        crop=32,
        batch=2,
        steps=2,
        threads=1,
        net=NetConfig(arch="unet", classes=("background", "atom"), base_filters=4, levels=2),
    )
    x, y = make_batch(cfg, np.random.default_rng(0))
    assert (
        x.shape == (2, 1, 32, 32) and y.shape == (2, 32, 32) and set(y.unique().tolist()) <= {0, 1}
    )
    events = list(iter_train(cfg, batches=make_batch))
    assert events[-1]["done"] and np.isfinite(events[-2]["loss"])
    det = train_detector(
        cfg, tmp_path / "g.pt", log=lambda s: None, batches=make_batch, card_fields=card_fields(cfg)
    )
    card = json.loads((tmp_path / "g_card.json").read_text())
    assert card["name"] == "general" and card["classes"] == ["background", "atom"]
    assert "ABF" in card["contrast"] and card["steps_done"] == 2
    assert card["expected_pixel_size_A"] == [0.05, 0.5] == card["training"]["native_pixel_range"]
    assert det.classes == ("background", "atom")


def test_general_cli_warm_start_records_init_and_checks_options(tmp_path, capsys):
    """--init starts from a general model's weights and goes into the card's command;
    a missing --init file or a bad --steps is a one-line error."""
    import torch

    from atomlens.cli import main
    from atomlens.segment.model_file import load_detector

    base = tmp_path / "base.pt"
    args = ["train-detector", "--preset", "general", "--batch", "1", "--threads", "1"]
    args += ["--no-validate", "--checkpoint-every", "0"]
    assert main([*args, "--steps", "1", "--out", str(base)]) == 0
    out = tmp_path / "warm.pt"
    warm = [*args, "--steps", "1", "--init", str(base), "--out", str(out), "--average-from", "1"]
    assert main(warm) == 0
    card = load_detector(out).card
    assert f"--init {base}" in card["command"] and card["training"]["init"] == str(base)
    assert "--average-from 1" in card["command"] and "steps 1-1 (1 steps)" in card["weight_average"]
    w0 = next(iter(load_detector(base).net.state_dict().values()))
    w1 = next(iter(load_detector(out).net.state_dict().values()))
    assert torch.allclose(w0, w1, atol=0.05) and not torch.equal(w0, w1)  # one small step
    capsys.readouterr()
    assert main([*args, "--steps", "1", "--init", str(tmp_path / "nope.pt"), "--out", str(out)])
    assert "no such model file" in capsys.readouterr().err
    assert main([*args, "--steps", "0", "--out", str(out)])
    assert "--steps must be" in capsys.readouterr().err


# --- the shipped weights ---------------------------------------------------------------

needs_general = pytest.mark.skipif(not GENERAL_SHIPPED, reason="general model not shipped")


@pytest.fixture(scope="module")
def general():
    from atomlens.segment.registry import load_model

    return load_model("general")


@needs_general
def test_shipped_card_file_is_the_card_inside_the_weights(general):
    """general_card.json (read by the registry and the Detect dock) and the card inside
    general.pt (read by detection) are one card."""
    import json

    from atomlens.segment.registry import WEIGHTS_DIR

    side = json.loads((WEIGHTS_DIR / "general_card.json").read_text())
    inside = {k: v for k, v in general.card.items() if k != "registry_name"}
    assert side == inside, sorted(
        k for k in side.keys() | inside.keys() if side.get(k) != inside.get(k)
    )


@needs_general
def test_shipped_general_model_on_held_out_simulations(general):
    from atomlens.atoms.evaluate import validate_general
    from atomlens.segment.general import validation_set

    scores = validate_general(general, validation_set(n=8, seed=777))
    assert scores["all"]["f1"] >= 0.8, scores


@needs_general
def test_dark_atoms_are_inverted_without_being_asked(general):
    """An ABF-like image (dark atoms): contrast 'auto' inverts it and finds the columns;
    forcing 'bright' finds far fewer true ones."""
    from atomlens.atoms.match import match_atoms
    from atomlens.simulate.image import render_image
    from atomlens.simulate.probe import Probe
    from atomlens.workflows import detect as wf
    from atomlens.workflows.events import drain

    rng = np.random.default_rng(9)
    cols = M.perovskite(160 * 0.1, rng, zone="001", name="SrTiO3", thickness=10)
    img, yx = render_image(
        cols.yx_A,
        cols.z,
        (160, 160),
        0.1,
        Probe.with_fwhm(0.9),
        rng,
        z_exponent=0.6,
        weights=cols.count,
        dose=3e5,
    )
    abf = (img.max() * 1.2 - img).astype(np.float32)  # dark atoms on a bright background
    vis = M.visible(cols, 0.6)
    true = np.unique(np.round(yx[vis], 3), axis=0)
    true = true[np.all((true > 8) & (true < 151), axis=1)]

    def recall(contrast: str) -> tuple[float, object]:
        res = drain(
            wf.run(
                abf[None],
                wf.DetectRecipe(model="general", contrast=contrast, save_maps=False),
                None,
                pixel_size=0.1,
            )
        )
        pred = res.atoms[["y", "x"]].to_numpy(float)
        _, it = match_atoms(pred, true, 0.6 / 0.1)
        return len(it) / len(true), res

    r_auto, res = recall("auto")
    r_bright, _ = recall("bright")
    assert "inverted" in res.model_choice
    assert r_auto >= 0.8 and r_bright < r_auto - 0.3, (r_auto, r_bright)


@needs_general
def test_general_model_on_real_mos2_and_srtio3(shared_data, general):
    """Real files, no fine-tuning: MoS2 against the lattice-fit reference and SrTiO3 .ser
    HAADF on its fitted column lattice (regression floors a little under the figures of
    bench/general.py: MoS2 001-5 F1 0.83, .ser 100 % on the lattice, 100 % of sites)."""
    from atomlens.atoms import detect
    from atomlens.atoms.column_lattice import fit_square_lattice, lattice_scores
    from atomlens.atoms.lattice_reference import lattice_reference, score_tiles
    from atomlens.io import Stack, read_stack

    st = read_stack(real_file(shared_data, "real/MoS2_stem_Exp-001-5.npy"))
    frame = np.asarray(st.data[0], np.float32)
    ref, fit = lattice_reference(frame, float(st.pixel_size))
    pred = detect(Stack(frame[None], fit.pixel_size, "lattice fit"), general).atoms
    sc = score_tiles(pred, ref, fit.pixel_size, [(0, 0, *frame.shape)])
    f1 = 2 * int(sc.matched.sum()) / (int(sc.det.sum()) + int(sc.ref.sum()))
    assert f1 >= 0.75, f1

    st = read_stack(real_file(shared_data, "formats/16_STOimage_1.ser"))
    frame = np.asarray(st.data[0], np.float64)
    atoms = detect(st, general).atoms
    lat = lattice_scores(
        atoms[["y", "x"]].to_numpy(float),
        fit_square_lattice(frame, float(st.pixel_size)),
        frame.shape,
    )
    assert lat["on_lattice"] >= 0.97 and lat["sites_found"] >= 0.97, lat


def test_column_lattice_reference_finds_the_visible_columns():
    """The SrTiO3 [001] lattice fit (bench reference) on a simulated HAADF frame: Sr
    corners and Ti-O centres are sites, O is not; dark (ABF-like) frames with bright=False."""
    from atomlens.atoms.column_lattice import fit_square_lattice, lattice_scores
    from atomlens.simulate.image import render_image
    from atomlens.simulate.probe import Probe

    rng = np.random.default_rng(11)
    cols = M.perovskite(200 * 0.1, rng, zone="001", name="SrTiO3", thickness=10)
    img, yx = render_image(
        cols.yx_A, cols.z, (200, 200), 0.1, Probe.with_fwhm(0.9), rng, weights=cols.count, dose=3e5
    )
    vis = M.visible(cols, 1.7)
    true = np.unique(np.round(yx[vis], 3), axis=0)
    for image, bright in ((img, True), (img.max() - img, False)):
        fit = fit_square_lattice(image, 0.1, bright=bright)
        assert fit.period_A == pytest.approx(3.905, rel=0.05) or fit.period_A == pytest.approx(
            3.905 / np.sqrt(2), rel=0.05
        )
        sc = lattice_scores(true, fit, image.shape)
        assert sc["on_lattice"] >= 0.95 and sc["sites_found"] >= 0.95, sc


def test_spot_scaled_samples_look_as_detection_shows_broad_atoms():
    """render_spot_scaled: broad (2-4.5 Å) single atoms stated factor x smaller, so that
    on the model grid their spots measure about the spot-scale rule's target width (as
    after detection's resampling), with a label under every visible atom's spot."""
    from atomlens.atoms.spot_scale import estimate_spot_fwhm
    from atomlens.segment.general import SPOT_SCALE, general_config, render_spot_scaled

    cfg = general_config(crop=96)
    rng = np.random.default_rng(21)
    widths, n_on = [], 0
    for _ in range(3):
        x, mask, yx, info = render_spot_scaled(cfg, rng, z_exponent=1.7, snr=300.0)
        assert x.shape == mask.shape == (96, 96)
        factor = info["spot_factor"]
        ratio = info["probe_fwhm_A"] / SPOT_SCALE["target_fwhm_A"]
        assert 2.0 <= info["probe_fwhm_A"] <= 4.5 + 1e-6
        assert np.clip(ratio * 0.85, 1, 4) - 1e-6 <= factor <= np.clip(ratio * 1.2, 1, 4) + 1e-6
        iy, ix = np.round(yx).astype(int).T
        ok = (iy >= 0) & (iy < 96) & (ix >= 0) & (ix < 96)
        assert np.all(mask[iy[ok], ix[ok]] == 1)
        n_on += int(ok.sum())
        est = estimate_spot_fwhm(x, cfg.pixel_size, min_significance=3.0)
        if est.fwhm_A is not None:
            widths.append(est.fwhm_A)  # model-grid Å = the stated scale
    assert n_on >= 5
    # stated FWHM on the model grid: fwhm / factor = target / (0.85-1.2) = 1.0-1.4 Å
    assert widths and 0.7 <= float(np.median(widths)) <= 2.0, widths


def test_haadf_light_columns_beside_heavy_ones_are_rendered_but_not_labelled(monkeypatch):
    """HAADF_LIGHT_UNLABELLED: SrTiO3 [001] at a low HAADF exponent (O columns 13 % of Sr,
    over the 10 % rule) labels only the cation columns; ABF-like contrast keeps O; the
    image is the same either way (the O columns are rendered)."""
    import atomlens.segment.general as G
    from atomlens.simulate.materials import perovskite

    cfg = G.general_config(crop=64)

    def labels(flag: bool, n: float) -> tuple[np.ndarray, np.ndarray]:
        monkeypatch.setattr(G, "HAADF_LIGHT_UNLABELLED", flag)
        rng = np.random.default_rng(4)
        cols = perovskite(40.0, np.random.default_rng(1), zone="001", name="SrTiO3")
        img, yx, _ = G.render_native(cfg, rng, cols, pixel_size_A=0.2, z_exponent=n, snr=30)
        return img, yx

    img0, all_cols = labels(False, 1.3)
    img1, cations = labels(True, 1.3)
    assert np.array_equal(img0, img1)
    # [001]: per cell one Sr, one TiO and two O columns -> half the labels are O
    assert 0.4 < len(cations) / len(all_cols) < 0.6
    assert len(labels(True, 0.7)[1]) == len(labels(False, 0.7)[1]) == len(all_cols)
