"""Latent models behind one scikit-learn style interface.

``fit(X, epochs=..., batch_size=...)`` / ``transform(X) -> DataFrame`` / ``save(path)`` /
``load(path)``; ``X`` is (N, h, w) or (N, C, h, w) windows or ``Subimages``.
"""

from atomlens.models.base import LatentModel, ModelError
from atomlens.models.classic import GMMModel, NMFModel, PCAModel
from atomlens.models.registry import MODELS, load_model, make_model, model_parameters
from atomlens.models.rvae import RVAE, SkipRVAE, wrap_angle
from atomlens.models.torch_model import TorchLatentModel
from atomlens.models.vae import VAE, ConvAE

__all__ = [
    "MODELS",
    "RVAE",
    "VAE",
    "ConvAE",
    "GMMModel",
    "LatentModel",
    "ModelError",
    "NMFModel",
    "PCAModel",
    "SkipRVAE",
    "TorchLatentModel",
    "load_model",
    "make_model",
    "model_parameters",
    "wrap_angle",
]
