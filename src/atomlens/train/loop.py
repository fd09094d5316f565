"""One training loop for every latent model, as a generator of typed progress events.

The GUI runs :func:`fit_events` in a worker thread and redraws on the events; the CLI
prints them; ``model.fit()`` simply drains the generator.

Speed on the CPU: with micro-batches (``micro_batch``, default ``"auto"``) each batch is
cut into chunks small enough for the decoder's activations to stay in cache, and with
``n`` torch threads the chunks go to ``n`` worker threads that run torch on one core
each (torch ops release the GIL). Splitting every op of a small chunk over the cores
instead costs a barrier per op, which is slow, and very slow when the machine is shared.
The gradients of the groups of chunks are summed in a fixed order, and the sampling
noise is drawn for the whole batch, so the update is that of the whole batch up to float
rounding, whatever the number of threads.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atomlens.train.adam import Adam
from atomlens.train.protocol import ModelError, OneShotFittable, TorchTrainable, images_of


@dataclass
class Started:
    """Training begins: sizes, device and schedule."""

    n_train: int
    n_test: int
    n_epochs: int
    batch_size: int
    steps_per_epoch: int
    device: str
    lr: float | None


@dataclass
class StepEnd:
    """One optimisation step done (throttled: at most one per ``step_interval_s``)."""

    epoch: int
    step: int
    loss: float
    images_per_s: float
    elapsed_s: float


@dataclass
class EpochEnd:
    """An epoch done; losses are mean negative ELBO (or reconstruction) per window."""

    epoch: int
    n_epochs: int
    step: int
    train_loss: float
    test_loss: float | None
    elapsed_s: float
    eta_s: float
    images_per_s: float


@dataclass
class CheckpointSaved:
    """A checkpoint was written (``kind`` is ``"last"`` or ``"best"``)."""

    epoch: int
    path: Path
    kind: str


@dataclass
class Finished:
    """Training ended. ``reason``: ``"done"``, ``"stopped"`` (the stop flag was set; the
    weights are those after the last completed step) or ``"diverged"`` (a non-finite
    loss; the weights of the last finished epoch were restored)."""

    model: TorchTrainable | OneShotFittable
    reason: str
    epochs_done: int
    elapsed_s: float
    history: dict = field(default_factory=dict)


Event = Started | StepEnd | EpochEnd | CheckpointSaved | Finished


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else Apple MPS, else CPU; or the named device."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} requested but CUDA is not available; use 'cpu'")
    return dev


def select_subset(n: int, subset: Any, seed: int) -> np.ndarray:
    """Row positions to train on: ``None`` (all), an int (count), a float in (0, 1]
    (fraction), or an index / boolean array."""
    if subset is None:
        return np.arange(n)
    if isinstance(subset, (bool, np.bool_)):
        raise ModelError("subset must be None, a count, a fraction or an index array")
    if np.ndim(subset) == 0:
        value = float(subset)
        if isinstance(subset, (int, np.integer)) or value > 1:
            count = int(value)
        elif 0 < value <= 1:
            count = max(1, int(round(value * n)))
        else:
            raise ModelError(f"subset fraction must be in (0, 1], got {subset}")
        count = min(count, n)
        return np.sort(np.random.default_rng(seed).choice(n, count, replace=False))
    arr = np.asarray(subset)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ModelError(f"boolean subset must have length {n}, got {arr.shape}")
        return np.flatnonzero(arr)
    arr = arr.astype(np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ModelError(f"subset indices must lie in 0..{n - 1}")
    return arr


def fit_events(
    model: TorchTrainable | OneShotFittable,
    X: Any,
    epochs: int = 100,
    batch_size: int = 200,
    lr: float | None = None,
    train_fraction: float = 0.75,
    device: str = "auto",
    seed: int = 0,
    stop: threading.Event | None = None,
    checkpoint_dir: str | Path | None = None,
    subset: Any = None,
    step_interval_s: float = 0.5,
    amp: bool = True,
    threads: int | None = None,
    micro_batch: int | str | None = "auto",
) -> Iterator[Event]:
    """Train ``model`` on windows ``X``, yielding progress events.

    Parameters
    ----------
    X : (N, h, w) / (N, C, h, w) windows or ``Subimages``.
    epochs, batch_size : schedule (an epoch is one pass over the training windows).
    lr : Adam learning rate (default: the model's ``lr``).
    train_fraction : share of the (subset of) windows used for training; the rest gives
        the test loss each epoch (the paper's 75/25 split). 1.0 = no test set.
    device : ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``. bf16 autocast is used on CUDA
        only (``amp=True``).
    seed : seeds the split, the shuffling and the sampling noise.
    stop : a ``threading.Event``; when set, training ends before the next step.
    checkpoint_dir : write ``<kind>-last.pt`` each epoch and ``<kind>-best.pt`` (lowest
        test loss, or train loss without a test set).
    subset : train on part of the windows (count, fraction or index array); encode
        everything afterwards with ``model.transform``.
    threads : torch CPU threads for the duration of training (``None`` = leave as is).
    micro_batch : evaluate each batch in chunks of this many windows and accumulate the
        gradients: the same update as one pass (the loss is a mean over windows, and the
        sampling noise is drawn for the whole batch, so it is the same numbers too); small
        chunks keep the decoder's (chunk x pixels x hidden) activations in cache, which is
        faster on CPU. ``"auto"`` (default) = the model's ``auto_micro_batch()`` on the CPU
        (5 windows for a 24 x 24 rVAE with 128 units) and whole batches elsewhere;
        ``None`` = the whole batch at once.
    """
    if epochs < 1 or batch_size < 1:
        raise ModelError(f"need epochs >= 1 and batch_size >= 1, got {epochs}, {batch_size}")
    if not 0 < train_fraction <= 1:
        raise ModelError(f"train_fraction must be in (0, 1], got {train_fraction}")
    t0 = time.perf_counter()
    if not isinstance(model, TorchTrainable):
        # scikit-learn baselines: one fit, same events
        arr = images_of(X)
        rows = select_subset(len(arr), subset, seed)
        yield Started(len(rows), 0, 1, len(rows), 1, "cpu", None)
        model.fit(arr[rows])
        yield Finished(model, "done", 1, time.perf_counter() - t0, {})
        return

    arr = model.prepare(X)
    rows = select_subset(len(arr), subset, seed)
    rng = np.random.default_rng(seed)
    rows = rng.permutation(rows)
    n_train = len(rows) if train_fraction >= 1 else int(round(train_fraction * len(rows)))
    if n_train < 1:
        raise ModelError(f"no windows to train on ({len(rows)} after subset/split)")
    train_rows, test_rows = np.sort(rows[:n_train]), np.sort(rows[n_train:])
    dev = pick_device(device)
    chunk_size = resolve_micro_batch(model, micro_batch, dev)
    lr = float(lr if lr is not None else model.default_lr)
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    n_threads = torch.get_num_threads()
    pool = None
    if chunk_size and dev.type == "cpu" and n_threads > 1:
        # chunks run on worker threads, one core each, rather than every op of a chunk
        # split over the cores: no barriers in the many small ops (see the module notes)
        pool = ThreadPoolExecutor(n_threads, thread_name_prefix="atomlens-train")
        torch.set_num_threads(1)
    torch.manual_seed(seed)
    module = model.module.to(dev)
    x_train = torch.from_numpy(np.ascontiguousarray(arr[train_rows])).to(dev)
    x_test = (
        torch.from_numpy(np.ascontiguousarray(arr[test_rows])).to(dev) if len(test_rows) else None
    )
    opt = Adam(
        module.parameters(), lr=lr
    )  # not torch.optim: its first use imports dynamo (GUI stall)
    use_amp = amp and dev.type == "cuda"
    steps_per_epoch = math.ceil(n_train / batch_size)
    history: dict[str, list] = model.card.get("history") or {"train_loss": [], "test_loss": []}
    history = {
        "train_loss": list(history.get("train_loss", [])),
        "test_loss": list(history.get("test_loss", [])),
    }
    good_state = copy.deepcopy(module.state_dict())
    best = math.inf
    ckpt = Path(checkpoint_dir) if checkpoint_dir else None
    if ckpt:
        ckpt.mkdir(parents=True, exist_ok=True)
    reason, epochs_done, step = "done", 0, 0
    gen = torch.Generator(device="cpu").manual_seed(seed)
    last_step_event = time.perf_counter()
    try:  # from here on the finally restores the threads, also if the consumer closes us
        yield Started(n_train, len(test_rows), epochs, batch_size, steps_per_epoch, str(dev), lr)
        for epoch in range(epochs):
            module.train()
            perm = torch.randperm(n_train, generator=gen).to(dev)
            total, count = 0.0, 0
            for i in range(0, n_train, batch_size):
                if stop is not None and stop.is_set():
                    reason = "stopped"
                    break
                xb = x_train[perm[i : i + batch_size]]
                opt.zero_grad(set_to_none=True)
                chunk = min(chunk_size or len(xb), len(xb))
                noise = None
                if chunk < len(xb) and model.noise_dim:  # the same draws as one pass
                    noise = torch.randn(len(xb), model.noise_dim, device=dev)
                starts = list(range(0, len(xb), chunk))
                if pool is None or len(starts) == 1:
                    value = _run_chunks(model, xb, starts, chunk, noise, use_amp)[0]
                else:
                    value = _run_chunks_parallel(
                        pool, n_threads, model, opt.params, xb, starts, chunk, noise
                    )
                if not math.isfinite(value):
                    module.load_state_dict(good_state)
                    reason = "diverged"
                    break
                opt.step()
                step += 1
                total += value * len(xb)
                count += len(xb)
                now = time.perf_counter()
                if now - last_step_event >= step_interval_s:
                    last_step_event = now
                    elapsed = now - t0
                    done = epoch * n_train + count
                    yield StepEnd(epoch, step, value, done / max(elapsed, 1e-9), elapsed)
            if reason != "done":
                break
            train_loss = total / max(count, 1)
            test_loss = _evaluate(model, x_test, use_amp, n_threads) if x_test is not None else None
            epochs_done = epoch + 1
            history["train_loss"].append(train_loss)
            history["test_loss"].append(test_loss)
            good_state = copy.deepcopy(module.state_dict())
            model.fitted = True
            elapsed = time.perf_counter() - t0
            per_epoch = elapsed / epochs_done
            yield EpochEnd(epoch, epochs, step, train_loss, test_loss, elapsed,
                           per_epoch * (epochs - epochs_done), epochs_done * n_train / elapsed)  # fmt: skip
            if ckpt:
                _update_card(
                    model, n_train, len(test_rows), batch_size, lr, dev, history, t0, "running"
                )
                path = model.save(ckpt / f"{model.kind}-last.pt")
                yield CheckpointSaved(epoch, path, "last")
                score = test_loss if test_loss is not None else train_loss
                if score < best:
                    best = score
                    path = model.save(ckpt / f"{model.kind}-best.pt")
                    yield CheckpointSaved(epoch, path, "best")
    finally:
        module.eval()
        module.to("cpu")
        del x_train, x_test, opt
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        if pool is not None:
            pool.shutdown()
        if torch.get_num_threads() != old_threads:
            torch.set_num_threads(old_threads)
    if epochs_done or step:
        model.fitted = True
    _update_card(model, n_train, len(test_rows), batch_size, lr, dev, history, t0, reason)
    model.card["epochs"] = int(model.card.get("epochs", 0)) + epochs_done
    yield Finished(model, reason, epochs_done, time.perf_counter() - t0, history)


def resolve_micro_batch(
    model: TorchTrainable, micro_batch: int | str | None, dev: torch.device
) -> int | None:
    """Chunk size (windows) for ``fit_events(micro_batch=...)``: ``None`` = whole batches."""
    if micro_batch is None:
        return None
    if micro_batch == "auto":
        return model.auto_micro_batch() if dev.type == "cpu" else None
    if (
        isinstance(micro_batch, (str, bool, np.bool_))
        or int(micro_batch) != micro_batch
        or micro_batch < 1
    ):
        raise ModelError(f"micro_batch must be None, 'auto' or a positive int, got {micro_batch!r}")
    return int(micro_batch)


def _run_chunks(model: Any, xb: torch.Tensor, starts: list[int], chunk: int,
                noise: torch.Tensor | None, use_amp: bool, params: list | None = None,
                ) -> tuple[float, list | None]:  # fmt: skip
    """Loss and gradients of the chunks of batch ``xb`` that start at ``starts`` (each
    chunk's loss weighted by its share of the batch). Without ``params`` the gradients
    accumulate in ``.grad``; with them they are returned (summed in chunk order). Stops
    at a non-finite loss and returns NaN."""
    value, grads = 0.0, None
    for j in starts:
        part = xb[j : j + chunk]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
            loss = model.loss(part) if noise is None else model.loss(part, noise[j : j + chunk])
            loss = loss * (len(part) / len(xb))
        if not torch.isfinite(loss):
            return math.nan, None
        if params is None:
            loss.backward()
        else:
            new = torch.autograd.grad(loss, params, allow_unused=True)
            if grads is None:
                grads = list(new)
            else:
                grads = [
                    a if b is None else b if a is None else a.add_(b) for a, b in zip(grads, new)
                ]
        value += float(loss.detach())
    return value, grads


def _run_chunks_parallel(pool: ThreadPoolExecutor, n_workers: int, model: Any, params: list,
                         xb: torch.Tensor, starts: list[int], chunk: int,
                         noise: torch.Tensor | None) -> float:  # fmt: skip
    """The chunks of a batch split into contiguous groups, one per worker thread (CPU, one
    core each); the gradients are summed in group order, so a run does not depend on which
    thread finishes first. Sets ``.grad`` and returns the batch loss (NaN if non-finite)."""
    groups = [g.tolist() for g in np.array_split(np.asarray(starts), min(len(starts), n_workers))]
    results = [f.result() for f in [pool.submit(_run_chunks, model, xb, g, chunk, noise, False, params)
                                    for g in groups]]  # fmt: skip
    if any(not math.isfinite(v) for v, _ in results):
        return math.nan
    for i, p in enumerate(params):
        parts = [g[i] for _, g in results if g[i] is not None]
        if parts:
            total = parts[0]
            for other in parts[1:]:
                total = total.add_(other)
            p.grad = total
    return sum(v for v, _ in results)


@torch.no_grad()
def _evaluate(model: Any, x: torch.Tensor, use_amp: bool, n_threads: int | None = None,
              batch: int = 2048) -> float:  # fmt: skip
    model.module.eval()
    old = torch.get_num_threads()
    if n_threads and n_threads != old:  # worker mode runs at 1 thread; evaluate on all
        torch.set_num_threads(n_threads)
    total = 0.0
    try:
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                total += float(model.loss(xb)) * len(xb)
    finally:
        if torch.get_num_threads() != old:
            torch.set_num_threads(old)
        model.module.train()
    return total / len(x)


def _update_card(model, n_train, n_test, batch_size, lr, dev, history, t0, reason) -> None:
    model.card.update(
        n_train=int(n_train), n_test=int(n_test), batch_size=int(batch_size), lr=float(lr),
        device=str(dev), history=history, train_seconds=round(time.perf_counter() - t0, 3),
        finished=reason,
        train_loss=history["train_loss"][-1] if history["train_loss"] else None,
        test_loss=history["test_loss"][-1] if history["test_loss"] else None,
    )  # fmt: skip
