"""Run per-frame work in-process or as Dask tasks, with identical results.

The pipeline cuts a movie into frame chunks and maps a module-level function over them.
``InProcess`` runs the chunks one after the other; ``DaskExecutor`` sends them to a
``dask.distributed`` cluster (a local one by default, or an existing scheduler), each
task reading its own frames lazily from the file so that no array travels.

The default local cluster opens no network port: its scheduler and workers are threads
of this process talking over dask's in-process transport (``inproc://``), so no other
user or process on the machine can reach it or submit code to it. Torch releases the
GIL in its kernels, so worker threads still run detection in parallel. A remote
scheduler (an address) is the user's explicit choice; secure it with dask's TLS
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
        else:
            # threads + in-process transport: nothing listens on a socket (see module doc)
            self._cluster = LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=False,
                protocol="inproc://", dashboard_address=None, memory_limit="auto",
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


def make_executor(scheduler: str | None) -> InProcess | DaskExecutor:
    """``None`` → in-process; ``"local"`` → a 2-worker local cluster reachable only from
    this process (threads, no open port); else the address of a scheduler."""
    if scheduler is None:
        return InProcess()
    if scheduler == "local":
        return DaskExecutor(None)
    return DaskExecutor(scheduler)
