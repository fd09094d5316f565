"""U-Net family for atom finding: networks, training on simulations, tiled prediction.

``load_detector()`` gives the shipped graphene model (background / C / Si at 0.2 Å/px);
``predict_maps`` streams per-frame class-probability maps for any image size and length;
``train_detector`` (CLI ``atomlens train-detector``) rebuilds the shipped model.

This package knows networks and pixels, not atoms: finding atoms in the maps
(:mod:`atomlens.atoms`), fine-tuning on corrected atoms (:mod:`atomlens.atoms.finetune`),
model-fit warnings (:mod:`atomlens.atoms.suitability`) and scoring a detector
(:mod:`atomlens.atoms.evaluate`) live one layer up.
"""

from atomlens.segment.model_file import (
    SHIPPED,
    Detector,
    ModelFileError,
    load_detector,
    model_card,
    save_detector,
)
from atomlens.segment.nets import NetConfig, NetConfigError, UNet, build_net, n_params
from atomlens.segment.predict import (
    PixelSizeError,
    normalise,
    predict_maps,
    predict_maps_array,
)

__all__ = [
    "SHIPPED",
    "Detector",
    "ModelFileError",
    "load_detector",
    "model_card",
    "save_detector",
    "NetConfig",
    "NetConfigError",
    "UNet",
    "build_net",
    "n_params",
    "PixelSizeError",
    "normalise",
    "predict_maps",
    "predict_maps_array",
]
