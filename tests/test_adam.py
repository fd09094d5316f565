"""atomlens.train.adam.Adam matches torch.optim.Adam / AdamW step for step."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from atomlens.train.adam import Adam


def _net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_matches_torch_optim(weight_decay: float) -> None:
    ours_net, ref_net = _net(0), _net(0)
    ours = Adam(ours_net.parameters(), lr=3e-3, weight_decay=weight_decay)
    ref_cls = torch.optim.AdamW if weight_decay else torch.optim.Adam
    ref = ref_cls(ref_net.parameters(), lr=3e-3, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(1)
    for step in range(25):
        x = torch.randn(32, 5, generator=gen)
        y = torch.randn(32, 3, generator=gen)
        for net, opt in ((ours_net, ours), (ref_net, ref)):
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), y).backward()
            opt.step()
        if step == 10:  # a schedule changes the rate between steps
            ours.lr = 1e-3
            ref.param_groups[0]["lr"] = 1e-3
    for a, b in zip(ours_net.parameters(), ref_net.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert ours.steps == 25


def test_no_dynamo_import() -> None:
    """Building and stepping it must not import torch._dynamo (the GUI stall it caused)."""
    code = (
        "import sys, torch\n"
        "from atomlens.train.adam import Adam\n"
        "p = torch.nn.Parameter(torch.ones(3)); opt = Adam([p], lr=0.1)\n"
        "(p ** 2).sum().backward(); opt.step(); opt.zero_grad()\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="no parameters"):
        Adam([torch.zeros(2)])
    with pytest.raises(ValueError, match="invalid"):
        Adam([torch.nn.Parameter(torch.zeros(2))], lr=-1)


def test_cosine_matches_torch() -> None:
    from atomlens.train.adam import CosineLR

    p = torch.nn.Parameter(torch.zeros(1))
    ours = CosineLR(Adam([p], lr=0.1), 20, eta_min=0.01)
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=20, eta_min=0.01)
    for _ in range(20):
        ref_opt.step()
        ours.step()
        ref.step()
        assert abs(ours.get_last_lr()[0] - ref.get_last_lr()[0]) < 1e-9
