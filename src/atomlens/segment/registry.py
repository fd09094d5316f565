"""Shipped detector models by name, and which one suits an image.

Two models ship beside this module in ``weights/``:

* ``graphene``: background / C / Si, trained on simulated graphene with Si dopants
  (HAADF/MAADF contrast, bright atoms), 0.05-0.4 Å/px;
* ``general``: background / atom, atom columns in any material (sparse single atoms on
  amorphous supports, TMDs, perovskites, fcc metals), 0.05-0.5 Å/px, HAADF and ABF/BF
  (dark atoms are detected from the image and inverted before the network).

:func:`list_models` describes them (:class:`ModelInfo`), :func:`load_model` takes a name
or a ``.pt`` path, and :func:`choose_model_from_traits` picks one from an image's
statistics (contrast polarity, an FFT lattice with graphene's period and two equally
bright sublattices), never from its file name; measuring them on a frame
(:func:`atomlens.atoms.suitability.choose_model`) and reporting what goes wrong when a
model does not fit an image (:func:`atomlens.atoms.suitability.model_fit_warnings`) sit
one layer up, beside detection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atomlens.segment.model_file import WEIGHTS_DIR, Detector, ModelFileError, load_detector

#: the name that asks :func:`atomlens.atoms.suitability.choose_model` to decide
AUTO = "auto"


@dataclass(frozen=True)
class ModelInfo:
    """What a shipped model is for.

    Attributes
    ----------
    name : registry name (``"graphene"``, ``"general"``).
    classes : foreground class names (the background class 0 is not listed).
    description : one line for menus and ``--help``.
    contrast : image contrasts it was trained for, e.g. ``("HAADF",)`` or ``("HAADF", "ABF")``.
    pixel_size_range : (min, max) Å/px of the images it was trained for.
    path : the weights file.
    available : whether ``path`` exists (a model still training is listed but unavailable).
    handles_dark : dark atoms (ABF/BF) are inverted before the network (``contrast`` has ABF).
    """

    name: str
    classes: tuple[str, ...]
    description: str
    contrast: tuple[str, ...]
    pixel_size_range: tuple[float, float]
    path: Path
    available: bool

    @property
    def handles_dark(self) -> bool:
        return any(c.upper() in ("ABF", "BF") for c in self.contrast)


# defaults; a model card (weights/<name>_card.json) overrides classes and pixel range
_SHIPPED: dict[str, dict] = {
    "graphene": {
        "classes": ("C", "Si"),
        "description": "graphene with Si dopants (C / Si), bright atoms (HAADF, MAADF)",
        "contrast": ("HAADF",),
        "pixel_size_range": (0.05, 0.4),
    },
    "general": {
        "classes": ("atom",),
        "description": (
            "atom columns in any material (single atoms on supports, MoS2 and "
            "other TMDs, perovskites, metals), HAADF and ABF/BF"
        ),
        "contrast": ("HAADF", "ABF"),
        "pixel_size_range": (0.05, 0.5),
    },
}


def _card(name: str) -> dict:
    path = WEIGHTS_DIR / f"{name}_card.json"
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def model_card(name: str) -> dict:
    """The card (dict) of shipped model ``name``; ``{}`` for an unknown name or a missing
    or unreadable card."""
    return _card(name) if name in _SHIPPED else {}


def cross_validated_tta(name: str) -> dict:
    """The cross-validated companions of 8-orientation averaging in shipped model
    ``name``'s card (``{"tta": 8, "refine": ..., "threshold": ...}``, chosen by
    ``bench/general_options.py``), or ``{}`` (an unknown name, e.g. 'auto' or 'file',
    or a card without them)."""
    setting = (model_card(name).get("tta") or {}).get("cross_validated") or {}
    return dict(setting) if isinstance(setting, dict) else {}


def model_info(name: str) -> ModelInfo:
    """The :class:`ModelInfo` of shipped model ``name`` (``KeyError``-free: raises
    :class:`ModelFileError` naming the choices)."""
    if name not in _SHIPPED:
        raise ModelFileError(
            f"unknown model {name!r}: use one of {sorted(_SHIPPED)}, 'auto', or a .pt file path"
        )
    base = _SHIPPED[name]
    card = _card(name)
    classes = tuple(c for c in card.get("classes", ()) if c != "background") or base["classes"]
    rng = card.get("expected_pixel_size_A") or base["pixel_size_range"]
    contrast = tuple(card.get("contrast", ())) or base["contrast"]
    path = WEIGHTS_DIR / f"{name}.pt"
    return ModelInfo(
        name,
        tuple(classes),
        base["description"],
        contrast,
        (float(rng[0]), float(rng[1])),
        path,
        path.exists(),
    )


def list_models() -> list[ModelInfo]:
    """Every shipped model (available or not), in menu order."""
    return [model_info(n) for n in _SHIPPED]


def model_names() -> list[str]:
    """Names of the shipped models whose weights are present."""
    return [m.name for m in list_models() if m.available]


def resolve_model(name_or_path: str | Path | None) -> Path:
    """A shipped name (``graphene``, ``general``) or a path -> the weights file.

    ``None`` means ``graphene`` (the historical default). ``"auto"`` is not resolved here:
    call :func:`atomlens.atoms.suitability.choose_model` with the image first.
    """
    if name_or_path is None:
        name_or_path = "graphene"
    text = str(name_or_path)
    if text == AUTO:
        raise ModelFileError("'auto' needs an image: call choose_model(image, pixel_size) first")
    if text in _SHIPPED:
        info = model_info(text)
        if not info.available:
            raise ModelFileError(
                f"the shipped {text!r} model is missing ({info.path}): reinstall AtomLens or "
                f"rebuild it with `atomlens train-detector --preset {text} --out {info.path.name}`"
            )
        return info.path
    path = Path(text)
    if path.suffix != ".pt" and not path.exists():
        raise ModelFileError(
            f"unknown model {text!r}: use one of {sorted(_SHIPPED)}, 'auto', or a .pt file path"
        )
    return path


def load_model(name_or_path: str | Path | Detector | None) -> Detector:
    """A :class:`Detector` from a shipped name, a ``.pt`` path, or a Detector (returned as is).

    The detector's card gains ``"registry_name"`` when it came from the registry.
    """
    if isinstance(name_or_path, Detector):
        return name_or_path
    det = load_detector(resolve_model(name_or_path))
    if name_or_path is None or str(name_or_path) in _SHIPPED:
        det.card.setdefault(
            "registry_name", "graphene" if name_or_path is None else str(name_or_path)
        )
    return det


def model_handles_dark(det: Detector) -> bool:
    """Whether ``det`` was trained to see dark (ABF/BF) atoms after inversion (its card
    lists an ABF/BF contrast)."""
    return any(str(c).upper() in ("ABF", "BF") for c in det.card.get("contrast", ()))


def choose_model_from_traits(tr, pixel_size_A: float) -> tuple[str, str]:
    """Pick a shipped model from already measured image statistics: ``(name, reason)``.

    ``tr``: an :class:`atomlens.atoms.suitability.ImageTraits` (``None``: only the pixel
    size is known); :func:`atomlens.atoms.suitability.choose_model` measures them on a
    frame first. ``graphene`` when the frame looks like HAADF graphene at the graphene
    model's pixel sizes: bright atoms, an FFT hexagonal lattice with graphene's 2.46 Å
    period (within 30 %, since nominal pixel sizes are often off) that is a crystal's
    (the spots its first two predict stand out: not the speckle of an amorphous support's
    diffuse ring, :mod:`atomlens.atoms.lattice_check`) and its two sublattices equally
    bright (MoS2 and other TMDs have a bright metal and a faint chalcogen sublattice);
    ``general`` otherwise. ``pixel_size_A``: Å/px.
    """
    graphene = model_info("graphene")
    general_ok = model_info("general").available
    fallback = "general" if general_ok else "graphene"
    lo, hi = graphene.pixel_size_range
    if not lo <= pixel_size_A <= hi:
        return fallback, (
            f"pixel size {pixel_size_A:.3g} Å/px is outside the graphene model's {lo}-{hi} Å/px"
        )
    if tr is None:
        return "graphene" if graphene.available else fallback, "no image statistics"
    if tr.noise_only:
        return fallback, "the image shows no structure at the atom scale (noise only)"
    if tr.polarity == "dark":
        return fallback, "atoms look dark (ABF/BF contrast)"
    if not tr.lattice_checked:
        if graphene.available:
            return "graphene", (
                "the field is too small to judge the lattice (under 20 Å): "
                "the graphene model, the default"
            )
        return fallback, "the field is too small to judge the lattice"
    if tr.hex_period_A is None:
        coherence = getattr(tr, "hex_coherence", None)
        if coherence is not None:
            return fallback, (
                "FFT maxima near graphene's period are not a crystal's: the spots they "
                f"predict barely stand out of their rings (coherence {coherence:.1f}, a "
                f"crystal's is above {tr.hex_coherence_min:g}): no graphene lattice (an amorphous "
                "film, noise or another lattice)"
            )
        return fallback, "no hexagonal lattice with graphene's 2.46 Å period in the FFT"
    if tr.sublattice_contrast is not None and tr.sublattice_contrast > 0.3:
        return fallback, (
            f"hexagonal lattice with two unequal sublattices (contrast "
            f"{tr.sublattice_contrast:.2f}): not graphene (a TMD such as MoS2, "
            "or no honeycomb at all)"
        )
    if not graphene.available:
        return fallback, "graphene-like image but the graphene model is missing"
    # hex_period_A is the first-order plane spacing d = a √3 / 2 (2.13 Å for graphene)
    a_A = tr.hex_period_A * 2 / np.sqrt(3)
    return "graphene", (
        f"hexagonal lattice with a = {a_A:.2f} Å (planes {tr.hex_period_A:.2f} Å apart) and "
        "equal sublattices, bright atoms: graphene"
    )


__all__ = [
    "AUTO",
    "ModelInfo",
    "choose_model_from_traits",
    "cross_validated_tta",
    "list_models",
    "load_model",
    "model_handles_dark",
    "model_info",
    "model_names",
    "resolve_model",
]
