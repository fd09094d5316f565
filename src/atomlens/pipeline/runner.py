"""``atomlens run``: detect → chemistry → descriptors → rVAE → latents → report.

Every stage's output is cached under ``OUT/cache`` by the hash of its inputs and
settings (see :mod:`atomlens.pipeline.cache`), so an interrupted run resumes where it
stopped and a changed setting reruns only the stages that depend on it.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens import __version__
from atomlens.io import atomic
from atomlens.io.atomic import output_lock
from atomlens.io.frames import parse_frames
from atomlens.io.stack import nonfinite_note
from atomlens.pipeline.cache import file_fingerprint, stage_dir
from atomlens.pipeline.config import PipelineConfig
from atomlens.pipeline.executor import frame_chunks, make_executor
from atomlens.pipeline.progress import bar, say
from atomlens.pipeline.tasks import chem_chunk, detect_chunk
from atomlens.workflows.chemistry import CHUNK_FRAMES, merge_chunks


@dataclass
class RunResult:
    """What a run produced: the final tables and where everything was written."""

    out: Path
    atoms: pd.DataFrame
    pixel_size: float
    files: dict[str, Path] = field(default_factory=dict)
    stages: dict[str, str] = field(default_factory=dict)  # stage -> "ran" | "cached"
    seconds: dict[str, float] = field(default_factory=dict)


def run_pipeline(
    stack_path: str | Path,
    out: str | Path,
    config: PipelineConfig | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Run the whole chain on one movie and write its results into ``out``.

    Parameters
    ----------
    stack_path : a movie file (any format ``read_stack`` reads) or an AtomLens project folder.
    out : output directory (created); holds ``cache/`` so reruns resume.
    config : settings; defaults documented in :class:`PipelineConfig`.
    scheduler : ``None`` in-process, ``"local"`` a 2-worker local Dask cluster, or the
        address of an existing ``dask.distributed`` scheduler.
    """
    out = Path(out)
    with output_lock(out):  # one run per output folder; stale temporaries cleaned
        return _run_locked(stack_path, out, config, scheduler, progress)


def _run_locked(
    stack_path: str | Path,
    out: Path,
    config: PipelineConfig | None,
    scheduler: str | None,
    progress: bool,
) -> RunResult:
    from atomlens.io import read_stack

    cfg = copy.deepcopy(config) if config is not None else PipelineConfig()  # caller's stays
    cfg.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    project = _maybe_project(Path(stack_path))
    if project is not None:
        stack_path = project.stack_path
        if cfg.input.pixel_size is None and project.pixel_size:
            cfg.input.pixel_size = project.pixel_size
        tuned = (project.models or {}).get("finetuned")
        if cfg.detect.model is None and tuned and Path(tuned).exists():
            cfg.detect.model = tuned  # the project's fine-tuned detector
    stack = read_stack(
        stack_path,
        pixel_size=cfg.input.pixel_size,
        lazy=cfg.input.lazy,
        nonfinite=cfg.input.nonfinite,
    )
    result = RunResult(out=out, atoms=pd.DataFrame(), pixel_size=0.0)

    # 0. calibration / pixel size
    pixel_size = _pixel_size(stack, cfg, out, progress)
    result.pixel_size = pixel_size
    frames = parse_frames(cfg.input.frames, stack.n_frames)
    if cfg.input.nonfinite == "refuse":  # every selected frame read once: refused before work
        for t in frames:
            stack.data[t]
    base_key = {
        "stack": file_fingerprint(stack_path),
        "pixel_size": pixel_size,
        "frames": frames,
        "version": __version__,
    }
    executor = make_executor(scheduler)
    try:
        with _timed(result, "detect"):
            atoms, maps_path, classes = _stage_detect(
                stack_path, pixel_size, frames, cfg, base_key, out, executor, result, progress
            )
        masked = nonfinite_note(stack, frames)  # NaN/inf pixels: no atoms there
        if masked:
            say(f"detect: {masked}", progress)
        if project is not None and project.atoms is not None:
            atoms = _keep_corrected(atoms, project)
        with _timed(result, "chem"):
            movie = stack.data if cfg.chem.register else None
            atoms, tables = _stage_chem(
                atoms, pixel_size, cfg, base_key, out, executor, result, progress, movie
            )
        model_path = sub_path = None
        if cfg.latent.enabled:
            with _timed(result, "latent"):
                atoms, model_path, sub_path = _stage_latent(
                    stack,
                    atoms,
                    tables,
                    maps_path,
                    pixel_size,
                    cfg,
                    base_key,
                    out,
                    result,
                    progress,
                )
    finally:
        executor.close()

    result.atoms = atoms
    (out / "run.json").unlink(missing_ok=True)  # written last: absent = unfinished outputs
    files = _write_outputs(out, atoms, tables, maps_path, model_path, sub_path)
    result.files.update(files)
    result.files["project"] = _write_project(
        out, stack_path, pixel_size, stack, atoms, cfg, model_path
    )
    if cfg.report.enabled:
        with _timed(result, "report"):
            from atomlens.pipeline.report import write_report

            say("report: writing report.html", progress)
            result.files["report"] = write_report(
                out / "report.html",
                stack,
                atoms,
                tables,
                maps_path,
                classes,
                model_path,
                cfg,
                pixel_size,
                result,
            )
    atomic.write_text(
        out / "run.json",
        json.dumps(
            {
                "stack": str(stack_path),
                "pixel_size_A": pixel_size,
                "frames": len(frames),
                "atoms": int(len(atoms)),
                "masked": masked,
                "stages": result.stages,
                "seconds": result.seconds,
                "executor": executor.name,
                "config": cfg.to_dict(),
                "files": {k: str(v) for k, v in result.files.items()},
                "version": __version__,
            },
            indent=2,
            default=str,
        ),
    )
    return result


@contextmanager
def _timed(result: RunResult, name: str) -> Iterator[None]:
    """Record the wall time of a stage in ``result.seconds``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        result.seconds[name] = round(time.perf_counter() - t0, 2)


def _maybe_project(path: Path) -> Any:
    from atomlens.io.project import is_project, load_project

    return load_project(path) if is_project(path) else None


def _keep_corrected(atoms: pd.DataFrame, project: Any) -> pd.DataFrame:
    """Frames the user corrected keep the project's atoms; the rest take the detections.

    Only the detector's columns (and the edit flags) of the project's rows are kept, so
    results of an earlier run (chemistry, latents) are not carried into this one.
    """
    corrected = set(project.corrected_frames or [])
    if not corrected:
        return atoms
    from atomlens.corrections import merge_detections

    mine = project.atoms[project.atoms["frame"].isin(corrected)]
    mine = mine[[c for c in mine.columns if c in atoms.columns or c in ("edited", "source")]]
    merged, _ = merge_detections(mine, atoms, corrected)
    return merged.reset_index(drop=True)


def _pixel_size(stack: Any, cfg: PipelineConfig, out: Path, progress: bool) -> float:
    """User value > file metadata > lattice calibration (``apply_calibration`` puts the
    calibration first); see :func:`atomlens.io.pixel_size.resolve_pixel_size`."""
    from atomlens.io.pixel_size import resolve_pixel_size

    calibrated = None
    if cfg.input.calibrate:
        from atomlens.chem import calibrate_pixel_size

        cal = calibrate_pixel_size(stack, lattice=cfg.input.calibrate)
        atomic.write_text(
            out / "calibration.json", json.dumps(_as_jsonable(cal), indent=2, default=str)
        )
        say(f"calibrate: {cal}", progress)
        calibrated = float(cal.pixel_size)
        if cfg.input.apply_calibration:
            return calibrated
    return resolve_pixel_size(stack, cfg.input.pixel_size, calibrated=calibrated).value


def _as_jsonable(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    return asdict(obj) if is_dataclass(obj) else dict(vars(obj))


def _model_fingerprint(model: str | None) -> Any:
    """Cache identity of the detect setting: 'auto' for 'auto' and unset (None: chosen
    from the image, itself in the key), or the weights file's fingerprint (a shipped name
    such as 'general' resolved to its file, or a .pt path)."""
    if not model or str(model) == "auto":
        return "auto"
    from atomlens.segment.registry import resolve_model

    return file_fingerprint(resolve_model(model))


def _settle_detector(stack_path: Any, frames: list[int], pixel_size: float, det: dict) -> dict:
    """Decide the detector once, on the first frame, as ``atomlens detect`` does: print
    the model and why, and its fit warnings (e.g. 'does not look like graphene'); a
    model 'auto', or none set (no ``[detect] model``, ``--model`` or project fine-tuned
    detector: 'auto', the default of ``atomlens detect`` and the Detect dock), becomes
    the chosen name, so every chunk uses the same detector."""
    asked = det.get("model") or "auto"
    from atomlens.atoms.suitability import detection_setup
    from atomlens.pipeline.tasks import _open_stack

    setup = detection_setup(
        _open_stack(str(stack_path), pixel_size),
        asked,
        frames[:1],
        pixel_size,
        threshold=det.get("threshold", 0.5),
        contrast=det.get("contrast", "auto"),
        spot_scale=det.get("spot_scale"),
    )
    say(f"detect: model {setup.name} ({setup.reason})")
    for warning in setup.warnings:
        say(f"detect: warning: {warning}")
    return {**det, "model": setup.name} if asked == "auto" else det


def _stage_detect(
    stack_path: Any,
    pixel_size: float,
    frames: list[int],
    cfg: PipelineConfig,
    base_key: dict,
    out: Path,
    executor: Any,
    result: RunResult,
    progress: bool,
) -> tuple[pd.DataFrame, Path | None, list[str]]:
    model_fp = _model_fingerprint(cfg.detect.model)
    det = cfg.section("detect")
    sd = stage_dir(out, "detect", base_key, det, model_fp)
    if sd.done:
        result.stages["detect"] = "cached"
        say("detect: cached", progress)
        summary = sd.summary()
        maps_path = sd.path / "maps.zarr"
        return (
            pd.read_parquet(sd.path / "atoms.parquet"),
            maps_path if maps_path.exists() else None,
            summary["classes"],
        )
    work = sd.begin()
    det = _settle_detector(stack_path, frames, pixel_size, det)
    chunks = frame_chunks(frames, CHUNK_FRAMES)
    maps_store = None
    tables = []
    classes: list[str] = []
    frame_pos = {f: i for i, f in enumerate(frames)}
    results = executor.map(
        detect_chunk,
        chunks,
        stack_path=str(stack_path),
        pixel_size=pixel_size,
        detect=det,
        with_maps=cfg.detect.save_maps,
    )
    # the bar first: zip then exhausts it, so it closes at 100 % (it stayed at 1/2)
    for (atoms, maps, classes), chunk in zip(
        bar(results, "detect", total=len(chunks), enabled=progress), chunks
    ):
        tables.append(atoms)
        if maps is not None:
            if maps_store is None:
                maps_store = _open_maps(
                    work / "maps.zarr", len(frames), maps.shape[1:], classes, frames
                )
            i0 = frame_pos[chunk[0]]
            maps_store[i0 : i0 + len(chunk)] = maps
    atoms = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if not atoms.empty:
        from atomlens.io.atoms_table import with_atom_ids

        atoms = with_atom_ids(atoms, fresh=True)
    if atoms.empty:
        raise ValueError(
            "no atoms were found in any frame: check the pixel size (Å/px), lower the "
            "threshold, or fine-tune the detector on a few corrected frames"
        )
    atoms.to_parquet(work / "atoms.parquet")
    sd.finish({"classes": classes, "atoms": int(len(atoms))})
    result.stages["detect"] = "ran"
    return atoms, (work / "maps.zarr") if maps_store is not None else None, classes


def _open_maps(path: Path, n: int, shape: tuple, classes: list[str], frames: list[int]) -> Any:
    import zarr

    arr = zarr.open_array(
        str(path), mode="w", shape=(n, *shape), chunks=(1, 1, *shape[-2:]), dtype="float16"
    )
    arr.attrs["classes"] = list(classes)
    arr.attrs["frames"] = list(frames)
    return arr


def _stage_chem(
    atoms: pd.DataFrame,
    pixel_size: float,
    cfg: PipelineConfig,
    base_key: dict,
    out: Path,
    executor: Any,
    result: RunResult,
    progress: bool,
    movie: Any = None,
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    empty = {"bonds": pd.DataFrame(), "rings": pd.DataFrame(), "defects": pd.DataFrame()}
    if not cfg.chem.enabled:
        return atoms, empty
    key = _table_hash(atoms)
    sd = stage_dir(out, "chem", base_key, cfg.section("chem"), key)
    names = ("atoms", "bonds", "rings", "defects")
    if sd.done:
        result.stages["chem"] = "cached"
        say("chem: cached", progress)
        note = sd.summary().get("note", "")
        if note:  # said again: the cached tables are the holes-only ones
            say(f"chem: warning: {note}")
        loaded = {n: pd.read_parquet(sd.path / f"{n}.parquet") for n in names}
        return loaded.pop("atoms"), loaded
    work = sd.begin()
    atoms = atoms.sort_values("frame", kind="stable").reset_index(drop=True)
    frames = sorted(atoms["frame"].unique())
    chunks = [atoms[atoms["frame"].isin(c)] for c in frame_chunks(frames, CHUNK_FRAMES)]
    parts = list(
        bar(
            executor.map(chem_chunk, chunks, pixel_size=pixel_size, chem=cfg.section("chem")),
            "chem",
            total=len(chunks),
            enabled=progress,
        )
    )
    # not graphene: the workflow kept only holes (decided once on the whole table)
    tables, note = merge_chunks(parts)
    if note:
        say(f"chem: warning: {note}")
    atoms = tables.pop("atoms")
    if cfg.chem.track:
        from atomlens.workflows import chemistry

        if cfg.chem.register and movie is not None:
            say("chem: registering frames (drift)", progress)
            atoms, drift = chemistry.register_atoms(atoms, movie)
            if drift is not None:
                np.save(work / "drift.npy", drift)
        atoms = chemistry.track(atoms, pixel_size, cfg.chem)
    if "bonds" in tables:
        from atomlens.workflows.chemistry import with_bond_ids

        tables["bonds"] = with_bond_ids(tables["bonds"], atoms)
    for n, t in {"atoms": atoms, **tables}.items():
        t.to_parquet(work / f"{n}.parquet")
    sd.finish({"atoms": int(len(atoms)), "note": note})
    result.stages["chem"] = "ran"
    return atoms, tables


def _table_hash(df: pd.DataFrame) -> str:
    return str(pd.util.hash_pandas_object(df, index=False).sum())


def _stage_latent(
    stack: Any,
    atoms: pd.DataFrame,
    tables: dict,
    maps_path: Path | None,
    pixel_size: float,
    cfg: PipelineConfig,
    base_key: dict,
    out: Path,
    result: RunResult,
    progress: bool,
) -> tuple[pd.DataFrame, Path | None, Path | None]:
    from atomlens.pipeline.latent_stage import run_latent_stage
    from atomlens.workflows.latent import resolve_bin

    cfg.descriptors = resolve_bin(cfg.descriptors, pixel_size)  # recorded in run.json
    return run_latent_stage(
        stack, atoms, tables, maps_path, cfg, base_key, out, result, progress, _table_hash
    )


def _write_project(
    out: Path,
    stack_path: Any,
    pixel_size: float,
    stack: Any,
    atoms: pd.DataFrame,
    cfg: PipelineConfig,
    model_path: Path | None,
) -> Path:
    """An AtomLens project beside the results, so napari (and ``atomlens run``) reopen it."""
    from atomlens.io.project import Project, save_project

    models = {"detector": cfg.detect.model or "shipped"}
    if model_path is not None and model_path.exists():
        models["latent"] = str((out / "model.pt").resolve())
    source = "user" if cfg.input.pixel_size else stack.pixel_size_source
    project = Project(
        stack_path=str(Path(stack_path).resolve()),
        pixel_size=pixel_size,
        pixel_size_source=source,
        models=models,
        settings={"pipeline": cfg.to_dict()},
        atoms=atoms,
    )
    return save_project(out / "project.atomlens", project)


def _write_outputs(
    out: Path,
    atoms: pd.DataFrame,
    tables: dict,
    maps_path: Path | None,
    model_path: Path | None,
    sub_path: Path | None,
) -> dict[str, Path]:
    from atomlens.io.atoms_table import write_atoms  # the one atom-table writer

    files: dict[str, Path] = {}
    write_atoms(out / "atoms.csv", atoms)
    write_atoms(out / "atoms.parquet", atoms)
    files["atoms_csv"], files["atoms_parquet"] = out / "atoms.csv", out / "atoms.parquet"
    for name, table in tables.items():
        if len(table):
            write_atoms(out / f"{name}.csv", table)
            files[name] = out / f"{name}.csv"
    for name, src in (("maps", maps_path), ("subimages", sub_path)):
        if src is not None and src.exists():
            dst = out / f"{name}.zarr"
            atomic.replace_tree(src, dst)
            files[name] = dst
    if model_path is not None and model_path.exists():
        atomic.copy_file(model_path, out / "model.pt")
        files["model"] = out / "model.pt"
    return files


__all__ = ["RunResult", "run_pipeline", "parse_frames", "np"]
