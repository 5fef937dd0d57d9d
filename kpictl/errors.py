"""The one exception hierarchy of kpictl and the exit codes it maps to (docs/spec/cli.md).

Services raise these; the CLI turns them into a message and an exit code in exactly one place
(`kpictl.cli.app.run_command`). Database driver errors are classified there too, by
`classify_database_error`, so that no command decides its own exit codes.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1  # the command ran and failed
    USAGE = 2  # bad option or value (Click's convention)
    UNAVAILABLE = 69  # database unreachable (EX_UNAVAILABLE)
    TEMPFAIL = 75  # pipeline lock held by another run (EX_TEMPFAIL)
    NOPERM = 77  # permission denied by the database (EX_NOPERM)
    SIGINT = 130
    SIGTERM = 143


def shown(value: str, limit: int = 80) -> str:
    """A user-supplied value made safe for a one-line message: escaped, and cut when long."""
    escaped = ascii(value)
    return escaped if len(escaped) <= limit else escaped[: limit - 3] + "..."


class KpictlError(Exception):
    """Base class: a failure with a message meant for the operator."""

    exit_code: ExitCode = ExitCode.FAILED
    # What a long job committed before it failed or stopped (its result object), for the CLI to
    # print as the run's summary; None for other errors.
    partial: object | None = None

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def with_partial(self, partial: object) -> KpictlError:
        self.partial = partial
        return self


class UsageError(KpictlError):
    """A bad option or value; the message names the offending value."""

    exit_code = ExitCode.USAGE


class ConfigurationError(UsageError):
    """A bad database URL, credentials file or environment setting."""


class DatabaseUnavailable(KpictlError):
    exit_code = ExitCode.UNAVAILABLE


class PermissionDenied(KpictlError):
    exit_code = ExitCode.NOPERM


class LockHeld(KpictlError):
    exit_code = ExitCode.TEMPFAIL


class CommandFailed(KpictlError):
    """The command ran and found or caused a failure (exit 1)."""


class SchemaNotReady(CommandFailed):
    """The database is not at this kpictl's head revision (not migrated, AFU-9 tables not
    adopted, behind, or migrated by a newer kpictl). One line that names what to run; exit 1
    for every command, `freshness` included (docs/spec/adoption.md)."""


class LockLost(KpictlError):
    """A job found, before committing, that its advisory lock is no longer held: its work was
    rolled back and it stopped (exit 1; 69 when the lock went with a server restart)."""

    def __init__(self, message: str, *, server_restarted: bool = False):
        super().__init__(
            message,
            hint="the next timer run will take the lock again; "
            "kpictl jobs --status failed shows what was committed",
        )
        if server_restarted:
            self.exit_code = ExitCode.UNAVAILABLE


class Interrupted(KpictlError):
    def __init__(self, message: str, *, signal_exit: ExitCode):
        super().__init__(message)
        self.exit_code = signal_exit


# The server went away under a running command: shut down, restarted, crashed, or the connection
# broke (admin_shutdown, crash_shutdown, cannot_connect_now, class 08 connection exceptions).
_SERVER_GONE_SQLSTATES = {"57P01", "57P02", "57P03"}
_SERVER_GONE_SQLSTATE_CLASSES = {"08"}
# SQLSTATE classes that mean "the database said no" rather than "it broke".
_PERMISSION_SQLSTATES = {"42501"}  # insufficient_privilege
_PERMISSION_SQLSTATE_CLASSES = {"28"}  # invalid authorization (bad password, no such role)
# Connection-time refusals arrive without a SQLSTATE; recognise libpq's wording.
_PERMISSION_MARKERS = (
    "password authentication failed",
    "no pg_hba.conf entry",
    'role "',  # role "x" does not exist
    "permission denied",
)


def classify_database_error(exc: BaseException, *, connecting: bool = False) -> KpictlError | None:
    """Map a SQLAlchemy / psycopg exception to a KpictlError, or None when it is not one."""
    import psycopg
    from sqlalchemy import exc as sa_exc

    original = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if not isinstance(original, psycopg.Error):
        if isinstance(exc, sa_exc.ArgumentError):
            return ConfigurationError(f"invalid database URL: {exc}")
        return None
    sqlstate = getattr(original, "sqlstate", None) or ""
    text = _primary_message(original)
    if sqlstate == _LOCK_NOT_AVAILABLE:
        return CommandFailed(
            f"database error: {text} (another session held a lock kpictl needed for longer "
            "than KPICTL_LOCK_TIMEOUT)",
            hint="try again; `kpictl doctor` shows kpictl's own lock holders",
        )
    if sqlstate in _PERMISSION_SQLSTATES or sqlstate[:2] in _PERMISSION_SQLSTATE_CLASSES:
        return PermissionDenied(f"permission denied by the database: {text}")
    if any(marker in text for marker in _PERMISSION_MARKERS):
        return PermissionDenied(f"permission denied by the database: {text}")
    if server_gone(original) or (isinstance(original, psycopg.OperationalError) and connecting):
        return DatabaseUnavailable(
            f"database unreachable: {text}",
            hint="check the URL (kpictl doctor shows which one is used) and that the server is up",
        )
    return CommandFailed(f"database error: {text}")


def server_gone(exc: BaseException) -> bool:
    """Whether `exc` (SQLAlchemy or psycopg) says the server went away: a lost connection (no
    SQLSTATE), a shutdown or restart (57P01-57P03), a class 08 connection exception."""
    import psycopg
    from sqlalchemy import exc as sa_exc

    original = exc.orig if isinstance(exc, sa_exc.DBAPIError) else exc
    if not isinstance(original, psycopg.Error):
        return False
    sqlstate = getattr(original, "sqlstate", None) or ""
    if sqlstate in _SERVER_GONE_SQLSTATES or sqlstate[:2] in _SERVER_GONE_SQLSTATE_CLASSES:
        return True
    return isinstance(original, psycopg.OperationalError) and not sqlstate


_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout expired, NOWAIT


def _primary_message(error: BaseException) -> str:
    """The server's primary message only: never the LINE/CONTEXT/QUERY lines, which quote SQL
    (and with it values) into what should be one line for an operator."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return primary.strip() if primary else _first_line(str(error))


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else text


def as_kpictl_error(exc: BaseException) -> KpictlError | None:
    """`exc` itself, or its classification when it is a database error (None otherwise)."""
    if isinstance(exc, KpictlError):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted("interrupted", signal_exit=ExitCode.SIGINT)
    classified = classify_database_error(exc)
    if classified is None and _after_a_lost_connection(exc):
        return as_kpictl_error(exc.__context__)  # type: ignore[arg-type]
    return classified


def _after_a_lost_connection(exc: BaseException) -> bool:
    """SQLAlchemy's PendingRollbackError raised while cleaning up after the error that broke
    the connection (Alembic's autocommit block commits in a `finally`): that error is the
    one to report."""
    from sqlalchemy import exc as sa_exc

    return isinstance(exc, sa_exc.PendingRollbackError) and exc.__context__ is not None


def describe_error(exc: BaseException) -> str:
    """One line for a job row's `error`: the operator's message, never a whole SQL statement
    with its parameters (which SQLAlchemy puts in its exception text)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (SIGINT)"
    classified = as_kpictl_error(exc)
    if classified is not None:
        return classified.message
    return _first_line(f"{type(exc).__name__}: {exc}")
