"""Graceful stop for long jobs (docs/spec/pipeline.md §5).

The CLI turns SIGTERM/SIGINT into `StopRequest.request(...)`. Services call `check()` between
steps (no new step starts after a stop request) and register the connections running the current
step (several when a job works in parallel, like history fill); if a step is still running
`grace_seconds` after the request, its query is cancelled server-side, the transaction rolls back
and the job ends `cancelled`.

A cancel that reaches a backend between two statements (the client is busy in Python, or in a
pipeline's gaps) is dropped by the server, and the step's next statement would run to its end. So
after the grace the cancel is repeated every `CANCEL_INTERVAL_SECONDS` on every connection still
watched, until the request is closed. The list is only changed under the lock the cancels are sent
under: a connection unwatched (and returned to the pool, maybe for the job row's closing write) is
never cancelled afterwards.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from kpictl.errors import ExitCode, Interrupted
from kpictl.settings import DEFAULT_STOP_GRACE_SECONDS

CANCEL_INTERVAL_SECONDS = 0.25
CANCEL_TIMEOUT_SECONDS = 5.0


class StopRequest:
    def __init__(self, grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS):
        self.grace_seconds = grace_seconds
        self.exit_code: ExitCode | None = None
        self.signal_name: str | None = None
        self._connections: list[Any] = []  # the DBAPI connections of the running steps
        self._canceller: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()

    @property
    def requested(self) -> bool:
        return self.exit_code is not None

    def request(self, exit_code: ExitCode, signal_name: str) -> None:
        """Called from a signal handler: remember, and arm the server-side cancel."""
        if self.requested:
            return
        self.exit_code, self.signal_name = exit_code, signal_name
        self._canceller = threading.Thread(target=self._cancel_after_grace, daemon=True)
        self._canceller.start()

    def watch(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._connections.append(dbapi_connection)

    def unwatch(self, dbapi_connection: Any = None) -> None:
        """Forget `dbapi_connection` (every connection when None)."""
        with self._lock:
            if dbapi_connection is None:
                self._connections.clear()
            elif dbapi_connection in self._connections:
                self._connections.remove(dbapi_connection)

    def _cancel_after_grace(self) -> None:
        if self._closed.wait(self.grace_seconds):
            return
        while True:
            with self._lock:  # see the module docstring: never a connection already unwatched
                for connection in self._connections:
                    _cancel(connection)
            if self._closed.wait(CANCEL_INTERVAL_SECONDS):
                return

    def interrupted(self) -> Interrupted:
        if self.exit_code is None:
            raise RuntimeError("no stop was requested")
        return Interrupted(f"stopped by {self.signal_name}", signal_exit=self.exit_code)

    def check(self) -> None:
        """Between steps: raise when a stop was requested."""
        if self.requested:
            raise self.interrupted()

    def close(self) -> None:
        """No more cancels (the job is over)."""
        self._closed.set()


def _cancel(dbapi_connection: Any) -> None:
    # already closed, or the server is gone: nothing left to cancel. A server that does not
    # answer gets a short timeout, since the cancels are sent under the watch list's lock.
    with contextlib.suppress(Exception):
        dbapi_connection.cancel_safe(timeout=CANCEL_TIMEOUT_SECONDS)
