"""Graceful stop for long jobs (docs/spec/pipeline.md §5).

The CLI turns SIGTERM/SIGINT into `StopRequest.request(...)`. Services call `check()` between
steps (no new step starts after a stop request) and register the connections running the current
step (several when a job works in parallel, like history fill); if a step is still running
`grace_seconds` after the request, its query is cancelled server-side, the transaction rolls back
and the job ends `cancelled`.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

from kpictl.errors import ExitCode, Interrupted
from kpictl.settings import DEFAULT_STOP_GRACE_SECONDS


class StopRequest:
    def __init__(self, grace_seconds: float = DEFAULT_STOP_GRACE_SECONDS):
        self.grace_seconds = grace_seconds
        self.exit_code: ExitCode | None = None
        self.signal_name: str | None = None
        self._connections: list[Any] = []  # the DBAPI connections of the running steps
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    @property
    def requested(self) -> bool:
        return self.exit_code is not None

    def request(self, exit_code: ExitCode, signal_name: str) -> None:
        """Called from a signal handler: remember, and arm the server-side cancel."""
        if self.requested:
            return
        self.exit_code, self.signal_name = exit_code, signal_name
        self._timer = threading.Timer(self.grace_seconds, self._cancel_running_query)
        self._timer.daemon = True
        self._timer.start()

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

    def _cancel_running_query(self) -> None:
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            _cancel(connection)

    def interrupted(self) -> Interrupted:
        if self.exit_code is None:
            raise RuntimeError("no stop was requested")
        return Interrupted(f"stopped by {self.signal_name}", signal_exit=self.exit_code)

    def check(self) -> None:
        """Between steps: raise when a stop was requested."""
        if self.requested:
            raise self.interrupted()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


def _cancel(dbapi_connection: Any) -> None:
    cancel = getattr(dbapi_connection, "cancel_safe", None) or dbapi_connection.cancel
    # already closed, or the server is gone: nothing left to cancel
    with contextlib.suppress(Exception):
        cancel()
