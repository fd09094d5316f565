"""Latent models: interface, objective terms, decoder geometry, save/load, registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atomlens.models import (
    MODELS,
    RVAE,
    VAE,
    ConvAE,
    ModelError,
    SkipRVAE,
    load_model,
    make_model,
    wrap_angle,
)
from atomlens.models.torch_model import kl_normal_prior, kl_standard_normal


def _windows(n=64, size=12, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    cx, cy = rng.normal(0, 1.5, (2, n, 1, 1))
    return np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 4.0).astype(np.float32)


def test_kl_terms_match_torch_distributions():
    mu = torch.tensor([0.3, -1.2, 0.0])
    logsd = torch.tensor([-1.0, 0.2, -3.0])
    q = torch.distributions.Normal(mu, logsd.exp())
    ref = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 0.1))
    torch.testing.assert_close(kl_normal_prior(mu, logsd, 0.1), ref)
    # the mean term is in: moving the mean away from 0 costs mu^2 / (2 s^2)
    shifted = kl_normal_prior(mu + 0.5, logsd, 0.1) - kl_normal_prior(mu, logsd, 0.1)
    torch.testing.assert_close(shifted, ((mu + 0.5) ** 2 - mu**2) / 0.02)
    ref_std = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum()
    torch.testing.assert_close(kl_standard_normal(mu[None], logsd[None])[0], ref_std)


def test_wrap_angle_interval():
    a = np.array([np.pi, -np.pi, 3 * np.pi, 0.1, -3.0 - 2 * np.pi])
    w = wrap_angle(a)
    assert np.all(w > -np.pi) and np.all(w <= np.pi)
    np.testing.assert_allclose(np.cos(w), np.cos(a), atol=1e-12)
    np.testing.assert_allclose(w[:2], [np.pi, np.pi])


def test_spatial_decoder_rotates_and_shifts_content():
    m = RVAE(window=16, latent_dim=2, seed=3)
    m.fitted = True  # untrained weights still define a (random) image: test the geometry
    z = np.array([[0.4, -0.7]])
    base = m.decode(z)[0]
    # +90 degrees turns the content counter-clockwise as displayed (np.rot90, k=1)
    np.testing.assert_allclose(m.decode(z, angle=math.pi / 2)[0], np.rot90(base, 1), atol=1e-5)
    assert not np.allclose(base, np.rot90(base, 1), atol=1e-3)  # the image is not symmetric
    # a shift of (+2, -1) px moves the content right by 2 and up by 1
    moved = m.decode(z, shift_px=(2.0, -1.0))[0]
    np.testing.assert_allclose(moved[1:-1, 2:], base[2:, :-2], atol=1e-5)


def test_rvae_transform_columns_and_units():
    x = _windows()
    m = RVAE(window=12, latent_dim=3, hidden=(32, 32), seed=0)
    m.fit(x, epochs=1, batch_size=32, device="cpu")
    lat = m.transform(x)
    assert list(lat.columns) == ["angle", "dx", "dy", "z1", "z2", "z3"]
    assert len(lat) == len(x)
    assert lat.angle.between(-np.pi, np.pi, inclusive="right").all()
    assert m.card["n_train"] == 48 and m.card["n_test"] == 16 and m.card["epochs"] == 1


def test_save_load_roundtrip_and_window_mismatch(tmp_path):
    x = _windows()
    m = RVAE(window=12, hidden=(32, 32), rot_prior=0.2, seed=1)
    m.fit(x, epochs=2, batch_size=16, device="cpu")
    path = m.save(tmp_path / "m.pt")
    m2 = load_model(path)
    assert isinstance(m2, RVAE) and m2.config == m.config
    assert m2.card["history"]["train_loss"] == m.card["history"]["train_loss"]
    np.testing.assert_allclose(m2.transform(x).to_numpy(), m.transform(x).to_numpy(), atol=1e-6)
    with pytest.raises(ModelError, match=r"12x12 windows but got 16x16"):
        m2.transform(np.zeros((3, 16, 16), np.float32))
    with pytest.raises(ModelError, match="not trained"):
        RVAE(window=12).transform(x)


def test_skip_rvae_feeds_latent_to_every_layer():
    m = SkipRVAE(window=10, hidden=(16, 16, 16))
    dec = m.module.decoder
    assert dec.skips is not None and len(dec.skips) == 2 and m.config["skip"]
    assert make_model("rvae", window=10, skip=True, hidden=(16, 16)).module.decoder.skips
    assert RVAE(window=10).module.decoder.skips is None
    # the decoder output depends on z through the skip weights alone
    m.fitted = True
    dec.latent.weight.data.zero_()
    a, b = m.decode(np.array([[0.0, 0.0]])), m.decode(np.array([[2.0, -1.0]]))
    assert not np.allclose(a, b)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_registry_models_share_the_interface(name, tmp_path):
    x = _windows(n=40)
    kw = {"window": 12}
    if name in ("rvae", "skip-rvae", "vae"):
        kw["hidden"] = (16, 16)
    m = make_model(name, **kw)
    m.fit(x, epochs=1, batch_size=20)
    lat = m.transform(x)
    assert len(lat) == 40 and np.all(np.isfinite(lat.to_numpy(dtype=float)))
    back = load_model(m.save(tmp_path / f"{name}.pt"))
    assert type(back) is type(m)
    np.testing.assert_allclose(back.transform(x).to_numpy(float), lat.to_numpy(float), atol=1e-5)
    if name == "gmm":
        assert lat.columns[0] == "cluster"
        np.testing.assert_allclose(lat.filter(like="p").sum(1), 1.0, atol=1e-6)


def test_make_model_rejects_typos_and_unknown_names():
    with pytest.raises(ModelError, match="latent_dims"):
        make_model("rvae", latent_dims=3)
    with pytest.raises(ModelError, match="unknown model"):
        make_model("rvea")


def test_vae_and_conv_ae_shapes():
    x = _windows(n=8, size=13)  # odd size: the conv AE must still give 13x13 back
    ae = ConvAE(window=13)
    assert ae.module(torch.from_numpy(x[:, None])).shape == (8, 1, 13, 13)
    vae = VAE(window=13, latent_dim=3, hidden=(8, 8))
    assert vae.module.decoder(torch.zeros(2, 3)).shape == (2, 1, 13, 13)
    two = RVAE(window=13, channels=2, hidden=(8, 8))
    assert two.module.decoder(torch.zeros(4), torch.zeros(4, 2), torch.zeros(4, 2)).shape == (
        4,
        2,
        13,
        13,
    )
    with pytest.raises(ModelError, match="channel"):
        two.prepare(x)
    with pytest.raises(ModelError, match=r"\[0, 1\]"):
        RVAE(window=13, loss="bce").prepare(x * 3)
