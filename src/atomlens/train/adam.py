"""Adam without ``torch.optim``: the same update, none of its first-use import cost.

``torch.optim.Optimizer.__init__`` imports ``torch._dynamo`` (and with it sympy) the first
time any optimizer is built. On a napari worker thread that import holds the GIL in long
stretches and froze the viewer for 0.1-0.6 s at the start of every first training. This
class does the textbook Adam step (Kingma & Ba 2015; decoupled weight decay as AdamW,
Loshchilov & Hutter 2019) with ``torch._foreach_*`` ops and matches ``torch.optim.Adam``
/ ``AdamW`` (``amsgrad=False``) to float rounding (tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


class Adam:
    """Adam / AdamW over a fixed list of parameters.

    Parameters
    ----------
    params : the tensors to optimise (``requires_grad``); those without a gradient at a
        step are skipped, as in ``torch.optim``.
    lr : learning rate; may be changed between steps (``opt.lr = ...``) for schedules.
    betas, eps : the moment decay rates and the denominator guard.
    weight_decay : decoupled weight decay (AdamW): ``p -= lr * weight_decay * p``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.params = [p for p in params if p.requires_grad]
        if not self.params:
            raise ValueError("Adam: no parameters that require gradients")
        if lr <= 0 or eps <= 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(
                f"Adam: invalid settings lr={lr}, betas={betas}, eps={eps}, "
                f"weight_decay={weight_decay}"
            )
        self.lr, self.betas, self.eps, self.weight_decay = (
            float(lr),
            betas,
            float(eps),
            float(weight_decay),
        )
        self.steps = 0
        self._m = [torch.zeros_like(p) for p in self.params]
        self._v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients (``set_to_none``, else zero them in place)."""
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        """One update from the current ``.grad`` of the parameters."""
        idx = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not idx:
            return
        params = [self.params[i] for i in idx]
        grads = [p.grad for p in params]
        m = [self._m[i] for i in idx]
        v = [self._v[i] for i in idx]
        b1, b2 = self.betas
        self.steps += 1
        if self.weight_decay:
            torch._foreach_mul_(params, 1.0 - self.lr * self.weight_decay)
        torch._foreach_lerp_(m, grads, 1.0 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, 1.0 - b2)
        bias1 = 1.0 - b1**self.steps
        bias2 = 1.0 - b2**self.steps
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, math.sqrt(bias2))
        torch._foreach_add_(denom, self.eps)
        torch._foreach_addcdiv_(params, m, denom, -self.lr / bias1)


class CosineLR:
    """Cosine decay of ``opt.lr`` from its start value to ``eta_min`` over ``t_max`` steps
    (the ``torch.optim.lr_scheduler.CosineAnnealingLR`` formula, without torch.optim)."""

    def __init__(self, opt: Adam, t_max: int, eta_min: float = 0.0) -> None:
        self.opt, self.t_max, self.eta_min = opt, max(int(t_max), 1), float(eta_min)
        self.base, self.t = opt.lr, 0

    def step(self) -> None:
        """Advance one step and set the optimiser's rate."""
        self.t += 1
        cos = (1.0 + math.cos(math.pi * min(self.t, self.t_max) / self.t_max)) / 2.0
        self.opt.lr = self.eta_min + (self.base - self.eta_min) * cos

    def get_last_lr(self) -> list[float]:
        """The current rate, as a one-element list (torch.optim's shape)."""
        return [self.opt.lr]
