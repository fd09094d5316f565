"""Subimage extraction: exact windows, border policies, channels, time delays."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.descriptors import (
    DescriptorError,
    extract_time_delayed,
    extract_windows,
    grid_centres,
    normalize_stack,
)


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(0).random((4, 40, 50)).astype(np.float32)


def _centres(n=60, seed=1, shape=(4, 40, 50)):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "frame": rng.integers(0, shape[0], n),
        "y": rng.uniform(-3, shape[1] + 2, n),
        "x": rng.uniform(-3, shape[2] + 2, n),
        "cls": "C",
    })  # fmt: skip


def test_windows_match_direct_slicing_and_drop_policy(stack):
    c = _centres()
    sub = extract_windows(stack, c, window=(8, 6), border="drop")
    assert sub.images.dtype == np.float32 and sub.images.shape[1:] == (8, 6)
    assert sub.border == "drop" and sub.window == (8, 6)
    yc, xc = np.rint(c["y"]).astype(int), np.rint(c["x"]).astype(int)
    inside = (yc - 4 >= 0) & (yc + 4 <= 40) & (xc - 3 >= 0) & (xc + 3 <= 50)
    np.testing.assert_array_equal(sub.index, np.flatnonzero(inside))
    assert 0 < len(sub) < len(c)  # the table was built to have some edge atoms
    for k, i in enumerate(sub.index):
        f, y, x = int(c.frame[i]), yc[i], xc[i]
        np.testing.assert_array_equal(sub.images[k], stack[f, y - 4 : y + 4, x - 3 : x + 3])


def test_pad_policy_keeps_every_centre_with_pad_value(stack):
    c = pd.DataFrame({"frame": [0, 1, 2], "y": [0.2, 20.0, 39.4], "x": [0.0, 25.0, 49.0]})
    sub = extract_windows(stack, c, window=5, border="pad", pad_value=-1.0)
    assert len(sub) == 3 and sub.border == "pad"
    np.testing.assert_array_equal(sub.index, [0, 1, 2])
    # top-left centre (0, 0): the first two rows/cols are padding, the rest is data
    assert np.all(sub.images[0, :2] == -1) and np.all(sub.images[0, :, :2] == -1)
    np.testing.assert_array_equal(sub.images[0, 2:, 2:], stack[0, :3, :3])
    np.testing.assert_array_equal(sub.images[1], stack[1, 18:23, 23:28])


def test_centres_are_rounded_to_nearest_pixel(stack):
    c = pd.DataFrame({"frame": [0, 0], "y": [10.4, 10.6], "x": [20.49, 20.51]})
    sub = extract_windows(stack, c, window=3)
    np.testing.assert_array_equal(sub.images[0], stack[0, 9:12, 19:22])
    np.testing.assert_array_equal(sub.images[1], stack[0, 10:13, 20:23])


def test_map_channels_selection():
    maps = np.random.default_rng(2).random((3, 3, 30, 30)).astype(np.float32)
    c = pd.DataFrame({"frame": [0, 2], "y": [10, 15], "x": [12, 16]})
    both = extract_windows(maps, c, window=6, channels=[1, 2])
    assert both.images.shape == (2, 2, 6, 6) and both.n_channels == 2
    np.testing.assert_array_equal(both.images[1, 0], maps[2, 1, 12:18, 13:19])
    np.testing.assert_array_equal(both.images[1, 1], maps[2, 2, 12:18, 13:19])
    one = extract_windows(maps, c, window=6, channels=2)
    assert one.images.shape == (2, 6, 6)
    np.testing.assert_array_equal(one.images[0], maps[0, 2, 7:13, 9:15])
    assert extract_windows(maps, c, window=6).images.shape == (2, 3, 6, 6)


def test_time_delayed_windows(stack):
    c = pd.DataFrame({"frame": [0, 2, 3], "y": [20, 20, 20], "x": [25, 25, 25]})
    sub = extract_time_delayed(stack, c, window=4, delays=(0, 1))
    np.testing.assert_array_equal(sub.index, [0, 1])  # frame 3 has no frame 4
    assert sub.images.shape == (2, 2, 4, 4) and sub.channels == ("t+0", "t+1")
    np.testing.assert_array_equal(sub.images[1, 0], stack[2, 18:22, 23:27])
    np.testing.assert_array_equal(sub.images[1, 1], stack[3, 18:22, 23:27])


def test_grid_centres_and_errors(stack):
    g = grid_centres(stack.shape, step=10)
    assert len(g) == 4 * 4 * 5 and g.y.min() == 5 and g.x.max() == 45
    sub = extract_windows(stack, g, window=10)
    assert len(sub) == len(g)  # a 10-px grid from 5 px tiles the frame exactly
    with pytest.raises(DescriptorError, match="frame"):
        extract_windows(stack, pd.DataFrame({"frame": [9], "y": [5], "x": [5]}), 4)
    with pytest.raises(DescriptorError, match="lacks"):
        extract_windows(stack, pd.DataFrame({"y": [5], "x": [5]}), 4)
    with pytest.raises(DescriptorError, match="border"):
        extract_windows(stack, g, 4, border="wrap")


def test_normalize_stack_range(stack):
    out = normalize_stack(stack * 7 + 3)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    z = normalize_stack(stack, "zscore")
    assert abs(float(z.mean())) < 1e-5 and abs(float(z.std()) - 1) < 1e-4
