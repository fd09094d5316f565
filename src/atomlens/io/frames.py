"""The one frame-selection grammar of AtomLens (CLI ``--frames``, ``[input] frames``,
recipes, corrections, fine-tuning).

Grammar (comma-separated parts, whitespace ignored)::

    all | <empty> | None     every frame (needs the number of frames)
    5                       frame 5
    0:3                     frames 0, 1, 2 (a Python slice: stop excluded)
    8:  / :4 / ::3 / 1:9:2  open ends and a step, as in Python
    0:3,8                   any mix of the above

Indices are 0-based frame numbers; negative numbers are refused (say ``40:`` rather
than ``-8:``). The result is sorted and duplicate-free. Every problem raises
:class:`atomlens.errors.FrameSelectionError` naming the spec and the valid range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from atomlens.errors import FrameSelectionError

__all__ = ["FrameSelectionError", "format_frames", "parse_frames"]

_EXAMPLES = "use e.g. '5', '0:10', '0:3,8', '::2' or 'all'"
_INT = r"\s*(\d*)\s*"
_SLICE = re.compile(rf"{_INT}:{_INT}(?::{_INT})?")


def _valid_range(n_frames: int | None) -> str:
    if n_frames is None:
        return ""
    return (
        f" (the movie has frames 0..{n_frames - 1})"
        if n_frames > 0
        else " (the movie has no frames)"
    )


def parse_frames(spec: str | int | Sequence[int] | None, n_frames: int | None = None) -> list[int]:
    """Frame indices selected by ``spec`` in a movie of ``n_frames`` frames.

    Parameters
    ----------
    spec : a grammar string (see the module docstring), ``None``/``"all"`` (every frame),
        an int, or a sequence of ints.
    n_frames : number of frames in the movie; resolves open ranges and checks bounds.
        May be ``None`` only for closed specs (no ``all``, no open range).

    Returns
    -------
    Sorted, unique 0-based frame indices (never empty).

    Raises
    ------
    FrameSelectionError : the spec does not parse, selects nothing, or names frames
        outside ``0..n_frames-1``.
    """
    if n_frames is not None and (isinstance(n_frames, bool) or int(n_frames) != n_frames):
        raise FrameSelectionError(f"number of frames must be an integer, got {n_frames!r}")
    n = None if n_frames is None else int(n_frames)
    out: set[int] = set()
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        if n is None:
            raise FrameSelectionError(
                f"frame selection {spec!r} means every frame, which needs the number of frames"
            )
        out.update(range(n))
    elif isinstance(spec, bool):
        raise FrameSelectionError(f"cannot read frame selection {spec!r}: {_EXAMPLES}")
    elif isinstance(spec, int | np.integer):
        out.add(int(spec))
    elif isinstance(spec, str):
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                raise FrameSelectionError(
                    f"cannot read frame selection {spec!r}: empty part between commas; {_EXAMPLES}"
                )
            if part.isdigit():
                out.add(int(part))
                continue
            m = _SLICE.fullmatch(part)
            if m is None:
                raise FrameSelectionError(
                    f"cannot read frame selection {spec!r} at {part!r}: {_EXAMPLES}"
                    f"{_valid_range(n)}"
                )
            a, b, c = (int(g) if g else None for g in m.groups())
            if c == 0:
                raise FrameSelectionError(f"frame selection {spec!r}: the step cannot be 0")
            if b is None:
                if n is None:
                    raise FrameSelectionError(
                        f"open range {part!r} in frame selection {spec!r} needs the number of frames"
                    )
                b = n
            out.update(range(a or 0, b, c or 1))
    else:
        try:
            items = list(spec)
        except TypeError:
            raise FrameSelectionError(
                f"cannot read frame selection {spec!r}: {_EXAMPLES}"
            ) from None
        for f in items:
            if isinstance(f, bool) or not isinstance(f, int | np.integer):
                raise FrameSelectionError(
                    f"frame selection {spec!r} holds {f!r}, not a frame number"
                )
            out.add(int(f))
    if not out:
        raise FrameSelectionError(f"frame selection {spec!r} selects no frame{_valid_range(n)}")
    bad = sorted(f for f in out if f < 0 or (n is not None and f >= n))
    if bad:
        shown = bad if len(bad) <= 6 else [*bad[:3], "...", *bad[-2:]]
        raise FrameSelectionError(
            f"frame selection {spec!r} names frame(s) {shown} out of range{_valid_range(n)}"
        )
    return sorted(out)


def format_frames(frames: Iterable[int]) -> str:
    """The inverse of :func:`parse_frames`: ``[0, 1, 2, 5]`` -> ``"0:3,5"``."""
    fs = sorted({int(f) for f in frames})
    parts: list[str] = []
    i = 0
    while i < len(fs):
        j = i
        while j + 1 < len(fs) and fs[j + 1] == fs[j] + 1:
            j += 1
        parts.append(str(fs[i]) if j == i else f"{fs[i]}:{fs[j] + 1}")
        i = j + 1
    return ",".join(parts)
