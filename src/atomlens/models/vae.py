"""Baselines with the rVAE's interface: a plain VAE and the paper's convolutional AE."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from atomlens.models.base import ModelError
from atomlens.models.nets import ConvAENet, MLPDecoder, MLPEncoder
from atomlens.models.torch_model import TorchLatentModel, kl_standard_normal, reconstruction


def _win(window: int | Sequence[int]) -> tuple[int, int]:
    win = (int(window), int(window)) if np.ndim(window) == 0 else tuple(int(v) for v in window)
    if len(win) != 2 or min(win) < 2:
        raise ModelError(f"window must be an int or (h, w) of at least 2 pixels, got {window!r}")
    return win  # type: ignore[return-value]


class _VAENet(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder


class VAE(TorchLatentModel):
    """Plain (not rotation-aware) VAE: tanh MLP encoder and decoder, standard-normal
    prior. ``transform`` gives ``z1..zk``."""

    kind = "vae"

    def __init__(
        self,
        window: int | Sequence[int] = (24, 24),
        latent_dim: int = 2,
        seed: int = 0,
        hidden: Sequence[int] = (128, 128),
        activation: str = "tanh",
        lr: float = 1e-4,
        loss: str = "mse",
        channels: int = 1,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        win = _win(window)
        if loss not in ("mse", "bce"):
            raise ModelError(f"loss must be 'mse' or 'bce', got {loss!r}")
        hidden = tuple(int(h) for h in hidden)
        self.config = dict(
            window=list(win), latent_dim=int(latent_dim), seed=int(seed), hidden=list(hidden),
            activation=activation, lr=float(lr), loss=loss, channels=int(channels), beta=float(beta),
        )  # fmt: skip
        self.default_lr = float(lr)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            shape = (int(channels), *win)
            self.module = _VAENet(
                MLPEncoder(int(np.prod(shape)), int(latent_dim), hidden, activation),
                MLPDecoder(int(latent_dim), shape, hidden, activation),
            )

    def latent_names(self) -> list[str]:
        return [f"z{i + 1}" for i in range(self.config["latent_dim"])]

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        return self.config["latent_dim"]

    def loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        mu, logsd = self.module.encoder(x)
        z = mu + torch.exp(logsd) * (torch.randn_like(mu) if noise is None else noise.to(mu.dtype))
        rec = reconstruction(self.config["loss"], self.module.decoder(z), x)
        return (rec + self.config["beta"] * kl_standard_normal(mu, logsd)).mean()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.encoder(x)[0]

    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """Images (n, h, w) (or (n, C, h, w)) for latents ``z`` (n, k)."""
        self.check_fitted()
        self.module.cpu().eval()
        out = self.module.decoder(torch.as_tensor(np.atleast_2d(np.asarray(z, np.float32))))
        if self.config["loss"] == "bce":
            out = torch.sigmoid(out)
        out = out.numpy()
        return out[:, 0] if out.shape[1] == 1 else out


class ConvAE(TorchLatentModel):
    """Convolutional autoencoder (Sci. Adv. 2021 Methods): 2 stride-2 3x3 convolutions
    with 32 and 64 filters (ReLU), a 2-unit dense latent, transposed convolutions back;
    MSE loss, Adam lr 1e-3. Deterministic: ``transform`` gives ``z1..zk``."""

    kind = "conv-ae"

    def __init__(
        self,
        window: int | Sequence[int] = (24, 24),
        latent_dim: int = 2,
        seed: int = 0,
        lr: float = 1e-3,
        channels: int = 1,
    ) -> None:
        super().__init__()
        win = _win(window)
        self.config = dict(window=list(win), latent_dim=int(latent_dim), seed=int(seed),
                           lr=float(lr), channels=int(channels))  # fmt: skip
        self.default_lr = float(lr)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.module = ConvAENet((int(channels), *win), int(latent_dim))

    def latent_names(self) -> list[str]:
        return [f"z{i + 1}" for i in range(self.config["latent_dim"])]

    def loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return (self.module(x) - x).pow(2).mean()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.encode(x)

    @torch.no_grad()
    def decode(self, z: np.ndarray) -> np.ndarray:
        """Images (n, h, w) (or (n, C, h, w)) for latents ``z`` (n, k)."""
        self.check_fitted()
        self.module.cpu().eval()
        out = self.module.decode(torch.as_tensor(np.atleast_2d(np.asarray(z, np.float32)))).numpy()
        return out[:, 0] if out.shape[1] == 1 else out
