"""Segmentation networks: a small U-Net and its dilated-bottleneck variant.

Both map a ``(B, 1, Y, X)`` normalised image to ``(B, C, Y, X)`` class logits (apply a
softmax over ``C`` for probabilities). ``Y`` and ``X`` must be multiples of
``2 ** (levels - 1)``; :func:`atomlens.segment.predict.predict_maps` pads for you.

The dilated variant replaces the bottleneck's plain convolutions by a pyramid of
dilated 3x3 convolutions (dilations 1, 2, 3, 4 by default) whose outputs are summed,
as in the papers' network for noisy data: it widens the receptive field (the lattice
context around each atom) without extra pooling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
from torch import nn

from atomlens.errors import SettingsError


class NetConfigError(SettingsError):
    """A network configuration that cannot be built; the message names the field."""


@dataclass
class NetConfig:
    """Everything needed to rebuild a segmentation network.

    Attributes
    ----------
    arch : ``"unet"`` or ``"dilated_unet"``.
    classes : class names; index 0 is the background.
    base_filters : filters of the first level; level ``k`` has ``base * 2**k``.
    levels : resolution levels including the bottleneck (3 = two poolings).
    dilations : dilation rates of the bottleneck pyramid (``dilated_unet`` only).
    batchnorm : BatchNorm after each convolution.
    dropout : dropout probability in the bottleneck (0 = none).
    """

    arch: str = "dilated_unet"
    classes: tuple[str, ...] = ("background", "C", "Si")
    base_filters: int = 16
    levels: int = 3
    dilations: tuple[int, ...] = (1, 2, 3, 4)
    batchnorm: bool = True
    dropout: float = 0.0
    in_channels: int = 1

    def __post_init__(self) -> None:
        self.classes = tuple(str(c) for c in self.classes)
        self.dilations = tuple(int(d) for d in self.dilations)
        if self.arch not in ("unet", "dilated_unet"):
            raise NetConfigError(f"arch must be 'unet' or 'dilated_unet', got {self.arch!r}")
        if len(self.classes) < 2:
            raise NetConfigError(
                f"need at least two classes (background + one species), got {self.classes}"
            )
        if self.levels < 1 or self.levels > 6:
            raise NetConfigError(f"levels must be 1..6, got {self.levels}")
        if self.base_filters < 1:
            raise NetConfigError(f"base_filters must be positive, got {self.base_filters}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["dilations"] = list(self.dilations)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> NetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise NetConfigError(
                f"unknown network config keys {sorted(unknown)}; this file was written by a "
                "different AtomLens version: retrain or upgrade"
            )
        return cls(**d)

    @property
    def multiple(self) -> int:
        """Input sizes must be a multiple of this (pixels)."""
        return 2 ** (self.levels - 1)


def _conv_block(cin: int, cout: int, bn: bool, dilation: int = 1) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=not bn)
    ]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _DilatedPyramid(nn.Module):
    """Sum of parallel dilated 3x3 convolutions (one per rate), then a 3x3 mix."""

    def __init__(self, cin: int, cout: int, dilations: tuple[int, ...], bn: bool) -> None:
        super().__init__()
        self.inp = _conv_block(cin, cout, bn)
        self.branches = nn.ModuleList(_conv_block(cout, cout, bn, d) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        return x + sum(b(x) for b in self.branches)


class UNet(nn.Module):
    """U-Net (optionally with a dilated bottleneck) built from a :class:`NetConfig`.

    forward: ``(B, in_channels, Y, X)`` float32 -> ``(B, n_classes, Y, X)`` logits.
    """

    def __init__(self, config: NetConfig | None = None, **overrides) -> None:
        super().__init__()
        if config is None:
            config = NetConfig(**overrides)
        elif overrides:
            config = NetConfig.from_dict({**config.to_dict(), **overrides})
        self.config = config
        bn = config.batchnorm
        widths = [config.base_filters * 2**k for k in range(config.levels)]
        self.down = nn.ModuleList()
        cin = config.in_channels
        for w in widths[:-1]:
            self.down.append(nn.Sequential(_conv_block(cin, w, bn), _conv_block(w, w, bn)))
            cin = w
        wb = widths[-1]
        if config.arch == "dilated_unet":
            self.bottleneck: nn.Module = _DilatedPyramid(cin, wb, config.dilations, bn)
        else:
            self.bottleneck = nn.Sequential(_conv_block(cin, wb, bn), _conv_block(wb, wb, bn))
        self.drop = nn.Dropout2d(config.dropout) if config.dropout > 0 else nn.Identity()
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        cin = wb
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(cin, w, 2, stride=2))
            self.dec.append(nn.Sequential(_conv_block(2 * w, w, bn), _conv_block(w, w, bn)))
            cin = w
        self.head = nn.Conv2d(cin, len(config.classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.drop(self.bottleneck(x))
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def build_net(config: NetConfig | dict) -> UNet:
    """A fresh (randomly initialised) network from a config or its dict form."""
    if isinstance(config, dict):
        config = NetConfig.from_dict(config)
    return UNet(config)


def n_params(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


__all__ = ["NetConfig", "NetConfigError", "UNet", "build_net", "n_params", "field"]
