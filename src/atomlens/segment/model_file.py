"""Detector model files: a torch ``.pt`` with ``state_dict``, ``config`` and ``card``.

``config`` rebuilds the network (:class:`~atomlens.segment.nets.NetConfig`) and says how
to feed it (model pixel size in Å, label radius, tile size); ``card`` is provenance:
training data, expected pixel-size range, classes, validation metrics, command, seed,
date. The shipped graphene model lives beside this module in ``weights/``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from atomlens.errors import InputFileError
from atomlens.segment.nets import NetConfig, NetConfigError, UNet, build_net

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED = WEIGHTS_DIR / "graphene.pt"
FORMAT = "atomlens-detector/1"


class ModelFileError(InputFileError):
    """A model file that cannot be used; the message names the problem and the fix."""


@dataclass
class Detector:
    """A segmentation network plus what is needed to use it.

    Attributes
    ----------
    net : the torch module (eval mode after loading).
    net_config : its :class:`NetConfig` (classes, architecture).
    pixel_size : model sampling in Å/px; inputs are resampled to it.
    radius_A : radius of the training label disks, Å.
    tile : tile edge (model pixels) for prediction on large frames.
    card : provenance and metrics (JSON-able dict).
    """

    net: UNet
    net_config: NetConfig
    pixel_size: float = 0.2
    radius_A: float = 0.35
    tile: int = 512
    card: dict = field(default_factory=dict)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.net_config.classes

    def config_dict(self) -> dict:
        return {
            "net": self.net_config.to_dict(),
            "pixel_size": self.pixel_size,
            "radius_A": self.radius_A,
            "tile": self.tile,
        }


def save_detector(det: Detector, path: str | Path) -> Path:
    """Write ``det`` to ``path`` (a ``.pt`` file) with its config and card."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in det.net.state_dict().items()}
    # plain JSON types only, so the file loads with torch.load(weights_only=True)
    card = json.loads(json.dumps(det.card, default=_plain))
    from atomlens.io.atomic import atomic_write

    with atomic_write(path, "wb") as fh:  # whole or absent
        torch.save(
            {"format": FORMAT, "state_dict": state, "config": det.config_dict(), "card": card}, fh
        )
    return path


def _plain(obj: object) -> object:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def load_detector(
    path: str | Path | None = None,
    *,
    classes: tuple[str, ...] | None = None,
    pixel_size: float | None = None,
) -> Detector:
    """Load a detector file (``None`` -> the shipped graphene model).

    ``classes`` / ``pixel_size``: what the caller expects; a mismatch raises
    :class:`ModelFileError` naming both. Nothing is downloaded.
    """
    path = SHIPPED if path is None else Path(path)
    if not path.exists():
        if path == SHIPPED:
            raise ModelFileError(
                f"the shipped model {path} is missing: reinstall AtomLens or rebuild it with "
                "`atomlens train-detector --preset graphene --out model.pt`"
            )
        raise ModelFileError(f"model file {path} does not exist; pass an existing .pt file")
    from atomlens.io.gate import check_detector_config, check_model_file, safe_reason

    check_model_file(path, ModelFileError)  # no FIFOs, devices or huge files
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ModelFileError(
            f"{path} is not a readable AtomLens model file "
            f"({safe_reason(exc)}); AtomLens loads weights only, never code"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(
            f"{path} is not an AtomLens detector file (expected format {FORMAT!r}); "
            "train one with `atomlens train-detector`"
        )
    cfg = blob.get("config", {})
    check_detector_config(cfg, str(path), ModelFileError)  # before building the network
    if not isinstance(blob.get("state_dict"), dict):
        raise ModelFileError(f"{path} holds no weights (state_dict); the file is corrupt")
    try:
        net_config = NetConfig.from_dict(cfg["net"])
    except (KeyError, TypeError, NetConfigError) as exc:
        raise ModelFileError(f"{path}: bad network config ({exc})") from exc
    net = build_net(net_config)
    try:
        net.load_state_dict(blob["state_dict"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: the weights do not fit the network described in the file "
            f"({str(exc).splitlines()[0]}); the file is corrupt or was edited"
        ) from exc
    net.eval()
    det = Detector(
        net,
        net_config,
        float(cfg.get("pixel_size", 0.2)),
        float(cfg.get("radius_A", 0.35)),
        int(cfg.get("tile", 512)),
        dict(blob.get("card", {})),
    )
    if classes is not None and tuple(classes) != det.classes:
        raise ModelFileError(
            f"{path} predicts classes {list(det.classes)} but {list(classes)} were asked for; "
            "use a model trained for these classes or change the class list"
        )
    if pixel_size is not None and abs(pixel_size - det.pixel_size) > 1e-6:
        raise ModelFileError(
            f"{path} works at {det.pixel_size} Å/px, not {pixel_size} Å/px as asked"
        )
    return det


def model_card(path: str | Path | None = None) -> dict:
    """The card (provenance, metrics) of a model file without building the network."""
    return load_detector(path).card
