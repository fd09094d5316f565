"""A self-contained HTML report (figures embedded as PNG) of one pipeline run."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.pipeline import figures as F


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode()


def _section(title: str, body: str) -> str:
    return f"<section><h2>{html.escape(title)}</h2>{body}</section>"


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"/>'


def _table(df: pd.DataFrame, max_rows: int = 30) -> str:
    return df.head(max_rows).to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0)


def report_frames(frames: list[int], chosen: tuple[int, ...] | None) -> list[int]:
    """First, middle and last frame (unique), unless chosen explicitly."""
    if chosen:
        return [f for f in chosen if f in frames]
    return sorted({frames[0], frames[len(frames) // 2], frames[-1]})


def write_report(
    path: Path,
    stack: Any,
    atoms: pd.DataFrame,
    tables: dict,
    maps_path: Path | None,
    classes: list[str],
    model_path: Path | None,
    cfg: Any,
    pixel_size: float,
    result: Any,
) -> Path:
    """Write ``report.html`` with the papers' figures and the run's numbers."""
    frames = sorted(int(f) for f in atoms["frame"].unique())
    shown = report_frames(frames, cfg.report.frames)
    t0 = shown[0]
    parts: list[str] = []
    maps0 = None
    if maps_path is not None:
        import zarr

        z = zarr.open_array(str(maps_path), mode="r")
        order = list(z.attrs.get("frames", frames))
        if t0 in order:
            maps0 = np.asarray(z[order.index(t0)], dtype=np.float32)
    parts.append(
        _section(
            "Raw frame and probability maps",
            _img(_png(F.fig_maps(stack.frame(t0), maps0, classes, t0)), "maps"),
        )
    )
    bonds, rings, defects = (tables.get(k, pd.DataFrame()) for k in ("bonds", "rings", "defects"))
    atom_figs = "".join(
        _img(_png(F.fig_atoms(stack.frame(t), atoms, bonds, rings, defects, t)), f"atoms {t}")
        for t in shown
    )
    parts.append(_section("Detected atoms, rings and defects", atom_figs))
    parts.append(
        _section("Counts over the movie", _img(_png(F.fig_counts(atoms, rings)), "counts"))
    )
    summary = _summary(atoms, rings, defects)
    parts.append(_section("Summary", summary))
    if model_path is not None and model_path.exists():
        parts.append(_manifold_section(model_path, atoms))
    latent_cols = [c for c in ("angle", "z1", "z2") if c in atoms.columns]
    if latent_cols:
        lat = F.fig_latent_lattices({t: stack.frame(t) for t in shown}, atoms, latent_cols)
        parts.append(
            _section(
                "Latent-coloured lattices (first, middle, last frame)",
                _img(_png(lat), "latent lattices"),
            )
        )
        from atomlens.latent.figures import plot_latent_vs_frame

        parts.append(
            _section(
                "Latent distributions against frame",
                _img(_png(plot_latent_vs_frame(atoms, latent_cols)), "latents"),
            )
        )
    stage_rows = pd.DataFrame(
        [
            {"stage": k, "status": result.stages.get(k, "ran"), "seconds": v}
            for k, v in result.seconds.items()
        ]
    )
    parts.append(
        _section("Run", _table(stage_rows) + "<pre>" + html.escape(_config_text(cfg)) + "</pre>")
    )
    title = f"AtomLens report: {html.escape(Path(str(stack.path or 'stack')).name)}"
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em;color:#222}}
img{{max-width:100%;margin:4px}} table{{border-collapse:collapse;font-size:12px}}
td,th{{padding:2px 8px;border-bottom:1px solid #ddd}} h2{{border-bottom:2px solid #888}}
pre{{background:#f4f4f4;padding:8px;font-size:11px}}</style></head><body>
<h1>{title}</h1>
<p>{stack.n_frames} frames of {stack.shape[1]}×{stack.shape[2]} px at {pixel_size:.4f} Å/px
(source: {html.escape(str(stack.pixel_size_source))}); {len(atoms)} atoms in {len(frames)}
analysed frames.</p>
{"".join(parts)}</body></html>"""
    from atomlens.io.atomic import write_text

    write_text(path, doc)  # whole or absent
    return path


def _summary(atoms: pd.DataFrame, rings: pd.DataFrame, defects: pd.DataFrame) -> str:
    per_frame = atoms.groupby("frame").size()
    species = atoms.groupby("cls", observed=True).size().rename("atoms").reset_index()
    out = [
        f"<p>Atoms per frame: mean {per_frame.mean():.1f}, min {per_frame.min()}, "
        f"max {per_frame.max()}.</p>",
        _table(species),
    ]
    if len(rings):
        hist = rings.groupby("size").size().rename("rings").reset_index()
        out.append("<h3>Ring sizes (all frames)</h3>" + _table(hist))
    if len(defects) and "type" in defects:
        types = defects.groupby("type").size().rename("count").reset_index()
        out.append("<h3>Defects (all frames)</h3>" + _table(types))
    if "coordination" in atoms and (atoms["cls"] == "Si").any():
        si = atoms[atoms["cls"] == "Si"].groupby("coordination").size().rename("Si atoms")
        out.append("<h3>Si coordination</h3>" + _table(si.reset_index()))
    return "".join(out)


def _manifold_section(model_path: Path, atoms: pd.DataFrame) -> str:
    """The decoded manifold over the range of content latents the atoms took."""
    from atomlens.latent import decode_manifold
    from atomlens.latent.figures import plot_manifold
    from atomlens.models import load_model

    model = load_model(model_path)
    names = [c for c in model.latent_names() if c in atoms.columns]
    content = [c for c in names if c.startswith("z")]
    if len(content) < 2 or not hasattr(model, "decode"):
        return ""
    latents = atoms[names].dropna()
    n = 10
    manifold = decode_manifold(model, n=n, latents=latents)
    lo1, hi1 = np.percentile(latents[content[0]], [2, 98])
    lo2, hi2 = np.percentile(latents[content[1]], [2, 98])
    fig = plot_manifold(manifold, n, extent=(lo1, hi1, lo2, hi2), title="decoded latent manifold")
    return _section("Latent manifold", _img(_png(fig), "manifold"))


def _config_text(cfg: Any) -> str:
    lines = []
    for sec, values in cfg.to_dict().items():
        lines.append(f"[{sec}]")
        lines += [f"{k} = {v!r}" for k, v in values.items()]
    return "\n".join(lines)
