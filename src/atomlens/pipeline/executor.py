"""Run per-frame work in-process or as Dask tasks, with identical results.

The pipeline cuts a movie into frame chunks and maps a module-level function over them.
``InProcess`` runs the chunks one after the other; ``DaskExecutor`` sends them to a
``dask.distributed`` cluster (a local one by default, or an existing scheduler), each
task reading its own frames lazily from the file so that no array travels.

The default ``"local"`` scheduler is :class:`LocalThreads`: worker threads of this
process, which open no network port at all, so no other user or process on the machine
can reach them or submit code to them (a ``dask.distributed`` LocalCluster always starts
HTTP servers, on every interface, even with in-process transport). Torch releases the
GIL in its kernels, so threads still run detection in parallel. A scheduler address is
the user's explicit choice of a ``dask.distributed`` cluster; secure it with dask's TLS
settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any


def frame_chunks(frames: Sequence[int], size: int) -> list[list[int]]:
    """Consecutive groups of at most ``size`` frame indices."""
    frames = list(frames)
    return [frames[i : i + size] for i in range(0, len(frames), max(1, size))]


class InProcess:
    """Sequential execution in this process."""

    name = "in-process"

    def map(self, func: Callable[..., Any], chunks: Sequence[Any], **kwargs: Any) -> Iterator[Any]:
        for chunk in chunks:
            yield func(chunk, **kwargs)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Execution on a ``dask.distributed`` cluster; results come back in chunk order."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, n_workers: int = 2) -> None:
        from dask.distributed import Client, LocalCluster

        if scheduler:
            self._cluster = None
            self.client = Client(scheduler)
        else:  # an explicit local cluster (not the default: it listens on ports)
            self._cluster = LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                memory_limit="auto",
                host="127.0.0.1",
            )
            self.client = Client(self._cluster)

    def map(self, func: Callable[..., Any], chunks: Sequence[Any], **kwargs: Any) -> Iterator[Any]:
        futures = [self.client.submit(func, chunk, pure=False, **kwargs) for chunk in chunks]
        for fut in futures:
            yield fut.result()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


class LocalThreads:
    """Chunks run on ``n_workers`` threads of this process; results in chunk order.

    Opens no socket (see the module docstring). At most ``2 * n_workers`` chunks are in
    flight, so memory stays bounded on long movies.
    """

    name = "threads"

    def __init__(self, n_workers: int = 2) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.n_workers = max(1, int(n_workers))
        self._pool = ThreadPoolExecutor(self.n_workers, thread_name_prefix="atomlens")

    def map(self, func: Callable[..., Any], chunks: Sequence[Any], **kwargs: Any) -> Iterator[Any]:
        from collections import deque

        pending: deque = deque()
        for chunk in chunks:
            pending.append(self._pool.submit(func, chunk, **kwargs))
            if len(pending) >= 2 * self.n_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_executor(scheduler: str | None) -> InProcess | LocalThreads | DaskExecutor:
    """``None`` → in-process; ``"local"`` → 2 worker threads of this process (no open
    port); ``"local-cluster"`` → a 2-process dask LocalCluster on 127.0.0.1; else the
    address of a ``dask.distributed`` scheduler."""
    if scheduler is None:
        return InProcess()
    if scheduler == "local":
        return LocalThreads(2)
    if scheduler == "local-cluster":
        return DaskExecutor(None)
    return DaskExecutor(scheduler)
