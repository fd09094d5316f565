"""Model registry: names -> classes, used by the GUI dock and the CLI."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from atomlens.models.base import LatentModel, ModelError, read_payload
from atomlens.models.classic import GMMModel, NMFModel, PCAModel
from atomlens.models.rvae import RVAE, SkipRVAE
from atomlens.models.vae import VAE, ConvAE

MODELS: dict[str, type[LatentModel]] = {
    "rvae": RVAE,
    "skip-rvae": SkipRVAE,
    "vae": VAE,
    "conv-ae": ConvAE,
    "pca": PCAModel,
    "nmf": NMFModel,
    "gmm": GMMModel,
}


def model_class(name: str) -> type[LatentModel]:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None


def model_parameters(name: str) -> dict[str, Any]:
    """Constructor parameters of a model and their defaults (for building GUI forms)."""
    sig = inspect.signature(model_class(name).__init__)
    return {k: p.default for k, p in sig.parameters.items() if k not in ("self", "kwargs")}


def make_model(name: str, **kwargs: Any) -> LatentModel:
    """Build a model by registry name; unknown keyword arguments raise (no silent typos)."""
    klass = model_class(name)
    allowed = set(model_parameters(name))
    if name == "skip-rvae":
        allowed |= set(model_parameters("rvae"))
    bad = sorted(set(kwargs) - allowed)
    if bad:
        raise ModelError(f"{name} does not take {bad}; it takes {sorted(allowed)}")
    return klass(**kwargs)


def load_model(path: str | Path) -> LatentModel:
    """Load any model written by ``model.save(path)``."""
    return model_class(read_payload(path)["kind"]).load(path)
