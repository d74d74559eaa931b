"""An ordered map over worker processes, for reading headers and decoding units of large archives.

Workers are forked from a fork server, never from this process: forking a process whose torch threads run
can deadlock. The server imports the readers once (pydicom, numpy and the numpy-only preprocessing: ~0.3 s
on the 2-core machine, no torch, no MONAI); every worker then imports the entry point's module again
(multiprocessing's rule; the ``deepmcat`` command line imports no torch at the top for that reason). Small
jobs stay in this process.

A worker that dies (killed for memory, or a script that re-runs its work when a worker imports it) stops the
map with an error that says so: ``concurrent.futures`` notices a lost worker, where ``multiprocessing.Pool``
started a new one and waited for the lost item for ever (seen here, both ways).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
import sys
import warnings
from typing import Callable, Iterator, Sequence, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")

#: what the fork server imports before it forks workers: what reading headers and decoding units need
PRELOAD = ["deepmcat.data"]
#: beyond this many workers, reading is limited by the disk rather than by the cores
MAX_WORKERS = 16


class WorkerDied(RuntimeError):
    """A worker process ended without finishing its items."""


def default_workers() -> int:
    """The machine's cores (those this process may use), capped at :data:`MAX_WORKERS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def resolve_workers(workers: int | None) -> int:
    """``None`` or 0: the default; otherwise at least 1."""
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 (one per core) or a positive count, not {workers}")
    return default_workers() if not workers else workers


def ordered_map(fn: Callable[[T], R], items: Sequence[T], workers: int | None = None, *, min_items: int = 1,
                chunksize: int = 1, desc: str = "", progress: bool = True,
                count: Callable[[T], int] | None = None) -> Iterator[R]:
    """``fn`` over ``items`` in order, yielding each result as soon as it and those before it are done.

    Runs in this process when one worker is asked for or there are fewer than ``min_items`` items (the
    point below which spawning workers costs more than it saves); ``fn`` must be a module-level function.
    The progress bar counts items, or what ``count`` says each item holds.
    """
    n_workers = min(resolve_workers(workers), max(1, len(items) // max(1, chunksize)))
    if n_workers > 1 and len(items) >= min_items and not main_is_importable():
        warnings.warn(f"{desc or 'work'}: the main program is not a file that worker processes can import "
                      f"({main_file()}): running in this process", stacklevel=2)
        n_workers = 1
    bar = tqdm(total=sum(map(count, items)) if count else len(items), desc=desc, disable=not progress)
    try:
        if n_workers <= 1 or len(items) < min_items:
            results: Iterator[R] = map(fn, items)
            for item, result in zip(items, results):
                yield result
                bar.update(count(item) if count else 1)
            return
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(PRELOAD)
        pool = ProcessPoolExecutor(n_workers, mp_context=context)
        try:
            for item, result in zip(items, pool.map(fn, items, chunksize=chunksize)):
                yield result
                bar.update(count(item) if count else 1)
        except BrokenProcessPool as error:
            main = main_file()
            raise WorkerDied(f"{desc or 'work'}: a worker process died: killed for lack of memory, or "
                             + (f"{main} runs its work when a worker imports it (a script must keep it under "
                                "`if __name__ == \"__main__\":`), or " if main else "")
                             + "the item crashed it; run with one worker (`--workers 1`) to see that item's own "
                               "error") from error
        finally:  # an error, or a caller that stops early: the items not yet begun are dropped
            pool.shutdown(wait=False, cancel_futures=True)
    finally:
        bar.close()


def main_is_importable() -> bool:
    """Whether a worker can import the main program, as multiprocessing makes every worker do: a script on
    disk, a module run with ``-m``, or none (an interactive session, a notebook). A program read from
    standard input (``python -``, main file ``<stdin>``) cannot be: each worker died looking for it and the
    pool started new ones for ever (seen here)."""
    path = main_file()
    return path is None or os.path.isfile(path)


def main_file() -> str | None:
    """The main program's file as multiprocessing sees it (None in an interactive session)."""
    return getattr(sys.modules.get("__main__"), "__file__", None)

