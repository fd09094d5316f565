"""Torch networks behind the latent models: encoders, the spatial (coordinate) decoder,
an MLP decoder and the convolutional autoencoder. Images enter as (B, C, h, w) float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "elu": F.elu, "softplus": F.softplus}


def _act(name: str):
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def coordinate_grid(h: int, w: int) -> torch.Tensor:
    """(h*w, 2) pixel-centre coordinates (x, y), row-major, in units where the larger
    window side spans [-1, 1]; y grows downwards like image rows."""
    half = (max(h, w) - 1) / 2.0
    ys = (torch.arange(h, dtype=torch.float32) - (h - 1) / 2.0) / half
    xs = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2.0) / half
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def _init_head(head: nn.Linear, n_latent: int, logsd0: float = -2.0) -> None:
    """Start with small posterior SDs (exp(-2) ~ 0.14) so that early sampling noise does
    not wash out the angle before the decoder has learned any orientation."""
    with torch.no_grad():
        head.bias[n_latent:].fill_(logsd0)


class MLPEncoder(nn.Module):
    """Flattened image -> tanh MLP -> (mu, log_sd) of ``n_latent`` Gaussian units."""

    def __init__(self, n_in: int, n_latent: int, hidden: tuple[int, ...], activation: str):
        super().__init__()
        dims = (n_in, *hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.head = nn.Linear(dims[-1], 2 * n_latent)
        _init_head(self.head, n_latent)
        self.act = _act(activation)
        self.n_latent = n_latent

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            h = self.act(layer(h))
        out = self.head(h)
        return out[:, : self.n_latent], out[:, self.n_latent :].clamp(-12.0, 6.0)


class ConvEncoder(nn.Module):
    """Two stride-2 3x3 convolutions (32, 64 filters, ReLU) -> dense -> (mu, log_sd)."""

    def __init__(self, shape: tuple[int, int, int], n_latent: int, hidden: int, activation: str):
        super().__init__()
        c, h, w = shape
        self.conv1 = nn.Conv2d(c, 32, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        h2, w2 = (h + 1) // 2, (w + 1) // 2
        h4, w4 = (h2 + 1) // 2, (w2 + 1) // 2
        self.fc = nn.Linear(64 * h4 * w4, hidden)
        self.head = nn.Linear(hidden, 2 * n_latent)
        _init_head(self.head, n_latent)
        self.act = _act(activation)
        self.n_latent = n_latent

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        h = self.act(self.fc(h.flatten(1)))
        out = self.head(h)
        return out[:, : self.n_latent], out[:, self.n_latent :].clamp(-12.0, 6.0)


class SpatialDecoder(nn.Module):
    """The spatial generator: an MLP over image coordinates, rotated by ``phi`` and
    shifted by ``shift`` per sample, with the content latent ``z`` entering the first
    layer (and, with ``skip=True``, every layer).

    The first layer is fused: ``(R(phi) g + t) W + z U + b = g (R^T W) + (t W + z U + b)``,
    so one batched matmul (``baddbmm``) over the fixed base grid ``g`` replaces the
    per-sample coordinate transform and concatenation.
    """

    def __init__(
        self,
        window: tuple[int, int],
        n_channels: int,
        n_content: int,
        hidden: tuple[int, ...],
        activation: str,
        skip: bool,
    ):
        super().__init__()
        h, w = window
        self.window, self.n_channels, self.skip = (h, w), n_channels, skip
        self.coord = nn.Linear(2, hidden[0])
        self.latent = nn.Linear(n_content, hidden[0], bias=False) if n_content else None
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(hidden[:-1], hidden[1:]))
        if skip and n_content:
            self.skips = nn.ModuleList(nn.Linear(n_content, b, bias=False) for b in hidden[1:])
        else:
            self.skips = None
        self.out = nn.Linear(hidden[-1], n_channels)
        self.activation = activation
        self.act = _act(activation)
        self.register_buffer("grid", coordinate_grid(h, w), persistent=False)

    def forward(self, phi: torch.Tensor, shift: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """phi (B,) rad, shift (B, 2) grid units (x, y), z (B, k) -> (B, C, h, w)."""
        b = phi.shape[0]
        # tanh(a) = 2 sigmoid(2a) - 1: with tanh the hidden layers carry s = sigmoid(2a)
        # (torch's sigmoid is several times faster than its tanh on CPU) and the affine
        # maps 2a and 2s - 1 are folded into the (small) weights, not the activations.
        fast = self.activation == "tanh"
        c, s = torch.cos(phi), torch.sin(phi)
        # rotated coordinate g' = R g with R = [[c, -s], [s, c]]; as rows: g' = g R^T
        rt = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], 1)  # (B,2,2)
        w_c = self.coord.weight.t()  # (2, H)
        w_eff = rt @ w_c  # (B, 2, H)
        bias = shift @ w_c + self.coord.bias
        if self.latent is not None and z.shape[1]:
            bias = bias + self.latent(z)
        if fast:
            w_eff, bias = 2.0 * w_eff, 2.0 * bias
        grid = self.grid.to(w_eff.dtype).expand(b, -1, -1)
        hdn = self._activate(torch.baddbmm(bias.unsqueeze(1), grid, w_eff))  # (B, P, H)
        for i, layer in enumerate(self.layers):
            w_t, b_l = layer.weight.t(), layer.bias
            if fast:  # 2 a = (2 s - 1) (2 W^T) + 2 b = s (4 W^T) + 2 (b - W 1)
                w_t, b_l = 4.0 * w_t, 2.0 * (b_l - layer.weight.sum(1))
            if self.skips is not None:
                bias = b_l + (2.0 * self.skips[i](z) if fast else self.skips[i](z))  # (B, H)
                hdn = self._activate(torch.baddbmm(bias.unsqueeze(1), hdn, w_t.expand(b, -1, -1)))
            else:  # one big GEMM over all pixels of all samples; 2-D so the in-place
                # activation is not on a view
                flat = hdn.reshape(-1, hdn.shape[-1])
                hdn = self._activate(torch.addmm(b_l, flat, w_t)).reshape(b, -1, w_t.shape[1])
        w_o, b_o = self.out.weight.t(), self.out.bias
        if fast:  # (2 s - 1) W_o^T + b_o = s (2 W_o^T) + (b_o - W_o 1)
            w_o, b_o = 2.0 * w_o, b_o - self.out.weight.sum(1)
        out = torch.addmm(b_o, hdn.reshape(-1, hdn.shape[-1]), w_o)  # (B*P, C)
        return (
            out.reshape(b, -1, self.n_channels)
            .transpose(1, 2)
            .reshape(b, self.n_channels, *self.window)
        )

    def _activate(self, x: torch.Tensor) -> torch.Tensor:
        """The hidden activation, in place on a fresh matmul output (its backward does not
        need it); with tanh this returns sigmoid(x), see :meth:`forward`."""
        if self.activation == "tanh":
            return x.sigmoid_()
        return self.act(x)


class MLPDecoder(nn.Module):
    """Latent -> tanh MLP -> flattened image (plain VAE)."""

    def __init__(
        self, n_latent: int, shape: tuple[int, int, int], hidden: tuple[int, ...], activation: str
    ):
        super().__init__()
        dims = (n_latent, *hidden[::-1])
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], math.prod(shape))
        self.act = _act(activation)
        self.shape = shape

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = z
        for layer in self.layers:
            h = self.act(layer(h))
        return self.out(h).reshape(z.shape[0], *self.shape)


class ConvAENet(nn.Module):
    """Convolutional autoencoder of the Sci. Adv. paper: two stride-2 3x3 convolutions
    (32, 64, ReLU), a dense latent layer, and two transposed convolutions back."""

    def __init__(self, shape: tuple[int, int, int], n_latent: int):
        super().__init__()
        c, h, w = shape
        self.shape = shape
        self.conv1 = nn.Conv2d(c, 32, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.s1 = ((h + 1) // 2, (w + 1) // 2)
        self.s2 = ((self.s1[0] + 1) // 2, (self.s1[1] + 1) // 2)
        n_flat = 64 * self.s2[0] * self.s2[1]
        self.to_latent = nn.Linear(n_flat, n_latent)
        self.from_latent = nn.Linear(n_latent, n_flat)
        self.deconv1 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1)
        self.deconv2 = nn.ConvTranspose2d(32, c, 3, stride=2, padding=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        return self.to_latent(h.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.from_latent(z)).reshape(z.shape[0], 64, *self.s2)
        h = F.relu(self.deconv1(h, output_size=self.s1))
        return self.deconv2(h, output_size=self.shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
