"""scikit-learn baselines (PCA, NMF, GMM) behind the latent-model interface.

Windows are flattened to vectors. Fitted estimator arrays are stored as tensors so the
model file still loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import NMF, PCA
from sklearn.mixture import GaussianMixture

from atomlens.models.base import LatentModel, ModelError, as_nchw


class SklearnModel(LatentModel):
    """Wraps one scikit-learn estimator; subclasses set ``_estimator`` and names."""

    def __init__(self, window: int | Sequence[int] | None = None, channels: int | None = None,
                 **params: Any) -> None:  # fmt: skip
        super().__init__()
        win = None
        if window is not None:
            win = [int(window)] * 2 if np.ndim(window) == 0 else [int(v) for v in window]
        self.config = {"window": win, "channels": channels, **params}
        self.estimator = self._estimator(**params)

    def _estimator(self, **params: Any) -> Any:
        raise NotImplementedError

    def _flat(self, X: Any, fitting: bool = False) -> np.ndarray:
        arr = as_nchw(
            X, None if fitting else self.window, None if fitting else self.config["channels"]
        )
        if fitting:
            self.config["window"] = [int(arr.shape[2]), int(arr.shape[3])]
            self.config["channels"] = int(arr.shape[1])
        return arr.reshape(len(arr), -1)

    def fit(self, X: Any, **kwargs: Any) -> SklearnModel:
        """Fit on windows ``X`` ((N, h, w), (N, C, h, w) or ``Subimages``); training
        keywords of the torch models (epochs, batch_size, ...) are accepted and ignored."""
        flat = self._flat(X, fitting=True)
        self.estimator.fit(flat)
        self.fitted = True
        self.card.update(n_train=int(len(flat)), epochs=1)
        return self

    def _state(self) -> dict[str, Any]:
        state = {}
        for key, value in vars(self.estimator).items():
            if not key.endswith("_") or key.startswith("_"):
                continue
            if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
                state[key] = torch.from_numpy(np.ascontiguousarray(value))
            elif isinstance(value, (bool, int, float, np.generic)):
                state[key] = value.item() if isinstance(value, np.generic) else value
        return state

    def _load_state(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(
                self.estimator, key, value.numpy() if isinstance(value, torch.Tensor) else value
            )


class PCAModel(SklearnModel):
    """Principal components; ``transform`` gives ``pc1..pck``; ``decode`` inverts."""

    kind = "pca"

    def __init__(self, window: int | Sequence[int] | None = None, n_components: int = 2,
                 channels: int | None = None, seed: int = 0) -> None:  # fmt: skip
        super().__init__(window, channels, n_components=int(n_components), seed=int(seed))

    def _estimator(self, n_components: int, seed: int) -> Any:
        return PCA(n_components=n_components, random_state=seed)

    def latent_names(self) -> list[str]:
        return [f"pc{i + 1}" for i in range(self.config["n_components"])]

    def transform(self, X: Any, batch_size: int = 1024) -> pd.DataFrame:
        self.check_fitted()
        return pd.DataFrame(self.estimator.transform(self._flat(X)), columns=self.latent_names())

    def decode(self, z: np.ndarray) -> np.ndarray:
        self.check_fitted()
        out = self.estimator.inverse_transform(np.atleast_2d(z)).astype(np.float32)
        c, (h, w) = self.config["channels"], self.window
        return out.reshape(-1, h, w) if c == 1 else out.reshape(-1, c, h, w)


class NMFModel(PCAModel):
    """Non-negative matrix factorisation (windows must be >= 0); ``c1..ck``."""

    kind = "nmf"

    def _estimator(self, n_components: int, seed: int) -> Any:
        return NMF(n_components=n_components, init="nndsvda", random_state=seed, max_iter=400)

    def latent_names(self) -> list[str]:
        return [f"c{i + 1}" for i in range(self.config["n_components"])]

    def _flat(self, X: Any, fitting: bool = False) -> np.ndarray:
        flat = super()._flat(X, fitting)
        if len(flat) and flat.min() < 0:
            raise ModelError(
                f"NMF needs non-negative windows, got a minimum of {flat.min():.3g}; "
                "normalise the stack to [0, 1] first (atomlens.descriptors.normalize_stack)"
            )
        return flat


class GMMModel(SklearnModel):
    """Gaussian mixture on the flattened windows (the paper's GMM); ``transform`` gives
    ``cluster`` (int label) and ``p0..p{K-1}`` (membership probabilities)."""

    kind = "gmm"

    def __init__(self, window: int | Sequence[int] | None = None, n_components: int = 4,
                 covariance_type: str = "diag", channels: int | None = None,
                 seed: int = 0) -> None:  # fmt: skip
        super().__init__(window, channels, n_components=int(n_components),
                         covariance_type=covariance_type, seed=int(seed))  # fmt: skip

    def _estimator(self, n_components: int, covariance_type: str, seed: int) -> Any:
        return GaussianMixture(n_components, covariance_type=covariance_type, random_state=seed)

    def latent_names(self) -> list[str]:
        return ["cluster"] + [f"p{i}" for i in range(self.config["n_components"])]

    def transform(self, X: Any, batch_size: int = 1024) -> pd.DataFrame:
        self.check_fitted()
        prob = self.estimator.predict_proba(self._flat(X))
        out = pd.DataFrame(prob, columns=self.latent_names()[1:])
        out.insert(0, "cluster", prob.argmax(1).astype(np.int64))
        return out

    def components(self) -> np.ndarray:
        """Mean window of each component, (K, h, w) (or (K, C, h, w))."""
        self.check_fitted()
        c, (h, w) = self.config["channels"], self.window
        means = self.estimator.means_.astype(np.float32)
        return means.reshape(-1, h, w) if c == 1 else means.reshape(-1, c, h, w)
