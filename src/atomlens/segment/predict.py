"""Tiled, batched prediction of class-probability maps for any image size and length.

Frames are resampled to the model's sampling (Å/px, anti-aliased bilinear), normalised
robustly (median and 1-99 percentile range), cut into overlapping tiles blended with
cosine weights, run in batches under ``torch.inference_mode`` (CUDA + half precision
when present), and handed back one frame at a time so long movies stay in bounded
memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from atomlens.errors import SettingsError
from atomlens.io.stack import stack_frames
from atomlens.segment.model_file import Detector, load_detector


class PixelSizeError(SettingsError):
    """The pixel size is missing or unusable; the message names the fix."""


def normalise(image: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Robust per-frame normalisation: ``(x - median) / (p99 - p1)``.

    Works on a (Y, X) numpy array or a (..., Y, X) tensor (each frame on its own).
    Flat frames come back as zeros.
    """
    if isinstance(image, np.ndarray):
        lo, med, hi = np.percentile(image, [1, 50, 99])
        return ((image - med) / max(hi - lo, 1e-12)).astype(np.float32)
    flat = image.reshape(*image.shape[:-2], -1).float()
    q = torch.quantile(
        _subsample(flat), torch.tensor([0.01, 0.5, 0.99], device=flat.device), dim=-1
    )
    lo, med, hi = q[0], q[1], q[2]
    scale = (hi - lo).clamp_min(1e-12)
    return (image - med[..., None, None]) / scale[..., None, None]


def _subsample(flat: torch.Tensor, n: int = 1 << 18) -> torch.Tensor:
    # torch.quantile refuses very large inputs; a strided subsample is plenty
    step = max(1, flat.shape[-1] // n)
    return flat[..., ::step]


def model_grid_shape(
    shape: Sequence[int], pixel_size: float, model_pixel: float
) -> tuple[int, int]:
    """(y, x) size of a ``shape`` frame resampled from ``pixel_size`` to ``model_pixel`` Å/px."""
    f = pixel_size / model_pixel
    return max(8, int(round(shape[-2] * f))), max(8, int(round(shape[-1] * f)))


def to_input_coords(
    yx_model: np.ndarray, input_shape: Sequence[int], model_shape: Sequence[int]
) -> np.ndarray:
    """Map (N, 2) model-grid pixel positions back to input-frame pixels (centre convention)."""
    s = np.array([input_shape[-2] / model_shape[-2], input_shape[-1] / model_shape[-1]])
    return (np.asarray(yx_model, float) + 0.5) * s - 0.5


def resample(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, Y, X) -> (B, y, x) anti-aliased bilinear resampling (no-op if equal)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    down = size[0] < frames.shape[-2] or size[1] < frames.shape[-1]
    return F.interpolate(
        frames[:, None], size=size, mode="bilinear", align_corners=False, antialias=down
    )[:, 0]


def fold_batchnorm(net: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of ``net`` with every Conv2d -> BatchNorm2d pair folded into the
    convolution (same outputs in eval mode, ~15 % faster on CPU). ``net`` is untouched."""
    import copy

    net = copy.deepcopy(net).eval()
    for mod in net.modules():
        if not isinstance(mod, torch.nn.Sequential):
            continue
        kids = list(mod._modules.items())
        for (_, conv), (bname, bn) in zip(kids, kids[1:]):
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                with torch.no_grad():
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                    conv.weight.mul_(scale[:, None, None, None])
                    conv.bias = torch.nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                mod._modules[bname] = torch.nn.Identity()
    return net


def _window(n: int, overlap: int) -> torch.Tensor:
    w = torch.ones(n)
    if overlap > 0:
        ramp = 0.5 - 0.5 * torch.cos(torch.linspace(0, np.pi, overlap + 2)[1:-1])
        w[:overlap] = ramp
        w[-overlap:] = ramp.flip(0)
    return w


def _starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    s = list(range(0, n - tile, step)) + [n - tile]
    return sorted(set(s))


def _run_net(net: torch.nn.Module, x: torch.Tensor, multiple: int, half: bool) -> torch.Tensor:
    """(B, 1, y, x) -> (B, C, y, x) softmax probabilities, padding to ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if (ph < h and pw < w) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    if half:
        with torch.autocast("cuda", dtype=torch.float16):
            logits = net(x)
    else:
        logits = net(x)
    return torch.softmax(logits.float(), dim=1)[..., :h, :w]


def predict_model_grid(
    det: Detector,
    frames: torch.Tensor,
    *,
    tile: int | None = None,
    overlap: int = 32,
    tile_batch: int = 8,
    net: torch.nn.Module | None = None,
    max_pixels: int = 1 << 19,
) -> torch.Tensor:
    """Normalised (B, y, x) frames on the model grid -> (B, C, y, x) probabilities.

    Frames larger than ``tile`` are cut into overlapping tiles (cosine blending); at most
    ``max_pixels`` model pixels go through the network at once (bounded memory).
    ``net`` overrides ``det.net`` (e.g. a :func:`fold_batchnorm` copy).
    """
    tile = tile or det.tile
    net = det.net if net is None else net
    dev = next(net.parameters()).device
    half = dev.type == "cuda"
    mult = det.net_config.multiple
    b, h, w = frames.shape
    x = frames[:, None].to(dev)
    if h <= tile and w <= tile:
        step = max(1, max_pixels // (h * w))
        return torch.cat(
            [_run_net(net, x[i : i + step], mult, half).cpu() for i in range(0, b, step)]
        )
    th, tw = min(tile, h), min(tile, w)
    step = max(tile - 2 * overlap, mult)
    ys, xs = _starts(h, th, step), _starts(w, tw, step)
    wy = _window(th, overlap if len(ys) > 1 else 0)
    wx = _window(tw, overlap if len(xs) > 1 else 0)
    wt = (wy[:, None] * wx[None]).to(dev)
    out = torch.zeros(b, len(det.classes), h, w, device=dev)
    norm = torch.zeros(1, 1, h, w, device=dev)
    boxes = [(y0, x0) for y0 in ys for x0 in xs]
    per = max(1, min(tile_batch, max_pixels // (th * tw)) // b)
    for i in range(0, len(boxes), per):
        chunk = boxes[i : i + per]
        batch = torch.cat([x[..., y0 : y0 + th, x0 : x0 + tw] for y0, x0 in chunk])
        p = _run_net(net, batch, mult, half).reshape(len(chunk), b, -1, th, tw)
        for k, (y0, x0) in enumerate(chunk):
            out[..., y0 : y0 + th, x0 : x0 + tw] += p[k] * wt
            norm[..., y0 : y0 + th, x0 : x0 + tw] += wt
    return (out / norm).cpu()


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``'auto'`` -> CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_pixel_size(stack: Any, pixel_size: float | None) -> float:
    """The pixel size in Å: the override, else the Stack's, else a :class:`PixelSizeError`."""
    ps = pixel_size if pixel_size is not None else getattr(stack, "pixel_size", None)
    if ps is None:
        raise PixelSizeError(
            "the pixel size is unknown: pass pixel_size=<Å per pixel> (CLI: --pixel-size) or "
            "calibrate the stack from its lattice first"
        )
    if not (np.isfinite(ps) and ps > 0):
        raise PixelSizeError(f"pixel size must be a positive number of Å, got {ps!r}")
    return float(ps)


def iter_model_maps(
    stack: Any,
    model: Detector | str | None = None,
    *,
    pixel_size: float | None = None,
    frames: Sequence[int] | None = None,
    batch_size: int = 4,
    device: str = "auto",
    tta: int = 1,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Yield ``(t, raw_frame (Y, X), maps_model (C, y, x), bad)`` per frame, on the model
    grid. ``raw_frame`` has its NaN/inf pixels filled (:func:`fill_nonfinite`); ``bad`` is
    (Y, X) bool of those pixels, or None when the frame had none (the maps are masked
    there already). ``tta``: the maps are the mean over that many symmetries of the
    square (1, 2, 4 or 8; :func:`atomlens.segment.tta.symmetrised`, ``tta`` x the network
    time).

    The building block of :func:`predict_maps` and of :func:`atomlens.atoms.detect`.
    """
    from atomlens.segment.tta import SYMMETRIES

    if tta not in SYMMETRIES:
        raise ValueError(f"tta must be one of {sorted(SYMMETRIES)} symmetries, got {tta!r}")
    det = model if isinstance(model, Detector) else load_detector(model)
    ps = resolve_pixel_size(stack, pixel_size)
    data = stack_frames(stack)
    idx = list(range(data.shape[0])) if frames is None else [int(t) for t in frames]
    for t in idx:
        if not -data.shape[0] <= t < data.shape[0]:
            raise IndexError(f"frame {t} is out of range for a stack of {data.shape[0]} frames")
    dev = pick_device(device)
    size = model_grid_shape(data.shape, ps, det.pixel_size)
    check_model_grid(data.shape, size, ps, det, batch_size)
    net = fold_batchnorm(det.net).to(dev)
    empty = 0  # frames with no finite pixel
    with torch.inference_mode():
        for i in range(0, len(idx), batch_size):
            ts = idx[i : i + batch_size]
            raw = np.stack([np.asarray(data[t], dtype=np.float32) for t in ts])
            raw, bad = fill_nonfinite(raw)
            if bad is not None:
                empty += int(bad.reshape(len(ts), -1).all(axis=1).sum())
            x = resample(torch.from_numpy(raw), size)
            x = normalise(x)
            if tta == 1:
                maps = predict_model_grid(det, x, net=net).numpy()
            else:
                from atomlens.segment.tta import symmetrised

                maps = symmetrised(predict_model_grid, det, x, tta, net=net).numpy()
            if bad is not None:
                mask_maps(maps, bad, size)
            for k, t in enumerate(ts):
                yield t, raw[k], maps[k], None if bad is None or not bad[k].any() else bad[k]
    if idx and empty == len(idx):
        from atomlens.io.stack import StackError

        raise StackError(
            f"every pixel of the {len(idx)} selected frame(s) is NaN/inf; "
            "nothing to analyse: select other frames or check the export"
        )


#: Largest factor by which a frame may be resampled to the model's pixel size.
MAX_RESAMPLE = 16.0


def check_model_grid(
    shape: Sequence[int], size: tuple[int, int], pixel_size: float, det: Detector, batch_size: int
) -> None:
    """Refuse a pixel size that would resample frames absurdly (or beyond memory)."""
    from atomlens.io.gate import human_bytes, memory_budget

    f = pixel_size / det.pixel_size
    need = size[0] * size[1] * len(det.classes) * 4 * 3 * max(1, batch_size)
    if not 1 / MAX_RESAMPLE <= f <= MAX_RESAMPLE or need > 4 * memory_budget():
        raise PixelSizeError(
            f"pixel size {pixel_size:g} Å/px would resample {shape[-2]}x{shape[-1]} frames to "
            f"{size[0]}x{size[1]} px for a model at {det.pixel_size:g} Å/px"
            + (f" ({human_bytes(need)} of maps)" if need > 4 * memory_budget() else "")
            + "; check the pixel size (in Å per pixel, not nm or m)"
        )


def fill_nonfinite(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(B, Y, X) frames with NaN/inf pixels replaced by each frame's finite median.

    Returns the filled frames and the boolean mask of the replaced pixels (``None``
    when every pixel is finite). Detection then masks those pixels (no atoms there).
    """
    bad = ~np.isfinite(raw)
    if not bad.any():
        return raw, None
    raw = raw.copy()
    for k in range(len(raw)):
        if bad[k].any():
            good = raw[k][~bad[k]]
            raw[k][bad[k]] = float(np.median(good)) if good.size else 0.0
    return raw, bad


def mask_maps(maps: np.ndarray, bad: np.ndarray, size: tuple[int, int]) -> None:
    """Set model-grid maps to background (class 0) wherever a NaN/inf pixel reaches,
    grown by one model pixel, so no atom is found there. ``maps`` is (B, C, y, x)."""
    from scipy import ndimage as ndi

    cover = resample(torch.from_numpy(bad.astype(np.float32)), size).numpy() > 0
    for k in range(len(maps)):
        if cover[k].any():
            m = ndi.binary_dilation(cover[k], iterations=1)
            maps[k][:, m] = 0.0
            maps[k][0, m] = 1.0


def predict_maps(
    stack_or_array: Any,
    model: Detector | str | None = None,
    pixel_size: float | None = None,
    batch_size: int = 4,
    device: str = "auto",
    frames: Sequence[int] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(frame_index, maps)`` with maps ``(C, Y, X)`` float32 on the input grid.

    ``stack_or_array``: a :class:`atomlens.io.Stack` or a (T, Y, X) / (Y, X) array (then
    ``pixel_size`` in Å is required). ``model``: a :class:`Detector`, a path, or ``None``
    for the shipped model. Only ``batch_size`` frames are in memory at once.
    """
    for t, raw, m, _ in iter_model_maps(
        stack_or_array,
        model,
        pixel_size=pixel_size,
        frames=frames,
        batch_size=batch_size,
        device=device,
    ):
        yield t, upsample_maps(m, raw.shape)


def upsample_maps(maps: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """(C, y, x) model-grid maps -> (C, Y, X) on the input grid (bilinear; still sums to 1)."""
    if tuple(maps.shape[-2:]) == tuple(shape[-2:]):
        return maps.astype(np.float32, copy=False)
    t = torch.from_numpy(np.ascontiguousarray(maps))[None]
    return (
        F.interpolate(t, size=tuple(shape[-2:]), mode="bilinear", align_corners=False)[0]
        .numpy()
        .astype(np.float32)
    )


def predict_maps_array(
    stack_or_array: Any,
    model: Detector | str | None = None,
    pixel_size: float | None = None,
    **kwargs: Any,
) -> np.ndarray:
    """All maps at once: ``(T, C, Y, X)`` float32 (use :func:`predict_maps` for long movies)."""
    out = [m for _, m in predict_maps(stack_or_array, model, pixel_size, **kwargs)]
    return np.stack(out)
