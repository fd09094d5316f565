"""What the training loop needs of a model: a protocol, not model classes.

:mod:`atomlens.train` sits BELOW :mod:`atomlens.models` (models import the loop for
``fit()``; the loop never imports a model class). A model the loop can train step by
step is a :class:`TorchTrainable`; anything else with ``fit(X)`` (the scikit-learn
baselines) is fitted in one call (:class:`OneShotFittable`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from atomlens.errors import ModelError


@runtime_checkable
class OneShotFittable(Protocol):
    """Fitted in one call (scikit-learn baselines): ``fit(X)`` on (N, h, w) windows."""

    kind: str
    card: dict
    fitted: bool

    def fit(self, X: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class TorchTrainable(Protocol):
    """Trained step by step by :func:`atomlens.train.fit_events`.

    module : the torch module whose parameters are optimised. prepare(X) : windows as a
    checked (N, C, h, w) float32 array. loss(x, noise=None) : mean loss of a batch
    (``noise`` (B, noise_dim) when the loop draws the sampling noise). noise_dim : width
    of that noise (0 = none). default_lr : learning rate when none is given.
    auto_micro_batch() : windows per chunk on the CPU (None = whole batches). card,
    fitted, kind, save(path) : metadata, state, registry name, checkpointing.
    """

    module: torch.nn.Module
    card: dict
    fitted: bool
    kind: str
    default_lr: float
    noise_dim: int

    def prepare(self, X: Any) -> np.ndarray: ...

    def loss(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor: ...

    def auto_micro_batch(self) -> int | None: ...

    def save(self, path: Any) -> Any: ...


def images_of(X: Any) -> np.ndarray:
    """The image array of ``X`` (a ``Subimages``, a tensor or an array) as float32 numpy."""
    arr = getattr(X, "images", X)
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return arr


__all__ = ["ModelError", "OneShotFittable", "TorchTrainable", "images_of"]
