"""Latent workflow: descriptors (windows around centres) and latent-model training.

Windows are built ONE way for every front end (Subimages/Train docks, ``atomlens
rvae``, ``atomlens run``): :func:`prepare_movie` bins the frames ``bin x bin`` and
scales the whole movie (``normalize``, default robust percentiles), then
:func:`cut_windows` cuts ``window``-pixel windows (pixels of the binned movie) around
the centres. The :class:`DescriptorRecipe` is written into the model card
(``card["preprocessing"]``) together with the :class:`LatentRecipe`
(``card["recipe"]``), so a model trained anywhere encodes new windows the same way
(:mod:`atomlens.workflows.encode`).

Defaults are chosen once, for a 2-core laptop (``bench/workflow_latent.py``): on the real
48-frame Si-graphene movie (0.078 Å/px -> bin 4, 16-px windows, 4,140 windows) the
default rVAE (6 content latents, hidden 64-64, 15 epochs, batch 50, lr 1e-3) trains and
encodes in 86 s on 2 threads of a busy 2-core machine; the annotated Si ranks 3rd of ~86
atoms of its frame by its latent distance from bulk C (median over 48 frames) and the
Si-vs-C ROC AUC is 0.933 (seed 0), the figures of ``bench/rvae.py --science``.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from atomlens.workflows.events import Log, Progress, frames_of
from atomlens.workflows.recipe import Recipe, setting

MODEL_NAMES = ("rvae", "skip-rvae", "vae", "conv-ae", "pca", "nmf", "gmm")
#: Å per pixel that ``bin = None`` bins the movie to (C-C ~ 4.7 px): windows of 16 px
#: then span 4.8 Å, an atom and its neighbours, whatever the microscope's sampling.
TARGET_PIXEL_A = 0.3


def resolve_bin(recipe: DescriptorRecipe, pixel_size: float | None) -> DescriptorRecipe:
    """The recipe with ``bin`` decided: ``round(TARGET_PIXEL_A / pixel_size)`` (at least
    1) when ``bin`` is None and the pixel size (Å/px) is known, else 1."""
    if recipe.bin is not None:
        return recipe
    b = max(1, int(round(TARGET_PIXEL_A / pixel_size))) if pixel_size else 1
    return recipe.replace(bin=min(b, 16))


@dataclass
class DescriptorRecipe(Recipe):
    """How windows are cut (``[descriptors]`` in the pipeline config)."""

    section = "descriptors"

    window: int = setting(16, min=4, max=512, doc="window side, pixels of the (binned) movie")
    source: str = setting(
        "raw", choices=("raw", "maps"), doc="raw image intensities or detector probability maps"
    )
    centres: str = setting("atoms", choices=("atoms", "rings"), doc="what windows are centred on")
    border: str = setting(
        "drop", choices=("drop", "pad"), doc="drop windows that leave the frame, or pad the frame"
    )
    normalize: str = setting(
        "percentile",
        choices=("percentile", "minmax", "zscore", "none"),
        doc="one intensity scale for the whole movie before cutting",
    )
    bin: int | None = setting(
        None,
        min=1,
        max=16,
        doc=f"average bin x bin pixels before cutting; None = to about {TARGET_PIXEL_A} Å/px",
    )
    channels: tuple[int, ...] | None = setting(
        None, doc="maps: channel indices to keep (None = all but background)"
    )


@dataclass
class LatentRecipe(Recipe):
    """The latent model and its training (``[latent]`` in the pipeline config)."""

    section = "latent"

    enabled: bool = setting(True, doc="train a latent model at all (atomlens run)")
    model: str = setting("rvae", choices=MODEL_NAMES, doc="registered latent model")
    latent_dim: int = setting(6, min=0, max=64, doc="content latents z1..zk (PCA/NMF: components)")
    n_clusters: int = setting(4, min=1, max=256, doc="GMM clusters")
    hidden: tuple[int, ...] | None = setting(
        (64, 64), doc="hidden widths; None = the model's default"
    )
    epochs: int = setting(15, min=1, max=100000, doc="passes over the training windows")
    batch_size: int = setting(50, min=1, doc="windows per optimisation step")
    lr: float = setting(1e-3, above=0.0, max=1.0, doc="Adam learning rate")
    rot_prior: float = setting(0.1, above=0.0, doc="rVAE: SD of the angle prior, radians")
    translation: bool = setting(True, doc="rVAE: x/y shift latents")
    loss: str = setting("mse", choices=("mse", "bce"), doc="reconstruction loss (torch models)")
    encoder: str = setting("mlp", choices=("mlp", "conv"), doc="rVAE encoder")
    train_fraction: float = setting(
        0.75, above=0.0, max=1.0, doc="share of windows for training; the rest is the test loss"
    )
    max_train_windows: int = setting(
        5000, min=1, doc="train on a random subset this large, encode all"
    )
    seed: int = setting(0, min=0, doc="seeds the subset, the split, the weights and the noise")
    device: str = setting("auto", doc="auto, cpu, cuda or mps")
    threads: int | None = setting(
        None, min=1, doc="torch CPU threads while training; None = as set"
    )


@dataclass
class Windows:
    """Windows ``images`` (N, h, w) or (N, C, h, w) float32 and ``index`` (N,) row
    positions into ``centres``; ``recipe`` says how they were made."""

    images: np.ndarray
    index: np.ndarray
    centres: pd.DataFrame
    recipe: DescriptorRecipe
    stopped: bool = False  # Stop came first: windows of the centres done only

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class LatentResult:
    """A fitted model, its latents per window (one row per window) and the recipes."""

    model: Any
    latents: pd.DataFrame
    windows: Windows
    recipe: LatentRecipe
    stopped: bool = False
    history: dict = field(default_factory=dict)


@dataclass
class PreparedMovie:
    """A movie made ready for cutting: ``data`` (T, Y', X') or (T, C, Y', X') float32 and
    the recipe with its ``bin`` decided. :func:`cut_windows` takes the bin from here, so
    preparing and cutting can never disagree."""

    data: np.ndarray
    recipe: DescriptorRecipe

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self.data if dtype is None else self.data.astype(dtype)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape


def prepare_movie(
    frames: Any,
    recipe: DescriptorRecipe,
    pixel_size: float | None = None,
) -> PreparedMovie:
    """The movie as windows are cut from it: binned ``bin x bin`` (``bin = None``: to about
    :data:`TARGET_PIXEL_A` from ``pixel_size`` in Å/px, default the Stack's; 1 when
    unknown) and scaled per ``recipe``; maps keep the recipe's channels."""
    from atomlens.descriptors import normalize_stack

    px = pixel_size if pixel_size is not None else getattr(frames, "pixel_size", None)
    recipe = resolve_bin(recipe.validate(), px)
    arr = np.asarray(frames_of(frames), dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    b = recipe.bin or 1
    if b > 1:
        y, x = arr.shape[-2] // b * b, arr.shape[-1] // b * b
        arr = arr[..., :y, :x]
        arr = arr.reshape(*arr.shape[:-2], y // b, b, x // b, b).mean(axis=(-3, -1))
    if recipe.source == "maps" and arr.ndim == 4:
        chans = (
            list(recipe.channels)
            if recipe.channels
            else (list(range(1, arr.shape[1])) if arr.shape[1] > 1 else [0])
        )
        arr = arr[:, chans[0]] if len(chans) == 1 else arr[:, chans]
    if recipe.normalize != "none" and recipe.source == "raw":
        bad = ~np.isfinite(arr)  # NaN/inf (masked) pixels must not spoil the scaling
        if bad.any():
            fill = np.nan_to_num(np.nanmedian(np.where(bad, np.nan, arr), axis=(-2, -1)))
            arr = np.where(bad, fill[..., None, None], arr)
        arr = normalize_stack(arr, recipe.normalize)
        if bad.any():
            arr = np.where(bad, np.nan, arr)  # windows over them are dropped (cut_windows)
    return PreparedMovie(np.ascontiguousarray(arr, dtype=np.float32), recipe)


def centres_on_grid(centres: pd.DataFrame, recipe: DescriptorRecipe) -> pd.DataFrame:
    """Centre positions in pixels of the binned movie (``y, x`` divided by ``bin``)."""
    if (recipe.bin or 1) == 1:
        return centres
    out = centres[["frame", "y", "x"]].copy()
    out[["y", "x"]] = out[["y", "x"]].to_numpy(float) / recipe.bin
    return out


def cut_windows(
    prepared: PreparedMovie | np.ndarray,
    centres: pd.DataFrame,
    recipe: DescriptorRecipe | None = None,
) -> Windows:
    """Windows around ``centres`` (``frame, y, x`` in pixels of the ORIGINAL movie) from a
    movie made by :func:`prepare_movie`. The binning is the prepared movie's; ``recipe``
    may change the window and border only (a plain array is taken as it is, bin 1).
    :func:`cut_windows_events` is the same in pieces, with progress and Stop."""
    from atomlens.workflows.events import drain

    return drain(cut_windows_events(prepared, centres, recipe))


#: Centres per piece of :func:`cut_windows_events` (about 10 ms each on a laptop).
CUT_CHUNK = 2000


def cut_windows_events(
    prepared: PreparedMovie | np.ndarray,
    centres: pd.DataFrame,
    recipe: DescriptorRecipe | None = None,
    *,
    chunk: int = CUT_CHUNK,
    stop: threading.Event | None = None,
) -> Generator[Progress, None, Windows]:
    """:func:`cut_windows` ``chunk`` centres at a time, yielding :class:`Progress`
    (centres done / all) after each piece. With ``stop`` set, the windows of the centres
    done are returned (``Windows.stopped``; their ``index`` rows are the same as a full
    cut's)."""
    from atomlens.descriptors import extract_windows
    from atomlens.errors import SettingsError

    if chunk < 1:
        raise SettingsError(f"chunk must be at least 1 centre, got {chunk}")
    if isinstance(prepared, PreparedMovie):
        base = prepared.recipe
        if recipe is not None:
            base = base.replace(window=recipe.window, border=recipe.border, centres=recipe.centres)
        recipe, data = base, prepared.data
    else:
        recipe = (recipe or DescriptorRecipe()).replace(
            bin=(recipe.bin if recipe and recipe.bin else 1)
        )
        data = np.asarray(prepared, np.float32)
    grid = centres_on_grid(centres, recipe)
    n = len(grid)
    parts_img, parts_idx, stopped = [], [], False
    for start in range(0, max(n, 1), chunk):
        if stop is not None and stop.is_set():
            stopped = True
            break
        sub = extract_windows(
            data, grid.iloc[start : start + chunk], window=recipe.window, border=recipe.border
        )
        parts_img.append(np.asarray(sub.images, np.float32))
        parts_idx.append(np.asarray(sub.index, np.int64) + start)
        yield Progress("latent", "windows", min(start + chunk, n), n, "cutting windows")
    h, w = (recipe.window, recipe.window) if isinstance(recipe.window, int) else recipe.window
    images = np.concatenate(parts_img) if parts_img else np.zeros((0, h, w), np.float32)
    index = np.concatenate(parts_idx) if parts_idx else np.zeros(0, np.int64)
    if len(images):  # windows over NaN/inf (masked) pixels: no latents there
        whole = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
        if not whole.any() and not stopped:
            raise SettingsError(
                f"every {recipe.window}-pixel window around the centres covers NaN/inf "
                "(masked) pixels: use a smaller [descriptors] window or other frames"
            )
        images, index = images[whole], index[whole]
    if len(images) == 0 and len(centres) and not stopped:
        raise SettingsError(
            f"no {recipe.window}-pixel window fits around any centre: use a smaller "
            "[descriptors] window or border = 'pad'"
        )
    return Windows(images, index, centres, recipe, stopped=stopped)


def model_kwargs(
    recipe: LatentRecipe, window: tuple[int, int], channels: int = 1
) -> dict[str, Any]:
    """Constructor arguments of ``recipe.model``: only what that model takes."""
    from atomlens.models import model_parameters

    takes = set(model_parameters(recipe.model))
    if recipe.model == "skip-rvae":
        takes |= set(model_parameters("rvae"))
    want: dict[str, Any] = {
        "window": tuple(window),
        "seed": recipe.seed,
        "lr": recipe.lr,
        "rot_prior": recipe.rot_prior,
        "channels": channels,
        "translation": recipe.translation,
        "loss": recipe.loss,
        "encoder": recipe.encoder,
    }
    if "latent_dim" in takes:
        want["latent_dim"] = recipe.latent_dim
    elif recipe.model == "gmm":
        want["n_components"] = recipe.n_clusters
    else:  # pca, nmf
        want["n_components"] = max(1, recipe.latent_dim)
    if recipe.hidden is not None:
        want["hidden"] = tuple(recipe.hidden)
    if channels == 1 and recipe.model in ("pca", "nmf", "gmm"):
        want.pop("channels")
    return {k: v for k, v in want.items() if k in takes}


def build_model(recipe: LatentRecipe, windows: Windows) -> Any:
    """A fresh model for these windows, with both recipes in its card."""
    from atomlens.models import make_model

    shape = windows.images.shape
    channels = 1 if len(shape) == 3 else int(shape[1])
    model = make_model(recipe.model, **model_kwargs(recipe, tuple(shape[-2:]), channels))
    model.card.update(
        recipe=recipe.to_dict(), preprocessing=windows.recipe.to_dict(), n_windows=int(len(windows))
    )
    return model


def train(
    windows: Windows,
    recipe: LatentRecipe | None = None,
    *,
    stop: threading.Event | None = None,
    checkpoint_dir: Any = None,
    encode: bool = True,
) -> Generator[Any, None, LatentResult]:
    """Train ``recipe.model`` on (a seeded subset of) the windows, yielding the training
    events of :mod:`atomlens.train` (see :func:`atomlens.workflows.events.training_progress`);
    then encode every window. Stop: the model keeps its last good weights and the result
    has ``stopped=True``."""
    from atomlens.train import Finished, fit_events

    recipe = (recipe or LatentRecipe()).validate()
    n = len(windows)
    if n == 0:
        from atomlens.errors import SettingsError

        raise SettingsError("no windows to train on: detect atoms first (or use border = 'pad')")
    model = build_model(recipe, windows)
    subset = np.sort(
        np.random.default_rng(recipe.seed).choice(
            n, size=min(n, recipe.max_train_windows), replace=False
        )
    )
    yield Log(
        "latent", f"training {recipe.model} on {len(subset)} of {n} windows, {recipe.epochs} epochs"
    )
    reason, history = "done", {}
    for ev in fit_events(
        model,
        windows.images[subset],
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        train_fraction=recipe.train_fraction,
        device=recipe.device,
        seed=recipe.seed,
        stop=stop,
        checkpoint_dir=checkpoint_dir,
        threads=recipe.threads,
    ):
        if isinstance(ev, Finished):
            reason, history = ev.reason, dict(ev.history or {})
        yield ev
    latents = pd.DataFrame()
    if encode:
        yield Progress("latent", "encode", 0, n, "encoding every window")
        latents = model.transform(windows.images).reset_index(drop=True)
        yield Progress("latent", "encode", n, n)
    return LatentResult(
        model, latents, windows, recipe, stopped=reason == "stopped", history=history
    )


def run(
    movie: Any,
    centres: pd.DataFrame,
    descriptors: DescriptorRecipe | None = None,
    recipe: LatentRecipe | None = None,
    *,
    pixel_size: float | None = None,
    stop: threading.Event | None = None,
) -> Generator[Any, None, LatentResult]:
    """Cut windows around ``centres`` in ``movie`` ((T, Y, X) frames, a Stack, or maps
    (T, C, Y, X) with ``source = 'maps'``) and train: :func:`prepare_movie`,
    :func:`cut_windows`, :func:`train`. ``pixel_size`` (Å/px; default the Stack's)
    decides ``bin = None``."""
    px = pixel_size if pixel_size is not None else getattr(movie, "pixel_size", None)
    descriptors = resolve_bin((descriptors or DescriptorRecipe()).validate(), px)
    yield Progress("latent", "windows", 0, 1, "cutting windows")
    windows = cut_windows(prepare_movie(movie, descriptors, px), centres)
    yield Progress("latent", "windows", 1, 1, f"{len(windows)} windows")
    return (yield from train(windows, recipe, stop=stop))


def latents_on_atoms(atoms: pd.DataFrame, latents: pd.DataFrame, windows: Windows) -> pd.DataFrame:
    """``atoms`` with the latent columns (NaN where no window was cut), joined by row."""
    out = atoms.drop(columns=[c for c in latents.columns if c in atoms.columns]).copy()
    for c in latents.columns:
        out[c] = np.nan
    if len(latents):
        pos = [out.columns.get_loc(c) for c in latents.columns]
        out.iloc[windows.index, pos] = latents.to_numpy(dtype=np.float64)
    return out


__all__ = [
    "MODEL_NAMES",
    "DescriptorRecipe",
    "PreparedMovie",
    "LatentRecipe",
    "LatentResult",
    "Windows",
    "build_model",
    "cut_windows",
    "cut_windows_events",
    "latents_on_atoms",
    "model_kwargs",
    "prepare_movie",
    "resolve_bin",
    "run",
    "train",
]
