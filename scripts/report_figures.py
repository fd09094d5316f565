"""Save the figures of an AtomLens run report as PNG files, named by their section.

Usage: ``python scripts/report_figures.py RUN_DIR OUT_DIR [--prefix NAME]``.
The report (``RUN_DIR/report.html``) embeds each figure as a PNG; this writes them
unchanged as ``OUT_DIR/<prefix>_<section>.png`` (section heading in lower case, words
joined by ``_``), e.g. for the figures shown in ``docs/pipeline.md``.
"""

from __future__ import annotations

import argparse
import base64
import re
import sys
from pathlib import Path

_PART = re.compile(r'<h[23][^>]*>(?P<head>.*?)</h[23]>|src="data:image/png;base64,(?P<png>[^"]+)"')


def report_figures(html: str) -> list[tuple[str, bytes]]:
    """(section slug, PNG bytes) of every embedded figure, in page order."""
    section, out, seen = "report", [], {}
    for m in _PART.finditer(html):
        if m.group("head") is not None:
            words = re.findall(r"[a-z0-9]+", re.sub(r"<[^>]+>", "", m.group("head")).lower())
            section = "_".join(words) or "section"
            continue
        n = seen.get(section, 0)
        seen[section] = n + 1
        out.append((section if n == 0 else f"{section}_{n + 1}", base64.b64decode(m.group("png"))))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="run folder with report.html")
    p.add_argument("out", type=Path, help="folder for the PNG files")
    p.add_argument("--prefix", default="report", help="file name prefix (default report)")
    a = p.parse_args(argv)
    html_path = a.run / "report.html"
    if not html_path.is_file():
        print(f"error: no report at {html_path}; run `atomlens run` first", file=sys.stderr)
        return 2
    figures = report_figures(html_path.read_text(encoding="utf-8"))
    if not figures:
        print(f"error: {html_path} has no embedded figures", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    for name, png in figures:
        path = a.out / f"{a.prefix}_{name}.png"
        path.write_bytes(png)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
