"""Work items on several connections at once, under the job's lock (`--jobs N`).

Each worker is a thread with a guarded connection of its own (`Job.connect`: every commit checks
the job's lock first, and the stop request can cancel its running statement); it takes the next
item until none is left, or until any worker fails or a stop is requested. The lock stays one
across hosts: the workers run inside the job that holds it.

`workers("auto")` is the server's `max_parallel_workers` or this machine's CPU count, the
smaller, within 1..MAX_WORKERS.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Connection, text

from kpictl.services.jobs.runner import Job

Item = TypeVar("Item")
MAX_WORKERS = 16
POLL_SECONDS = 0.5  # the main thread wakes up this often, so that signals reach it


def auto_workers(connection: Connection) -> int:
    """`--jobs auto`: the server's max_parallel_workers and the CPU count, the smaller."""
    server = int(connection.execute(text("SHOW max_parallel_workers")).scalar_one())
    return max(1, min(server, os.cpu_count() or 1, MAX_WORKERS))


def each(
    job: Job,
    items: Sequence[Item],
    work: Callable[[Connection, Item], None],
    *,
    workers: int,
) -> None:
    """`work(connection, item)` for every item, on up to `workers` connections at once; the
    first error of a worker (a stop, a lost lock, an outage) is raised once every worker has
    finished the item it was on."""
    pending = iter(items)
    taking = threading.Lock()
    failed = threading.Event()

    def worker() -> None:
        with job.connect() as connection:
            while not failed.is_set():
                with taking:
                    item = next(pending, None)
                if item is None:
                    return
                try:
                    work(connection, item)
                except BaseException:
                    failed.set()
                    raise

    count = max(1, min(workers, len(items)))
    with concurrent.futures.ThreadPoolExecutor(count, thread_name_prefix="kpictl-worker") as pool:
        futures = [pool.submit(worker) for _ in range(count)]
        remaining = set(futures)
        while remaining:
            _done, remaining = concurrent.futures.wait(remaining, timeout=POLL_SECONDS)
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
