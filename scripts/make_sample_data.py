"""Regenerate ``sample_data/``: the small simulated movie and its ground truth.

    .venv/bin/python scripts/make_sample_data.py

Writes ``sample_data/graphene_si_movie.tif`` (ImageJ TIFF, 10 x 256 x 256 float32,
calibrated 0.1 Å/px) and ``graphene_si_movie_{atoms,bonds,rings,defects}.csv``; the same
movie is available in memory as ``atomlens.simulate.sample_movie()``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from atomlens.simulate import sample_movie

OUT = Path(__file__).resolve().parents[1] / "sample_data" / "graphene_si_movie.tif"


def main() -> int:
    OUT.parent.mkdir(exist_ok=True)
    movie = sample_movie()
    written = movie.export(OUT)
    total = sum(p.stat().st_size for p in written)
    for p in written:
        print(f"{p.relative_to(OUT.parents[1])}: {p.stat().st_size / 1e6:.2f} MB")
    print(f"{movie.summary()}; {total / 1e6:.2f} MB in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
