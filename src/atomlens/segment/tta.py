"""Test-time augmentation of a whole frame's probability maps.

The network is run on the frame under ``n`` symmetries of the square (``n = 8``: the 4
quarter turns, each with and without a mirror; ``n = 4``: the quarter turns; ``n = 2``:
identity and mirror), every map is mapped back to the frame's orientation and the maps
are averaged, so the mean map is equivariant under those symmetries. It costs ``n``
times the network time of one pass. (:mod:`atomlens.atoms.site_tta` does the same on
small crops around each Si, with :func:`to_symmetry` / :func:`from_symmetry`.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: ``n`` -> the (quarter turns, mirror) pairs averaged.
SYMMETRIES: dict[int, tuple[tuple[int, bool], ...]] = {
    1: ((0, False),),
    2: ((0, False), (0, True)),
    4: ((0, False), (1, False), (2, False), (3, False)),
    8: tuple((k, f) for k in range(4) for f in (False, True)),
}


def to_symmetry(x: torch.Tensor, k: int, mirror: bool) -> torch.Tensor:
    """Transform (..., y, x) by mirror (flip x) then rotate by k x 90°."""
    if mirror:
        x = torch.flip(x, (-1,))
    return torch.rot90(x, k, (-2, -1))


def from_symmetry(x: torch.Tensor, k: int, mirror: bool) -> torch.Tensor:
    """Undo :func:`to_symmetry` on (..., y, x)."""
    x = torch.rot90(x, -k, (-2, -1))
    if mirror:
        x = torch.flip(x, (-1,))
    return x


def symmetrised(
    predict: Callable[..., torch.Tensor], det, frames: torch.Tensor, n: int = 8, **kw
) -> torch.Tensor:
    """Mean of ``predict(det, g(frames), **kw)`` mapped back by ``g^-1`` over ``n``
    symmetries ``g`` of the square (:data:`SYMMETRIES`); ``frames`` (B, y, x) on the model
    grid, the result (B, C, y, x) like ``predict``'s (e.g.
    :func:`atomlens.segment.predict.predict_model_grid`)."""
    if n not in SYMMETRIES:
        raise ValueError(f"tta must be one of {sorted(SYMMETRIES)} symmetries, got {n!r}")
    acc = None
    for k, flip in SYMMETRIES[n]:
        p = predict(det, to_symmetry(frames, k, flip).contiguous(), **kw)
        p = from_symmetry(p, k, flip)
        acc = p if acc is None else acc + p
    return acc / len(SYMMETRIES[n])


__all__ = ["SYMMETRIES", "from_symmetry", "symmetrised", "to_symmetry"]
