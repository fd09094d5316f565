"""Rotationally invariant VAE (rVAE) and its skip variant (skip-rVAE).

Following Bepler et al. (spatial-VAE) as used in Kalinin et al., Sci. Adv. 2021: the
encoder maps a window to ``3 + k`` Gaussian latents, the first three being the rotation
angle and the x/y translation, then the content ``z1..zk``. The decoder is an MLP over
the image coordinate grid, which is rotated and shifted per sample before the content
latent joins it. The ELBO is reconstruction (MSE or Bernoulli) + KL of content and
translation against N(0, 1) + the full KL of the angle against N(0, s^2) (mean term
included).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from atomlens.models.base import ModelError
from atomlens.models.nets import ConvEncoder, MLPEncoder, SpatialDecoder
from atomlens.models.torch_model import (
    TorchLatentModel,
    kl_normal_prior,
    kl_standard_normal,
    reconstruction,
)

#: target decoder activations per chunk for ``micro_batch="auto"`` (see ``auto_micro_batch``)
ACTIVATIONS_PER_CHUNK = 368_640


def wrap_angle(a: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Angles wrapped into (-pi, pi]."""
    return math.pi - (math.pi - a) % (2 * math.pi)


class _RVAENet(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: SpatialDecoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder


class RVAE(TorchLatentModel):
    """Rotationally invariant variational autoencoder.

    Parameters
    ----------
    window : (h, w) window size in pixels the model is built for.
    latent_dim : number of content latents ``z1..zk`` (besides angle, dx, dy).
    skip : feed the content latent into every decoder layer (skip-rVAE).
    seed : seed of the weight initialisation.
    hidden : widths of the encoder and decoder hidden layers (paper: (128, 128);
        skip-rVAE paper: 4 x 256).
    activation : ``tanh`` (paper), ``relu``, ``elu`` or ``softplus``.
    lr : Adam learning rate (paper: 1e-4).
    rot_prior : SD ``s`` of the angle prior N(0, s^2) in radians (paper: 0.1).
    translation : learn x/y shifts (else dx = dy = 0).
    translation_prior : scale of the shift latents in grid units (the window's longer
        side spans 2 units), so a unit-normal shift latent moves by this much.
    loss : ``mse`` (0.5 x summed squared error) or ``bce`` (Bernoulli, data in [0, 1]).
    encoder : ``mlp`` (paper, for probability maps) or ``conv`` (two stride-2 convs, for
        raw images).
    channels : channels per window (e.g. 2 for C and Si maps or time delays).
    beta : weight of the KL terms (1 = the ELBO).

    ``transform`` returns ``angle`` (rad, wrapped to (-pi, pi]), ``dx``, ``dy`` (pixels)
    and ``z1..zk``.
    """

    kind = "rvae"
    default_lr = 1e-4

    def __init__(
        self,
        window: int | Sequence[int] = (24, 24),
        latent_dim: int = 2,
        skip: bool = False,
        seed: int = 0,
        hidden: Sequence[int] = (128, 128),
        activation: str = "tanh",
        lr: float = 1e-4,
        rot_prior: float = 0.1,
        translation: bool = True,
        translation_prior: float = 0.1,
        loss: str = "mse",
        encoder: str = "mlp",
        channels: int = 1,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        win = (int(window), int(window)) if np.ndim(window) == 0 else tuple(int(v) for v in window)
        if len(win) != 2 or min(win) < 2:
            raise ModelError(
                f"window must be an int or (h, w) of at least 2 pixels, got {window!r}"
            )
        if loss not in ("mse", "bce"):
            raise ModelError(f"loss must be 'mse' or 'bce', got {loss!r}")
        if encoder not in ("mlp", "conv"):
            raise ModelError(f"encoder must be 'mlp' or 'conv', got {encoder!r}")
        if latent_dim < 0 or not hidden or rot_prior <= 0:
            raise ModelError("need latent_dim >= 0, at least one hidden layer and rot_prior > 0")
        hidden = tuple(int(h) for h in hidden)
        self.config = dict(
            window=list(win), latent_dim=int(latent_dim), skip=bool(skip), seed=int(seed),
            hidden=list(hidden), activation=activation, lr=float(lr), rot_prior=float(rot_prior),
            translation=bool(translation), translation_prior=float(translation_prior),
            loss=loss, encoder=encoder, channels=int(channels), beta=float(beta),
        )  # fmt: skip
        self.default_lr = float(lr)
        n_latent = 3 + int(latent_dim)
        gen = torch.random.fork_rng(devices=[])
        with gen:
            torch.manual_seed(seed)
            if encoder == "mlp":
                enc: nn.Module = MLPEncoder(
                    int(channels) * win[0] * win[1], n_latent, hidden, activation
                )
            else:
                enc = ConvEncoder((int(channels), *win), n_latent, hidden[0], activation)
            dec = SpatialDecoder(
                win, int(channels), int(latent_dim), hidden, activation, bool(skip)
            )
            self.module = _RVAENet(enc, dec)

    def latent_names(self) -> list[str]:
        return ["angle", "dx", "dy"] + [f"z{i + 1}" for i in range(self.config["latent_dim"])]

    # -- the objective ---------------------------------------------------------------
    def _split(self, lat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        phi = lat[:, 0]
        if self.config["translation"]:
            shift = lat[:, 1:3] * self.config["translation_prior"]
        else:
            shift = torch.zeros_like(lat[:, 1:3])
        return phi, shift, lat[:, 3:]

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        return 3 + self.config["latent_dim"]

    def auto_micro_batch(self) -> int | None:
        """Windows per chunk on the CPU: about ``ACTIVATIONS_PER_CHUNK`` decoder activations
        (pixels x widest hidden layer x windows), 5 for 24 x 24 windows and 128 units, so
        the decoder's activations stay in the CPU caches (docs/rvae.md, "Speed")."""
        h, w = self.window
        per_window = h * w * max(self.config["hidden"])
        return max(1, round(ACTIVATIONS_PER_CHUNK / per_window))

    def loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Mean negative ELBO of a (B, C, h, w) batch; ``noise`` (B, 3 + k) standard-normal
        draws for the reparametrisation (default: drawn here)."""
        mu, logsd = self.module.encoder(x)
        eps = torch.randn_like(mu) if noise is None else noise.to(mu.dtype)
        lat = mu + torch.exp(logsd) * eps
        phi, shift, z = self._split(lat)
        x_hat = self.module.decoder(phi, shift, z)
        rec = reconstruction(self.config["loss"], x_hat, x)
        kl_rot = kl_normal_prior(mu[:, 0], logsd[:, 0], self.config["rot_prior"])
        # content (and translation, when learned) against N(0, 1)
        first = 1 if self.config["translation"] else 3
        kl = kl_standard_normal(mu[:, first:], logsd[:, first:])
        return (rec + self.config["beta"] * (kl_rot + kl)).mean()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        mu, _ = self.module.encoder(x)
        return mu

    def latents_frame(self, lat: np.ndarray) -> pd.DataFrame:
        """Encoder means -> ``angle`` (wrapped), ``dx``/``dy`` (pixels) and ``z1..zk``.

        The decoder draws pixel ``g`` from ``f(R(angle) g + t)``, so the content is turned
        by ``+angle`` (counter-clockwise as displayed, rows down) and its centre moved to
        ``d = -R(angle)^T t``; ``dx``, ``dy`` report ``d`` in pixels (x right, y down).
        """
        out = pd.DataFrame(lat.astype(np.float64), columns=self.latent_names())
        phi = out["angle"].to_numpy()
        out["angle"] = wrap_angle(phi)
        half = (max(self.window) - 1) / 2.0  # grid units -> pixels
        scale = self.config["translation_prior"] * half if self.config["translation"] else 0.0
        tx, ty = out["dx"].to_numpy() * scale, out["dy"].to_numpy() * scale
        c, s = np.cos(phi), np.sin(phi)
        out["dx"] = -(c * tx + s * ty)
        out["dy"] = -(-s * tx + c * ty)
        return out

    # -- generation ------------------------------------------------------------------------
    @torch.no_grad()
    def decode(
        self,
        z: np.ndarray,
        angle: float | np.ndarray = 0.0,
        shift_px: tuple[float, float] | np.ndarray = (0.0, 0.0),
    ) -> np.ndarray:
        """Images (n, h, w) (or (n, C, h, w)) for content latents ``z`` (n, k), at the
        given angle (rad) and shift (dx, dy in pixels). ``bce`` models return
        probabilities (sigmoid of the logits)."""
        self.check_fitted()
        z_t = torch.as_tensor(np.atleast_2d(np.asarray(z, np.float32)))
        n = z_t.shape[0]
        if z_t.shape[1] != self.config["latent_dim"]:
            raise ModelError(f"z must have {self.config['latent_dim']} columns, got {z_t.shape[1]}")
        phi = torch.as_tensor(np.broadcast_to(np.asarray(angle, np.float32), (n,)).copy())
        half = (max(self.window) - 1) / 2.0
        d = np.broadcast_to(np.asarray(shift_px, np.float64), (n, 2)) / half
        c, s = np.cos(phi.numpy()), np.sin(phi.numpy())
        t = -np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], 1)  # t = -R d
        self.module.cpu().eval()
        out = self.module.decoder(phi, torch.as_tensor(t, dtype=torch.float32), z_t)
        if self.config["loss"] == "bce":
            out = torch.sigmoid(out)
        out = out.numpy()
        return out[:, 0] if out.shape[1] == 1 else out


class SkipRVAE(RVAE):
    """skip-rVAE (Kalinin et al.): the content latent feeds every decoder layer.
    Defaults follow the paper: 4 hidden layers of 256."""

    kind = "skip-rvae"

    def __init__(self, window: int | Sequence[int] = (24, 24), latent_dim: int = 2, skip: bool = True,
                 seed: int = 0, hidden: Sequence[int] = (256, 256, 256, 256), **kwargs) -> None:  # fmt: skip
        if not skip:
            raise ModelError("SkipRVAE always uses skip connections; use RVAE(skip=False)")
        super().__init__(window, latent_dim, True, seed, hidden, **kwargs)
