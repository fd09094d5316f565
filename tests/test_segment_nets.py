"""Networks and model files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from atomlens.segment.model_file import (
    SHIPPED,
    Detector,
    ModelFileError,
    load_detector,
    save_detector,
)
from atomlens.segment.nets import NetConfig, NetConfigError, UNet, build_net, n_params


@pytest.mark.parametrize("arch", ["unet", "dilated_unet"])
def test_unet_shapes_any_classes(arch):
    cfg = NetConfig(arch=arch, classes=("bg", "A", "B", "C"), base_filters=4, levels=3)
    net = UNet(cfg).eval()
    with torch.inference_mode():
        y = net(torch.randn(2, 1, 32, 48))
    assert y.shape == (2, 4, 32, 48)
    assert cfg.multiple == 4


def test_dilated_variant_differs_and_config_roundtrip():
    a = NetConfig(arch="unet", base_filters=8)
    b = NetConfig(arch="dilated_unet", base_filters=8)
    assert n_params(build_net(a)) != n_params(build_net(b))
    assert NetConfig.from_dict(json.loads(json.dumps(b.to_dict()))) == b


def test_bad_configs_raise_clear_errors():
    with pytest.raises(NetConfigError, match="arch"):
        NetConfig(arch="resnet")
    with pytest.raises(NetConfigError, match="two classes"):
        NetConfig(classes=("bg",))
    with pytest.raises(NetConfigError, match="unknown network config keys"):
        NetConfig.from_dict({"arch": "unet", "wings": 2})


def _tiny(classes=("background", "C", "Si")) -> Detector:
    torch.manual_seed(0)
    cfg = NetConfig(classes=classes, base_filters=4, levels=2, dilations=(1, 2))
    return Detector(build_net(cfg).eval(), cfg, 0.2, 0.35, 64, {"name": "tiny"})


def test_save_load_roundtrip(tmp_path):
    det = _tiny()
    p = save_detector(det, tmp_path / "m.pt")
    back = load_detector(p)
    assert back.classes == det.classes and back.card == {"name": "tiny"}
    x = torch.randn(1, 1, 16, 16)
    with torch.inference_mode():
        assert torch.allclose(back.net(x), det.net(x))


def test_model_file_errors(tmp_path):
    det = _tiny(("background", "Mo", "S"))
    p = save_detector(det, tmp_path / "mos2.pt")
    with pytest.raises(ModelFileError, match=r"predicts classes \['background', 'Mo', 'S'\]"):
        load_detector(p, classes=("background", "C", "Si"))
    with pytest.raises(ModelFileError, match="0.2 Å/px"):
        load_detector(p, pixel_size=0.1)
    with pytest.raises(ModelFileError, match="does not exist"):
        load_detector(tmp_path / "nope.pt")
    junk = tmp_path / "junk.pt"
    torch.save({"weights": 1}, junk)
    with pytest.raises(ModelFileError, match="not an AtomLens detector"):
        load_detector(junk)
    # weights that do not fit the described network (e.g. a different window/depth)
    blob = torch.load(p, weights_only=True)
    blob["config"]["net"]["levels"] = 3
    torch.save(blob, tmp_path / "edited.pt")
    with pytest.raises(ModelFileError, match="do not fit"):
        load_detector(tmp_path / "edited.pt")


def test_shipped_model_is_small_documented_and_predicts():
    assert SHIPPED.exists()
    assert SHIPPED.stat().st_size < 4_000_000
    det = load_detector()
    assert det.classes == ("background", "C", "Si")
    assert 50_000 < n_params(det.net) < 1_000_000
    card = det.card
    for key in (
        "training_data",
        "expected_pixel_size_A",
        "classes",
        "validation",
        "command",
        "seed",
        "date",
    ):
        assert key in card, key
    side = json.loads((SHIPPED.parent / "graphene_card.json").read_text())
    assert side["date"] == card["date"]
    with torch.inference_mode():
        y = det.net(torch.zeros(1, 1, 32, 32)).softmax(1)
    assert y.shape == (1, 3, 32, 32)
    assert np.allclose(y.sum(1).numpy(), 1, atol=1e-5)
