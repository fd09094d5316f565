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


# --- issue 17: the input gate, atomic outputs, the run lock ------------------------------


def test_atomic_write_keeps_the_old_file_on_failure_and_leaves_no_temporary(tmp_path):
    from atomlens.io.atomic import atomic_write, write_json

    target = write_json(tmp_path / "a.json", {"v": 1})
    with pytest.raises(RuntimeError), atomic_write(target, "w") as fh:
        fh.write('{"v": 2, "half')
        raise RuntimeError("killed half-way")
    assert target.read_text() == '{\n  "v": 1\n}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_output_lock_refuses_a_second_run_and_cleans_stale_temporaries(tmp_path):
    from atomlens.errors import OutputError
    from atomlens.io.atomic import output_lock

    stale = tmp_path / "out" / ".atoms.csv.x1.atomlens-tmp"
    stale.parent.mkdir()
    stale.write_text("left by a killed run")
    with output_lock(tmp_path / "out"):
        assert not stale.exists()
        with pytest.raises(OutputError, match="in use by another AtomLens run"):
            with output_lock(tmp_path / "out"):
                pass
    with output_lock(tmp_path / "out"):  # released when the first run ended
        pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        with output_lock(tmp_path / "file"):
            pass


def test_outputs_under_a_regular_file_are_refused_before_work(tmp_path):
    """A path under a regular file cannot be created, even by root."""
    from atomlens.errors import OutputError
    from atomlens.io.atomic import check_output_path

    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_path(tmp_path / "f" / "atoms.csv")
    with pytest.raises(OutputError, match="disk has"):
        check_output_path(tmp_path / "maps.npy", need_bytes=1 << 62)


def test_special_files_are_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "movie.npy"
    os.mkfifo(fifo)
    with pytest.raises(StackError, match="FIFO"):
        read_stack(fifo)  # a FIFO opened for reading would block forever
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(StackError, match="folder"):
        read_stack(tmp_path / "dir.tif")


def test_header_sizes_are_checked_against_the_file(tmp_path):
    from atomlens.errors import InputFileError

    bomb = tmp_path / "bomb.npy"
    with open(bomb, "wb") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 64, 64)}
        )
    with pytest.raises(InputFileError, match=r"declares .* 16\.4 TB .* holds only 0 B"):
        read_stack(bomb, lazy=True)


def test_large_stacks_stream_within_the_memory_budget(tmp_path, monkeypatch):
    movie = np.random.default_rng(0).random((12, 256, 256)).astype(np.float32)  # 3 MB
    np.save(tmp_path / "m.npy", movie)
    monkeypatch.setenv("ATOMLENS_MEMORY_BUDGET", "1M")
    stack = read_stack(tmp_path / "m.npy", pixel_size=0.1)  # eager asked, streamed given
    assert not isinstance(stack.data, np.ndarray)
    np.testing.assert_array_equal(stack.frame(7), movie[7])


@pytest.mark.parametrize(
    "dtype, words",
    [
        (np.complex64, "complex"),
        (np.bool_, "boolean"),
        ("datetime64[s]", "date/time"),
        ([("a", "f4"), ("b", "i4")], "structured"),
    ],
)
def test_pixel_types_that_are_not_intensities_are_refused(tmp_path, dtype, words):
    np.save(tmp_path / "x.npy", np.zeros((2, 32, 32), dtype))
    for lazy in (False, True):
        with pytest.raises(StackError, match=words):
            read_stack(tmp_path / "x.npy", lazy=lazy)


def test_lossy_float32_conversion_is_refused_but_16_bit_counts_pass(tmp_path):
    levels = np.arange(32 * 32, dtype=np.uint64).reshape(32, 32)
    np.save(tmp_path / "u64.npy", levels + np.uint64(2**63))  # 1024 levels on a huge offset
    with pytest.raises(StackError, match="huge offset"):
        read_stack(tmp_path / "u64.npy")
    np.save(tmp_path / "u16.npy", levels.astype(np.uint16))
    back = read_stack(tmp_path / "u16.npy").frame(0)
    assert len(np.unique(back)) == 1024


def test_truncated_tiff_and_incomplete_zarr_are_refused(tmp_path):
    import tifffile
    import zarr

    tifffile.imwrite(
        tmp_path / "t.tif", np.ones((3, 32, 32), np.float32), imagej=True, metadata={"axes": "TYX"}
    )
    data = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(StackError, match="truncated"):
        read_stack(tmp_path / "cut.tif")
    z = zarr.open_array(
        str(tmp_path / "z.zarr"), mode="w", shape=(4, 32, 32), chunks=(1, 32, 32), dtype="f4"
    )
    z[:2] = 1.0
    with pytest.raises(StackError, match="2 of its 4 chunks"):
        read_stack(tmp_path / "z.zarr")


def test_nan_pixels_are_kept_for_masking_or_refused_on_request(tmp_path):
    from atomlens.io.stack import nonfinite_note

    movie = np.ones((2, 32, 32), np.float32)
    movie[1, :4] = np.nan
    np.save(tmp_path / "n.npy", movie)
    stack = read_stack(tmp_path / "n.npy")
    assert "128 NaN/inf pixels in 1 frame(s)" in nonfinite_note(stack)
    for lazy in (False, True):
        with pytest.raises(StackError, match="NaN/inf"):
            read_stack(tmp_path / "n.npy", lazy=lazy, nonfinite="refuse").frame(1)


def test_yaml_aliases_are_bounded():
    from atomlens.errors import SettingsError
    from atomlens.io.gate import safe_yaml_load

    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]" for k in range(1, 7)]
    with pytest.raises(SettingsError, match="expands to more than"):
        safe_yaml_load("\n".join(lines))
    assert safe_yaml_load("a: &x [1, 2]\nb: *x\n") == {"a": [1, 2], "b": [1, 2]}


def test_local_scheduler_opens_no_socket_and_keeps_chunk_order():
    psutil = pytest.importorskip("psutil")
    from atomlens.pipeline.executor import make_executor

    before = {c.laddr for c in psutil.Process().net_connections(kind="all") if c.laddr}
    ex = make_executor("local")
    try:
        assert list(ex.map(pow, [1, 2, 3, 4, 5], exp=2)) == [1, 4, 9, 16, 25]
        after = {c.laddr for c in psutil.Process().net_connections(kind="all") if c.laddr}
        assert after <= before
    finally:
        ex.close()
