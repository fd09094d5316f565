"""The descriptor → rVAE → latents part of the pipeline, cached like every stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.pipeline.cache import stage_dir
from atomlens.pipeline.progress import say


def _centres(atoms: pd.DataFrame, tables: dict, centres: str) -> pd.DataFrame:
    if centres == "atoms":
        return atoms
    if centres == "rings":
        rings = tables.get("rings")
        if rings is None or rings.empty:
            raise ValueError("descriptors centred on rings need chemistry: enable [chem]")
        return rings
    raise ValueError(f"descriptors.centres must be 'atoms' or 'rings', got {centres!r}")


def _source(stack: Any, maps_path: Path | None, source: str) -> Any:
    if source == "raw":
        return stack.data[:]
    if source == "maps":
        if maps_path is None:
            raise ValueError("descriptors from maps need [detect] save_maps = true")
        import zarr

        return np.asarray(zarr.open_array(str(maps_path), mode="r"), dtype=np.float32)
    raise ValueError(f"descriptors.source must be 'raw' or 'maps', got {source!r}")


def run_latent_stage(
    stack: Any,
    atoms: pd.DataFrame,
    tables: dict,
    maps_path: Path | None,
    cfg: Any,
    base_key: dict,
    out: Path,
    result: Any,
    progress: bool,
    table_hash: Any,
) -> tuple[pd.DataFrame, Path | None, Path | None]:
    """Cut windows around the centres, train the latent model, put latents on the atoms.

    Returns the atom table with latent columns (``angle, dx, dy, z1, ...`` for the rVAE
    family; model-specific names for baselines), the model file and the subimages Zarr.
    """
    from atomlens.workflows.latent import cut_windows, prepare_movie

    dcfg, lcfg = cfg.section("descriptors"), cfg.section("latent")
    centres = _centres(atoms, tables, cfg.descriptors.centres)
    sd_desc = stage_dir(out, "descriptors", base_key, dcfg, table_hash(centres))
    if sd_desc.done:
        result.stages["descriptors"] = "cached"
        say("descriptors: cached", progress)
        images = np.load(sd_desc.path / "images.npy")
        index = np.load(sd_desc.path / "index.npy")
    else:
        work = sd_desc.begin()
        say("descriptors: cutting windows", progress)
        data = prepare_movie(_source(stack, maps_path, cfg.descriptors.source), cfg.descriptors)
        sub = cut_windows(data, centres)
        images, index = sub.images, sub.index
        np.save(work / "images.npy", images)
        np.save(work / "index.npy", index)
        _write_subimages_zarr(work / "subimages.zarr", images, index, centres)
        sd_desc.finish({"windows": int(len(images))})
        result.stages["descriptors"] = "ran"

    sd_model = stage_dir(out, "latent", sd_desc.key, lcfg)
    if sd_model.done:
        result.stages["latent"] = "cached"
        say("latent: cached", progress)
        latents = pd.read_parquet(sd_model.path / "latents.parquet")
    else:
        work = sd_model.begin()
        latents = _train_and_encode(np.asarray(images), cfg, work / "model.pt", progress)
        latents.to_parquet(work / "latents.parquet")
        sd_model.finish({"windows": int(len(latents))})
        result.stages["latent"] = "ran"

    if cfg.descriptors.centres == "atoms":  # latents go onto the atoms they were cut around
        latents = latents.set_axis(centres.index[index])
        atoms = atoms.drop(columns=[c for c in latents.columns if c in atoms.columns])
        atoms = atoms.join(latents, how="left")
    sub_path = sd_desc.path / "subimages.zarr"
    return atoms, sd_model.path / "model.pt", sub_path if sub_path.exists() else None


def _train_and_encode(
    images: np.ndarray, cfg: Any, model_path: Path, progress: bool
) -> pd.DataFrame:
    """Train ``[latent]`` on the windows with the latent workflow (the same training as the
    docks and ``atomlens rvae``) and encode every window."""
    from atomlens.workflows.events import EpochEnd, Log, drain
    from atomlens.workflows.latent import Windows, train

    windows = Windows(images, np.arange(len(images)), pd.DataFrame(), cfg.descriptors)

    def show(ev: Any) -> None:
        if isinstance(ev, Log):
            say(f"latent: {ev.message}", progress)
        elif isinstance(ev, EpochEnd):
            say(f"latent: epoch {ev.epoch + 1}/{ev.n_epochs} loss {ev.train_loss:.4g}", progress)

    res = drain(train(windows, cfg.latent), show)
    res.model.save(model_path)
    return res.latents.reset_index(drop=True)


def _write_subimages_zarr(
    path: Path, images: np.ndarray, index: np.ndarray, centres: pd.DataFrame
) -> None:
    import zarr

    arr = zarr.open_array(
        str(path),
        mode="w",
        shape=images.shape,
        chunks=(min(len(images), 4096), *images.shape[1:]),
        dtype="float32",
    )
    arr[:] = images
    arr.attrs["index"] = [int(i) for i in index]  # row positions (kept for old readers)
    arr.attrs["frames"] = [int(f) for f in centres["frame"].to_numpy()[index]]
    if "atom_id" in centres:  # stable ids: the atom each window was cut around
        arr.attrs["atom_id"] = [int(i) for i in centres["atom_id"].to_numpy()[index]]
