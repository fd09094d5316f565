"""One configuration for the whole chain, with a documented default for every setting.

A config file (TOML, YAML or JSON) holds any subset of the sections below; unknown
sections or keys are errors (a typo must not be silently ignored).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class InputConfig:
    """How the stack is read."""

    pixel_size: float | None = None  # Å/px; None = from the file's metadata
    calibrate: str | None = None  # lattice to calibrate against ("graphene", "mos2", Å) or None
    apply_calibration: bool = False  # replace the pixel size by the calibrated one
    frames: str | None = None  # "start:stop[:step]" subset of frames, None = all
    lazy: bool = True  # keep pixels on disk (memmap / TIFF pages / Zarr)


@dataclass
class DetectConfig:
    """U-Net atom finding (``atomlens.segment.detect``)."""

    model: str | None = None  # model file; None = the shipped graphene model
    threshold: float = 0.5  # probability threshold for atom blobs
    refine: str = "gaussian"  # sub-pixel refinement: "gaussian", "com" or "none"
    batch_size: int = 4  # frames per network batch
    device: str = "auto"  # "auto", "cpu" or "cuda"
    save_maps: bool = True  # write probability maps to maps.zarr (float16)


@dataclass
class ChemConfig:
    """Bond graph, rings, defects and tracking (``atomlens.chem.analyze``)."""

    enabled: bool = True
    track: bool = True  # link atoms over frames (track_id)
    max_displacement_A: float | None = None  # Å per frame step; None = C 1 Å, Si 3 Å


@dataclass
class DescriptorConfig:
    """Subimages around atoms (``atomlens.descriptors.extract_windows``)."""

    window: int = 32  # window side in pixels of the stack
    source: str = "raw"  # "raw" image or "maps" (probability maps)
    centres: str = "atoms"  # "atoms" or "rings" (ring centres from chemistry)
    border: str = "drop"  # "drop" windows that leave the frame, or "pad"


@dataclass
class LatentConfig:
    """The rVAE (or a baseline) trained on the subimages."""

    enabled: bool = True
    model: str = "rvae"  # rvae, skip-rvae, vae, conv-ae, pca, nmf, gmm
    latent_dim: int = 2  # content latents (z1, z2, ...)
    epochs: int = 30
    batch_size: int = 200
    lr: float = 1e-3
    train_fraction: float = 0.75
    max_train_windows: int = 4000  # train on a random subset this large, encode all
    seed: int = 0
    device: str = "auto"


@dataclass
class ReportConfig:
    enabled: bool = True
    frames: tuple[int, ...] | None = None  # frames shown as lattices; None = first/middle/last


@dataclass
class PipelineConfig:
    input: InputConfig = field(default_factory=InputConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    chem: ChemConfig = field(default_factory=ChemConfig)
    descriptors: DescriptorConfig = field(default_factory=DescriptorConfig)
    latent: LatentConfig = field(default_factory=LatentConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PipelineConfig:
        cfg = cls()
        sections = {f.name: f for f in fields(cls)}
        for name, values in (data or {}).items():
            if name not in sections:
                raise ValueError(
                    f"unknown config section [{name}]; known sections: {', '.join(sections)}"
                )
            section = getattr(cfg, name)
            known = {f.name: f for f in fields(section)}
            for key, value in (values or {}).items():
                if key not in known:
                    raise ValueError(
                        f"unknown setting '{key}' in [{name}]; known: {', '.join(known)}"
                    )
                setattr(section, key, value)
        return cfg

    @classmethod
    def from_file(cls, path: str | Path | None) -> PipelineConfig:
        """Read a .toml, .yaml/.yml or .json config; ``None`` gives the defaults."""
        if path is None:
            return cls()
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        text = path.read_text()
        suffix = path.suffix.lower()
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"config must be .toml, .yaml or .json, got '{path.name}'")
        return cls.from_dict(data)

    def section(self, name: str) -> dict:
        return dataclasses.asdict(getattr(self, name))


def default_config_toml() -> str:
    """The default configuration as a commented TOML text (``atomlens run --print-config``)."""
    lines = ["# AtomLens pipeline configuration: every setting with its default."]
    for sec in fields(PipelineConfig):
        obj = sec.default_factory()  # type: ignore[misc]
        lines.append(f"\n[{sec.name}]")
        for f in fields(obj):
            value = getattr(obj, f.name)
            if value is None:
                lines.append(f"# {f.name} =   (unset)")
            else:
                lines.append(f"{f.name} = {json.dumps(value)}")
    return "\n".join(lines) + "\n"
