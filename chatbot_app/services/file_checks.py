"""A small pool of worker processes for CPU-heavy file work: decoding images and reading PDFs.

Pillow and pypdf hold the GIL while they work, so on the event loop, or on one of its threads, one
hostile file stalls every tab the process serves. Here each job runs in a process of its own:

- forked from multiprocessing's forkserver, which has imported Pillow and pypdf already (a job
  starts in milliseconds), one job per process (`max_tasks_per_child=1`), so neither a limit nor the
  memory a large image left behind carries over to the next job;
- at a lower CPU priority (nice), so that the event loop wins the core whenever both want it;
- within a CPU-time budget the kernel keeps (RLIMIT_CPU): past it the job gets SIGXCPU, raised in it
  as an exception, and the caller gets OverBudget. A job stuck in C code that does not notice is
  killed by the kernel a second later; the pool is then replaced, and each job it took down with it
  runs once more, alone in a pool of its own (so the culprit cannot take it down twice);
- within a memory budget (RLIMIT_AS): an allocation past it raises MemoryError in the job.

At most `workers` jobs run at once and `max_waiting` more wait (each holds its file in memory);
past that, PoolBusy. The pool is created once per backend process (`start` at start-up, on a
thread: the forkserver's first imports take a moment).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import multiprocessing
import os
import resource
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Modules the forkserver imports once, so that each job's process starts with them loaded. "__main__" (the
#: program's own script, e.g. the `reflex` command) is imported there once, or else each job's process would
#: run it again (multiprocessing's spawn preparation).
PRELOAD = ["__main__", "chatbot_app.services.attachments", "chatbot_app.services.file_checks"]
#: Workers run at this niceness: a busy worker yields the core to the event loop.
WORKER_NICENESS = 10
#: The kernel kills a job this long after its budget's SIGXCPU if it has not stopped.
HARD_LIMIT_GRACE_S = 1


class OverBudget(Exception):
    """The job used up its CPU time and was stopped; `cpu_s` is the budget it had."""

    def __init__(self, cpu_s: int) -> None:
        super().__init__(f"stopped after {cpu_s} s of CPU time")
        self.cpu_s = cpu_s


class PoolBusy(Exception):
    """All workers are busy and the waiting line is full: try again shortly."""


class _OutOfCpu(BaseException):
    """Raised inside a job by SIGXCPU. A BaseException, so that a library's `except Exception` lets it through."""


def default_workers() -> int:
    """One worker per core beyond the first, at least one: on 2 cores, one, and a core stays with the event loop."""
    return max(1, (os.cpu_count() or 2) - 1)


class FileCheckPool:
    """Run picklable module-level functions in worker processes, each within a CPU-time budget."""

    def __init__(
        self, workers: int | None = None, max_waiting: int = 8, cpu_s: int = 5, memory_mib: int = 1024
    ) -> None:
        if cpu_s < 1:
            raise ValueError("cpu_s must be at least 1 (RLIMIT_CPU counts whole seconds)")
        self.workers = workers or default_workers()
        self.max_waiting = max_waiting
        self.cpu_s = cpu_s
        self.memory_bytes = memory_mib * 2**20
        #: Jobs that ran to an end in a worker (a result, an exception, or over budget): what tests count.
        self.jobs_run = 0
        #: Times a worker was killed and the pool replaced.
        self.replacements = 0
        self._lock = threading.Lock()
        self._admitted = 0
        self._executor: ProcessPoolExecutor | None = None
        self._solo_async = asyncio.Semaphore(self.workers)
        self._solo_threads = threading.BoundedSemaphore(self.workers)

    @property
    def admitted(self) -> int:
        """Jobs running or waiting now."""
        with self._lock:
            return self._admitted

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Create the workers' forkserver and run one empty job (blocking: call it on a thread)."""
        self.run_blocking(os.getpid)

    def close(self) -> None:
        """Stop the workers: waiting jobs are cancelled, running ones end (within their budget) first."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            # wait=True: without it, a worker ending meanwhile makes the executor's thread fail (CPython 3.11).
            executor.shutdown(wait=True, cancel_futures=True)

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = self._new_executor(self.workers)
            return self._executor

    @staticmethod
    def _new_executor(workers: int, tasks_per_worker: int | None = 1) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        return ProcessPoolExecutor(
            workers, mp_context=context, initializer=_worker_started, max_tasks_per_child=tasks_per_worker
        )

    def _broken(self, broken: ProcessPoolExecutor) -> None:
        """Replace the shared pool if `broken` is it (and no other job replaced it already)."""
        with self._lock:
            if self._executor is not broken:
                return
            self._executor = None
            self.replacements += 1
        log.warning("a file check was killed over its CPU budget; the worker pool was replaced")
        broken.shutdown(wait=False, cancel_futures=True)

    # -- running jobs ------------------------------------------------------------------------------

    async def run(self, fn: Callable[..., T], *args: Any, cpu_s: int | None = None) -> T:
        """`fn(*args)` in a worker; raises what it raises, OverBudget or PoolBusy. The event loop only waits."""
        budget = cpu_s or self.cpu_s
        job = (_budgeted, fn, args, budget, self.memory_bytes)
        self._admit()
        held: list[Future[Any]] = []  # a job its caller left holds its place until it ends

        async def attempt(executor: ProcessPoolExecutor) -> tuple[bool, Any]:
            future = executor.submit(*job)
            try:
                return await asyncio.wrap_future(future)
            except asyncio.CancelledError:
                held.append(future)
                future.add_done_callback(lambda _: self._release())
                raise

        try:
            shared = self._current()
            try:
                return self._finished(await attempt(shared), budget)
            except BrokenProcessPool:
                self._broken(shared)
            async with self._solo_async:
                with self._solo(budget) as solo:
                    return self._finished(await attempt(solo), budget)
        finally:
            if not held:
                self._release()

    def run_blocking(self, fn: Callable[..., T], *args: Any, cpu_s: int | None = None) -> T:
        """`run` for a caller on a worker thread (never on the event loop): blocks until the job ends."""
        budget = cpu_s or self.cpu_s
        job = (_budgeted, fn, args, budget, self.memory_bytes)
        self._admit()
        try:
            shared = self._current()
            try:
                return self._finished(shared.submit(*job).result(), budget)
            except BrokenProcessPool:
                self._broken(shared)
            with self._solo_threads, self._solo(budget) as solo:
                return self._finished(solo.submit(*job).result(), budget)
        finally:
            self._release()

    @contextlib.contextmanager
    def _solo(self, budget: int) -> Iterator[ProcessPoolExecutor]:
        """A pool of one for a job the shared pool's breaking took down, so that it runs alone.

        Nothing says which job broke a pool. Alone, a job that was only beside the culprit gets its
        answer, and the culprit takes no one else down; breaking its own pool, it is over budget. At
        most `workers` such pools run at once per kind of caller (`_solo_async`, `_solo_threads`).
        """
        # No task limit: its one worker must not end after the job and be replaced while the pool shuts
        # down without waiting (CPython 3.11's executor thread then fails).
        solo = self._new_executor(1, tasks_per_worker=None)
        try:
            yield solo
        except BrokenProcessPool:
            raise OverBudget(budget) from None
        finally:
            solo.shutdown(wait=False, cancel_futures=True)

    def _finished(self, outcome: tuple[bool, Any], budget: int) -> Any:
        self.jobs_run += 1
        completed, value = outcome
        if not completed:
            raise OverBudget(budget)
        return value

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.workers + self.max_waiting:
                raise PoolBusy("every file checker is busy")
            self._admitted += 1

    def _release(self) -> None:
        with self._lock:
            self._admitted -= 1


# -- inside a worker process ---------------------------------------------------------------------------


def _worker_started() -> None:
    os.nice(WORKER_NICENESS)


def _on_sigxcpu(_signum: int, _frame: object) -> None:
    raise _OutOfCpu


def _cpu_used_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _budgeted(fn: Callable[..., T], args: tuple[Any, ...], cpu_s: int, memory_bytes: int) -> tuple[bool, T | None]:
    """Run `fn(*args)` within `cpu_s` more seconds of CPU: (True, result), or (False, None) over budget.

    The limit is the kernel's (RLIMIT_CPU, whole seconds of the process's CPU time): SIGXCPU at the soft
    limit, SIGKILL at the hard one. The process runs this one job, so lowering its hard limits is harmless.
    """
    soft = math.ceil(_cpu_used_s()) + cpu_s
    signal.signal(signal.SIGXCPU, _on_sigxcpu)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + HARD_LIMIT_GRACE_S))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    try:
        return True, fn(*args)
    except _OutOfCpu:
        return False, None
