"""The fast rVAE training path computes what the plain one does: the fused decoder (first
layer as a per-sample matrix over a fixed grid, tanh as 2 sigmoid(2a) - 1 with the affine
maps folded into the weights) against a literal implementation, and micro-batches
(``fit_events(micro_batch=...)``, default ``"auto"`` on the CPU) against whole batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atomlens.models import RVAE, VAE, ModelError
from atomlens.models.nets import SpatialDecoder
from atomlens.train import fit_events, resolve_micro_batch


def literal_decoder(dec: SpatialDecoder, phi, shift, z):
    """The spatial generator as written in the papers: rotate and shift every pixel
    coordinate, join the content latent, tanh MLP."""
    b = phi.shape[0]
    c, s = torch.cos(phi), torch.sin(phi)
    g = dec.grid
    x = c[:, None] * g[None, :, 0] - s[:, None] * g[None, :, 1] + shift[:, None, 0]
    y = s[:, None] * g[None, :, 0] + c[:, None] * g[None, :, 1] + shift[:, None, 1]
    h = dec.coord(torch.stack([x, y], -1))
    if dec.latent is not None:
        h = h + dec.latent(z)[:, None]
    h = torch.tanh(h)
    for i, layer in enumerate(dec.layers):
        a = layer(h)
        if dec.skips is not None:
            a = a + dec.skips[i](z)[:, None]
        h = torch.tanh(a)
    return dec.out(h).transpose(1, 2).reshape(b, dec.n_channels, *dec.window)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("channels", [1, 2])
def test_fused_decoder_matches_the_literal_one(skip, channels):
    torch.manual_seed(0)
    dec = SpatialDecoder((12, 10), channels, 3, (32, 32, 16), "tanh", skip)
    phi, shift, z = torch.randn(5), 0.1 * torch.randn(5, 2), torch.randn(5, 3)
    target = torch.randn(5, channels, 12, 10)
    results = []
    for fn in (dec, lambda *a: literal_decoder(dec, *a)):
        dec.zero_grad()
        inputs = [t.clone().requires_grad_() for t in (phi, shift, z)]
        out = fn(*inputs)
        ((out - target) ** 2).sum().backward()
        results.append(
            [out.detach()] + [t.grad for t in inputs] + [p.grad.clone() for p in dec.parameters()]
        )
    for fast, plain in zip(*results):
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5 * float(plain.abs().max()))


def test_other_activations_keep_the_plain_path():
    torch.manual_seed(0)
    dec = SpatialDecoder((8, 8), 1, 2, (16, 16), "relu", False)
    out = dec(torch.zeros(2), torch.zeros(2, 2), torch.zeros(2, 2))
    h = torch.relu(dec.coord(dec.grid))
    h = torch.relu(dec.layers[0](h))
    torch.testing.assert_close(out[0, 0].reshape(-1), dec.out(h)[:, 0])


def _params(model):
    return torch.cat([p.detach().flatten() for p in model.module.parameters()])


@pytest.mark.parametrize("kind", ["rvae", "vae"])
def test_micro_batches_give_the_same_training(kind):
    """Chunks on one thread, chunks on two worker threads, and "auto" (which is a whole
    batch here: 12 x 12 windows and 16 units make chunks of 320) train as whole batches do."""
    x = np.random.default_rng(0).random((90, 12, 12)).astype(np.float32)
    runs = {}
    for mb, threads in ((None, 1), (7, 1), (7, 2), ("auto", 2)):
        if kind == "rvae":
            m = RVAE(window=12, hidden=(16, 16), lr=1e-3, seed=0)
        else:
            m = VAE(window=12, hidden=(16, 16), lr=1e-3, seed=0)
        list(fit_events(m, x, epochs=2, batch_size=30, micro_batch=mb, device="cpu", seed=3,
                        threads=threads))  # fmt: skip
        runs[mb, threads] = (_params(m), m.card["history"])
    plain = runs[None, 1]
    for key in ((7, 1), (7, 2), ("auto", 2)):
        torch.testing.assert_close(runs[key][0], plain[0], rtol=0, atol=1e-6)
        for k in ("train_loss", "test_loss"):
            np.testing.assert_allclose(runs[key][1][k], plain[1][k], rtol=1e-6)


def test_worker_threads_are_deterministic_and_restore_the_thread_count():
    x = np.random.default_rng(2).random((64, 10, 10)).astype(np.float32)
    before = torch.get_num_threads()
    params = []
    for _ in range(2):
        m = RVAE(window=10, hidden=(16, 16), lr=1e-3, seed=0)
        list(fit_events(m, x, epochs=2, batch_size=32, micro_batch=3, device="cpu", threads=2))
        params.append(_params(m))
        assert torch.get_num_threads() == before
    torch.testing.assert_close(params[0], params[1], rtol=0, atol=0)  # bitwise


def test_micro_batch_gradient_equals_whole_batch_gradient():
    x = torch.from_numpy(np.random.default_rng(1).random((20, 1, 10, 10)).astype(np.float32))
    m = RVAE(window=10, hidden=(16, 16), seed=0)
    noise = torch.randn(20, m.noise_dim)
    m.module.zero_grad()
    whole = m.loss(x, noise)
    whole.backward()
    g_whole = [p.grad.clone() for p in m.module.parameters()]
    m.module.zero_grad()
    total = 0.0
    for j in range(0, 20, 6):
        part = m.loss(x[j : j + 6], noise[j : j + 6]) * (len(x[j : j + 6]) / 20)
        part.backward()
        total += float(part.detach())
    assert total == pytest.approx(float(whole.detach()), rel=1e-6)
    for a, b in zip((p.grad for p in m.module.parameters()), g_whole):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_resolve_micro_batch():
    m = RVAE(window=24, hidden=(128, 128))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert m.auto_micro_batch() == 5
    assert resolve_micro_batch(m, "auto", cpu) == 5
    assert resolve_micro_batch(m, "auto", cuda) is None  # whole batches on accelerators
    assert resolve_micro_batch(m, None, cpu) is None and resolve_micro_batch(m, 4, cpu) == 4
    assert RVAE(window=32, hidden=(256, 256)).auto_micro_batch() == 1
    assert RVAE(window=8, hidden=(16, 16)).auto_micro_batch() == 360
    assert resolve_micro_batch(VAE(window=12), "auto", cpu) is None
    for bad in ("fast", 0, -2, 2.5, True):
        with pytest.raises(ModelError, match="micro_batch"):
            resolve_micro_batch(m, bad, cpu)


def test_closing_the_generator_early_restores_the_threads():
    x = np.random.default_rng(3).random((40, 10, 10)).astype(np.float32)
    before = torch.get_num_threads()
    events = fit_events(RVAE(window=10, hidden=(16, 16)), x, epochs=1, batch_size=20,
                        micro_batch=2, device="cpu", threads=2)  # fmt: skip
    next(events)  # Started: the worker pool is up and torch runs at one thread
    events.close()
    assert torch.get_num_threads() == before
