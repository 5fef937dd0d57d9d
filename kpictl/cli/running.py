"""What every long command (aggregate, backfill, retention, history fill, demo, adoption)
shares around its service call: the job row's metadata, SIGTERM/SIGINT as a stop request, a
progress bar on a terminal, and, when the job fails, loses its lock or is stopped, the summary
of what it committed before its error goes on to its exit code (docs/spec/cli.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kpictl.settings import Settings

if TYPE_CHECKING:
    from kpictl.services.jobs.progress import Progress
    from kpictl.services.jobs.stop import StopRequest


def job_metadata(settings: Settings) -> dict[str, Any]:
    """The job row's metadata (host, pid, version, command line with the password masked)."""
    from kpictl.redact import secrets_of_url
    from kpictl.services.jobs import rows

    return rows.job_metadata(settings.argv, secrets_of_url(settings.target.url))


@contextmanager
def long_job(
    settings: Settings,
    show_partial: Callable[[Any], None] | None = None,
    *,
    progress: bool = True,
) -> Iterator[tuple[StopRequest, Progress]]:
    """The stop request and progress bar (none with `progress=False` or -q) of the job run in
    the block. A KpictlError carrying what the job committed (`exc.partial`) is first shown
    with `show_partial`, then raised on."""
    from kpictl.cli.progress import progress_bar
    from kpictl.cli.signals import graceful_stop
    from kpictl.errors import KpictlError

    try:
        with (
            graceful_stop(settings.stop_grace_seconds) as stop,
            progress_bar(settings.quiet or not progress) as bar,
        ):
            yield stop, bar
    except KpictlError as exc:
        if exc.partial is not None and show_partial is not None:
            show_partial(exc.partial)
        raise
