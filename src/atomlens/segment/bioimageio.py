"""Export a detector as a bioimage.io model package (the community format).

The AtomLens ``.pt`` file stays the native format; this writes a zip that other tools
(bioimage.io model zoo, deepImageJ, ilastik, BiaPy, bioimageio.core) can run:

- ``weights.torchscript``: TorchScript of the network *with* AtomLens' own input
  normalisation inside ((x - median) / (p99 - p1) per image) and the softmax at the end,
  so a consumer needs no AtomLens-specific pre- or post-processing. Input: one image
  ``(batch, 1, y, x)`` float32 sampled at the model's pixel size (stated on the spatial
  axes, in Å; resample other data first), ``y, x`` multiples of the network's pooling
  factor. Output: per-class probabilities ``(batch, classes, y, x)``;
- ``test_input.npy`` / ``test_output.npy``: a simulated image at the model's sampling
  and the network's answer (consumers check they reproduce it);
- ``cover.png`` (image | atom probability), ``README.md`` (what the model does, how to
  use it), ``atomlens_card.json`` (the model card), and ``rdf.yaml`` written and
  validated by :mod:`bioimageio.spec`.

:func:`export_bioimageio` needs the optional dependency ``bioimageio.spec``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomlens.errors import AtomLensError, OutputError
from atomlens.segment.model_file import Detector, load_detector

#: Edge (model pixels) of the test image.
TEST_SIZE = 128


class BioimageioExportError(AtomLensError):
    """The package cannot be built (missing dependency, invalid description)."""


class NormalisedNet(torch.nn.Module):
    """The detector as a consumer sees it: raw image in, class probabilities out.

    forward: ``(B, 1, Y, X)`` float32 -> ``(B, C, Y, X)`` softmax probabilities, each
    image normalised as :func:`atomlens.segment.predict.normalise` does.
    """

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("levels", torch.tensor([0.01, 0.5, 0.99]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        q = torch.quantile(flat, self.levels.to(x.dtype), dim=1)
        scale = torch.clamp(q[2] - q[0], min=1e-12)
        z = (x - q[1].reshape(-1, 1, 1, 1)) / scale.reshape(-1, 1, 1, 1)
        return torch.softmax(self.net(z), dim=1)


@dataclass
class ExportResult:
    """Where the package went, its validation status and the description's name."""

    path: Path
    status: str
    name: str
    format_version: str


def _test_image(det: Detector, seed: int = 0) -> np.ndarray:
    """A simulated graphene image ``(TEST_SIZE, TEST_SIZE)`` float32 at the model's
    sampling (the renderer of :mod:`atomlens.simulate`)."""
    from atomlens.simulate.patches import graphene_patch
    from atomlens.simulate.training import render_sample

    rng = np.random.default_rng(seed)
    span = TEST_SIZE * det.pixel_size * 1.6 + 4
    img, _, _, _ = render_sample(
        graphene_patch(span, rng),
        (TEST_SIZE, TEST_SIZE),
        det.pixel_size,
        classes=("background", "C", "Si"),
        radius_A=det.radius_A,
        rng=rng,
    )
    return np.asarray(img, np.float32)


def _cover(image: np.ndarray, probs: np.ndarray, path: Path) -> None:
    """2:1 PNG: the test image and its summed atom probability side by side."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(6, 3), dpi=100)
    ax[0].imshow(image, cmap="gray")
    ax[1].imshow(probs[1:].sum(0), cmap="magma", vmin=0, vmax=1)
    for a, t in zip(ax, ("image", "atom probability")):
        a.set_title(t, fontsize=9)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _readme(det: Detector, name: str) -> str:
    card = det.card
    classes = ", ".join(det.classes)
    return f"""# AtomLens detector: {name}

Finds atom columns in atom-resolved (S)TEM images: a U-Net ({det.net_config.arch},
{det.net_config.levels} levels) maps an image to per-pixel probabilities of
{classes}. Made by AtomLens (`atomlens export-model`); its native format is the
AtomLens `.pt` model file, whose card is in `atomlens_card.json`.

## Input
One image `(batch, 1, y, x)`, float32, **sampled at {det.pixel_size} Å per pixel**
(resample other data to this sampling first; the spatial axes state it), atoms bright
(HAADF-like). `y` and `x` must be multiples of {det.net_config.multiple}. The network
normalises each image itself ((x - median) / (99th - 1st percentile)); no
preprocessing is needed.

## Output
`(batch, {len(det.classes)}, y, x)` softmax probabilities in the order {classes}.
Atoms: connected regions where the non-background probability is above 0.5; their
centroids are the atom positions and the most probable class their species.

## Training
{card.get("training_data", card.get("task", "see atomlens_card.json"))}
"""


def build_rdf(det: Detector, name: str, files: dict[str, str], *, torch_version: str) -> dict:
    """The bioimage.io model description (format 0.5) as a dict."""
    mult = det.net_config.multiple
    space = [
        {
            "type": "space",
            "id": ax,
            "size": {"min": 8 * mult, "step": mult},
            "unit": "angstrom",
            "scale": float(det.pixel_size),
        }
        for ax in ("y", "x")
    ]
    out_space = [
        {
            "type": "space",
            "id": ax,
            "size": {"tensor_id": "image", "axis_id": ax},
            "unit": "angstrom",
            "scale": float(det.pixel_size),
        }
        for ax in ("y", "x")
    ]
    return {
        "type": "model",
        "format_version": "0.5.4",
        "name": name,
        "description": (
            f"AtomLens atom-column finder: per-pixel probabilities of "
            f"{', '.join(det.classes)} in atom-resolved STEM images at "
            f"{det.pixel_size} Å/px"
        ),
        "authors": [{"name": "AtomLens developers"}],
        "cite": [
            {
                "text": "Ziatdinov et al., Deep learning of atomically resolved scanning "
                "transmission electron microscopy images: chemical identification "
                "and tracking local transformations, ACS Nano 11, 12742 (2017)",
                "doi": "10.1021/acsnano.7b07504",
            }
        ],
        "license": "BSD-3-Clause",
        "documentation": files["readme"],
        "covers": [files["cover"]],
        "tags": [
            "electron-microscopy",
            "stem",
            "atom-detection",
            "segmentation",
            "2d",
            "pytorch",
            "unet",
            "materials-science",
        ],
        "attachments": [{"source": files["card"]}],
        "inputs": [
            {
                "id": "image",
                "description": f"raw image at {det.pixel_size} Å/px, atoms bright",
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": ["intensity"]},
                    *space,
                ],
                "test_tensor": {"source": files["test_input"]},
                "data": {"type": "float32"},
            }
        ],
        "outputs": [
            {
                "id": "probabilities",
                "description": "softmax over " + ", ".join(det.classes),
                "axes": [
                    {"type": "batch"},
                    {"type": "channel", "channel_names": list(det.classes)},
                    *out_space,
                ],
                "test_tensor": {"source": files["test_output"]},
                "data": {"type": "float32", "range": [0.0, 1.0]},
            }
        ],
        "weights": {"torchscript": {"source": files["weights"], "pytorch_version": torch_version}},
        "config": {
            "atomlens": {
                "model_pixel_size_A": float(det.pixel_size),
                "classes": list(det.classes),
                "label_radius_A": float(det.radius_A),
                "threshold": 0.5,
            }
        },
    }


def export_bioimageio(
    model: Detector | str | Path | None, out: str | Path, *, name: str | None = None, seed: int = 0
) -> ExportResult:
    """Write ``model`` (a :class:`Detector`, a ``.pt`` path, or None for the shipped
    model) as a bioimage.io model package zip at ``out``; validated by
    :mod:`bioimageio.spec` (including that every file exists and its hash) before it is
    written. Raises :class:`BioimageioExportError` when ``bioimageio.spec`` is missing
    or rejects the description."""
    try:
        from bioimageio.spec import ValidationContext, build_description, save_bioimageio_package
        from bioimageio.spec.model.v0_5 import ModelDescr
    except ImportError as exc:
        raise BioimageioExportError(
            "bioimage.io export needs the bioimageio.spec package: pip install bioimageio.spec"
        ) from exc
    det = model if isinstance(model, Detector) else load_detector(model)
    out = Path(out)
    if out.suffix != ".zip":
        raise OutputError(
            f"{out}: a bioimage.io package is a .zip file; name it {out.with_suffix('.zip').name}"
        )
    if out.is_dir():
        raise OutputError(f"{out} is a folder; give a .zip file name")
    name = name or str(det.card.get("name") or "atomlens-detector")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        wrapped = NormalisedNet(_eval_copy(det.net)).eval()
        image = _test_image(det, seed)
        x = torch.from_numpy(image)[None, None]
        with torch.inference_mode():
            traced = torch.jit.trace(wrapped, x, check_trace=False)
            probs = traced(x).numpy()
        # the traced module must run other sizes too (the spec allows any multiple)
        with torch.inference_mode():
            other = torch.zeros(1, 1, TEST_SIZE + det.net_config.multiple * 2, TEST_SIZE)
            if traced(other).shape[-2:] != other.shape[-2:]:
                raise BioimageioExportError(
                    "the traced network does not accept other image sizes; cannot export"
                )
        files = {
            "weights": "weights.torchscript",
            "test_input": "test_input.npy",
            "test_output": "test_output.npy",
            "cover": "cover.png",
            "readme": "README.md",
            "card": "atomlens_card.json",
        }
        traced.save(str(root / files["weights"]))
        np.save(root / files["test_input"], x.numpy().astype(np.float32))
        np.save(root / files["test_output"], probs.astype(np.float32))
        _cover(image, probs[0], root / files["cover"])
        (root / files["readme"]).write_text(_readme(det, name))
        (root / files["card"]).write_text(json.dumps(det.card, indent=1, default=str))
        rdf = build_rdf(det, name, files, torch_version=torch.__version__.split("+")[0])
        ctx = ValidationContext(root=root, perform_io_checks=True)
        descr = build_description(rdf, context=ctx)
        if not isinstance(descr, ModelDescr):
            raise BioimageioExportError(
                "bioimageio.spec rejected the description:\n" + _errors(descr)
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            out.unlink()
        save_bioimageio_package(descr, output_path=out)
    return ExportResult(out, str(descr.validation_summary.status), name, str(descr.format_version))


def validate_package(path: str | Path) -> tuple[bool, str]:
    """Load a package zip with :mod:`bioimageio.spec` (format and file/hash checks,
    offline); ``(valid, status or the errors)``."""
    from bioimageio.spec import load_description
    from bioimageio.spec.model.v0_5 import ModelDescr

    descr = load_description(Path(path), perform_io_checks=True)
    if isinstance(descr, ModelDescr):
        return True, str(descr.validation_summary.status)
    return False, _errors(descr)


def _errors(descr: Any) -> str:
    try:
        return "\n".join(
            f"{'.'.join(map(str, e.loc))}: {e.msg}"
            for d in descr.validation_summary.details
            for e in d.errors
        )
    except Exception:  # noqa: BLE001 - best effort message
        return str(descr)


def _eval_copy(net: torch.nn.Module) -> torch.nn.Module:
    import copy

    from atomlens.segment.predict import fold_batchnorm

    return fold_batchnorm(copy.deepcopy(net).cpu().eval())


__all__ = [
    "BioimageioExportError",
    "ExportResult",
    "NormalisedNet",
    "build_rdf",
    "export_bioimageio",
    "validate_package",
]
