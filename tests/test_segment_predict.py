"""Tiled, batched prediction and resampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atomlens.io import Stack
from atomlens.segment.model_file import Detector
from atomlens.segment.nets import NetConfig, build_net
from atomlens.segment.predict import (
    PixelSizeError,
    model_grid_shape,
    normalise,
    predict_maps,
    predict_maps_array,
    predict_model_grid,
    to_input_coords,
)


@pytest.fixture(scope="module")
def tiny() -> Detector:
    torch.manual_seed(1)
    cfg = NetConfig(base_filters=4, levels=2, dilations=(1, 2), batchnorm=False)
    return Detector(build_net(cfg).eval(), cfg, 0.2, 0.35, 512, {})


def test_normalise_robust_and_shapes():
    rng = np.random.default_rng(0)
    img = rng.normal(100, 5, (64, 64)).astype(np.float32)
    img[0, 0] = 1e6  # a hot pixel does not set the scale
    n = normalise(img)
    assert abs(np.median(n)) < 1e-6 and 0.05 < n.ravel()[1:].std() < 0.5
    t = normalise(torch.from_numpy(np.stack([img, 3 * img + 7])))
    assert torch.allclose(t[0], t[1], atol=1e-4)  # per-frame affine invariance


def test_tiles_blend_to_the_untiled_result(tiny):
    x = normalise(torch.randn(2, 100, 120))
    whole = predict_model_grid(tiny, x, tile=512)
    tiled = predict_model_grid(tiny, x, tile=48, overlap=12)
    assert tiled.shape == whole.shape == (2, 3, 100, 120)
    # interior agrees closely (receptive-field effects only near tile edges)
    assert torch.allclose(tiled[..., 20:-20, 20:-20], whole[..., 20:-20, 20:-20], atol=0.05)
    assert torch.allclose(tiled.sum(1), torch.ones(2, 100, 120), atol=1e-5)


def test_predict_maps_streams_frames_with_pixel_size(tiny):
    data = np.random.default_rng(0).random((3, 50, 70)).astype(np.float32)
    out = list(predict_maps(Stack(data, pixel_size=0.1), tiny, batch_size=2))
    assert [t for t, _ in out] == [0, 1, 2]
    assert all(m.shape == (3, 50, 70) and m.dtype == np.float32 for _, m in out)
    arr = predict_maps_array(data, tiny, pixel_size=0.1, frames=[2])
    assert arr.shape == (1, 3, 50, 70)
    np.testing.assert_allclose(arr[0], out[2][1], atol=1e-5)
    with pytest.raises(PixelSizeError, match="pixel size is unknown"):
        next(predict_maps(data, tiny))


def test_grid_mapping_roundtrip():
    shape = (256, 300)
    ms = model_grid_shape(shape, 0.078, 0.2)
    assert ms == (100, 117)
    # the centre of the model grid maps to the centre of the input
    c = to_input_coords(np.array([[(ms[0] - 1) / 2, (ms[1] - 1) / 2]]), shape, ms)
    np.testing.assert_allclose(c[0], [(shape[0] - 1) / 2, (shape[1] - 1) / 2], atol=1e-9)
