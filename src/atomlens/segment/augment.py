"""Array-level augmentation of (image, mask) pairs, reproducible with a seed.

Used for training on experimental frames (labels from corrected detections) and as a
last photometric stage on simulated samples. Geometric operations move the mask with
the image (nearest-neighbour for labels); photometric ones touch only the image.
Covers what real data do: any rotation, flips, zoom, shear, Gaussian and Poisson noise,
blur, contrast/gamma, background gradients, scan-line jitter, contamination.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass
class AugmentConfig:
    """Ranges of each augmentation; a probability ``p_*`` of applying each one."""

    rotate: bool = True  # any angle
    flip: bool = True
    zoom: tuple[float, float] = (0.85, 1.18)
    shear: float = 0.06
    p_geometric: float = 1.0
    gauss_noise: tuple[float, float] = (0.0, 0.3)  # std, in units of the image's 1-99 % range
    p_gauss: float = 0.5
    poisson_counts: tuple[float, float] = (3.0, 300.0)  # counts per pixel at the 99th pct
    p_poisson: float = 0.5
    blur_px: tuple[float, float] = (0.0, 1.2)
    p_blur: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.4)
    p_gamma: float = 0.3
    gradient: float = 0.5
    p_gradient: float = 0.3
    jitter_px: float = 0.5
    p_jitter: float = 0.2
    contamination: float = 1.0
    p_contamination: float = 0.2


def geometric(
    image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray | None]:
    """Rotation by any angle, flip, zoom and shear about the centre (output same shape)."""
    a = rng.uniform(0, 2 * np.pi) if cfg.rotate else 0.0
    z = rng.uniform(*cfg.zoom)
    sh = rng.uniform(-cfg.shear, cfg.shear)
    m = (
        np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        @ np.array([[1, sh], [0, 1]])
        / z
    )
    if cfg.flip and rng.random() < 0.5:
        m = m @ np.diag([1.0, -1.0])
    c = (np.array(image.shape) - 1) / 2
    off = c - m @ c
    img = ndi.affine_transform(image, m, off, order=1, mode="reflect")
    msk = None if mask is None else ndi.affine_transform(mask, m, off, order=0, mode="constant")
    return img.astype(np.float32), msk


def photometric(image: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig) -> np.ndarray:
    """Noise, blur, gamma, gradients, scan jitter and contamination on one image."""
    x = image.astype(np.float64)
    lo, hi = np.percentile(x, [1, 99])
    x = (x - lo) / max(hi - lo, 1e-12)  # ~0..1
    if rng.random() < cfg.p_gamma:
        x = np.clip(x, 0, None) ** rng.uniform(*cfg.gamma)
    if rng.random() < cfg.p_gradient:
        yy, xx = np.mgrid[: x.shape[0], : x.shape[1]] / max(x.shape)
        x = x + cfg.gradient * rng.uniform(-1, 1) * (rng.normal() * yy + rng.normal() * xx)
    if rng.random() < cfg.p_contamination:
        f = ndi.gaussian_filter(rng.normal(size=x.shape), rng.uniform(4, 12), mode="wrap")
        f /= f.std() + 1e-12
        x = x + cfg.contamination * rng.uniform(0.2, 1) * np.clip(f - 0.8, 0, None)
    if rng.random() < cfg.p_jitter:
        shifts = rng.normal(0, rng.uniform(0, cfg.jitter_px), x.shape[0])
        x = np.stack([ndi.shift(row, s, order=1, mode="nearest") for row, s in zip(x, shifts)])
    if rng.random() < cfg.p_blur:
        x = ndi.gaussian_filter(x, rng.uniform(*cfg.blur_px))
    if rng.random() < cfg.p_poisson:
        k = rng.uniform(*cfg.poisson_counts)
        x = rng.poisson(np.clip(x, 0, None) * k) / k
    if rng.random() < cfg.p_gauss:
        x = x + rng.normal(0, rng.uniform(*cfg.gauss_noise), x.shape)
    return x.astype(np.float32)


def augment_pair(
    image: np.ndarray,
    mask: np.ndarray | None,
    rng: np.random.Generator,
    cfg: AugmentConfig | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Geometric (image + mask) then photometric (image) augmentation of a (Y, X) pair."""
    cfg = cfg or AugmentConfig()
    if rng.random() < cfg.p_geometric:
        image, mask = geometric(image, mask, rng, cfg)
    return photometric(image, rng, cfg), mask
