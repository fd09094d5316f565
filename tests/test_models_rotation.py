"""Done-when check (modest size): the rVAE's angle recovers known rotations of a motif
while its content latent carries the content; a plain VAE mixes the two."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.latent import circular_correlation
from atomlens.models import RVAE, VAE

SIZE = 16


def motif(theta: np.ndarray, third: np.ndarray, size: int = SIZE) -> np.ndarray:
    """An asymmetric three-blob motif turned by ``theta`` (rad, counter-clockwise as
    displayed with rows down); ``third`` is the brightness of the third blob (content)."""
    pts = np.array([[0.0, 0.0], [4.5, 0.0], [-1.5, -3.5]])
    amp = np.stack([np.ones_like(third), np.full_like(third, 0.9), third], 1)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    # counter-clockwise on screen (y down): x' = c x + s y, y' = -s x + c y
    x = c * pts[None, :, 0] + s * pts[None, :, 1]
    y = -s * pts[None, :, 0] + c * pts[None, :, 1]
    d2 = (xx[None, None] - x[..., None, None]) ** 2 + (yy[None, None] - y[..., None, None]) ** 2
    return (amp[..., None, None] * np.exp(-d2 / (2 * 1.6**2))).sum(1).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n = 600
    theta = rng.uniform(-np.pi / 3, np.pi / 3, n)
    third = rng.uniform(0.3, 1.0, n)
    return motif(theta, third), theta, third


def test_motif_rotation_convention():
    a = motif(np.array([0.0, np.pi / 2]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(a[1], np.rot90(a[0], 1), atol=1e-5)


def test_rvae_angle_recovers_rotation_and_vae_does_not_separate_it(data):
    x, theta, third = data
    rvae = RVAE(window=SIZE, latent_dim=2, hidden=(64, 64), lr=3e-3, rot_prior=1.0, seed=0)
    rvae.fit(x, epochs=20, batch_size=20, train_fraction=1.0, threads=1)
    lat = rvae.transform(x)
    cc = circular_correlation(lat["angle"].to_numpy(), theta)
    assert cc >= 0.9, f"angle vs true rotation: circular correlation {cc:.3f}"
    # the angle follows the rotation with the documented sign and about unit slope
    slope = np.polyfit(theta, lat["angle"].to_numpy(), 1)[0]  # |theta| < pi/3: no wrapping
    assert 0.4 < slope < 1.6, slope
    # content latents: nearly constant against rotation, and one of them carries the content
    r_rot = [abs(np.corrcoef(lat[z], theta)[0, 1]) for z in ("z1", "z2")]
    r_content = max(abs(np.corrcoef(lat[z], third)[0, 1]) for z in ("z1", "z2"))
    assert max(r_rot) < 0.5, f"content latents follow the rotation: |r| = {r_rot}"
    assert r_content > 0.4, f"no content latent tracks the third blob (|r| = {r_content:.2f})"
    assert abs(np.corrcoef(lat["angle"], third)[0, 1]) < 0.3

    vae = VAE(window=SIZE, latent_dim=2, hidden=(64, 64), lr=3e-3, seed=0)
    vae.fit(x, epochs=20, batch_size=20, train_fraction=1.0, threads=1)
    zv = vae.transform(x).to_numpy()
    # the plain VAE spends its latents on the rotation and loses the content factor
    r_vae_rot = max(abs(np.corrcoef(zv[:, i], theta)[0, 1]) for i in range(2))
    r_vae_content = max(abs(np.corrcoef(zv[:, i], third)[0, 1]) for i in range(2))
    best_vae_cc = max(abs(circular_correlation(zv[:, i], theta)) for i in range(2))
    print(f"rVAE: angle cc {cc:.3f}, slope {slope:.2f}, content |r| {r_content:.2f}, "
          f"content-vs-rotation |r| {max(r_rot):.2f}; VAE: rotation |r| {r_vae_rot:.2f}, "
          f"best cc {best_vae_cc:.2f}, content |r| {r_vae_content:.2f}")  # fmt: skip
    assert r_vae_rot > 0.8 and r_vae_content < 0.3
