"""Simulated STEM movies with exact ground truth: generation, saving, loading, export."""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.io.stack import Stack
from atomlens.simulate import evolve
from atomlens.simulate.build import Sample, build_sample
from atomlens.simulate.config import SimConfig, SimConfigError
from atomlens.simulate.render import FWHM_TO_SIGMA, apparent_shift, render
from atomlens.simulate.sheet import Z_SI
from atomlens.simulate.truth import RING_SIZES, Topology, analyse, defect_labels, hole_mask

FORMAT_VERSION = 1
TABLES = ("atoms", "bonds", "rings", "defects")
COLUMNS: dict[str, dict[str, str]] = {
    "atoms": {
        "frame": "int64",
        "atom_id": "int64",
        "y": "float64",
        "x": "float64",
        "cls": "str",
        "prob": "float64",
        "coordination": "int64",
        "edge": "bool",
        "ring5": "int64",
        "ring6": "int64",
        "ring7": "int64",
        "ring8": "int64",
        "sublattice": "int64",
        "defect": "str",
        "defect_id": "int64",
    },
    "bonds": {
        "frame": "int64",
        "a": "int64",
        "b": "int64",
        "length_A": "float64",
        "length_obs_A": "float64",
    },
    "rings": {
        "frame": "int64",
        "ring_id": "int64",
        "size": "int64",
        "y": "float64",
        "x": "float64",
        "atoms": "str",
    },
    "defects": {
        "frame": "int64",
        "defect_id": "int64",
        "type": "str",
        "y": "float64",
        "x": "float64",
        "atoms": "str",
    },
}


def _empty(table: str) -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in COLUMNS[table]}), table)


def _typed(df: pd.DataFrame, table: str) -> pd.DataFrame:
    out = {}
    for col, dtype in COLUMNS[table].items():
        values = df[col].to_numpy() if col in df else np.array([])
        out[col] = values.astype(str).astype(object) if dtype == "str" else values.astype(dtype)
    return pd.DataFrame(out)


@dataclass
class SimulatedMovie:
    """A simulated movie and its ground truth.

    Attributes
    ----------
    frames : (T, Y, X) float32 images, C-peak units (carbon ≈ 1, Si ≈ 4.2, vacuum ≈ 0).
    pixel_size : Å per pixel.
    atoms : one row per visible atom per frame: ``frame, atom_id, y, x`` (pixels, as they
        appear in the image: after drift, thermal and scan jitter), ``cls`` ('C'/'Si'),
        ``prob`` (1.0), ``coordination``, ``edge``, ``ring5..ring8`` (adjacent rings of
        each size), ``sublattice`` (0/1, -1 undefined), ``defect`` (type or ''),
        ``defect_id`` (-1 when none).
    bonds : ``frame, a, b`` (atom ids), ``length_A`` (construction geometry, before
        jitter), ``length_obs_A`` (between the reported y, x).
    rings : ``frame, ring_id, size, y, x`` (centre, pixels), ``atoms`` (space-separated ids).
    defects : ``frame, defect_id, type, y, x`` (pixels), ``atoms`` (core atom ids).
    hole_mask : (T, Y, X) bool, pixels inside holes (≥ 1 Å from every atom).
    contamination : (T, Y, X) float32, the contamination intensity added to each frame.
    config : every parameter (``SimConfig`` fields plus ``n_frames``, ``seed``...).
    """

    frames: np.ndarray
    pixel_size: float
    atoms: pd.DataFrame
    bonds: pd.DataFrame
    rings: pd.DataFrame
    defects: pd.DataFrame
    hole_mask: np.ndarray
    contamination: np.ndarray
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def stack(self) -> Stack:
        """The frames as a :class:`~atomlens.io.stack.Stack` (``pixel_size_source='simulation'``)."""
        return Stack(
            self.frames,
            float(self.pixel_size),
            "simulation",
            metadata={"source": "atomlens.simulate", "config": dict(self.config)},
        )

    def summary(self) -> str:
        """One line: frames, atoms, Si, rings and defects per frame (means)."""
        t = max(self.n_frames, 1)
        n_si = int((self.atoms["cls"] == "Si").sum())
        return (
            f"{self.n_frames} frames {self.frames.shape[1]}x{self.frames.shape[2]} px at "
            f"{self.pixel_size:g} Å/px; per frame: {len(self.atoms) / t:.0f} atoms, "
            f"{n_si / t:.1f} Si, {len(self.rings) / t:.0f} rings, {len(self.defects) / t:.1f} defects"
        )

    # ---- persistence
    def save(self, path: str | Path, compress: bool = True) -> Path:
        """Write everything to one ``.npz`` (tables as column arrays, config as JSON;
        frames stored, the rest deflated when ``compress``); returns the path."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "frames": np.asarray(self.frames, np.float32),
            "pixel_size": np.array(float(self.pixel_size)),
            "hole_mask": np.asarray(self.hole_mask, bool),
            "contamination": np.asarray(self.contamination, np.float32),
            "config_json": np.array(json.dumps(self.config)),
            "format_version": np.array(FORMAT_VERSION),
        }
        for table in TABLES:
            df = getattr(self, table)
            for col, dtype in COLUMNS[table].items():
                values = df[col].to_numpy()
                arrays[f"{table}__{col}"] = values.astype(str) if dtype == "str" else values
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        # one .npz (a zip of .npy members); noisy frames barely compress, so they are stored
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(path, "w", allowZip64=True) as zf:
            for key, value in arrays.items():
                how = zipfile.ZIP_STORED if key == "frames" else method
                info = zipfile.ZipInfo(f"{key}.npy")
                info.compress_type = how
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
                zf.writestr(info, buf.getvalue(), compress_type=how, compresslevel=1)
        return path

    @classmethod
    def load(cls, path: str | Path) -> SimulatedMovie:
        """Read a movie written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            if "format_version" not in z or "frames" not in z:
                raise ValueError(f"{path} is not a simulated movie written by SimulatedMovie.save")
            tables = {}
            for table in TABLES:
                cols = {c: z[f"{table}__{c}"] for c in COLUMNS[table]}
                tables[table] = _typed(pd.DataFrame(cols), table)
            return cls(
                frames=z["frames"],
                pixel_size=float(z["pixel_size"]),
                hole_mask=z["hole_mask"],
                contamination=z["contamination"],
                config=json.loads(str(z["config_json"])),
                **tables,
            )

    def export(self, path: str | Path) -> list[Path]:
        """Write an ImageJ-calibrated TIFF (Å/px) and ``<stem>_atoms/bonds/rings/defects.csv``
        beside it; returns the written paths."""
        from atomlens.io.writers import write_tiff

        path = Path(path)
        written = [write_tiff(path, self.frames, self.pixel_size)]
        for table in TABLES:
            out = path.with_name(f"{path.stem}_{table}.csv")
            getattr(self, table).to_csv(out, index=False, float_format="%.3f")
            written.append(out)
        return written


# ---------------------------------------------------------------- generation
def _make_config(
    size: int | None, pixel_size: float | None, config: SimConfig | None, overrides: dict[str, Any]
) -> SimConfig:
    if config is not None and not isinstance(config, SimConfig):
        raise SimConfigError(f"config must be a SimConfig, got {type(config).__name__}")
    upd = dict(overrides)
    if size is not None:
        upd["size"] = size
    if pixel_size is not None:
        upd["pixel_size"] = pixel_size
    base = config if config is not None else SimConfig()
    return base.replace(**upd)


def simulate_movie(
    n_frames: int = 20,
    size: int | None = None,
    pixel_size: float | None = None,
    seed: int = 0,
    config: SimConfig | None = None,
    **overrides: Any,
) -> SimulatedMovie:
    """Simulate a movie of ``n_frames`` frames of ``size x size`` pixels.

    ``size`` (pixels, default 256) and ``pixel_size`` (Å, default 0.1) override the
    config's, as do ``overrides`` (any :class:`SimConfig` field; unknown names raise
    :class:`SimConfigError`). The same ``seed`` gives identical frames and tables.
    """
    cfg = _make_config(size, pixel_size, config, overrides)
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
        raise SimConfigError(f"n_frames={n_frames!r} is invalid: need a whole number >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SimConfigError(f"seed={seed!r} is invalid: need a whole number >= 0")
    n_frames = int(n_frames)
    ss_build, ss_evolve, ss_image = np.random.SeedSequence(int(seed)).spawn(3)
    rng_build = np.random.default_rng(ss_build)
    rng_evolve = np.random.default_rng(ss_evolve)
    rng_image = np.random.default_rng(ss_image)
    px, ny = cfg.pixel_size, cfg.size
    shape = (ny, ny)
    fov = ny * px

    # drift of the image over the sample (pixels): image = sample / px + drift[t]
    theta = rng_image.uniform(0, 2 * np.pi)
    velocity = cfg.drift_px_per_frame * np.array([np.sin(theta), np.cos(theta)])
    walk = np.cumsum(rng_image.normal(0, cfg.drift_noise_px, (n_frames, 2)), axis=0)
    walk -= walk[0]
    drift = np.arange(n_frames)[:, None] * velocity + walk
    margin = 6.0 + np.abs(drift).max() * px + 3.5 * cfg.probe_fwhm_A * FWHM_TO_SIGMA
    bounds = (-margin, fov + margin, -margin, fov + margin)
    sample = build_sample(cfg, rng_build, bounds)

    frames = np.empty((n_frames, *shape), np.float32)
    holes = np.zeros((n_frames, *shape), bool)
    contam = np.zeros((n_frames, *shape), np.float32)
    parts: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    n_holes_built = len(sample.registry.of_kind("hole"))
    for t in range(n_frames):
        topo = analyse(sample, cfg.hole_min_area_A2)
        if t == 0 and len(topo.holes) < n_holes_built:
            warnings.warn(
                f"{n_holes_built - len(topo.holes)} of {n_holes_built} holes are smaller than "
                f"hole_min_area_A2={cfg.hole_min_area_A2} and count as vacancy clusters; "
                "raise hole_radius_A or lower hole_min_area_A2",
                stacklevel=2,
            )
        row_shift = (
            rng_image.normal(0.0, cfg.scan_jitter_px, ny) if cfg.scan_jitter_px > 0 else None
        )
        sheet = sample.sheet
        jitter = rng_image.normal(0.0, cfg.thermal_jitter_A / px, sheet.pos.shape)
        img_pos = sheet.pos / px + drift[t] + jitter
        cover = sample.contamination.coverage_at(sheet.pos)
        visible = sheet.alive & (cover < 0.5)
        contam[t] = sample.contamination.frame(shape, drift[t])
        frames[t] = render(
            img_pos[visible],
            sheet.z[visible],
            shape,
            px,
            cfg.probe_fwhm_A,
            cfg.dose,
            cfg.read_noise,
            rng_image,
            z_exponent=cfg.z_exponent,
            detector_efficiency=cfg.detector_efficiency,
            row_shift_px=row_shift,
            background=contam[t],
            weights=1.0 - cover[visible],
        )
        holes[t] = hole_mask(sample, topo, drift[t], shape, px)
        _frame_tables(
            t,
            sample,
            topo,
            img_pos,
            visible,
            row_shift,
            drift[t],
            px,
            shape,
            cfg.probe_fwhm_A * FWHM_TO_SIGMA / px,
            parts,
        )
        if t < n_frames - 1:
            evolve.step(sample, topo, cfg, rng_evolve)

    conf = cfg.to_dict()
    conf.update(
        n_frames=n_frames,
        seed=int(seed),
        lattice_angle_deg_used=sample.angle_deg,
        version=FORMAT_VERSION,
    )
    tables = {
        k: _typed(pd.concat(v, ignore_index=True), k) if v else _empty(k) for k, v in parts.items()
    }
    return SimulatedMovie(frames, px, hole_mask=holes, contamination=contam, config=conf, **tables)


def _frame_tables(
    t: int,
    sample: Sample,
    topo: Topology,
    img_pos: np.ndarray,
    visible: np.ndarray,
    row_shift: np.ndarray | None,
    offset: np.ndarray,
    px: float,
    shape: tuple[int, int],
    sigma_px: float,
    parts: dict[str, list[pd.DataFrame]],
) -> None:
    sheet = sample.sheet
    ny, nx = shape
    app = img_pos.copy()
    if row_shift is not None:
        app[:, 1] += apparent_shift(app[:, 0], row_shift, sigma_px)

    def inside(yx: np.ndarray) -> np.ndarray:
        yx = np.asarray(yx).reshape(-1, 2)
        return (
            (yx[:, 0] >= -0.5) & (yx[:, 0] < ny - 0.5) & (yx[:, 1] >= -0.5) & (yx[:, 1] < nx - 0.5)
        )

    shown = visible & inside(app)
    sites = np.flatnonzero(shown)
    sites = sites[np.argsort(sheet.atom_id[sites], kind="stable")]
    label, did, defects = defect_labels(sample, topo)
    ids = sheet.atom_id
    parts["atoms"].append(
        pd.DataFrame(
            {
                "frame": t,
                "atom_id": ids[sites],
                "y": app[sites, 0],
                "x": app[sites, 1],
                "cls": np.where(sheet.z[sites] == Z_SI, "Si", "C"),
                "prob": 1.0,
                "coordination": topo.degree[sites],
                "edge": topo.edge[sites],
                **{f"ring{k}": topo.ring_counts[sites, i] for i, k in enumerate(RING_SIZES)},
                "sublattice": sheet.sublattice[sites],
                "defect": label[sites],
                "defect_id": did[sites],
            }
        )
    )
    e = topo.edges
    e = e[shown[e[:, 0]] & shown[e[:, 1]]]
    pair = np.sort(ids[e], axis=1)
    order = np.lexsort((pair[:, 1], pair[:, 0]))
    e, pair = e[order], pair[order]
    parts["bonds"].append(
        pd.DataFrame(
            {
                "frame": t,
                "a": pair[:, 0],
                "b": pair[:, 1],
                "length_A": np.linalg.norm(sheet.pos[e[:, 0]] - sheet.pos[e[:, 1]], axis=1),
                "length_obs_A": np.linalg.norm(app[e[:, 0]] - app[e[:, 1]], axis=1) * px,
            }
        )
    )
    rows = []
    for members, size in topo.rings:
        uniq = sorted(set(members))
        if not shown[uniq].all():
            continue  # only rings whose atoms are all in this frame's atoms table
        c = app[uniq].mean(0)
        if inside(c)[0]:
            rows.append((size, c[0], c[1], " ".join(str(int(ids[s])) for s in members)))
    parts["rings"].append(
        pd.DataFrame(
            {
                "frame": t,
                "ring_id": np.arange(len(rows)),
                "size": [r[0] for r in rows],
                "y": [r[1] for r in rows],
                "x": [r[2] for r in rows],
                "atoms": [r[3] for r in rows],
            }
        )
    )
    rows = []
    for defect_id, kind, core, centre_A in defects:
        c = np.asarray(centre_A) / px + offset
        if row_shift is not None:
            c = c + np.array([0.0, apparent_shift(c[:1], row_shift, sigma_px)[0]])
        if not inside(c)[0]:
            continue
        members = [int(ids[s]) for s in core if shown[s]]
        rows.append((defect_id, kind, c[0], c[1], " ".join(map(str, sorted(members)))))
    parts["defects"].append(
        pd.DataFrame(
            {
                "frame": t,
                "defect_id": [r[0] for r in rows],
                "type": [r[1] for r in rows],
                "y": [r[2] for r in rows],
                "x": [r[3] for r in rows],
                "atoms": [r[4] for r in rows],
            }
        )
    )


def simulate_frame(
    size: int | None = None,
    pixel_size: float | None = None,
    seed: int = 0,
    config: SimConfig | None = None,
    **overrides: Any,
) -> SimulatedMovie:
    """A single-frame movie (``T = 1``); same parameters as :func:`simulate_movie`."""
    return simulate_movie(1, size, pixel_size, seed, config, **overrides)


SAMPLE_SETTINGS: dict[str, Any] = {
    "n_frames": 10,
    "size": 256,
    "pixel_size": 0.1,
    "seed": 7,
    "n_si3": 3,
    "n_si4": 1,
    "n_vacancies": 1,
    "n_stone_wales": 1,
    "n_holes": 1,
    "hole_radius_A": 3.5,
    "min_defect_separation_A": 5.0,
    "contamination_fraction": 0.04,
    "si_hop_prob": 0.3,
}


def sample_movie() -> SimulatedMovie:
    """The small sample movie (10 frames, 256², 0.1 Å/px), generated in memory; it is
    the same movie as ``sample_data/graphene_si_movie.tif``."""
    kw = dict(SAMPLE_SETTINGS)
    return simulate_movie(
        kw.pop("n_frames"), kw.pop("size"), kw.pop("pixel_size"), kw.pop("seed"), **kw
    )
