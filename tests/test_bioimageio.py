"""bioimage.io export: the shipped model becomes a package that bioimageio.spec validates
offline, whose TorchScript reproduces its test output and AtomLens' own prediction."""

from __future__ import annotations

import json
import socket
import zipfile

import numpy as np
import pytest
import torch

pytest.importorskip("bioimageio.spec", reason="bioimageio.spec not installed")


@pytest.fixture
def offline(monkeypatch):
    """No network: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access during bioimage.io export/validation: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from atomlens.segment.bioimageio import export_bioimageio

    out = tmp_path_factory.mktemp("bio") / "graphene.zip"
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(
            socket.socket,
            "connect",
            lambda *a, **k: (_ for _ in ()).throw(AssertionError("network access during export")),
        )
        res = export_bioimageio(None, out)
    finally:
        mp.undo()
    return res


def test_package_validates_offline(package, offline):
    from atomlens.segment.bioimageio import validate_package

    assert package.path.exists() and package.status in ("valid-format", "passed")
    ok, status = validate_package(package.path)
    assert ok, status
    names = set(zipfile.ZipFile(package.path).namelist())
    assert {
        "rdf.yaml",
        "weights.torchscript",
        "test_input.npy",
        "test_output.npy",
        "cover.png",
        "README.md",
        "atomlens_card.json",
    } <= names


def test_torchscript_reproduces_test_output_and_atomlens_prediction(package, tmp_path):
    import yaml

    from atomlens.segment.model_file import load_detector
    from atomlens.segment.predict import normalise, predict_model_grid

    with zipfile.ZipFile(package.path) as z:
        z.extractall(tmp_path)
    rdf = yaml.safe_load((tmp_path / "rdf.yaml").read_text())
    det = load_detector(None)
    # the spatial axes state the model's sampling in Å; the channels are its classes
    ax = {a.get("id"): a for a in rdf["inputs"][0]["axes"]}
    assert ax["y"]["unit"] == "angstrom" and ax["y"]["scale"] == pytest.approx(det.pixel_size)
    out_ch = [a for a in rdf["outputs"][0]["axes"] if a["type"] == "channel"][0]
    assert out_ch["channel_names"] == list(det.classes)
    net = torch.jit.load(str(tmp_path / "weights.torchscript"))
    x = torch.from_numpy(np.load(tmp_path / "test_input.npy"))
    expected = np.load(tmp_path / "test_output.npy")
    with torch.inference_mode():
        got = net(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-5)
    # another size and a batch of two: same as AtomLens' own normalise + network
    rng = np.random.default_rng(1)
    imgs = rng.gamma(2.0, 1.0, (2, 96, 136)).astype(np.float32) * 50
    with torch.inference_mode():
        got2 = net(torch.from_numpy(imgs)[:, None]).numpy()
        ref = predict_model_grid(det, normalise(torch.from_numpy(imgs))).numpy()
    np.testing.assert_allclose(got2, ref, atol=1e-4)


def test_cli_export_model(tmp_path, capsys, offline):
    from atomlens.cli import main

    out = tmp_path / "pkg.zip"
    assert main(["export-model", "graphene", "--bioimageio", str(out)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["status"] in ("valid-format", "passed") and out.exists()
    # a wrong suffix is one clear error line, exit code 2
    assert main(["export-model", "--bioimageio", str(tmp_path / "pkg.tar")]) == 2
    assert ".zip" in capsys.readouterr().err
