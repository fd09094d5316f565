"""Base of the torch latent models: a network, a loss, an encoder; training is delegated
to :func:`atomlens.train.fit_events` so the GUI, the CLI and ``fit()`` share one loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from atomlens.models.base import LatentModel, ModelError, as_nchw


class TorchLatentModel(LatentModel):
    """A latent model whose ``module`` is a torch network.

    Subclasses build ``self.module`` and implement :meth:`loss` (mean negative ELBO or
    reconstruction error of a (B, C, h, w) batch), :meth:`encode` (batch -> latent
    means, (B, L)) and :meth:`latent_names`.
    """

    default_lr = 1e-4
    module: nn.Module
    #: width of the standard-normal sampling noise :meth:`loss` draws per window (0: none);
    #: the training loop draws it for a whole batch when it evaluates the batch in chunks
    noise_dim: int = 0

    # -- subclass API -------------------------------------------------------------------
    def loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def auto_micro_batch(self) -> int | None:
        """Chunk size for ``fit_events(micro_batch="auto")`` on the CPU (``None``: whole
        batches)."""
        return None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def latents_frame(self, lat: np.ndarray) -> pd.DataFrame:
        """Raw encoder means (N, L) -> table of named latents."""
        return pd.DataFrame(lat, columns=self.latent_names())

    # -- shared -------------------------------------------------------------------------
    @property
    def n_channels(self) -> int:
        return int(self.config.get("channels", 1))

    def prepare(self, X: Any) -> np.ndarray:
        """Validated (N, C, h, w) float32 windows for this model."""
        arr = as_nchw(X, self.window, self.n_channels)
        if self.config.get("loss") == "bce" and len(arr) and (arr.min() < 0 or arr.max() > 1):
            raise ModelError(
                f"loss='bce' needs window values in [0, 1], got {arr.min():.3g}..{arr.max():.3g}; "
                "normalise the stack (atomlens.descriptors.normalize_stack) or use loss='mse'"
            )
        return arr

    def fit(
        self,
        X: Any,
        epochs: int = 100,
        batch_size: int = 200,
        **kwargs: Any,
    ) -> TorchLatentModel:
        """Train on windows ``X`` ((N, h, w), (N, C, h, w) or ``Subimages``).

        Keyword arguments go to :func:`atomlens.train.fit_events` (``lr``,
        ``train_fraction``, ``device``, ``seed``, ``stop``, ``checkpoint_dir``,
        ``subset``). Returns ``self``.
        """
        from atomlens.train import fit_events

        for _ in fit_events(self, X, epochs=epochs, batch_size=batch_size, **kwargs):
            pass
        return self

    @torch.no_grad()
    def encode_array(self, X: Any, batch_size: int = 2048, device: str | None = None) -> np.ndarray:
        """Encoder means of every window, (N, L) float32."""
        self.check_fitted()
        arr = self.prepare(X)
        dev = torch.device(device or "cpu")
        self.module.to(dev).eval()
        out = np.empty((len(arr), len(self.latent_names())), np.float32)
        for i in range(0, len(arr), batch_size):
            xb = torch.from_numpy(arr[i : i + batch_size]).to(dev)
            out[i : i + batch_size] = self.encode(xb).float().cpu().numpy()
        return out

    def transform(self, X: Any, batch_size: int = 2048) -> pd.DataFrame:
        """Named latents (encoder means) of every window, one row per window."""
        return self.latents_frame(self.encode_array(X, batch_size))

    def _state(self) -> dict[str, Any]:
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def kl_standard_normal(mu: torch.Tensor, logsd: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sd^2) || N(0, 1)) summed over the last axis, (B,)."""
    return (0.5 * (torch.exp(2 * logsd) + mu * mu) - logsd - 0.5).sum(-1)


def kl_normal_prior(mu: torch.Tensor, logsd: torch.Tensor, prior_sd: float) -> torch.Tensor:
    """Full KL(N(mu, sd^2) || N(0, s^2)) elementwise, mean term included:
    log(s / sd) + (sd^2 + mu^2) / (2 s^2) - 1/2."""
    s2 = float(prior_sd) ** 2
    return np.log(prior_sd) - logsd + (torch.exp(2 * logsd) + mu * mu) / (2 * s2) - 0.5


def reconstruction(loss: str, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample reconstruction term (B,): ``mse`` = 0.5 * sum of squared errors
    (Gaussian, unit variance), ``bce`` = Bernoulli NLL summed over pixels (x_hat logits)."""
    b = x.shape[0]
    if loss == "mse":
        return 0.5 * (x_hat.reshape(b, -1) - x.reshape(b, -1)).pow(2).sum(1)
    if loss == "bce":
        return nn.functional.binary_cross_entropy_with_logits(
            x_hat.reshape(b, -1), x.reshape(b, -1), reduction="none"
        ).sum(1)
    raise ModelError(f"loss must be 'mse' or 'bce', got {loss!r}")
