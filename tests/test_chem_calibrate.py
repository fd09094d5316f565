"""Pixel-size calibration from the lattice (FFT spots, nearest-neighbour distances)."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.chem import calibrate_fft, calibrate_nn
from atomlens.chem.calibrate import CalibrationError, lattice_constant
from tests.test_chem_fixtures import honeycomb, lattice_image


@pytest.mark.parametrize("angle", [0.0, 17.0, 41.0])
def test_fft_graphene_recovers_pixel_size_and_discrepancy(angle):
    im = lattice_image(256, 0.1, angle_deg=angle, seed=1)
    cal = calibrate_fft(im, "graphene", metadata_pixel_size=0.108, pad=1024)
    assert cal.pixel_size == pytest.approx(0.1, rel=0.01)
    assert cal.discrepancy_pct == pytest.approx(8.0, abs=1.0)
    assert cal.method == "fft" and cal.details["n_spots"] == 6
    assert cal.confidence > 10


def test_fft_mos2_and_numeric_lattice_and_stack():
    im = lattice_image(256, 0.15, a=3.16, sublattice_ratio=2.0, seed=2)
    cal = calibrate_fft(im, "mos2", metadata_pixel_size=0.13, pad=1024)
    assert cal.pixel_size == pytest.approx(0.15, rel=0.01)
    stack = np.stack([im, lattice_image(256, 0.15, a=3.16, sublattice_ratio=2.0, seed=3)])
    assert calibrate_fft(stack, 3.16, 0.15, pad=1024).pixel_size == pytest.approx(0.15, rel=0.01)
    # no metadata: the innermost spot order is taken (not the brighter a/2 spots)
    assert calibrate_fft(im, 3.16, pad=1024).pixel_size == pytest.approx(0.15, rel=0.01)


def test_fft_on_noise_alone_is_weak():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(128, 128)).astype(np.float32)
    cal = calibrate_fft(noise, "graphene", 0.1, pad=512)
    lattice = calibrate_fft(lattice_image(128, 0.1), "graphene", 0.1, pad=512)
    assert cal.confidence < 0.1 * lattice.confidence


def test_nn_calibration():
    yx_A = honeycomb(8, 8)
    rng = np.random.default_rng(0)
    yx_px = (yx_A + rng.normal(0, 0.02, yx_A.shape)) / 0.09
    cal = calibrate_nn(yx_px, "graphene", metadata_pixel_size=0.1)
    assert cal.pixel_size == pytest.approx(0.09, rel=0.01)
    assert cal.discrepancy_pct == pytest.approx(11.1, abs=1.0)
    assert cal.confidence > 0.8  # patch-border atoms lack a third neighbour


def test_lattice_names_and_errors():
    assert lattice_constant("graphene") == 2.46
    assert lattice_constant("MoS2") == 3.16
    assert lattice_constant("3.5") == 3.5
    with pytest.raises(CalibrationError, match="unknown lattice"):
        lattice_constant("diamond")
    with pytest.raises(CalibrationError, match="positive"):
        lattice_constant(-1)
    with pytest.raises(CalibrationError, match="at least 4 atoms"):
        calibrate_nn(np.zeros((2, 2)))


def test_calibrate_pixel_size_of_a_stack():
    from atomlens.chem import calibrate_pixel_size
    from atomlens.io import Stack

    frames = np.stack([lattice_image(128, 0.1, seed=s) for s in range(3)])
    cal = calibrate_pixel_size(Stack(frames, 0.105, "metadata"), "graphene")
    assert cal.pixel_size == pytest.approx(0.1, rel=0.015)
    assert cal.metadata_pixel_size == 0.105 and cal.discrepancy_pct > 3


# ------------------------------------------------------------- without a nominal value
def _rendered_graphene(pixel_size: float, size: int = 256, seed: int = 0) -> np.ndarray:
    """Graphene rendered with the real-probe simulator at a known pixel size."""
    from atomlens.simulate import Probe, render_image
    from atomlens.simulate.lattice import honeycomb

    rng = np.random.default_rng(seed)
    side = size * pixel_size
    pos, _, _ = honeycomb((0, side, 0, side), rng.uniform(0, np.pi))
    img, _ = render_image(pos, ["C"] * len(pos), (size, size), pixel_size, Probe(), rng, dose=1e5)
    return img


@pytest.mark.parametrize("pixel_size", [0.06, 0.15])
def test_lattice_calibration_needs_no_nominal_value(pixel_size):
    from atomlens.chem.calibrate import calibrate_lattice

    cal = calibrate_lattice(_rendered_graphene(pixel_size, seed=int(pixel_size * 100)), "graphene")
    assert cal.pixel_size == pytest.approx(pixel_size, rel=0.02)
    assert cal.method == "lattice" and cal.sure, cal.warnings
    assert cal.evidence_ratio >= 3 and cal.confidence > 0.3
    assert cal.details["nn_pixel_size"] == pytest.approx(pixel_size, rel=0.06)
    # every trial recorded; the chosen scale's rivals (other spot orders) are not lattice-like
    assert len(cal.details["trials"]) >= 8


def test_lattice_calibration_with_the_peak_finder_and_errors():
    from atomlens.chem.calibrate import calibrate_lattice

    im = lattice_image(256, 0.12, seed=5)
    cal = calibrate_lattice(im, "graphene", 0.2, detector="peaks")
    assert cal.pixel_size == pytest.approx(0.12, rel=0.02)
    assert cal.metadata_pixel_size == 0.2 and cal.discrepancy_pct == pytest.approx(66.7, abs=3)
    rng = np.random.default_rng(1)
    with pytest.raises(CalibrationError, match="no graphene atoms found"):
        calibrate_lattice(
            np.zeros((64, 64), np.float32) + rng.normal(0, 1e-6, (64, 64)),
            "graphene",
            detector="peaks",
        )
    with pytest.raises(CalibrationError, match="unknown detector"):
        calibrate_lattice(im, "graphene", detector="magic")


@pytest.mark.slow
def test_read_stack_calibrates_and_cli_says_how_sure(tmp_path, capsys):
    from atomlens.cli import main
    from atomlens.workflows.load import read_stack

    path = tmp_path / "bare.npy"
    np.save(path, _rendered_graphene(0.09, size=192, seed=3))
    st = read_stack(path, calibrate="graphene")
    assert st.pixel_size == pytest.approx(0.09, rel=0.02)
    assert (
        st.pixel_size_source == "calibration" and st.metadata["calibration"]["method"] == "lattice"
    )
    assert main(["calibrate", str(path), "--lattice", "graphene"]) == 0
    text = capsys.readouterr().out
    assert "spot order:" in text and "evidence" in text and "verdict:     sure" in text


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,key,truth",
    [
        ("graphene_si-2nm", "image", 0.0762),
        ("graphene_grainboundary-4nm", "image", 0.0786),
        ("graphene_si1c3_movie", "frames", 0.0762),
    ],
)
def test_real_graphene_calibrates_without_metadata(shared_data, name, key, truth):
    """Truth: the FFT first-order spots searched around the nominal 0.078 Å (checked
    against the source authors' atom positions in test_chem_real.py); here the
    metadata is removed (a bare array) and must not be needed."""
    from atomlens.chem.calibrate import calibrate_lattice
    from tests.conftest import real_file

    z = np.load(real_file(shared_data, f"real/{name}.npz"))
    data = z[key][::6] if key == "frames" else z[key]
    cal = calibrate_lattice(np.asarray(data), "graphene")
    assert cal.metadata_pixel_size is None
    assert cal.pixel_size == pytest.approx(truth, rel=0.02)
    assert cal.sure and cal.evidence_ratio >= 3


@pytest.mark.slow
def test_real_movie_binned_to_coarse_pixels_calibrates(shared_data):
    """Real frames at a LibraryNet-like scale: the 48-frame movie binned 2x2 (0.152 Å/px,
    128² px, bond 9.3 px), no metadata; truth 2x the movie's FFT value."""
    from atomlens.chem.calibrate import calibrate_lattice
    from tests.conftest import real_file

    frames = np.load(real_file(shared_data, "real/graphene_si1c3_movie.npz"))["frames"]
    for t in (0, 24):
        binned = frames[t].reshape(128, 2, 128, 2).mean((1, 3))
        cal = calibrate_lattice(binned, "graphene")
        assert cal.pixel_size == pytest.approx(2 * 0.0762, rel=0.02)
        assert cal.sure
