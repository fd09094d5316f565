"""Readers: calibration from every format, lazy reading, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.io import Stack, StackError, read_stack, write_tiff
from tests.conftest import real_file

# stated pixel sizes of the real files in ../shared/data/formats (Å)
FORMATS = [
    ("formats/mos2_se_implanted.dm3", (1, 1024, 1024), 0.127),
    ("formats/16_STOimage_1.ser", (1, 1024, 1024), 0.100),
    ("formats/Acquisition_18.emd", (1, 1024, 1024), 0.122),
    ("formats/srtio3_abf_movie.hspy", (5, 512, 512), 0.092),
]


@pytest.mark.parametrize("rel, shape, px", FORMATS)
def test_native_formats_give_stack_and_pixel_size(shared_data, rel, shape, px):
    stack = read_stack(real_file(shared_data, rel))
    assert stack.shape == shape
    assert stack.data.dtype == np.float32
    assert stack.pixel_size == pytest.approx(px, abs=0.0006)
    assert stack.pixel_size_source == "metadata"
    assert np.isfinite(stack.frame(0)).all() and stack.frame(0).std() > 0


def test_real_npz_and_npy_with_sidecar(shared_data):
    movie = read_stack(real_file(shared_data, "real/graphene_si1c3_movie.npz"))
    assert movie.shape == (48, 256, 256)
    assert movie.pixel_size == pytest.approx(0.078125)
    mos2 = read_stack(real_file(shared_data, "real/MoS2_stem_Exp-000-2.npy"))
    # 9 nm field of view over 512 pixels
    assert mos2.pixel_size == pytest.approx(90.0 / 512)


def test_tiff_round_trip_and_lazy(tmp_path):
    data = np.random.default_rng(0).random((4, 40, 48)).astype(np.float32)
    path = write_tiff(tmp_path / "m.tif", data, 0.083)
    stack = read_stack(path)
    assert stack.pixel_size == pytest.approx(0.083, rel=1e-6)
    np.testing.assert_array_equal(stack.data, data)
    lazy = read_stack(path, lazy=True)
    assert not isinstance(lazy.data, np.ndarray) or isinstance(lazy.data, np.memmap)
    np.testing.assert_array_equal(lazy.frame(2), data[2])


def test_lazy_npy_converts_frames(tmp_path):
    data = (np.arange(3 * 32 * 32) % 251).reshape(3, 32, 32).astype(np.uint16)
    np.save(tmp_path / "m.npy", data)
    stack = read_stack(tmp_path / "m.npy", lazy=True, pixel_size=0.1)
    assert stack.pixel_size_source == "user"
    assert stack.frame(1).dtype == np.float32
    np.testing.assert_array_equal(stack.frame(1), data[1].astype(np.float32))


def test_two_d_image_is_one_frame():
    assert Stack(np.zeros((64, 64))).shape == (1, 64, 64)


@pytest.mark.parametrize(
    "data, words",
    [
        (np.zeros((2, 2, 64, 64)), "expected a 2-D image"),
        (np.zeros((0, 64, 64)), "empty"),
        (np.full((32, 32), np.nan), "NaN"),
        (np.zeros((64, 64, 3, 1))[..., 0][None], "RGB"),
    ],
)
def test_bad_arrays_are_named(data, words):
    with pytest.raises(StackError, match=words):
        Stack(data)


def test_corrupt_and_unknown_files(tmp_path):
    bad = tmp_path / "broken.dm3"
    bad.write_bytes(b"not a dm3 file" * 20)
    with pytest.raises(StackError, match="corrupt"):
        read_stack(bad)
    with pytest.raises(StackError, match="unknown format"):
        read_stack(tmp_path.joinpath("x.jpg2000").touch() or tmp_path / "x.jpg2000")
    with pytest.raises(FileNotFoundError):
        read_stack(tmp_path / "missing.tif")
    empty = tmp_path / "e.npz"
    np.savez(empty, labels=np.arange(5))
    with pytest.raises(StackError, match="no 2-D or 3-D array"):
        read_stack(empty)
