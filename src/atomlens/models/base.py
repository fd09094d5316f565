"""Common interface of every latent model: ``fit`` / ``transform`` / ``save`` / ``load``.

A model file is one torch ``.pt`` holding ``kind`` (registry name), ``config`` (what is
needed to rebuild the network), ``state_dict`` (weights, or fitted arrays for the
scikit-learn baselines) and ``card`` (training metadata: data size, epochs, losses,
device, time, version). Files load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from atomlens import __version__
from atomlens.errors import ModelError
from atomlens.train.protocol import images_of

FORMAT = "atomlens-latent-model"


def as_nchw(X: Any, window: tuple[int, int] | None, n_channels: int | None) -> np.ndarray:
    """Check ``X`` against the model's window and channels; return (N, C, h, w) float32.

    Accepts (N, h, w), (N, C, h, w) or ``Subimages``. Raises :class:`ModelError` naming
    both sizes when the window differs from the one the model was built for.
    """
    arr = images_of(X)
    if arr.ndim == 3:
        arr = arr[:, None]
    if arr.ndim != 4:
        raise ModelError(
            f"expected windows shaped (N, h, w) or (N, C, h, w), got {arr.shape}; "
            "use atomlens.descriptors.extract_windows"
        )
    if window is not None and tuple(arr.shape[2:]) != tuple(window):
        raise ModelError(
            f"this model was built/trained for {window[0]}x{window[1]} windows but got "
            f"{arr.shape[2]}x{arr.shape[3]} windows; extract windows of size "
            f"{window[0]}x{window[1]} or train a new model"
        )
    if n_channels is not None and arr.shape[1] != n_channels:
        raise ModelError(
            f"this model expects {n_channels} channel(s) per window, got {arr.shape[1]}"
        )
    if len(arr) and not np.all(np.isfinite(arr)):
        raise ModelError("windows contain NaN/inf values; clean the stack first")
    return arr


def _plain(value: Any) -> Any:
    """Config/card values as plain Python types (safe for ``weights_only`` loading)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


class LatentModel:
    """Base of every model: scikit-learn style ``fit``/``transform`` returning a table."""

    kind: ClassVar[str] = ""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.card: dict[str, Any] = {"atomlens_version": __version__, "kind": self.kind}
        self.fitted = False

    # -- to be provided -------------------------------------------------------------
    def latent_names(self) -> list[str]:
        raise NotImplementedError

    def fit(self, X: Any, **kwargs: Any) -> LatentModel:
        raise NotImplementedError

    def transform(self, X: Any, batch_size: int = 1024) -> pd.DataFrame:
        raise NotImplementedError

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    def fit_transform(self, X: Any, **kwargs: Any) -> pd.DataFrame:
        return self.fit(X, **kwargs).transform(X)

    @property
    def window(self) -> tuple[int, int] | None:
        w = self.config.get("window")
        return None if w is None else (int(w[0]), int(w[1]))

    def check_fitted(self) -> None:
        if not self.fitted:
            raise ModelError(f"this {self.kind} model is not trained yet: call fit() first")

    def save(self, path: str | Path) -> Path:
        """Write config, weights and card to one torch file; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.card.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat())
        payload = {
            "format": FORMAT,
            "kind": self.kind,
            "config": _plain(self.config),
            "card": _plain(self.card),
            "fitted": bool(self.fitted),
            "state_dict": self._state(),
        }
        from atomlens.io.atomic import atomic_write

        with atomic_write(path, "wb") as fh:  # whole or absent
            torch.save(payload, fh)
        return path

    @classmethod
    def load(cls, path: str | Path) -> LatentModel:
        """Rebuild a model saved with :meth:`save` (any kind when called on the base)."""
        payload = read_payload(path)
        if cls.kind and payload["kind"] != cls.kind:
            raise ModelError(
                f"{path} holds a {payload['kind']!r} model, not {cls.kind!r}; use "
                "atomlens.models.load_model to load any kind"
            )
        from atomlens.models.registry import model_class

        klass = model_class(payload["kind"])
        try:
            model = klass(**payload["config"])
            model._load_state(payload["state_dict"])
        except ModelError:
            raise
        except (TypeError, ValueError, KeyError, RuntimeError, IndexError) as exc:
            from atomlens.io.gate import safe_reason

            raise ModelError(
                f"{path}: the config or weights do not fit a {payload['kind']} "
                f"model ({safe_reason(exc)}); the file is corrupt or from another "
                "AtomLens version"
            ) from None
        model.card = dict(payload.get("card") or {})
        model.fitted = bool(payload.get("fitted", True))
        return model

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({args})"


def read_payload(path: str | Path) -> dict[str, Any]:
    from atomlens.io.gate import check_latent_config, check_model_file, safe_reason

    path = check_model_file(path, ModelError)  # missing: also a FileNotFoundError
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report any unreadable file the same way
        raise ModelError(
            f"{path} is not a readable AtomLens model file ({safe_reason(exc)}); "
            "AtomLens loads weights only, never code"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not an AtomLens latent-model file (format {FORMAT!r})")
    check_latent_config(payload.get("kind"), payload.get("config"), str(path), ModelError)
    if not isinstance(payload.get("state_dict"), dict) or not isinstance(
        payload.get("card", {}), dict
    ):
        raise ModelError(
            f"{path}: state_dict/card missing or of the wrong type; the file is corrupt"
        )
    return payload
