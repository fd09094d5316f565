"""U-Net family for atom finding: networks, training on simulations, tiled prediction.

``load_detector()`` gives the shipped graphene model (background / C / Si at 0.2 Å/px);
``predict_maps`` streams per-frame class-probability maps for any image size and length;
``train_detector`` (CLI ``atomlens train-detector``) rebuilds the shipped model.
"""

from atomlens.segment.finetune import finetune, iter_finetune  # the function, not the module
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
    "detect",
    "iter_detect",
    "DetectionResult",
    "FrameResult",
    "finetune",
    "iter_finetune",
]


def __getattr__(name: str) -> object:  # lazy: atomlens.atoms imports this package
    if name in ("detect", "iter_detect", "DetectionResult", "FrameResult"):
        import atomlens.atoms as _atoms

        return getattr(_atoms, name)
    raise AttributeError(f"module 'atomlens.segment' has no attribute {name!r}")
