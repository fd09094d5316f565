"""One configuration for the whole chain, with a documented default for every setting.

A config file (TOML, YAML or JSON) holds any subset of the sections below; unknown
sections or keys are errors (a typo must not be silently ignored). The sections are the
recipes of :mod:`atomlens.workflows` (``[detect]`` is a ``DetectRecipe``, ``[chem]`` a
``ChemRecipe``, ``[descriptors]``/``[latent]`` the latent workflow's recipes), so the
pipeline, the CLI and the docks share one set of settings and defaults. An unset
``[detect] model`` is the project's fine-tuned detector when the input is a project,
else ``'auto'`` (chosen from the first frame), the default of ``atomlens detect`` and
the Detect dock.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from atomlens.errors import SettingsError
from atomlens.workflows.chemistry import ChemRecipe
from atomlens.workflows.detect import DetectRecipe
from atomlens.workflows.latent import DescriptorRecipe, LatentRecipe
from atomlens.workflows.recipe import Recipe, setting


@dataclass
class InputConfig(Recipe):
    """How the stack is read."""

    section = "input"

    pixel_size: float | None = setting(None, above=0.0, doc="Å/px; None = from the file's metadata")
    calibrate: str | None = setting(
        None,
        doc="lattice to calibrate against ('graphene', 'mos2', 'srtio3', 'square:<Å>', "
        "or Å of a hexagonal lattice) or None",
    )
    apply_calibration: bool = setting(False, doc="replace the pixel size by the calibrated one")
    frames: str | int | None = setting(
        None, doc="frames to analyse, e.g. '0:10', '0:3,8' or 5; None = all"
    )
    lazy: bool = setting(True, doc="keep pixels on disk (memmap / TIFF pages / Zarr)")
    nonfinite: str = setting(
        "mask",
        choices=("mask", "refuse"),
        doc="NaN/inf pixels: 'mask' (no atoms there, the rest analysed) or 'refuse' the movie",
    )


# The recipes of the workflows ARE the sections of the pipeline config.
DetectConfig = DetectRecipe
ChemConfig = ChemRecipe
DescriptorConfig = DescriptorRecipe
LatentConfig = LatentRecipe


@dataclass
class ReportConfig(Recipe):
    """The HTML report."""

    section = "report"

    enabled: bool = setting(True, doc="write report.html")
    frames: tuple[int, ...] | None = setting(
        None, doc="frames shown as lattices; None = first/middle/last"
    )


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
        """Build from ``{section: {key: value}}``; unknown sections or keys, wrong types
        and out-of-range values raise :class:`SettingsError` naming the field."""
        cfg = cls()
        sections = {f.name: f for f in fields(cls)}
        for name, values in (data or {}).items():
            if name not in sections:
                raise SettingsError(
                    f"unknown config section [{name}]; known sections: {', '.join(sections)}"
                )
            if not isinstance(values, dict):
                raise SettingsError(f"[{name}] must be a table of settings, got {values!r}")
            section = getattr(cfg, name)
            setattr(cfg, name, type(section).from_dict({**section.to_dict(), **values}))
        return cfg

    def validate(self) -> PipelineConfig:
        """Check every section (after attributes were set by hand); returns ``self``."""
        for f in fields(self):
            getattr(self, f.name).validate()
        return self

    @classmethod
    def from_file(cls, path: str | Path | None) -> PipelineConfig:
        """Read a .toml, .yaml/.yml or .json config; ``None`` gives the defaults."""
        if path is None:
            return cls()
        from atomlens.io.gate import read_text_file, safe_reason, safe_yaml_load

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".toml", ".yaml", ".yml", ".json"):
            raise SettingsError(f"config must be .toml, .yaml or .json, got '{path.name}'")
        text = read_text_file(path, "config file")  # no FIFOs/devices, size-bounded, UTF-8
        try:
            if suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            elif suffix in (".yaml", ".yml"):
                data = safe_yaml_load(text, path) or {}  # aliases bounded
            else:
                data = json.loads(text)
        except SettingsError:
            raise
        except (ValueError, RecursionError) as exc:  # TOMLDecodeError, JSONDecodeError
            raise SettingsError(
                f"config {path.name} does not parse ({safe_reason(exc)}); fix "
                "the syntax (atomlens run --print-config shows a valid one)"
            ) from None
        if not isinstance(data, dict):
            raise SettingsError(
                f"config {path.name} must hold [section] tables of settings, "
                f"not a {type(data).__name__}"
            )
        return cls.from_dict(data)

    def section(self, name: str) -> dict:
        return dataclasses.asdict(getattr(self, name))


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{ "
            + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items())
            + " }"
        )
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)


def default_config_toml() -> str:
    """The default configuration as a commented TOML text (``atomlens run --print-config``)."""
    lines = ["# AtomLens pipeline configuration: every setting with its default."]
    for sec in fields(PipelineConfig):
        obj = sec.default_factory()  # type: ignore[misc]
        lines.append(f"\n[{sec.name}]")
        docs = obj.docs()
        for f in fields(obj):
            value = getattr(obj, f.name)
            if docs.get(f.name):
                lines.append(f"# {docs[f.name]}")
            if value is None:
                lines.append(f"# {f.name} =   (unset)")
            else:
                lines.append(f"{f.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"
