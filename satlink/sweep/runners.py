"""Where a sweep's jobs run: in this process, a local process pool or a Dask cluster.

A job is ``func(arg, *shared[k] for k in keys)``: images and prepared payloads are "shared" so
that each is shipped to a worker once, not once per job.

>>> with InlineRunner() as runner:                                   # doctest: +SKIP
...     runner.run(run_chunk, jobs, shared, sink)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from satlink.sweep.grid import SweepError
from satlink.sweep.worker import init_process, warm_up

# A job is ``func(arg, *shared[k] for k in keys)``: images and prepared payloads are "shared"
# so that Dask ships each of them to the cluster once, not once per job.
Job = tuple[Any, tuple[str, ...]]
Sink = Callable[[Any], None]


class Runner:
    """Runs jobs somewhere and hands each result to ``sink`` as it completes (any order)."""

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def slots(self) -> int:
        """Jobs it runs at once."""
        return 1

    def close(self) -> None:
        pass

    def run(
        self, func: Callable, jobs: Sequence[Job], shared: Mapping[str, Any], sink: Sink
    ) -> None:
        raise NotImplementedError


class InlineRunner(Runner):
    """In this process (``workers=0``): no start-up cost, handy in notebooks and tests."""

    def __enter__(self) -> Runner:
        import torch

        self._threads = torch.get_num_threads()
        return self

    def close(self) -> None:
        import torch

        torch.set_num_threads(self._threads)  # the caller's setting, back as it was

    def run(
        self, func: Callable, jobs: Sequence[Job], shared: Mapping[str, Any], sink: Sink
    ) -> None:
        for arg, keys in jobs:
            sink(func(arg, *(shared[k] for k in keys)))


class PoolRunner(Runner):
    """A local process pool, started on first use."""

    def __init__(self, workers: int, model: str, fingerprint: str) -> None:
        self.workers = workers
        self.warm = (model, fingerprint)
        self.pool = None

    @property
    def slots(self) -> int:
        return self.workers

    def run(
        self, func: Callable, jobs: Sequence[Job], shared: Mapping[str, Any], sink: Sink
    ) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        if self.pool is None:
            # spawn, not fork: forking a parent that already ran torch (a notebook, a test)
            # can deadlock in OpenMP; workers import satlink afresh instead.
            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_process,
            )
            # The pool spawns a process per job while none is idle: one warm-up job each
            # starts them all now, loading the model in parallel instead of one by one.
            for _ in range(self.workers):
                self.pool.submit(warm_up, *self.warm)
        futures = [self.pool.submit(func, arg, *(shared[k] for k in keys)) for arg, keys in jobs]
        try:
            for fut in as_completed(futures):
                sink(fut.result())
        except BaseException:
            # Jobs still running would finish for nothing: stop the processes this pool
            # started (taken before shutdown(), which forgets them).
            procs = list((getattr(self.pool, "_processes", None) or {}).values())
            for fut in futures:
                fut.cancel()
            self.pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            self.pool = None
            raise

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None


class DaskRunner(Runner):
    """A Dask distributed cluster; Dask is imported only here (an optional extra).

    What every job needs is shipped to every worker once, before the jobs: the images and the
    prepared payloads are broadcast (each job then finds them in its worker's memory), and the
    model is loaded in every worker process while the payloads are being prepared. Without
    that, the scheduler moves data next to whichever worker a job lands on, one transfer per
    job and worker, and the first jobs on each worker wait for the model one after another.
    """

    def __init__(self, address: str, model: str, fingerprint: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise SweepError(
                f"scheduler={address!r} needs Dask distributed, which is not installed; "
                "pip install 'satlink[dask]' (or run without a scheduler to use the "
                "local process pool)"
            ) from None
        try:
            self.client = Client(address, timeout="30s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise SweepError(
                f"scheduler={address!r}: cannot connect to the Dask scheduler ({exc})"
            ) from None
        self._scattered: dict[str, Any] = {}
        # Every worker loads the model now, in parallel (idempotent: cached per process).
        self.client.run(warm_up, model, fingerprint)

    @property
    def slots(self) -> int:
        """Tasks the cluster runs at once (its worker threads)."""
        return max(1, sum(self.client.nthreads().values()))

    def run(
        self, func: Callable, jobs: Sequence[Job], shared: Mapping[str, Any], sink: Sink
    ) -> None:
        from distributed import as_completed

        for _, keys in jobs:
            for k in keys:
                if k not in self._scattered:
                    # hash=False: the key is ours (a digest), Dask need not hash the data again
                    [self._scattered[k]] = self.client.scatter(
                        [shared[k]], broadcast=True, hash=False
                    )
        futures = [
            self.client.submit(func, arg, *(self._scattered[k] for k in keys), pure=False)
            for arg, keys in jobs
        ]
        try:
            for fut in as_completed(futures, loop=self.client.loop):
                sink(fut.result())
        except BaseException:
            self.client.cancel(futures)
            raise

    def close(self) -> None:
        self.client.close()
