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
