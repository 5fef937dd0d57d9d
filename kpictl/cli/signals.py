"""SIGTERM / SIGINT -> a graceful stop request (docs/spec/pipeline.md §5)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from kpictl.errors import ExitCode
from kpictl.services.jobs.stop import StopRequest
from kpictl.settings import DEFAULT_STOP_GRACE_SECONDS


@contextmanager
def graceful_stop(grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS) -> Iterator[StopRequest]:
    """While the block runs, SIGTERM/SIGINT ask the job to stop after its current step; the
    step's query is cancelled server-side after the grace period
    (`settings.DEFAULT_STOP_GRACE_SECONDS`; KPICTL_STOP_GRACE_SECONDS overrides it)."""
    stop = StopRequest(grace_seconds)

    def on_signal(signum: int, _frame: object) -> None:
        if signum == signal.SIGTERM:
            stop.request(ExitCode.SIGTERM, "SIGTERM")
        else:
            stop.request(ExitCode.SIGINT, "SIGINT")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        stop.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
